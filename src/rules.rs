//! Alert rules: turn per-chunk class probabilities into events. Each rule watches one label on the
//! streams its globs match, either the current action or the anticipated one, and runs a small state
//! machine per stream:
//!
//! ```text
//! idle ──score ≥ min_score──▶ pending ──held for `for`──▶ firing ──score < clear_below──▶ clearing
//!   ▲                            │                          ▲  │                              │
//!   └──────score < min_score─────┘                          └──┼────score ≥ clear_below───────┘
//!   ▲                                                          │ (update on a new peak, rate-limited)
//!   └──────────── cooldown ◀── end (cleared after keep_firing_for, stream_lost, shutdown, reload)
//! ```
//!
//! Rules on the current action emit `start`, `update` and `end`; rules on anticipated actions emit one
//! `predicted` when they fire and re-arm after clearing and cooldown. Time is the chunk's presentation
//! time, so replaying a file gives the same events as the live stream did; schedules use the frame's
//! wall-clock time in the rule's time zone.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::clock::unix_seconds;
use crate::events::{new_id, EndReason, Event, EventKind, SCHEMA_VERSION};

/// Which prediction a rule watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScoreSource {
    /// The probability of the label in the current chunk.
    #[default]
    Current,
    /// The highest probability of the label over the future chunks within `horizon`.
    Anticipated,
}

impl ScoreSource {
    /// The name configs use.
    pub fn name(self) -> &'static str {
        match self {
            ScoreSource::Current => "current",
            ScoreSource::Anticipated => "anticipated",
        }
    }
}

/// One `[[rules]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RuleConfig {
    /// Unique name, used in events and metrics.
    pub name: String,
    /// The class label to watch, as in the detector's label map.
    pub label: String,
    /// Stream ids this rule applies to, as globs (`*`, `?`); default all.
    pub streams: Vec<String>,
    /// "current" or "anticipated".
    pub source: ScoreSource,
    /// Anticipated rules: how far ahead to look, e.g. "2s" (at most the detector's anticipation span).
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub horizon: Duration,
    /// Score at or above which the condition holds.
    pub min_score: f32,
    /// How long the condition must hold before the rule fires, e.g. "1s".
    #[serde(rename = "for", with = "humantime_serde")]
    #[schemars(rename = "for", with = "String")]
    pub hold_for: Duration,
    /// A firing clears when the score falls below this (hysteresis); default `min_score`.
    pub clear_below: Option<f32>,
    /// Keep firing this long after the score fell below `clear_below`, riding out brief dips.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub keep_firing_for: Duration,
    /// After an end, ignore the label on that stream this long.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub cooldown: Duration,
    /// At most one `update` event per firing in this interval.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "String")]
    pub update_interval: Duration,
    /// Only active in these time windows (always active when absent).
    pub schedule: Option<Schedule>,
    /// Free text carried by the events, e.g. "critical".
    pub severity: String,
    /// Sink names the events go to; empty means all sinks.
    pub actions: Vec<String>,
}

impl Default for RuleConfig {
    fn default() -> Self {
        RuleConfig {
            name: String::new(),
            label: String::new(),
            streams: vec!["*".into()],
            source: ScoreSource::Current,
            horizon: Duration::from_secs(2),
            min_score: 0.5,
            hold_for: Duration::ZERO,
            clear_below: None,
            keep_firing_for: Duration::ZERO,
            cooldown: Duration::ZERO,
            update_interval: Duration::from_secs(1),
            schedule: None,
            severity: "info".into(),
            actions: Vec::new(),
        }
    }
}

/// When a rule is active.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// IANA time zone, e.g. "Europe/Berlin"; default the system's.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Active windows; the rule is active when any window contains the frame's time.
    pub windows: Vec<TimeWindow>,
}

/// Days and a daily time range. An `end` before `start` wraps past midnight ("22:00"–"06:00").
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    /// Weekdays: "mon" … "sun"; default every day. For windows past midnight, the day the window starts.
    #[serde(default)]
    pub days: Vec<String>,
    /// "HH:MM"
    pub start: String,
    /// "HH:MM"
    pub end: String,
}

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A window in minutes of the week, checked.
#[derive(Debug, Clone)]
struct CompiledWindow {
    /// Bit i set: active on weekday i (Monday = 0).
    days: u8,
    start_min: u32,
    end_min: u32,
}

