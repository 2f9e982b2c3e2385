//! `actiond predict` end to end: the official fixture's window, written as a feature sequence, gives the
//! official logits on its last chunk; bad inputs fail with one clear line and write nothing.

use std::path::Path;
use std::process::Command;

use candle_core::Device;

const FIXTURE: &str = "tests/fixtures/oadtr/oadtr_small.safetensors";

fn actiond(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_actiond")).args(args).output().unwrap()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn predict_reproduces_official_logits_on_the_full_window() {
    let fx = candle_core::safetensors::load(FIXTURE, &Device::Cpu).unwrap();
    let window: Vec<f32> = fx["input"].get(0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().join("x.npy");
    actiond::npy::write(&features, &[64, 384], &window).unwrap();
    let out = dir.path().join("y.npy");
    let ant = dir.path().join("z.npy");
    let run = actiond(&[
        "predict", "--model", FIXTURE, "--num-heads", "4", "--decoder-num-heads", "4", "--features", path_str(&features),
        "--out", path_str(&out), "--anticipation", path_str(&ant), "--logits",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let current = actiond::npy::read(&out).unwrap();
    assert_eq!(current.shape, vec![64, 22]);
    let expected: Vec<f32> = fx["out.current_logits"].get(0).unwrap().to_vec1().unwrap();
    let last = &current.data[63 * 22..];
    let err = last.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(err < 1e-4, "last chunk's logits differ by {err}");
    let anticipation = actiond::npy::read(&ant).unwrap();
    assert_eq!(anticipation.shape, vec![64, 8, 22]);
    let expected: Vec<f32> = fx["out.anticipation_logits"].get(0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let err = anticipation.data[63 * 8 * 22..].iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(err < 1e-4, "last chunk's anticipation differs by {err}");

    // Probabilities with the ignore class left out of the softmax.
    let probs = dir.path().join("p.npy");
    let run = actiond(&[
        "predict", "--model", FIXTURE, "--num-heads", "4", "--decoder-num-heads", "4", "--ignore-class", "21",
        "--features", path_str(&features), "--out", path_str(&probs),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let p = actiond::npy::read(&probs).unwrap();
    for row in p.data.chunks(22) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(row[21], 0.0);
    }
}

#[test]
fn bad_features_fail_cleanly_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("y.npy");
    let cases: Vec<(&str, Vec<usize>, Vec<f32>, &str)> = vec![
        ("narrow.npy", vec![5, 100], vec![0.0; 500], "features are 100 wide but the model"),
        ("nan.npy", vec![3, 384], { let mut v = vec![0.0; 3 * 384]; v[400] = f32::NAN; v }, "[1, 16] is not finite"),
        ("empty.npy", vec![0, 384], vec![], "empty"),
        ("cube.npy", vec![2, 2, 384], vec![0.0; 4 * 384], "expected 2"),
    ];
    for (name, shape, data, message) in cases {
        let features = dir.path().join(name);
        actiond::npy::write(&features, &shape, &data).unwrap();
        let run = actiond(&["predict", "--model", FIXTURE, "--features", path_str(&features), "--out", path_str(&out)]);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success());
        assert!(stderr.contains(name) && stderr.contains(message), "{name}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line, no backtrace: {stderr}");
        assert!(!out.exists());
    }
    std::fs::write(dir.path().join("junk.npy"), b"hello").unwrap();
    let run = actiond(&["predict", "--model", FIXTURE, "--features", path_str(&dir.path().join("junk.npy")), "--out", path_str(&out)]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("not a .npy file"));
    let run = actiond(&["predict", "--model", "missing.safetensors", "--features", "x.npy", "--out", path_str(&out)]);
    assert!(String::from_utf8_lossy(&run.stderr).contains("missing.safetensors"));
    assert!(!out.exists());
}
