//! The rule engine driven by scripted probability sequences.

use super::*;

const FPS: f64 = 4.0;
const LABELS: [&str; 4] = ["background", "walk", "fall", "jump"];

fn labels() -> Vec<String> {
    LABELS.iter().map(|s| s.to_string()).collect()
}

fn rule(label: &str) -> RuleConfig {
    RuleConfig { name: format!("{label}-rule"), label: label.into(), ..RuleConfig::default() }
}

fn engine(rules: &[RuleConfig]) -> RuleEngine {
    RuleEngine::new(rules, &labels(), 8, FPS).unwrap()
}

/// 2026-11-30 is a Monday.
fn wall(day_offset: u64, hour: u64, minute: u64) -> SystemTime {
    let monday_utc = 1_795_996_800; // 2026-11-30T00:00:00Z
    SystemTime::UNIX_EPOCH + Duration::from_secs(monday_utc + day_offset * 86_400 + hour * 3600 + minute * 60)
}

/// Feeds `fall` scores at 4 fps on stream `cam`; returns (chunk index, event) pairs.
fn run_current(engine: &mut RuleEngine, scores: &[f32]) -> Vec<(usize, Event)> {
    run_on(engine, "cam", scores, wall(0, 12, 0))
}

fn run_on(engine: &mut RuleEngine, stream: &str, scores: &[f32], frame_time: SystemTime) -> Vec<(usize, Event)> {
    let mut out = Vec::new();
    for (i, &s) in scores.iter().enumerate() {
        let current = vec![1.0 - s, 0.0, s, 0.0];
        let chunk = ChunkScores { stream, pts: i as f64 / FPS, frame_time, arrival: Instant::now(), inference_ms: 1.0, current: &current, anticipated: &[] };
        out.extend(engine.observe(&chunk).into_iter().map(|e| (i, e)));
    }
    out
}

fn kinds(events: &[(usize, Event)]) -> Vec<(usize, EventKind)> {
    events.iter().map(|(i, e)| (*i, e.kind)).collect()
}

#[test]
fn fires_only_after_the_condition_held_for_the_duration() {
    let mut e = engine(&[RuleConfig { hold_for: Duration::from_secs(1), ..rule("fall") }]);
    // Three chunks above (0.75 s) is not enough.
    assert!(run_current(&mut e, &[0.9, 0.9, 0.9, 0.1]).is_empty());
    let mut e = engine(&[RuleConfig { hold_for: Duration::from_secs(1), ..rule("fall") }]);
    let ev = run_current(&mut e, &[0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1]);
    assert_eq!(kinds(&ev), vec![(4, EventKind::Start), (6, EventKind::End)]);
    let end = &ev[1].1;
    assert_eq!(end.reason, Some(EndReason::Cleared));
    assert_eq!(end.incident, ev[0].1.id, "start and end share the incident");
    assert!((end.duration_s.unwrap() - 0.5).abs() < 1e-9);
    assert_eq!(end.peak_score, Some(0.9));
}

#[test]
fn hysteresis_keeps_a_firing_between_clear_below_and_min_score() {
    let mut e = engine(&[RuleConfig { min_score: 0.6, clear_below: Some(0.4), ..rule("fall") }]);
    let ev = run_current(&mut e, &[0.7, 0.5, 0.45, 0.55, 0.5, 0.3, 0.5, 0.65]);
    assert_eq!(kinds(&ev), vec![(0, EventKind::Start), (5, EventKind::End), (7, EventKind::Start)]);
}

#[test]
fn keep_firing_for_rides_out_short_dips() {
    let r = RuleConfig { keep_firing_for: Duration::from_secs(1), ..rule("fall") };
    let mut e = engine(&[r.clone()]);
    // A 0.5 s dip: still one firing.
    let ev = run_current(&mut e, &[0.9, 0.9, 0.1, 0.1, 0.9, 0.9]);
    assert_eq!(kinds(&ev), vec![(0, EventKind::Start)]);
    let mut e = engine(&[r]);
    // A dip that lasts: ends 1 s after it began.
    let ev = run_current(&mut e, &[0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]);
    assert_eq!(kinds(&ev), vec![(0, EventKind::Start), (5, EventKind::End)]);
}

#[test]
fn cooldown_silences_the_rule_after_an_end() {
    let mut e = engine(&[RuleConfig { cooldown: Duration::from_secs(2), ..rule("fall") }]);
    let mut scores = vec![0.9, 0.1];
    scores.extend([0.9; 12]);
    let ev = run_current(&mut e, &scores);
    // Ends at chunk 1 (0.25 s); silent until 2.25 s = chunk 9.
    assert_eq!(kinds(&ev), vec![(0, EventKind::Start), (1, EventKind::End), (9, EventKind::Start)]);
}