#[derive(Debug, Clone)]
struct CompiledSchedule {
    tz: jiff::tz::TimeZone,
    windows: Vec<CompiledWindow>,
}

impl CompiledSchedule {
    fn compile(s: &Schedule, at: &str) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let tz = match &s.timezone {
            Some(name) => jiff::tz::TimeZone::get(name).unwrap_or_else(|e| {
                problems.push(format!("{at}.timezone: unknown time zone {name:?} ({e})"));
                jiff::tz::TimeZone::UTC
            }),
            None => jiff::tz::TimeZone::system(),
        };
        if s.windows.is_empty() {
            problems.push(format!("{at}.windows: a schedule needs at least one window"));
        }
        let mut windows = Vec::new();
        for (i, w) in s.windows.iter().enumerate() {
            let wat = format!("{at}.windows[{i}]");
            let mut days = 0u8;
            for d in &w.days {
                match WEEKDAYS.iter().position(|x| x.eq_ignore_ascii_case(d.get(..3).unwrap_or(d))) {
                    Some(i) => days |= 1 << i,
                    None => problems.push(format!("{wat}.days: {d:?} is not a weekday (mon … sun)")),
                }
            }
            if w.days.is_empty() {
                days = 0x7f;
            }
            let start = parse_hhmm(&w.start).map_err(|e| problems.push(format!("{wat}.start: {e}")));
            let end = parse_hhmm(&w.end).map_err(|e| problems.push(format!("{wat}.end: {e}")));
            if let (Ok(start_min), Ok(end_min)) = (start, end) {
                windows.push(CompiledWindow { days, start_min, end_min });
            }
        }
        if problems.is_empty() { Ok(CompiledSchedule { tz, windows }) } else { Err(problems) }
    }

    fn active_at(&self, wall: SystemTime) -> bool {
        let Ok(ts) = jiff::Timestamp::try_from(wall) else { return true };
        let local = ts.to_zoned(self.tz.clone());
        let weekday = local.weekday().to_monday_zero_offset() as u32;
        let minute = local.hour() as u32 * 60 + local.minute() as u32;
        self.windows.iter().any(|w| {
            let on = |day: u32| w.days & (1 << (day % 7)) != 0;
            if w.start_min <= w.end_min {
                on(weekday) && minute >= w.start_min && minute < w.end_min
            } else {
                // Wraps past midnight: the evening part belongs to today, the morning part to yesterday's window.
                (on(weekday) && minute >= w.start_min) || (on(weekday + 6) && minute < w.end_min)
            }
        })
    }
}

fn parse_hhmm(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a time of day like \"08:30\"");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if h > 24 || m > 59 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Matches `*` (any run) and `?` (one character) globs.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Checks rules against the detector's labels and anticipation span; every problem, each naming its rule.
pub fn check_rules(rules: &[RuleConfig], labels: Option<&[String]>, anticipation_span: Option<Duration>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        let at = format!("rules[{i}]");
        if r.name.trim().is_empty() {
            problems.push(format!("{at}.name: every rule needs a name"));
        } else if let Some(first) = names.insert(r.name.clone(), i) {
            problems.push(format!("{at}.name: {:?} is already the name of rules[{first}]", r.name));
        }
        if r.label.trim().is_empty() {
            problems.push(format!("{at}.label: say which label to watch"));
        } else if let Some(labels) = labels {
            if !labels.iter().any(|l| l == &r.label) {
                problems.push(format!("{at}.label: the detector has no label {:?} (it has: {})", r.label, labels.join(", ")));
            }
        }
        if !(r.min_score > 0.0 && r.min_score <= 1.0) {
            problems.push(format!("{at}.min_score: must be above 0 and at most 1, got {}", r.min_score));
        }
        if let Some(c) = r.clear_below {
            if !(0.0..=r.min_score).contains(&c) {
                problems.push(format!("{at}.clear_below: must be between 0 and min_score ({}), got {c}", r.min_score));
            }
        }
        if r.streams.is_empty() {
            problems.push(format!("{at}.streams: empty list matches no stream; use [\"*\"] for all"));
        }
        if r.source == ScoreSource::Anticipated {
            if r.horizon.is_zero() {
                problems.push(format!("{at}.horizon: must be longer than 0s"));
            } else if let Some(span) = anticipation_span {
                if r.horizon > span + Duration::from_millis(1) {
                    problems.push(format!("{at}.horizon: {} is beyond what the detector anticipates ({})", humantime::format_duration(r.horizon), humantime::format_duration(span)));
                }
            }
        }
        if let Some(s) = &r.schedule {
            if let Err(mut p) = CompiledSchedule::compile(s, &format!("{at}.schedule")) {
                problems.append(&mut p);
            }
        }
    }
    problems
}

