//! The whole product on a generated video: `actiond synth` renders a clip with known ground truth, a
//! real RTSP server (GStreamer, loopback) serves it at camera pace, `actiond run` with the bundled
//! detector and the rules of the embedded default (pipelines/demo.toml) watches it, and the event log
//! must show every long enough action of a watched label soon after it began, and nothing for the
//! watched labels the clip does not contain.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// How soon after an action's onset its `start` must come.
const MAX_DELAY_S: f64 = 1.5;
/// Only actions at least this long must be caught.
const MIN_SEGMENT_S: f64 = 2.0;
const SEED: u64 = 4242;
const SECONDS: u32 = 42;

#[test]
fn every_watched_action_is_announced_within_a_second_and_a_half_of_its_onset() {
    // The shipped rules, as users run them; the labels of those on the current action are watched.
    let demo: toml_edit::DocumentMut = std::fs::read_to_string(repo("pipelines/demo.toml")).unwrap().parse().unwrap();
    let rules = demo["rules"].as_array_of_tables().expect("pipelines/demo.toml has [[rules]]").clone();
    let watched: Vec<String> = rules
        .iter()
        .filter(|r| r.get("source").and_then(|s| s.as_str()).unwrap_or("current") == "current")
        .map(|r| r["label"].as_str().unwrap().to_string())
        .collect();
    assert!(!watched.is_empty(), "pipelines/demo.toml has no rule on the current action");

    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("set");
    let out = Command::new(env!("CARGO_BIN_EXE_actiond"))
        .args(["synth", "--out", set.to_str().unwrap(), "--videos", "1", "--seed", &SEED.to_string(), "--seconds", &SECONDS.to_string()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let video = std::fs::read_dir(set.join("videos")).unwrap().next().unwrap().unwrap().path();
    let segments = read_annotations(&set.join("annotations"));

    let server = support::RtspServer::start(support::free_port(), "synth", Some(&video), None);
    let log = dir.path().join("events.jsonl");
    let scores = dir.path().join("scores.jsonl");
    let mut config = format!(
        "[model]\nbackbone = {:?}\ndetector = {:?}\n\n[[streams]]\nid = \"cam\"\nurl = {:?}\n\n[sinks.log]\ntype = \"jsonl\"\npath = {:?}\n\n[http]\nenabled = false\n",
        repo("assets/models/dinov2-vits14"),
        repo("assets/detector/synth-oadtr.safetensors"),
        server.url(),
        log.display().to_string()
    );
    let mut document: toml_edit::DocumentMut = config.parse().unwrap();
    document.insert("rules", toml_edit::Item::ArrayOfTables(rules));
    config = document.to_string();
    let config_path = dir.path().join("run.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_actiond"))
        .args(["run", config_path.to_str().unwrap(), "--record-scores", scores.to_str().unwrap()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    // The server plays the clip once at real-time pace; then the daemon sees the stream end.
    let chunks = |path: &Path| std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0);
    let all = (SECONDS as usize) * 4;
    let done = support::wait_until(Duration::from_secs(SECONDS as u64 + 40), || chunks(&scores) >= all - 4);
    unsafe { libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM) };
    let status = daemon.wait().unwrap();
    assert!(status.success(), "daemon exit {status:?}");
    assert!(done, "the daemon scored only {} of the clip's {all} chunks", chunks(&scores));

    // RTSP timestamps start where the server's clock did: the first chunk is the clip's first frame.
    let first_pts = serde_json::from_str::<Value>(std::fs::read_to_string(&scores).unwrap().lines().next().unwrap()).unwrap()["pts"].as_f64().unwrap();
    let events: Vec<Value> = std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let starts: Vec<(String, f64)> =
        events.iter().filter(|e| e["type"] == "start").map(|e| (e["label"].as_str().unwrap().to_string(), e["pts"].as_f64().unwrap() - first_pts)).collect();

    let mut checked = 0;
    for label in &watched {
        let label_segments = segments.get(label).cloned().unwrap_or_default();
        if label_segments.is_empty() {
            let fired: Vec<_> = starts.iter().filter(|(l, _)| l == label).collect();
            assert!(fired.is_empty(), "{label} is not in the clip but fired at {fired:?}");
            continue;
        }
        for (onset, end) in label_segments.iter().filter(|(s, e)| e - s >= MIN_SEGMENT_S) {
            checked += 1;
            let caught = starts.iter().any(|(l, t)| l == label && *t >= onset - 0.5 && *t <= onset + MAX_DELAY_S);
            assert!(caught, "{label} {onset:.2}–{end:.2} s: no start within {MAX_DELAY_S} s of its onset; starts: {starts:?}");
        }
    }
    assert!(checked > 0, "the clip has no long action of a watched label: pick another seed");
    assert!(watched.iter().any(|l| !segments.contains_key(l)), "every watched label is in the clip: pick another seed");
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path).display().to_string()
}

/// THUMOS-style annotations: `<label>.txt` with `video start_s end_s` lines.
fn read_annotations(dir: &Path) -> BTreeMap<String, Vec<(f64, f64)>> {
    let mut segments = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let label = path.file_stem().unwrap().to_str().unwrap().to_string();
        let rows: Vec<(f64, f64)> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace().skip(1).map(|v| v.parse::<f64>().unwrap());
                Some((f.next()?, f.next()?))
            })
            .collect();
        if !rows.is_empty() {
            segments.insert(label, rows);
        }
    }
    segments
}
