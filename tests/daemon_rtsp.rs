//! The whole pipeline on a real RTSP stream over loopback: `actiond synth` renders a short clip, a real
//! GStreamer RTSP server (tests/support/rtsp_server.py) serves it behind a user and password, and
//! `actiond run` — real backbone, bundled detector, JSONL sink, HTTP endpoint, `--record-scores` —
//! watches the `rtsp://user:password@127.0.0.1:PORT/…` URL. Nothing here depends on the detector's
//! accuracy, only on two rules that the clip reliably triggers (scores checked with `--record-scores`:
//! `clap` ≈ 0.4 in the clip's first 5 s, `background` above 0.5 around 11 s); both keep firing once
//! started (`keep_firing_for`), so their firings are open whenever the test acts. It checks:
//!
//! - The stream connects: `/api/streams` shows it streaming with its latest PTS and top labels, and
//!   `/metrics` shows sampled frames, backbone frames and scored chunks increasing.
//! - Chunks are scored at 4 fps in PTS order: one per 250 ms slot of the stream's clock (the 10 fps
//!   stream gives 2 or 3 frames per slot), increasing within a connection, and every sampled frame of a
//!   connection is either scored or counted as dropped.
//! - `start` events reach the JSONL log with the stream's id and a frame→event latency above 0 and
//!   under 10 s.
//! - The server dies (SIGKILL, like a camera losing power): the open firings end with reason
//!   `stream_lost` while the server is still down, not only once it is back, and `/api/streams` stops
//!   showing the lost connection's labels. It comes back: the daemon reconnects
//!   (`actiond_stream_reconnects_total` rises), scoring resumes on a new timeline and the rules fire
//!   again.
//! - The password and user never appear in the daemon's log, the events, the score record,
//!   `/metrics` or `/api/streams`; the URL shows as `rtsp://***@127.0.0.1:PORT/…`.
//! - SIGTERM exits 0, and each rule's last event is the `end` of its open firing with reason
//!   `shutdown`; every `start` has exactly one `end`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{free_port, http_get, metric, wait_until, Daemon, RtspServer};

const STREAM: &str = "door-cam";
const USER: &str = "viewer";
const PASSWORD: &str = "pa55-Xyzzy-42";
/// The rules and the labels they watch.
const RULES: [(&str, &str); 2] = [("hands", "clap"), ("idle", "background")];
/// Bound on a start event's frame→event latency: generous for a busy 2-core machine (about 1 s seen,
/// 1.3-5 s with two CPU burners beside the test; short queues and batches keep it bounded).
const MAX_LATENCY_MS: f64 = 10_000.0;

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path).display().to_string()
}

/// JSON lines of a file the daemon is writing; a last line still being written is left out.
fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// A 40 s clip of the synthetic world (320×240, 12 fps), rendered by `actiond synth`.
fn synth_clip(dir: &Path) -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_actiond"))
        .args(["synth", "--out", dir.to_str().unwrap(), "--videos", "1", "--seed", "5", "--seconds", "40"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let clip = dir.join("videos/synth-5-0000.mp4");
    assert!(clip.exists(), "{}", clip.display());
    clip
}

/// One scrape of `/metrics`.
struct Scrape(String);

impl Scrape {
    fn take(port: u16) -> Scrape {
        Scrape(http_get(port, "/metrics").expect("/metrics answers"))
    }

    fn get(&self, series: &str) -> f64 {
        metric(&self.0, series).unwrap_or_else(|| panic!("no {series} in /metrics:\n{}", self.0))
    }

    fn stream(&self, name: &str) -> f64 {
        self.get(&format!("{name}{{stream=\"{STREAM}\"}}"))
    }

    fn sampled(&self) -> f64 {
        self.stream("actiond_stream_frames_sampled_total")
    }

    fn dropped(&self) -> f64 {
        self.stream("actiond_stream_frames_dropped_total")
    }

    fn reconnects(&self) -> f64 {
        self.stream("actiond_stream_reconnects_total")
    }

    fn up(&self) -> bool {
        self.stream("actiond_stream_up") == 1.0
    }

    /// Frames the backbone has embedded.
    fn embedded(&self) -> f64 {
        self.get("actiond_backbone_batch_size_sum")
    }

    /// Chunks the detector has stepped.
    fn detected(&self) -> f64 {
        self.get("actiond_detector_batch_size_sum")
    }

    /// Chunks whose scores reached the rule thread.
    fn scored(&self) -> f64 {
        self.get("actiond_frame_to_scores_seconds_count")
    }
}

/// `/api/streams`, parsed.
fn streams(port: u16) -> Value {
    serde_json::from_str(&http_get(port, "/api/streams").expect("/api/streams answers")).expect("/api/streams is JSON")
}

/// The events of `rule` in the log, updates left out.
fn lifecycle(events: &[Value], rule: &str) -> Vec<(String, Option<String>)> {
    events
        .iter()
        .filter(|e| e["rule"] == rule && e["type"] != "update")
        .map(|e| (e["type"].as_str().unwrap().to_string(), e["reason"].as_str().map(str::to_string)))
        .collect()
}

fn starts_of<'a>(events: &'a [Value], rule: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["rule"] == rule && e["type"] == "start").collect()
}

