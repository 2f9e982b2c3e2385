//! Frame metrics against the official OadTR `frame_level_map_n_cap` and scikit-learn, on
//! tests/fixtures/metrics/frame_metrics.safetensors (6000 frames, 21 classes, class 0 background).

use actiond::eval::metrics::frame_metrics;
use candle_core::Device;

#[test]
fn metrics_match_official_and_sklearn_values() {
    let fx = candle_core::safetensors::load("tests/fixtures/metrics/frame_metrics.safetensors", &Device::Cpu).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("tests/fixtures/metrics/frame_metrics.json").unwrap()).unwrap();
    let probs: Vec<f32> = fx["probs"].flatten_all().unwrap().to_vec1().unwrap();
    let labels: Vec<f32> = fx["labels"].flatten_all().unwrap().to_vec1().unwrap();
    let m = frame_metrics(&probs, &labels, 21, None).unwrap();
    let close = |name: &str, got: f64, want: &serde_json::Value| {
        let want = want.as_f64().unwrap();
        assert!((got - want).abs() < 1e-5, "{name}: got {got}, official {want}");
        (got - want).abs()
    };
    let mut worst = 0.0f64;
    worst = worst.max(close("mAP", m.map, &expected["mAP"]));
    worst = worst.max(close("cAP", m.cap, &expected["cAP"]));
    worst = worst.max(close("sklearn mAP", m.sklearn_map, &expected["sklearn_mAP"]));
    assert!((m.map - 0.7119941).abs() < 1e-5 && (m.cap - 0.9759443).abs() < 1e-5);
    assert_eq!(m.per_class.len(), 20);
    for (i, (class, scores)) in m.per_class.iter().enumerate() {
        assert_eq!(*class, i + 1);
        let s = scores.unwrap();
        worst = worst.max(close("per-class AP", s.ap, &expected["per_class_AP"][i]));
        worst = worst.max(close("per-class cAP", s.cap, &expected["per_class_cAP"][i]));
        worst = worst.max(close("per-class sklearn AP", s.sklearn_ap, &expected["sklearn_per_class_AP"][i]));
    }
    eprintln!("max abs difference to the official / sklearn values: {worst:.3e}");
}

#[test]
fn ignore_class_and_empty_classes_are_left_out_of_the_mean() {
    // 3 classes; class 2 has no positives; class 1 ranked perfectly.
    let scores = [0.1, 0.9, 0.0, 0.8, 0.2, 0.0, 0.3, 0.1, 0.5];
    let targets = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
    let m = frame_metrics(&scores, &targets, 3, None).unwrap();
    assert_eq!(m.map, 1.0);
    assert!(m.per_class[1].1.is_none());
    let m = frame_metrics(&scores, &targets, 3, Some(2)).unwrap();
    assert_eq!(m.per_class.len(), 2);
    assert!(frame_metrics(&scores, &targets[..6], 3, None).is_err());
}

#[test]
fn eval_command_scores_precomputed_files() {
    let fx = candle_core::safetensors::load("tests/fixtures/metrics/frame_metrics.safetensors", &Device::Cpu).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scores = dir.path().join("s.npy");
    let targets = dir.path().join("t.npy");
    actiond::npy::write(&scores, &[6000, 21], &fx["probs"].flatten_all().unwrap().to_vec1::<f32>().unwrap()).unwrap();
    actiond::npy::write(&targets, &[6000, 21], &fx["labels"].flatten_all().unwrap().to_vec1::<f32>().unwrap()).unwrap();
    let plot = dir.path().join("p.png");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_actiond"))
        .args(["eval", "--scores", scores.to_str().unwrap(), "--targets", targets.to_str().unwrap(), "--json"])
        .args(["--plot", plot.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!((report["mAP"].as_f64().unwrap() - 0.7119941).abs() < 1e-5);
    assert!((report["cAP"].as_f64().unwrap() - 0.9759443).abs() < 1e-5);
    assert_eq!(report["per_class_AP"].as_object().unwrap().len(), 20);
    assert!(report.get("anticipation_mAP").is_none());
    assert!(plot.exists());

    let short = dir.path().join("short.npy");
    actiond::npy::write(&short, &[10, 21], &[0.0; 210]).unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_actiond"))
        .args(["eval", "--scores", scores.to_str().unwrap(), "--targets", short.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains("short.npy") && stderr.contains("same shape"), "{stderr}");
}
