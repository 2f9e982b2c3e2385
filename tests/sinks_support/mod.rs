//! Events and log reading shared by the sink tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use actiond::events::{EndReason, Event, EventKind, SCHEMA_VERSION};

/// Event number `n`: a start, updates and an end per incident of five, on two streams.
pub fn event(n: usize) -> Event {
    let kind = match n % 5 {
        0 => EventKind::Start,
        4 => EventKind::End,
        _ => EventKind::Update,
    };
    let stream = if n % 2 == 0 { "front-door" } else { "yard" };
    Event {
        schema: SCHEMA_VERSION,
        id: format!("ev-{n:05}"),
        kind,
        incident: format!("inc-{:05}", n / 5),
        rule: "fall-alarm".into(),
        stream: stream.into(),
        label: "fall".into(),
        severity: "critical".into(),
        score: 0.93,
        pts: n as f64 * 0.25,
        frame_time: 1_790_000_000.0 + n as f64,
        inference_ms: 12.5,
        emit_time: 1_790_000_000.05 + n as f64,
        latency_ms: 48.0,
        peak_score: (kind != EventKind::Start).then_some(0.97),
        duration_s: (kind == EventKind::End).then_some(12.5),
        reason: (kind == EventKind::End).then_some(EndReason::Cleared),
        expected_in_s: None,
        actions: Vec::new(),
    }
}

/// `path.N`.
pub fn rotated(path: &Path, index: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// Every event in the log and its rotated files, oldest first, with the file each line came from.
pub fn read_log(path: &Path) -> Vec<(PathBuf, Event)> {
    let mut files: Vec<PathBuf> = (1..10_000).map(|i| rotated(path, i)).take_while(|p| p.exists()).collect();
    files.reverse();
    files.push(path.to_path_buf());
    let mut events = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let event: Event = serde_json::from_str(line).unwrap_or_else(|e| panic!("{}:{}: {e}: {line}", file.display(), i + 1));
            events.push((file.clone(), event));
        }
    }
    events
}