/// The scores of one chunk of one stream, as the detector produced them.
#[derive(Debug, Clone)]
pub struct ChunkScores<'a> {
    pub stream: &'a str,
    /// Presentation time of the chunk, seconds.
    pub pts: f64,
    /// Wall-clock time of the chunk's frame.
    pub frame_time: SystemTime,
    /// When the frame arrived (for the frame→event latency).
    pub arrival: Instant,
    /// Backbone + detector time for this chunk, ms.
    pub inference_ms: f64,
    /// Current class probabilities, one per label.
    pub current: &'a [f32],
    /// Anticipated class probabilities, one row per future chunk (row i is chunk t+1+i).
    pub anticipated: &'a [Vec<f32>],
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Idle,
    Pending { since: f64 },
    Firing { clearing_since: Option<f64> },
    Cooldown { until: f64 },
}

#[derive(Debug, Clone)]
struct Firing {
    incident: String,
    started: f64,
    peak: f32,
    last_update: f64,
    reported_peak: f32,
}

#[derive(Debug, Clone)]
struct RuleState {
    phase: Phase,
    firing: Option<Firing>,
    last_pts: f64,
    last_score: f32,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    config: RuleConfig,
    label_index: usize,
    /// Anticipation rows within the horizon.
    steps: usize,
    clear_below: f32,
    schedule: Option<CompiledSchedule>,
}

/// The rules and their per-stream state.
pub struct RuleEngine {
    rules: Vec<CompiledRule>,
    states: HashMap<(usize, String), RuleState>,
    fps: f64,
    /// Future chunks the detector anticipates.
    queries: usize,
}

impl RuleEngine {
    /// Compiles `rules` for a detector with `labels` that anticipates `queries` chunks at `fps`.
    pub fn new(rules: &[RuleConfig], labels: &[String], queries: usize, fps: f64) -> Result<RuleEngine, Vec<String>> {
        let span = Duration::from_secs_f64(queries as f64 / fps);
        let problems = check_rules(rules, Some(labels), Some(span));
        if !problems.is_empty() {
            return Err(problems);
        }
        let compiled = rules
            .iter()
            .enumerate()
            .map(|(i, r)| CompiledRule {
                config: r.clone(),
                label_index: labels.iter().position(|l| l == &r.label).expect("checked"),
                steps: ((r.horizon.as_secs_f64() * fps + 1e-6).floor() as usize).clamp(1, queries.max(1)),
                clear_below: r.clear_below.unwrap_or(r.min_score),
                schedule: r.schedule.as_ref().map(|s| CompiledSchedule::compile(s, &format!("rules[{i}].schedule")).expect("checked")),
            })
            .collect();
        Ok(RuleEngine { rules: compiled, states: HashMap::new(), fps, queries })
    }

