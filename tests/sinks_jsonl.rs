//! The JSONL event log through a running `SinkSet`: every event lands, in order, across size rotation;
//! `keep` bounds the rotated files; a restart appends; a bad path is refused before anything starts.

mod sinks_support;

use std::time::{Duration, Instant};

use actiond::sinks::jsonl::JsonlConfig;
use actiond::sinks::{SinkConfig, SinkSet, SinksConfig};
use sinks_support::{event, read_log, rotated};

fn log_config(path: &std::path::Path, max_bytes: u64, keep: usize, queue: usize) -> SinksConfig {
    let cfg = JsonlConfig { path: path.to_path_buf(), max_bytes, keep, queue };
    SinksConfig([("log".to_string(), SinkConfig::Jsonl(cfg))].into_iter().collect())
}

#[test]
fn nothing_is_lost_across_rotation_and_order_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/logs/events.jsonl");
    // A queue of one makes the dispatcher wait on the disk all the time: the log blocks, never drops.
    let sinks = SinkSet::start(&log_config(&path, 4096, 1000, 1)).unwrap();
    let count = 600;
    for n in 0..count {
        sinks.dispatch(&event(n));
    }
    let counters = sinks.counters();
    let report = sinks.shutdown(Instant::now() + Duration::from_secs(5));
    assert!(report.unfinished.is_empty());

    let events = read_log(&path);
    let ids: Vec<String> = events.iter().map(|(_, e)| e.id.clone()).collect();
    let expected: Vec<String> = (0..count).map(|n| event(n).id).collect();
    assert_eq!(ids, expected, "every event once, in order, across the rotated files");
    assert_eq!(events[7].1, event(7), "events round-trip unchanged");

    let rotations = (1..).take_while(|&i| rotated(&path, i).exists()).count();
    assert!(rotations >= 10, "600 events of ~400 bytes in 4 KiB files rotate many times, got {rotations}");
    for i in 0..=rotations {
        let file = if i == 0 { path.clone() } else { rotated(&path, i) };
        let len = std::fs::metadata(&file).unwrap().len();
        assert!(len <= 4096, "{} has {len} bytes", file.display());
        assert!(std::fs::read_to_string(&file).unwrap().ends_with('\n'), "{} ends mid-line", file.display());
    }
    let (_, log) = &counters[0];
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(log.sent.load(Relaxed), count as u64);
    assert_eq!(log.dropped.load(Relaxed) + log.failed.load(Relaxed), 0);
}

#[test]
fn keep_bounds_the_rotated_files_to_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let sinks = SinkSet::start(&log_config(&path, 4096, 2, 64)).unwrap();
    for n in 0..200 {
        sinks.dispatch(&event(n));
    }
    sinks.shutdown(Instant::now() + Duration::from_secs(5));
    assert!(rotated(&path, 1).exists() && rotated(&path, 2).exists());
    assert!(!rotated(&path, 3).exists(), "keep = 2 leaves two rotated files");
    let ids: Vec<String> = read_log(&path).into_iter().map(|(_, e)| e.id).collect();
    let first: usize = ids[0][3..].parse().unwrap();
    let expected: Vec<String> = (first..200).map(|n| event(n).id).collect();
    assert_eq!(ids, expected, "what is kept is the newest events, contiguous, ending with the last");
    assert!(first > 0);
}

#[test]
fn a_restart_appends_to_the_existing_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    for round in 0..2 {
        let sinks = SinkSet::start(&log_config(&path, 0, 5, 16)).unwrap();
        for n in round * 10..round * 10 + 10 {
            sinks.dispatch(&event(n));
        }
        sinks.shutdown(Instant::now() + Duration::from_secs(5));
    }
    let ids: Vec<String> = read_log(&path).into_iter().map(|(_, e)| e.id).collect();
    assert_eq!(ids, (0..20).map(|n| event(n).id).collect::<Vec<_>>());
    assert!(!rotated(&path, 1).exists(), "max_bytes = 0 never rotates");
}

#[test]
fn events_go_only_to_the_sinks_their_rule_names() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let mut config = log_config(&a, 0, 1, 16);
    config.0.insert("other".into(), SinkConfig::Jsonl(JsonlConfig { path: b.clone(), max_bytes: 0, keep: 1, queue: 16 }));
    let sinks = SinkSet::start(&config).unwrap();
    let mut only_other = event(1);
    only_other.actions = vec!["other".into(), "not-configured".into()];
    sinks.dispatch(&event(0));
    sinks.dispatch(&only_other);
    sinks.shutdown(Instant::now() + Duration::from_secs(5));
    let ids = |p| read_log(p).into_iter().map(|(_, e)| e.id).collect::<Vec<_>>();
    assert_eq!(ids(&a), vec![event(0).id]);
    assert_eq!(ids(&b), vec![event(0).id, event(1).id]);
}

#[test]
fn an_unwritable_path_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-folder");
    std::fs::write(&blocker, "x").unwrap();
    let path = blocker.join("events.jsonl");
    let err = SinkSet::start(&log_config(&path, 0, 1, 16)).err().expect("a file where a folder should be is refused").to_string();
    assert!(err.contains("not-a-folder") && err.contains("\"log\""), "{err}");
}

#[test]
fn flush_makes_everything_taken_so_far_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let sinks = SinkSet::start(&log_config(&path, 0, 1, 1024)).unwrap();
    for n in 0..50 {
        sinks.dispatch(&event(n));
    }
    assert!(sinks.flush(true, Duration::from_secs(5)));
    assert_eq!(read_log(&path).len(), 50, "a durable flush returns once every event queued before it is on disk");
    sinks.shutdown(Instant::now() + Duration::from_secs(5));
}