#[test]
fn updates_follow_new_peaks_at_most_once_per_interval() {
    let mut e = engine(&[RuleConfig { update_interval: Duration::from_secs(1), ..rule("fall") }]);
    let scores: Vec<f32> = (0..12).map(|i| 0.5 + 0.04 * i as f32).collect();
    let ev = run_current(&mut e, &scores);
    assert_eq!(kinds(&ev), vec![(0, EventKind::Start), (4, EventKind::Update), (8, EventKind::Update)]);
    assert_eq!(ev[1].1.peak_score, Some(scores[4]));
    // A flat score gives no updates.
    let mut e = engine(&[rule("fall")]);
    assert_eq!(run_current(&mut e, &[0.8; 12]).len(), 1);
}

#[test]
fn schedules_use_the_frame_time_in_the_rule_time_zone() {
    let business_hours = Schedule {
        timezone: Some("Europe/Berlin".into()),
        windows: vec![TimeWindow { days: vec!["mon".into(), "tue".into(), "wed".into(), "thu".into(), "fri".into()], start: "08:00".into(), end: "18:00".into() }],
    };
    let r = RuleConfig { schedule: Some(business_hours), ..rule("fall") };
    // Monday 12:00 UTC = 13:00 in Berlin: active.
    assert_eq!(run_on(&mut engine(&[r.clone()]), "cam", &[0.9], wall(0, 12, 0)).len(), 1);
    // Saturday: inactive.
    assert!(run_on(&mut engine(&[r.clone()]), "cam", &[0.9], wall(5, 12, 0)).is_empty());
    // Monday 17:30 UTC = 18:30 in Berlin: past the window.
    assert!(run_on(&mut engine(&[r.clone()]), "cam", &[0.9], wall(0, 17, 30)).is_empty());
    // Monday 06:30 UTC = 07:30 in Berlin: before it.
    assert!(run_on(&mut engine(&[r]), "cam", &[0.9], wall(0, 6, 30)).is_empty());

    let night = Schedule { timezone: Some("UTC".into()), windows: vec![TimeWindow { days: vec!["fri".into()], start: "22:00".into(), end: "06:00".into() }] };
    let r = RuleConfig { schedule: Some(night), ..rule("fall") };
    assert_eq!(run_on(&mut engine(&[r.clone()]), "cam", &[0.9], wall(4, 23, 0)).len(), 1, "Friday 23:00");
    assert_eq!(run_on(&mut engine(&[r.clone()]), "cam", &[0.9], wall(5, 3, 0)).len(), 1, "Saturday 03:00 is Friday night");
    assert!(run_on(&mut engine(&[r]), "cam", &[0.9], wall(5, 23, 0)).is_empty(), "Saturday 23:00");
}

fn run_anticipated(engine: &mut RuleEngine, rows: &[Vec<Vec<f32>>]) -> Vec<(usize, Event)> {
    let mut out = Vec::new();
    for (i, anticipated) in rows.iter().enumerate() {
        let current = vec![1.0, 0.0, 0.0, 0.0];
        let chunk = ChunkScores { stream: "cam", pts: i as f64 / FPS, frame_time: wall(0, 12, 0), arrival: Instant::now(), inference_ms: 1.0, current: &current, anticipated };
        out.extend(engine.observe(&chunk).into_iter().map(|e| (i, e)));
    }
    out
}

/// Eight future rows with `jump` at `p` only at step `at`.
fn future(at: usize, p: f32) -> Vec<Vec<f32>> {
    (0..8).map(|s| if s == at { vec![1.0 - p, 0.0, 0.0, p] } else { vec![1.0, 0.0, 0.0, 0.0] }).collect()
}

#[test]
fn anticipated_rules_look_only_within_the_horizon() {
    let within = |h: f64| RuleConfig { source: ScoreSource::Anticipated, horizon: Duration::from_secs_f64(h), min_score: 0.6, ..rule("jump") };
    // Expected at step 6 = 1.75 s ahead.
    let rows = vec![future(6, 0.8); 3];
    assert!(run_anticipated(&mut engine(&[within(1.0)]), &rows).is_empty());
    let ev = run_anticipated(&mut engine(&[within(2.0)]), &rows);
    assert_eq!(kinds(&ev), vec![(0, EventKind::Predicted)], "one announcement per firing");
    assert_eq!(ev[0].1.expected_in_s, Some(1.75));
    assert_eq!(ev[0].1.score, 0.8);
    // Re-arms after clearing.
    let mut rows = vec![future(1, 0.9), future(1, 0.1), future(0, 0.9)];
    rows.push(future(0, 0.9));
    let ev = run_anticipated(&mut engine(&[within(1.0)]), &rows);
    assert_eq!(kinds(&ev), vec![(0, EventKind::Predicted), (2, EventKind::Predicted)]);
    assert_eq!(ev[1].1.expected_in_s, Some(0.25));
}

