//! The command line as users meet it: probe's report, and one clear line with exit 1 (bad source) or
//! exit 2 (bad configuration) for bad input — never a panic or a backtrace, never a password.

mod support;

use std::process::{Command, Output};

fn actiond(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actiond")).args(args).env_remove("RUST_LOG").env("RUST_BACKTRACE", "1").output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Exit 1, exactly one line on stderr that names `source` and says `cause`.
fn assert_one_line_failure(args: &[&str], source: &str, cause: &str) {
    let out = actiond(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?}: one line expected, got:\n{err}");
    assert!(lines[0].contains(source), "{args:?}: names the source: {err}");
    assert!(lines[0].to_lowercase().contains(cause), "{args:?}: says {cause:?}: {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

#[test]
fn probe_json_reports_the_stream() {
    let path = support::fixture("bikes.mp4");
    let out = actiond(&["probe", path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["codec"], "h264");
    assert_eq!(v["width"], 640);
    assert_eq!(v["height"], 272);
    assert!((v["input_fps"].as_f64().unwrap() - 25.0).abs() < 0.01);
    assert_eq!(v["frames_decoded"], 250);
    assert_eq!(v["frames_sampled"], 40);
    assert_eq!(v["decode_errors"], 0);
}

#[test]
fn probe_respects_seconds_and_fps() {
    let path = support::fixture("vtest.avi");
    let out = actiond(&["probe", path.to_str().unwrap(), "--json", "--seconds", "5", "--fps", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["codec"], "msmpeg4v3");
    assert_eq!(v["frames_sampled"], 10, "2 fps over 5 s of media: {v}");
}

#[test]
fn probe_table_for_people() {
    let path = support::fixture("bikes.mp4");
    let out = actiond(&["probe", path.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("h264 640x272") && text.contains("40 frames at 4 fps"), "{text}");
}

#[test]
fn probe_reads_lavfi_test_sources() {
    let out = actiond(&["probe", "lavfi:testsrc2=size=320x240:rate=25", "--seconds", "2", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["width"], 320);
    assert_eq!(v["frames_sampled"], 8, "{v}");
}

#[test]
fn bad_sources_fail_with_one_clear_line() {
    assert_one_line_failure(&["probe", "no/such/clip.mp4"], "no/such/clip.mp4", "no such file");
    let text = tempfile::Builder::new().suffix(".mp4").tempfile().unwrap();
    std::fs::write(text.path(), "this is a shopping list, not a video\n".repeat(50)).unwrap();
    let text_path = text.path().to_str().unwrap();
    assert_one_line_failure(&["probe", text_path], text_path, "not a media file");
    let port = support::free_port();
    let url = format!("rtsp://admin:s3cret@127.0.0.1:{port}/stream");
    let shown = format!("rtsp://***@127.0.0.1:{port}/stream");
    assert_one_line_failure(&["probe", &url], &shown, "refused");
    let out = actiond(&["probe", &url]);
    assert!(!stderr(&out).contains("s3cret"), "credentials never shown");
    assert_one_line_failure(&["probe", "/dev/video97"], "/dev/video97", "no such file");
}

#[test]
fn unknown_scheme_is_a_usage_error() {
    let out = actiond(&["probe", "gopher://admin:pw@cam/feed"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown scheme `gopher://`") && err.contains("gopher://***@cam/feed") && !err.contains("pw@"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn refused_auth_is_one_line_without_the_password() {
    let server = support::RtspServer::start(support::free_port(), "auth", None, Some(("op", "good")));
    let url = server.url_with("op", "letmein");
    assert_one_line_failure(&["probe", &url], &format!("rtsp://***@127.0.0.1:{}/auth", server.port), "401");
    assert!(!stderr(&actiond(&["probe", &url])).contains("letmein"));
}

fn check_config(text: &str) -> (Option<i32>, String) {
    let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let out = actiond(&["check-config", file.path().to_str().unwrap()]);
    (out.status.code(), stderr(&out))
}

#[test]
fn check_config_names_key_paths_and_lines() {
    let (code, err) = check_config("[[streams]]\nid = \"door\"\nurl = \"rtsp://cam/1\"\ncolour = \"red\"\n");
    assert_eq!(code, Some(2));
    assert!(err.contains(":4: streams[0].colour: unknown key `colour`"), "{err}");

    let (code, err) = check_config("[ingest]\nfps = \"four\"\n");
    assert_eq!(code, Some(2));
    assert!(err.contains(":2: ingest.fps: invalid type: string \"four\", expected a number"), "{err}");

    let (code, err) = check_config("[ingest]\nopen_timeout = \"ten seconds\"\nread_timeout = 5\n");
    assert_eq!(code, Some(2));
    assert!(err.contains(":2: ingest.open_timeout:"), "{err}");
    assert!(err.contains(":3: ingest.read_timeout:"), "both errors at once: {err}");
    assert!(err.contains("2 problems"), "{err}");

    let (code, out) = check_config("[ingest]\nread_timeout = \"250ms\"\n[[streams]]\nid = \"a\"\nurl = \"lavfi:testsrc2\"\n");
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn config_schema_is_json_schema() {
    let out = actiond(&["config", "schema"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["$schema"].as_str().unwrap().contains("json-schema"));
    assert!(v["properties"]["streams"].is_object());
}

#[test]
fn json_logs_are_json_and_redacted() {
    let port = support::free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_actiond"))
        .args(["--log-format", "json", "--log", "debug", "probe", &format!("rtsp://u:hunter2@127.0.0.1:{port}/x")])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!err.contains("hunter2"), "{err}");
    let json_lines: Vec<&str> = err.lines().filter(|l| l.starts_with('{')).collect();
    for line in &json_lines {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
    }
}

#[test]
fn shipped_pipelines_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = actiond(&["check-config", path.to_str().unwrap()]);
            assert!(out.status.success(), "{}: {}", path.display(), stderr(&out));
            checked += 1;
        }
    }
    assert!(checked >= 2);
}
