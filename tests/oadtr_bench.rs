//! `actiond bench oadtr` through the real binary: the small config's rows are well formed, and bad
//! arguments are usage errors (exit 2).

use std::process::Command;

#[test]
fn small_config_rows_report_time_and_throughput() {
    let output = Command::new(env!("CARGO_BIN_EXE_actiond"))
        .args(["bench", "oadtr", "--small-only", "--runs", "1", "--min-seconds", "0", "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let rows: Vec<&serde_json::Value> = lines.iter().filter(|v| v.get("mode").is_some()).collect();
    let modes: Vec<(&str, u64)> =
        rows.iter().map(|r| (r["mode"].as_str().unwrap(), r["batch"].as_u64().unwrap())).collect();
    assert_eq!(
        modes,
        [
            ("stream step", 1),
            ("window forward", 1),
            ("candle forward", 1),
            ("window forward", 16),
            ("candle forward", 16)
        ],
        "{lines:?}"
    );
    for row in rows {
        assert!(row["ms_per_window"].as_f64().unwrap() > 0.0 && row["gflops"].as_f64().unwrap() > 0.0, "{row}");
        assert_eq!(row["pytorch_ms_per_window"], if row["batch"] == 1 { 11.8 } else { 3.9 });
    }
}

#[test]
fn negative_min_seconds_is_a_usage_error() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_actiond")).args(["bench", "oadtr", "--min-seconds=-1"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--min-seconds"));
}