/// The chunk slot (250 ms at 4 fps) of a PTS.
fn slot(pts: f64) -> i64 {
    (pts * 4.0 + 1e-6).floor() as i64
}

/// Checks one connection's chunks: one per slot, slots increasing; returns (first slot, last slot).
fn check_timeline(which: &str, pts: &[f64]) -> (i64, i64) {
    assert!(pts.len() >= 8, "{which}: only {} chunks: {pts:?}", pts.len());
    let slots: Vec<i64> = pts.iter().map(|&p| slot(p)).collect();
    assert!(slots.windows(2).all(|w| w[1] > w[0]), "{which}: chunks not one per 250 ms slot in increasing order: {pts:?}");
    // At 10 fps a slot's first frame is less than 100 ms into it.
    for &p in pts {
        let into = p - slot(p) as f64 * 0.25;
        assert!(into < 0.1 + 1e-6, "{which}: chunk at {p} is {into:.3} s into its slot: {pts:?}");
    }
    (slots[0], slots[slots.len() - 1])
}

#[test]
fn an_rtsp_camera_with_credentials_runs_through_the_whole_pipeline_and_survives_a_server_restart() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let clip = synth_clip(&dir.path().join("set"));
    let mut server = RtspServer::start(free_port(), "door", Some(&clip), Some((USER, PASSWORD)));
    let shown_url = format!("rtsp://***@127.0.0.1:{}/door", server.port);

    let log = dir.path().join("events.jsonl");
    let scores = dir.path().join("scores.jsonl");
    let port = free_port();
    let mut config = format!(
        r#"[model]
backbone = {backbone:?}
detector = {detector:?}
batch_max = 2

[ingest]
queue_frames = 2
read_timeout = "3s"
reconnect_initial = "200ms"
reconnect_max = "1s"

[[streams]]
id = "{STREAM}"
url = "{url}"

[sinks.log]
type = "jsonl"
path = {log:?}

[http]
listen = "127.0.0.1:{port}"
"#,
        backbone = repo("assets/models/dinov2-vits14"),
        detector = repo("assets/detector/synth-oadtr.safetensors"),
        url = server.url_with(USER, PASSWORD),
        log = log.display().to_string(),
    );
    // Each rule keeps firing once started, so a firing is open whenever the stream is lost or the
    // daemon stops. `hands` fires on the clip's first seconds, `idle` by about 11 s at the latest.
    config += r#"
[[rules]]
name = "hands"
label = "clap"
min_score = 0.3
keep_firing_for = "10m"