    /// Evaluates every rule that applies to the chunk's stream; returns the events it caused.
    pub fn observe(&mut self, chunk: &ChunkScores) -> Vec<Event> {
        let mut events = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.config.streams.iter().any(|g| glob_match(g, chunk.stream)) {
                continue;
            }
            let (score, expected_step) = match rule.config.source {
                ScoreSource::Current => (chunk.current.get(rule.label_index).copied().unwrap_or(0.0), 0),
                ScoreSource::Anticipated => chunk
                    .anticipated
                    .iter()
                    .take(rule.steps)
                    .enumerate()
                    .map(|(step, row)| (row.get(rule.label_index).copied().unwrap_or(0.0), step))
                    .fold((0.0f32, 0usize), |best, x| if x.0 > best.0 { x } else { best }),
            };
            let active = rule.schedule.as_ref().is_none_or(|s| s.active_at(chunk.frame_time));
            let score_if_active = if active { score } else { 0.0 };
            let state = self.states.entry((i, chunk.stream.to_string())).or_insert(RuleState { phase: Phase::Idle, firing: None, last_pts: chunk.pts, last_score: 0.0 });
            // The stream's clock went back (reconnect, camera reboot): pending timers restart.
            if chunk.pts < state.last_pts {
                if let Phase::Pending { .. } | Phase::Cooldown { .. } = state.phase {
                    state.phase = Phase::Idle;
                }
                if let Some(f) = state.firing.as_mut() {
                    f.started = chunk.pts - (state.last_pts - f.started);
                    f.last_update = chunk.pts;
                }
                if let Phase::Firing { clearing_since: Some(_) } = state.phase {
                    state.phase = Phase::Firing { clearing_since: Some(chunk.pts) };
                }
            }
            state.last_pts = chunk.pts;
            state.last_score = score;
            step(rule, state, score_if_active, expected_step, chunk, self.fps, &mut events);
        }
        events
    }

    /// Ends every firing on `stream` (it ended or was lost) and forgets its state.
    pub fn stream_lost(&mut self, stream: &str) -> Vec<Event> {
        self.end_stream(stream, EndReason::StreamLost)
    }

    /// Ends every firing on `stream` with `reason` and forgets its state.
    pub fn end_stream(&mut self, stream: &str, reason: EndReason) -> Vec<Event> {
        self.end_where(|_, s| s == stream, reason)
    }

    /// Ends every firing: the daemon is stopping.
    pub fn shutdown(&mut self) -> Vec<Event> {
        self.end_where(|_, _| true, EndReason::Shutdown)
    }

    /// Replaces the rules. Rules that are unchanged keep their state (a firing goes on); firings of rules
    /// that changed or went away end with reason `reload`.
    pub fn reload(&mut self, rules: &[RuleConfig], labels: &[String]) -> Result<Vec<Event>, Vec<String>> {
        let next = RuleEngine::new(rules, labels, self.queries, self.fps)?;
        let kept: HashMap<usize, usize> = self
            .rules
            .iter()
            .enumerate()
            .filter_map(|(old, r)| next.rules.iter().position(|n| n.config == r.config).map(|new| (old, new)))
            .collect();
        let events = self.end_where(|rule, _| !kept.contains_key(&rule), EndReason::Reload);
        let states = std::mem::take(&mut self.states)
            .into_iter()
            .filter_map(|((rule, stream), state)| kept.get(&rule).map(|&new| ((new, stream), state)))
            .collect();
        *self = RuleEngine { states, ..next };
        Ok(events)
    }

    fn end_where(&mut self, select: impl Fn(usize, &str) -> bool, reason: EndReason) -> Vec<Event> {
        let mut events = Vec::new();
        let keys: Vec<(usize, String)> = self.states.keys().filter(|(r, s)| select(*r, s)).cloned().collect();
        for key in keys {
            let state = self.states.remove(&key).expect("listed");
            let rule = &self.rules[key.0];
            if let (Some(firing), ScoreSource::Current) = (state.firing, rule.config.source) {
                let now = SystemTime::now();
                events.push(make_event(rule, &key.1, EventKind::End, &firing.incident, state.last_score, state.last_pts, now, Instant::now(), 0.0, |e| {
                    e.peak_score = Some(firing.peak);
                    e.duration_s = Some((state.last_pts - firing.started).max(0.0));
                    e.reason = Some(reason);
                }));
            }
        }
        events
    }
}

