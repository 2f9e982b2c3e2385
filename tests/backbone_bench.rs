//! `actiond bench backbone` through the real binary: one timed run on the fetched weights gives a
//! well-formed row, and bad arguments are usage errors (exit 2).

use std::path::PathBuf;
use std::process::Command;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models")
}

#[test]
fn one_run_reports_time_and_throughput() {
    assert!(
        models_dir().join("dinov2-vits14/model.safetensors").is_file(),
        "run `actiond models fetch` first: the bench needs the DINOv2 weights"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_actiond"))
        .args(["bench", "backbone", "--batch", "1", "--runs", "1", "--threads", "2", "--json", "--models-dir"])
        .arg(models_dir())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let row: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(row["batch"], 1);
    assert_eq!(row["model"], "dinov2-vits14@224");
    // 12 layers of ViT-S/14 at 257 tokens plus the patch projection.
    assert!((row["gflop_per_frame"].as_f64().unwrap() - 12.25).abs() < 0.01, "{row}");
    assert!(row["ms_per_frame"].as_f64().unwrap() > 0.0);
    assert!(row["speed_ratio"].is_null(), "no reference was asked for");
}

#[test]
fn bad_device_and_batch_are_usage_errors() {
    for args in [["--device", "tpu"], ["--batch", "0"]] {
        let output = Command::new(env!("CARGO_BIN_EXE_actiond"))
            .args(["bench", "backbone"])
            .args(args)
            .arg("--models-dir")
            .arg(models_dir())
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
fn int8_reports_its_feature_error_against_f32() {
    let output = Command::new(env!("CARGO_BIN_EXE_actiond"))
        .args(["bench", "backbone", "--batch", "2", "--runs", "1", "--precision", "int8", "--json", "--models-dir"])
        .arg(models_dir())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    if !actiond::qgemm::supported() {
        assert!(!output.status.success() && String::from_utf8_lossy(&output.stderr).contains("AVX-512 VNNI"));
        return;
    }
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let row: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(row["precision"], "int8");
    let (mean, min) = (row["feature_cosine_mean"].as_f64().unwrap(), row["feature_cosine_min"].as_f64().unwrap());
    assert!(min <= mean && mean <= 1.0 + 1e-9, "{row}");
    assert!(min > 0.995, "int8 CLS features drift from f32: {row}");
}