[[rules]]
name = "idle"
label = "background"
min_score = 0.4
keep_firing_for = "10m"
severity = "low"
"#;
    let config_path = dir.path().join("run.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut daemon = Daemon::start(&config_path, &["--record-scores", scores.to_str().unwrap()], &dir.path().join("stderr.log"));
    let mut scrapes: Vec<String> = Vec::new();

    // 1. The stream connects and is scored.
    let board = |port: u16| -> Option<Value> {
        let all = serde_json::from_str::<Value>(&http_get(port, "/api/streams")?).ok()?;
        all.as_array()?.iter().find(|s| s["id"] == STREAM && s["pts"].is_f64()).cloned()
    };
    let connected = wait_until(Duration::from_secs(90), || board(port).is_some());
    daemon.assert_running();
    assert!(connected, "/api/streams showed no scored chunk of {STREAM} in 90 s:\n{}", daemon.log());
    let connected_at = started.elapsed();
    let view = board(port).unwrap();
    assert_eq!(view["url"], shown_url.as_str(), "{view}");
    assert_eq!(view["state"], "streaming", "{view}");
    let labels = std::fs::read_to_string(dir.path().join("set/labels.txt")).unwrap();
    let labels: Vec<&str> = labels.split_whitespace().collect();
    let current = view["current"].as_array().expect("current labels");
    assert!(!current.is_empty(), "no current labels: {view}");
    for c in current {
        assert!(labels.contains(&c["label"].as_str().unwrap()), "unknown label in {view}");
        assert!((0.0..=1.0).contains(&c["score"].as_f64().unwrap()), "{view}");
    }
    assert!(!view["anticipated"].as_array().unwrap().is_empty(), "{view}");

    let first = Scrape::take(port);
    let scored_before = json_lines(&scores).len();
    assert!(wait_until(Duration::from_secs(30), || json_lines(&scores).len() >= scored_before + 4), "scoring stalled:\n{}", daemon.log());
    let second = Scrape::take(port);
    for (what, a, b) in [
        ("sampled frames", first.sampled(), second.sampled()),
        ("backbone frames", first.embedded(), second.embedded()),
        ("detector chunks", first.detected(), second.detected()),
        ("scored chunks", first.scored(), second.scored()),
    ] {
        assert!(b > a, "{what} did not increase: {a} → {b}");
    }
    assert!(second.up(), "actiond_stream_up is not 1");
    assert_eq!(second.reconnects(), 0.0, "reconnected before the server was touched:\n{}", daemon.log());
    let input_fps = second.stream("actiond_stream_input_fps");
    assert!((8.0..=12.0).contains(&input_fps), "the server sends 10 fps, /metrics says {input_fps}");
    scrapes.extend([first.0, second.0]);

    // 2. Both rules fire; their start events carry the stream's id and a sane latency.
    let fired = wait_until(Duration::from_secs(60), || RULES.iter().all(|(rule, _)| !starts_of(&json_lines(&log), rule).is_empty()));
    daemon.assert_running();
    assert!(fired, "not every rule fired in 60 s; events {:?}\n{}", json_lines(&log), daemon.log());
    let events = json_lines(&log);
    for (rule, label) in RULES {
        let starts = starts_of(&events, rule);
        assert_eq!(starts.len(), 1, "{rule}: {starts:?}");
        let start = starts[0];
        assert_eq!(start["stream"], STREAM, "{start}");
        assert_eq!(start["label"], label, "{start}");
        let latency = start["latency_ms"].as_f64().unwrap();
        assert!(latency > 0.0 && latency < MAX_LATENCY_MS, "{rule}: frame→event latency {latency} ms: {start}");
        assert!(start["inference_ms"].as_f64().unwrap() > 0.0, "{start}");
        eprintln!("{rule}: start at pts {} with score {:.2}, latency {latency:.0} ms", start["pts"], start["score"].as_f64().unwrap());
    }
    assert!(events.iter().all(|e| e["type"] != "end"), "a firing ended early: {events:?}");

    // 3. The server dies: the open firings end with `stream_lost` while it is down. Not before the first
    // connection has a few seconds of chunks to check, however soon a detector fires the rules.
    let enough = wait_until(Duration::from_secs(30), || json_lines(&scores).len() >= 12);
    assert!(enough, "scoring stalled before the server was killed:\n{}", daemon.log());
    server.kill();
    let killed = Instant::now();
    let lost = |events: &[Value]| RULES.iter().all(|(rule, _)| events.iter().any(|e| e["rule"] == *rule && e["reason"] == "stream_lost"));
    let ended = wait_until(Duration::from_secs(20), || lost(&json_lines(&log)));
    daemon.assert_running();
    let lost_after = killed.elapsed();
    assert!(ended, "the firings did not end with stream_lost within 20 s of the server's death: {:?}\n{}", json_lines(&log), daemon.log());
    assert!(wait_until(Duration::from_secs(10), || !Scrape::take(port).up()), "actiond_stream_up stayed 1 with the server dead");
    let view = streams(port)[0].clone();
    assert!(view["pts"].is_null() && view["current"].as_array().is_some_and(|c| c.is_empty()), "/api/streams still shows the lost connection's labels: {view}");
    // Everything of the first connection has been scored or dropped by now.
    let down = Scrape::take(port);
    let first_connection: Vec<f64> = json_lines(&scores).iter().map(|r| r["pts"].as_f64().unwrap()).collect();
    let (first_slot, last_slot) = check_timeline("first connection", &first_connection);
    let sampled = down.sampled();
    assert_eq!(sampled, (last_slot - first_slot + 1) as f64, "one frame sampled per slot from {first_slot} to {last_slot}");
    assert_eq!(sampled, first_connection.len() as f64 + down.dropped(), "sampled frames neither scored nor counted as dropped");
    eprintln!(
        "first connection: {} chunks scored, {} dropped, of {sampled} sampled (pts {:.2}–{:.2}); stream_lost {:.2} s after the kill",
        first_connection.len(),
        down.dropped(),
        first_connection[0],
        first_connection[first_connection.len() - 1],
        lost_after.as_secs_f64()
    );
    scrapes.push(down.0.clone());
    std::thread::sleep(Duration::from_millis(500));

    // 4. It comes back: the daemon reconnects, scores a new timeline and the rules fire again.
    server.restart();
    let restarted = Instant::now();
    let refired = wait_until(Duration::from_secs(90), || RULES.iter().all(|(rule, _)| starts_of(&json_lines(&log), rule).len() >= 2));
    daemon.assert_running();
    assert!(refired, "not every rule fired again in 90 s after the server came back; events {:?}\n{}", json_lines(&log), daemon.log());
    eprintln!("fired again {:.1} s after the server came back", restarted.elapsed().as_secs_f64());
    let more = wait_until(Duration::from_secs(60), || json_lines(&scores).len() >= first_connection.len() + 12);
    daemon.assert_running();
    assert!(more, "fewer than 12 chunks scored in 60 s after the reconnect:\n{}", daemon.log());
    let back = Scrape::take(port);
    assert!(back.up(), "actiond_stream_up is not 1 after the reconnect");
    assert!(back.reconnects() >= 1.0, "no reconnect counted");
    assert!(back.sampled() > down.sampled() && back.embedded() > down.embedded() && back.scored() > down.scored(), "scoring did not resume");
    let all: Vec<f64> = json_lines(&scores).iter().map(|r| r["pts"].as_f64().unwrap()).collect();
    assert_eq!(&all[..first_connection.len()], &first_connection[..]);
    let second_connection = &all[first_connection.len()..];
    check_timeline("second connection", second_connection);
    assert!(second_connection[0] < first_connection[first_connection.len() - 1], "a new connection starts a new timeline");
    let reconnects = back.reconnects();
    scrapes.push(back.0);
    scrapes.push(http_get(port, "/api/streams").unwrap());
    assert_eq!(streams(port)[0]["url"], shown_url.as_str());

    // 5. SIGTERM: exit 0, the open firings end with `shutdown`.
    let before_stop = Scrape::take(port);
    assert!(before_stop.up(), "the stream is not up at the stop");
    // The clip has not ended meanwhile (it would end the firings with stream_lost).
    assert_eq!(before_stop.reconnects(), reconnects, "the stream reconnected again:\n{}", daemon.log());
    let status = daemon.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit {status:?}:\n{}", daemon.log());

    let events = json_lines(&log);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), events.len(), "a line of the log is not JSON");
    for (rule, _) in RULES {
        let seen = lifecycle(&events, rule);
        let expected: Vec<(String, Option<String>)> = [("start", None), ("end", Some("stream_lost")), ("start", None), ("end", Some("shutdown"))]
            .into_iter()
            .map(|(t, r)| (t.to_string(), r.map(str::to_string)))
            .collect();
        assert_eq!(seen, expected, "{rule}'s events");
        let mine: Vec<&Value> = events.iter().filter(|e| e["rule"] == rule).collect();
        let last = mine.last().unwrap();
        let starts = starts_of(&events, rule);
        assert_eq!(last["incident"], starts[1]["id"], "{rule}: the shutdown ends the second firing");
        assert_eq!(mine.iter().find(|e| e["reason"] == "stream_lost").unwrap()["incident"], starts[0]["id"], "{rule}: the loss ends the first firing");
        for e in &mine {
            assert_eq!(e["stream"], STREAM, "{e}");
        }
        for start in &starts {
            let latency = start["latency_ms"].as_f64().unwrap();
            assert!(latency > 0.0 && latency < MAX_LATENCY_MS, "{rule}: frame→event latency {latency} ms: {start}");
        }
    }
    let latencies: Vec<f64> = events.iter().filter(|e| e["type"] == "start").map(|e| e["latency_ms"].as_f64().unwrap()).collect();

    // 6. The credentials show nowhere.
    let stderr = daemon.log();
    assert!(stderr.contains(&shown_url), "the log never names the stream's URL (masked):\n{stderr}");
    let texts = [
        ("the daemon's log", stderr.clone()),
        ("the event log", std::fs::read_to_string(&log).unwrap()),
        ("the score record", std::fs::read_to_string(&scores).unwrap()),
        ("/metrics and /api/streams", scrapes.join("\n")),
    ];
    for (what, text) in &texts {
        assert!(!text.contains(PASSWORD), "the password is in {what}");
        assert!(!text.contains(&format!("{USER}:")), "the user is in {what}");
    }

    let chunks = json_lines(&scores).len();
    eprintln!(
        "{STREAM}: connected (first scores on /api/streams) {:.1} s after the start; {chunks} chunks scored ({} in the second connection), {} dropped; {} events; start latencies {:?} ms; {reconnects} reconnect attempts; wall time {:.1} s",
        connected_at.as_secs_f64(),
        chunks - first_connection.len(),
        before_stop.dropped(),
        events.len(),
        latencies.iter().map(|l| l.round()).collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );
}