fn step(rule: &CompiledRule, state: &mut RuleState, score: f32, expected_step: usize, chunk: &ChunkScores, fps: f64, events: &mut Vec<Event>) {
    let t = chunk.pts;
    let cfg = &rule.config;
    let event = |kind: EventKind, incident: &str, f: &dyn Fn(&mut Event)| {
        make_event(rule, chunk.stream, kind, incident, score, t, chunk.frame_time, chunk.arrival, chunk.inference_ms, f)
    };
    loop {
        match state.phase.clone() {
            Phase::Cooldown { until } => {
                if t >= until {
                    state.phase = Phase::Idle;
                    continue;
                }
                return;
            }
            Phase::Idle => {
                if score >= cfg.min_score {
                    state.phase = Phase::Pending { since: t };
                    continue;
                }
                return;
            }
            Phase::Pending { since } => {
                if score < cfg.min_score {
                    state.phase = Phase::Idle;
                    return;
                }
                // A chunk stands for 1/fps of time: "for 1 s" at 4 fps fires on the 4th chunk above.
                if t - since + 1.0 / fps < cfg.hold_for.as_secs_f64() - 1e-9 {
                    return;
                }
                let incident = new_id();
                match cfg.source {
                    ScoreSource::Current => events.push(event(EventKind::Start, &incident, &|_| {})),
                    ScoreSource::Anticipated => {
                        let expected = (expected_step + 1) as f64 / fps;
                        events.push(event(EventKind::Predicted, &incident, &|e| e.expected_in_s = Some(expected)));
                    }
                }
                // The event's id is the incident id for starts: later updates and the end refer to it.
                if let Some(last) = events.last_mut() {
                    last.id = incident.clone();
                }
                state.firing = Some(Firing { incident, started: t, peak: score, last_update: t, reported_peak: score });
                state.phase = Phase::Firing { clearing_since: None };
                return;
            }
            Phase::Firing { clearing_since } => {
                let firing = state.firing.as_mut().expect("firing has a record");
                if score >= rule.clear_below {
                    state.phase = Phase::Firing { clearing_since: None };
                    firing.peak = firing.peak.max(score);
                    let due = t - firing.last_update >= cfg.update_interval.as_secs_f64() - 1e-9;
                    if cfg.source == ScoreSource::Current && firing.peak > firing.reported_peak && due {
                        firing.reported_peak = firing.peak;
                        firing.last_update = t;
                        let peak = firing.peak;
                        events.push(event(EventKind::Update, &firing.incident.clone(), &|e| e.peak_score = Some(peak)));
                    }
                    return;
                }
                let since = clearing_since.unwrap_or(t);
                if t - since + 1e-9 < cfg.keep_firing_for.as_secs_f64() {
                    state.phase = Phase::Firing { clearing_since: Some(since) };
                    return;
                }
                let firing = state.firing.take().expect("firing has a record");
                if cfg.source == ScoreSource::Current {
                    events.push(event(EventKind::End, &firing.incident, &|e| {
                        e.peak_score = Some(firing.peak);
                        e.duration_s = Some(t - firing.started);
                        e.reason = Some(EndReason::Cleared);
                    }));
                }
                state.phase = if cfg.cooldown.is_zero() { Phase::Idle } else { Phase::Cooldown { until: t + cfg.cooldown.as_secs_f64() } };
                return;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn make_event(
    rule: &CompiledRule,
    stream: &str,
    kind: EventKind,
    incident: &str,
    score: f32,
    pts: f64,
    frame_time: SystemTime,
    arrival: Instant,
    inference_ms: f64,
    finish: impl FnOnce(&mut Event),
) -> Event {
    let mut event = Event {
        schema: SCHEMA_VERSION,
        id: new_id(),
        kind,
        incident: incident.to_string(),
        rule: rule.config.name.clone(),
        stream: stream.to_string(),
        label: rule.config.label.clone(),
        severity: rule.config.severity.clone(),
        score,
        pts,
        frame_time: unix_seconds(frame_time),
        inference_ms,
        emit_time: unix_seconds(SystemTime::now()),
        latency_ms: arrival.elapsed().as_secs_f64() * 1000.0,
        peak_score: None,
        duration_s: None,
        reason: None,
        expected_in_s: None,
        actions: rule.config.actions.clone(),
    };
    finish(&mut event);
    event
}

#[cfg(test)]
mod tests;
