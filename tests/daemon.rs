//! `actiond run` end to end with the real backbone and the bundled detector: a file run reproduces
//! `extract` + `predict`; SIGTERM ends open events with `shutdown` and exits 0 in time; SIGHUP with a
//! broken file keeps the running rules; /metrics and /api/streams answer while it runs; a detector
//! trained on other features is refused before anything starts.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn actiond(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_actiond")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path).display().to_string()
}

fn model_section() -> String {
    format!("[model]\nbackbone = {:?}\ndetector = {:?}\n", repo("assets/models/dinov2-vits14"), repo("assets/detector/synth-oadtr.safetensors"))
}

fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A short synthetic clip, written by `actiond synth` into `dir`.
fn synth_clip(dir: &Path, seconds: u32) -> PathBuf {
    let out = actiond(&["synth", "--out", dir.to_str().unwrap(), "--videos", "1", "--seed", "77", "--seconds", &seconds.to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let videos: Vec<PathBuf> = std::fs::read_dir(dir.join("videos")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(videos.len(), 1);
    videos[0].clone()
}

#[test]
fn a_file_run_reproduces_extract_and_predict() {
    let dir = tempfile::tempdir().unwrap();
    let video = synth_clip(&dir.path().join("set"), 12);
    let data = dir.path().join("data");
    let out = actiond(&["extract", video.to_str().unwrap(), "--out", data.to_str().unwrap(), "--feature-dir", "f", "--config", &write(dir.path(), "model.toml", &model_section())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let name = video.file_stem().unwrap().to_str().unwrap();
    let features = data.join("f").join(format!("{name}.npy"));
    let current = dir.path().join("current.npy");
    let anticipated = dir.path().join("anticipated.npy");
    let out = actiond(&[
        "predict",
        "--model",
        &repo("assets/detector/synth-oadtr.safetensors"),
        "--features",
        features.to_str().unwrap(),
        "--out",
        current.to_str().unwrap(),
        "--anticipation",
        anticipated.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let log = dir.path().join("events.jsonl");
    // `clear_below = 0`: once firing, the rule cannot clear whatever the detector scores, so its event
    // ends with the stream.
    let config = format!(
        "{}[[streams]]\nid = \"clip\"\nurl = {:?}\n\n[[rules]]\nname = \"anything\"\nlabel = \"background\"\nmin_score = 0.01\nclear_below = 0.0\n\n[sinks.log]\ntype = \"jsonl\"\npath = {:?}\n\n[http]\nenabled = false\n",
        model_section(),
        video.display().to_string(),
        log.display().to_string()
    );
    let config = write(dir.path(), "run.toml", &config);
    let scores = dir.path().join("scores.jsonl");
    let out = actiond(&["run", &config, "--record-scores", scores.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let expected = actiond::npy::read(&current).unwrap();
    let expected_future = actiond::npy::read(&anticipated).unwrap();
    let classes = expected.shape[1];
    let queries = expected_future.shape[1];
    let rows: Vec<Value> = std::fs::read_to_string(&scores).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), expected.shape[0], "the daemon saw as many chunks as extract");
    let mut worst = 0f32;
    for (t, row) in rows.iter().enumerate() {
        assert!((row["pts"].as_f64().unwrap() - t as f64 * 0.25).abs() < 1e-6);
        let (latency, inference) = (row["latency_ms"].as_f64().unwrap(), row["inference_ms"].as_f64().unwrap());
        assert!(inference > 0.0 && latency >= inference, "a chunk's latency covers its inference: {row}");
        for c in 0..classes {
            worst = worst.max((row["current"][c].as_f64().unwrap() as f32 - expected.data[t * classes + c]).abs());
            for q in 0..queries {
                let live = row["anticipated"][q][c].as_f64().unwrap() as f32;
                worst = worst.max((live - expected_future.data[(t * queries + q) * classes + c]).abs());
            }
        }
    }
    assert!(worst <= 1e-5, "daemon and predict differ by {worst}");

    // The file ended: the background firing ends with the stream, and the log is complete.
    let events = read_events(&log);
    assert_eq!(events.first().unwrap()["type"], "start", "{events:?}");
    let last = events.last().unwrap();
    assert_eq!(last["type"], "end");
    assert_eq!(last["reason"], "stream_lost");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigterm_ends_open_events_and_sighup_with_a_broken_file_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.jsonl");
    let port = support::free_port();
    let config = format!(
        "{}[[streams]]\nid = \"cam\"\nurl = \"synth://seed=5?realtime=1\"\n\n[[rules]]\nname = \"anything\"\nlabel = \"background\"\nmin_score = 0.01\nclear_below = 0.0\nactions = [\"log\"]\n\n[sinks.log]\ntype = \"jsonl\"\npath = {:?}\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
        model_section(),
        log.display().to_string()
    );
    let config_path = write(dir.path(), "run.toml", &config);
    let child = Command::new(env!("CARGO_BIN_EXE_actiond"))
        .args(["run", &config_path])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut daemon = Daemon(child);
    let pid = daemon.0.id() as libc::pid_t;

    assert!(support::wait_until(Duration::from_secs(60), || read_events(&log).iter().any(|e| e["type"] == "start")), "no start event");
    let metrics = http_get(port, "/metrics").expect("metrics answer");
    assert!(metrics.contains("actiond_stream_sampled_fps{stream=\"cam\"}"), "{metrics}");
    assert!(metrics.contains("actiond_sink_sent_total{sink=\"log\",type=\"jsonl\"}"), "{metrics}");
    let streams: Value = serde_json::from_str(&http_get(port, "/api/streams").unwrap()).unwrap();
    assert_eq!(streams[0]["id"], "cam", "{streams}");
    assert!(streams[0]["current"][0]["label"].is_string(), "{streams}");

    // A broken file on SIGHUP is refused; the running rule stays and the daemon keeps going.
    std::fs::write(&config_path, config.replace("min_score = 0.01", "min_score = 7")).unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(1500));
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon stopped on a bad reload");

    let stopped = Instant::now();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(stopped.elapsed() < Duration::from_secs(6), "still running 6 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit {status:?}");
    let mut stderr = String::new();
    daemon.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("reload") && stderr.contains("min_score"), "{stderr}");
    let events = read_events(&log);
    let last = events.last().unwrap();
    assert_eq!((last["type"].as_str(), last["reason"].as_str()), (Some("end"), Some("shutdown")), "{events:?}");
    assert_eq!(events.iter().filter(|e| e["type"] == "start").count(), events.iter().filter(|e| e["type"] == "end").count());
}

#[test]
fn a_detector_trained_on_other_features_is_refused_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{}input_size = 112\n\n[[streams]]\nid = \"cam\"\nurl = \"synth://seed=1\"\n", model_section());
    let out = actiond(&["run", &write(dir.path(), "run.toml", &config)]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("synth-oadtr.safetensors") && stderr.contains("input size is 112"), "{stderr}");
}