#[test]
fn stream_globs_select_streams() {
    let r = RuleConfig { streams: vec!["cam-*".into(), "door?".into()], ..rule("fall") };
    let mut e = engine(&[r]);
    assert_eq!(run_on(&mut e, "cam-7", &[0.9], wall(0, 12, 0)).len(), 1);
    assert_eq!(run_on(&mut e, "door2", &[0.9], wall(0, 12, 0)).len(), 1);
    assert!(run_on(&mut e, "yard", &[0.9], wall(0, 12, 0)).is_empty());
    assert!(run_on(&mut e, "door12", &[0.9], wall(0, 12, 0)).is_empty());
    assert!(glob_match("*", "") && glob_match("a*b*c", "axxbyyc") && !glob_match("a*b", "ac"));
}

#[test]
fn shutdown_stream_loss_and_reload_end_open_firings() {
    let mut e = engine(&[rule("fall"), rule("walk")]);
    run_on(&mut e, "a", &[0.9, 0.9], wall(0, 12, 0));
    run_on(&mut e, "b", &[0.9], wall(0, 12, 0));
    let lost = e.stream_lost("b");
    assert_eq!(lost.len(), 1);
    assert_eq!((lost[0].kind, lost[0].reason, lost[0].stream.as_str()), (EventKind::End, Some(EndReason::StreamLost), "b"));

    // Reload: `fall` unchanged keeps firing (no new start, no end); a changed rule's firing ends.
    let ev = e.reload(&[rule("fall")], &labels()).unwrap();
    assert!(ev.is_empty());
    assert!(run_on(&mut e, "a", &[0.9], wall(0, 12, 0)).is_empty(), "still the same firing");
    let ev = e.reload(&[RuleConfig { min_score: 0.7, ..rule("fall") }], &labels()).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].reason, Some(EndReason::Reload));

    run_on(&mut e, "a", &[0.9], wall(0, 12, 0));
    let ev = e.shutdown();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].reason, Some(EndReason::Shutdown));
    assert!(e.shutdown().is_empty(), "nothing left open");
}

#[test]
fn a_clock_restart_does_not_fire_a_pending_rule_early() {
    let mut e = engine(&[RuleConfig { hold_for: Duration::from_secs(1), ..rule("fall") }]);
    // Pending since pts 100.0, then the stream restarts at pts 0.
    let mut events = Vec::new();
    for (pts, s) in [(100.0, 0.9), (100.25, 0.9), (0.0, 0.9), (0.25, 0.9), (0.5, 0.9)] {
        let current = vec![0.1, 0.0, s, 0.0];
        events.extend(e.observe(&ChunkScores { stream: "cam", pts, frame_time: wall(0, 12, 0), arrival: Instant::now(), inference_ms: 0.0, current: &current, anticipated: &[] }));
    }
    assert!(events.is_empty(), "0.75 s of evidence since the restart is not 1 s");
}

#[test]
fn rule_problems_are_all_reported() {
    let bad = vec![
        RuleConfig { label: "swim".into(), ..rule("fall") },
        RuleConfig { clear_below: Some(0.9), min_score: 0.5, ..rule("fall") },
        RuleConfig { source: ScoreSource::Anticipated, horizon: Duration::from_secs(5), ..rule("jump") },
        RuleConfig { schedule: Some(Schedule { timezone: Some("Mars/Olympus".into()), windows: vec![TimeWindow { days: vec!["someday".into()], start: "25:00".into(), end: "08:00".into() }] }), ..rule("walk") },
    ];
    let problems = check_rules(&bad, Some(&labels()), Some(Duration::from_secs(2)));
    let text = problems.join("\n");
    for needle in ["rules[0].label: the detector has no label \"swim\"", "rules[1].name: \"fall-rule\" is already", "rules[1].clear_below", "rules[2].horizon", "rules[3].schedule.timezone", "rules[3].schedule.windows[0].days", "rules[3].schedule.windows[0].start"] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}
