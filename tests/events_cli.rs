//! `actiond events`: a log printed for people, bad lines flagged and skipped, a missing file refused,
//! and `--follow` printing appended events across a rotation (rename + new file, as the JSONL sink does).

mod sinks_support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actiond::events::{EventKind, Event};
use sinks_support::event;

fn actiond() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_actiond"));
    cmd.env("TZ", "UTC").env_remove("RUST_LOG");
    cmd
}

fn append(path: &Path, events: &[Event]) {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for e in events {
        writeln!(file, "{}", serde_json::to_string(e).unwrap()).unwrap();
    }
}

#[test]
fn prints_one_line_per_event_and_flags_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut predicted = event(1);
    predicted.kind = EventKind::Predicted;
    predicted.label = "open door".into();
    predicted.peak_score = None;
    predicted.expected_in_s = Some(2.0);
    append(&path, &[event(0), event(2)]);
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"type\": \"start\", truncated\n\n").unwrap();
    append(&path, &[event(4), predicted]);

    let out = actiond().arg("events").arg(&path).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    // 1 790 000 000 s is 2026-09-21 14:13:20 UTC.
    assert!(lines[0].starts_with("2026-09-21 14:13:20 start ") && lines[0].contains("front-door") && lines[0].contains("fall"), "{}", lines[0]);
    assert!(lines[0].contains("0.93") && lines[0].contains("(rule fall-alarm, critical)"), "{}", lines[0]);
    assert!(lines[1].contains(" update ") && lines[1].contains("peak 0.97"), "{}", lines[1]);
    assert!(lines[2].contains(" end ") && lines[2].contains("peak 0.97 after 12.5s cleared"), "{}", lines[2]);
    assert!(lines[3].contains(" predicted ") && lines[3].contains("yard") && lines[3].contains("open door") && lines[3].contains("expected in ~2.0s"), "{}", lines[3]);
    assert!(stderr.contains("events.jsonl:3: skipped, not an event"), "{stderr}");
    assert!(stderr.contains("1 line(s) skipped"), "{stderr}");

    let only_yard = actiond().args(["events", "--stream", "yard"]).arg(&path).output().unwrap();
    assert_eq!(String::from_utf8(only_yard.stdout).unwrap().lines().count(), 1);
}

#[test]
fn a_missing_file_is_one_clear_error() {
    let out = actiond().args(["events", "/nonexistent/events.jsonl"]).output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/events.jsonl") && stderr.contains("No such file"), "{stderr}");
}

#[test]
fn follow_prints_appended_events_across_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    append(&path, &[event(0)]);
    let mut child = actiond().args(["events", "--follow"]).arg(&path).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let wait_for = |count: usize, seen: &mut Vec<String>| {
        let until = Instant::now() + Duration::from_secs(5);
        while seen.len() < count {
            match rx.recv_deadline(until) {
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
    };
    wait_for(1, &mut seen);
    append(&path, &[event(1), event(2)]);
    wait_for(3, &mut seen);
    // Rotation: one last line in the old file right before the rename, then a new file.
    append(&path, &[event(3)]);
    std::fs::rename(&path, sinks_support::rotated(&path, 1)).unwrap();
    append(&path, &[event(4), event(5)]);
    wait_for(6, &mut seen);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(seen.len(), 6, "{seen:#?}");
    for (n, line) in seen.iter().enumerate() {
        let time = format!("14:13:{:02}", 20 + n);
        assert!(line.contains(&time), "line {n} should be event {n}: {line}");
    }
}

#[test]
fn all_reads_the_rotated_files_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    append(&sinks_support::rotated(&path, 2), &[event(0)]);
    append(&sinks_support::rotated(&path, 1), &[event(1), event(2)]);
    append(&path, &[event(3)]);
    let out = actiond().args(["events", "--all"]).arg(&path).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let times: Vec<&str> = stdout.lines().map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(times, ["14:13:20", "14:13:21", "14:13:22", "14:13:23"], "{stdout}");
    let only_current = actiond().arg("events").arg(&path).output().unwrap();
    assert_eq!(String::from_utf8(only_current.stdout).unwrap().lines().count(), 1);
}
