//! `actiond synth` from the command line: it writes the set, and bad arguments get one line and exit 2
//! with nothing written.

use std::process::{Command, Output};

fn actiond(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actiond")).args(args).env_remove("RUST_LOG").output().unwrap()
}

#[test]
fn writes_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("set");
    let out_s = out.to_str().unwrap();
    let run = actiond(&["synth", "--out", out_s, "--videos", "2", "--seed", "3", "--seconds", "4", "--size", "64x48", "--no-footage"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for path in ["labels.txt", "synth.json", "videos/synth-3-0000.mp4", "videos/synth-3-0001.mp4", "target_perframe/synth-3-0001.npy", "annotations/walk.txt", "annotations/pick_up.txt"] {
        assert!(out.join(path).is_file(), "{path}");
    }
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("synth.json")).unwrap()).unwrap();
    assert_eq!(manifest["seed"], 3);
    assert_eq!(manifest["width"], 64);
}

#[test]
fn bad_arguments_exit_2_with_one_line_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("set");
    let out_s = out.to_str().unwrap();
    for (args, says) in [
        (vec!["--size", "65x48"], "even"),
        (vec!["--size", "big"], "widthxheight"),
        (vec!["--videos", "0"], "--videos"),
        (vec!["--seconds=-1"], "--seconds"),
        (vec!["--fps", "2"], "--fps"),
    ] {
        let mut all = vec!["synth", "--out", out_s, "--no-footage"];
        all.extend(args.iter());
        let run = actiond(&all);
        let err = String::from_utf8_lossy(&run.stderr).to_string();
        assert_eq!(run.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.to_lowercase().contains(says), "{args:?} should mention {says}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
    let run = actiond(&["synth", "--out", out_s, "--footage", "/nonexistent/clip.mp4", "--seconds", "2", "--videos", "1"]);
    let err = String::from_utf8_lossy(&run.stderr).to_string();
    assert_ne!(run.status.code(), Some(0));
    assert!(err.contains("/nonexistent/clip.mp4"), "{err}");
    assert!(!out.exists());
}
