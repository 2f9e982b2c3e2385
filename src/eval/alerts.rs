//! Alert quality: a pipeline's rules replayed, through the daemon's own rule engine, over a detector's
//! scores on annotated videos, and their events scored the way an operator lives with them: was each
//! action announced in time, and how often did a rule fire for nothing.
//!
//! Actions are the runs of a label in the per-frame targets; an action's onset is its first labelled
//! chunk, so it is known to within one chunk. A rule on the current action *catches* an action at least
//! [`AlertCriteria::min_action_s`] long when one of its `start`s comes between
//! [`AlertCriteria::early_s`] before the onset and [`AlertCriteria::max_delay_s`] after it; a `start`
//! is *false* when no action of its label is under way within `early_s` of it. A rule on anticipated
//! actions *announces* an action when one of its `predicted` events comes within the rule's horizon
//! before the onset (up to the onset itself); a `predicted` is false when no action of its label is
//! under way or begins within the horizon after it (with `early_s` of slack both sides). Rules' stream
//! globs and schedules are set aside: a replay asks how a rule's condition does on the footage.

use std::time::{Instant, SystemTime};

use crate::events::EventKind;
use crate::rules::{ChunkScores, RuleConfig, RuleEngine, ScoreSource};

/// What counts as announced in time.
#[derive(Debug, Clone, Copy)]
pub struct AlertCriteria {
    /// Shorter actions are not required to be caught (their false alarms still count).
    pub min_action_s: f64,
    /// Latest acceptable `start`, after the onset.
    pub max_delay_s: f64,
    /// Slack before an onset and around an action for an event to belong to it.
    pub early_s: f64,
}

impl Default for AlertCriteria {
    fn default() -> Self {
        AlertCriteria { min_action_s: 2.0, max_delay_s: 1.5, early_s: 0.5 }
    }
}

/// One rule's record over all replayed videos.
#[derive(Debug, Clone)]
pub struct RuleReport {
    pub name: String,
    pub label: String,
    pub source: ScoreSource,
    /// Actions of the label long enough to be required.
    pub actions: usize,
    /// Of those, caught in time (current) or announced ahead (anticipated).
    pub caught: usize,
    /// Per caught action: seconds from onset to the `start` (current), or from the `predicted` event
    /// to the onset (anticipated: the lead).
    pub timings: Vec<f64>,
    /// Events that belong to no action of the label.
    pub false_events: usize,
    /// Rule events in all.
    pub events: usize,
}

impl RuleReport {
    pub fn recall(&self) -> Option<f64> {
        (self.actions > 0).then(|| self.caught as f64 / self.actions as f64)
    }

    /// False alarms per hour of replayed video (`None` for none replayed).
    pub fn false_per_hour(&self, seconds: f64) -> Option<f64> {
        (seconds > 0.0).then(|| self.false_events as f64 * 3600.0 / seconds)
    }

    /// Median of [`RuleReport::timings`].
    pub fn median_timing(&self) -> Option<f64> {
        let mut t = self.timings.clone();
        t.sort_by(f64::total_cmp);
        (!t.is_empty()).then(|| {
            if t.len() % 2 == 1 {
                t[t.len() / 2]
            } else {
                0.5 * (t[t.len() / 2 - 1] + t[t.len() / 2])
            }
        })
    }
}

/// The scores of one video as the stream produced them, with its targets.
pub struct VideoScores<'a> {
    pub len: usize,
    /// [len × classes] current-chunk probabilities.
    pub current: &'a [f32],
    /// [len × queries × classes] anticipated probabilities (row i of chunk t is chunk t+1+i).
    pub anticipated: &'a [f32],
    /// [len × classes] targets.
    pub targets: &'a [f32],
}

/// Replays rules video by video and accumulates their reports.
pub struct AlertReplay {
    rules: Vec<RuleConfig>,
    labels: Vec<String>,
    queries: usize,
    fps: f64,
    criteria: AlertCriteria,
    reports: Vec<RuleReport>,
    seconds: f64,
}

impl AlertReplay {
    /// Checks `rules` against the detector's labels and anticipation span, as the daemon does.
    /// Stream globs and schedules do not apply: every rule watches every replayed video at all times.
    pub fn new(
        rules: &[RuleConfig],
        labels: &[String],
        queries: usize,
        fps: f64,
        criteria: AlertCriteria,
    ) -> Result<AlertReplay, Vec<String>> {
        let rules: Vec<RuleConfig> =
            rules.iter().map(|r| RuleConfig { streams: vec!["*".into()], schedule: None, ..r.clone() }).collect();
        let rules = rules.as_slice();
        RuleEngine::new(rules, labels, queries, fps)?;
        let reports = rules
            .iter()
            .map(|r| RuleReport {
                name: r.name.clone(),
                label: r.label.clone(),
                source: r.source,
                actions: 0,
                caught: 0,
                timings: Vec::new(),
                false_events: 0,
                events: 0,
            })
            .collect();
        Ok(AlertReplay {
            rules: rules.to_vec(),
            labels: labels.to_vec(),
            queries,
            fps,
            criteria,
            reports,
            seconds: 0.0,
        })
    }

    /// Runs one video through a fresh engine (a stream of its own) and scores the events.
    pub fn add_video(&mut self, video: &VideoScores) {
        let classes = self.labels.len();
        let mut engine = RuleEngine::new(&self.rules, &self.labels, self.queries, self.fps).expect("checked in new");
        let mut fired: Vec<Vec<f64>> = vec![Vec::new(); self.rules.len()];
        let frame_time = SystemTime::now();
        for t in 0..video.len {
            let anticipated: Vec<Vec<f32>> = (0..self.queries)
                .map(|i| {
                    video.anticipated[(t * self.queries + i) * classes..(t * self.queries + i + 1) * classes].to_vec()
                })
                .collect();
            let chunk = ChunkScores {
                stream: "replay",
                pts: t as f64 / self.fps,
                frame_time,
                arrival: Instant::now(),
                inference_ms: 0.0,
                current: &video.current[t * classes..(t + 1) * classes],
                anticipated: &anticipated,
            };
            for event in engine.observe(&chunk) {
                if matches!(event.kind, EventKind::Start | EventKind::Predicted) {
                    if let Some(rule) = self.rules.iter().position(|r| r.name == event.rule) {
                        fired[rule].push(event.pts);
                    }
                }
            }
        }
        self.seconds += video.len as f64 / self.fps;
        let c = self.criteria;
        for ((rule, report), events) in self.rules.iter().zip(&mut self.reports).zip(fired) {
            let class = self.labels.iter().position(|l| *l == rule.label).expect("checked in new");
            let actions = label_runs(video.targets, classes, class, self.fps);
            let horizon = rule.horizon.as_secs_f64();
            report.events += events.len();
            for &(onset, _end) in actions.iter().filter(|(s, e)| e - s >= c.min_action_s - 1e-9) {
                report.actions += 1;
                let timing = match rule.source {
                    ScoreSource::Current => events
                        .iter()
                        .find(|&&t| t >= onset - c.early_s && t <= onset + c.max_delay_s)
                        .map(|t| t - onset),
                    ScoreSource::Anticipated => {
                        events.iter().find(|&&t| t >= onset - horizon - 1e-9 && t <= onset).map(|t| onset - t)
                    }
                };
                if let Some(timing) = timing {
                    report.caught += 1;
                    report.timings.push(timing);
                }
            }
            let reach = match rule.source {
                ScoreSource::Current => 0.0,
                ScoreSource::Anticipated => horizon,
            };
            report.false_events += events
                .iter()
                .filter(|&&t| !actions.iter().any(|&(s, e)| s <= t + reach + c.early_s && t - c.early_s <= e))
                .count();
        }
    }

    pub fn reports(&self) -> &[RuleReport] {
        &self.reports
    }

    /// Seconds of video replayed.
    pub fn seconds(&self) -> f64 {
        self.seconds
    }
}

/// The runs of `class` in [len × classes] targets, as (onset, end) in seconds: the onset is the first
/// labelled chunk's time, the end one chunk past the last.
pub fn label_runs(targets: &[f32], classes: usize, class: usize, fps: f64) -> Vec<(f64, f64)> {
    let mut runs = Vec::new();
    let mut start = None;
    let len = targets.len() / classes;
    for t in 0..=len {
        let on = t < len && targets[t * classes + class] > 0.5;
        match (on, start) {
            (true, None) => start = Some(t),
            (false, Some(s)) => {
                runs.push((s as f64 / fps, t as f64 / fps));
                start = None;
            }
            _ => {}
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const FPS: f64 = 4.0;
    const QUERIES: usize = 2;

    fn labels() -> Vec<String> {
        ["background", "fall"].iter().map(|s| s.to_string()).collect()
    }

    fn current_rule() -> RuleConfig {
        RuleConfig { name: "falling".into(), label: "fall".into(), min_score: 0.5, ..RuleConfig::default() }
    }

    fn anticipated_rule() -> RuleConfig {
        RuleConfig {
            name: "fall-expected".into(),
            label: "fall".into(),
            source: ScoreSource::Anticipated,
            horizon: Duration::from_millis(500),
            min_score: 0.5,
            cooldown: Duration::from_secs(5),
            ..RuleConfig::default()
        }
    }

    /// Two-class rows from the fall probability per chunk.
    fn rows(fall: &[f32]) -> Vec<f32> {
        fall.iter().flat_map(|&p| [1.0 - p, p]).collect()
    }

    fn replay(rules: &[RuleConfig], fall_scores: &[f32], fall_truth: &[f32]) -> Vec<RuleReport> {
        let current = rows(fall_scores);
        let targets = rows(fall_truth);
        // The anticipated row i of chunk t is what the scores say of chunk t+1+i.
        let anticipated: Vec<f32> = (0..fall_scores.len())
            .flat_map(|t| (0..QUERIES).flat_map(move |i| rows(&[*fall_scores.get(t + 1 + i).unwrap_or(&0.0)])))
            .collect();
        let mut replay = AlertReplay::new(rules, &labels(), QUERIES, FPS, AlertCriteria::default()).unwrap();
        replay.add_video(&VideoScores {
            len: fall_scores.len(),
            current: &current,
            anticipated: &anticipated,
            targets: &targets,
        });
        replay.reports().to_vec()
    }

    /// 24 chunks: `high` inside `chunks`, `low` elsewhere.
    fn pulse(chunks: std::ops::Range<usize>, high: f32, low: f32) -> Vec<f32> {
        (0..24).map(|t| if chunks.contains(&t) { high } else { low }).collect()
    }

    #[test]
    fn label_runs_are_onset_and_end_in_seconds() {
        let t = rows(&[0.0, 1.0, 1.0, 0.0, 1.0]);
        assert_eq!(label_runs(&t, 2, 1, FPS), vec![(0.25, 0.75), (1.0, 1.25)]);
    }

    #[test]
    fn a_start_in_time_catches_the_action_and_a_late_one_does_not() {
        // A 2.5 s fall from chunk 4 (1 s); the score rises 0.5 s after the onset.
        let truth = pulse(4..14, 1.0, 0.0);
        let on_time = pulse(6..14, 0.9, 0.1);
        let r = &replay(&[current_rule()], &on_time, &truth)[0];
        assert_eq!((r.actions, r.caught, r.false_events, r.events), (1, 1, 0, 1));
        assert!((r.timings[0] - 0.5).abs() < 1e-9);
        // 1.75 s after the onset is too late, though the start still belongs to the action.
        let late = pulse(11..14, 0.9, 0.1);
        let r = &replay(&[current_rule()], &late, &truth)[0];
        assert_eq!((r.actions, r.caught, r.false_events), (1, 0, 0));
        assert_eq!(r.recall(), Some(0.0));
    }

    #[test]
    fn stream_globs_and_schedules_do_not_hide_a_rule_from_the_replay() {
        let truth = pulse(4..14, 1.0, 0.0);
        let scores = pulse(5..14, 0.9, 0.1);
        let schedule = crate::rules::Schedule {
            timezone: Some("UTC".into()),
            windows: vec![crate::rules::TimeWindow { days: Vec::new(), start: "00:00".into(), end: "00:01".into() }],
        };
        let rule = RuleConfig { streams: vec!["front-door".into()], schedule: Some(schedule), ..current_rule() };
        let r = &replay(&[rule], &scores, &truth)[0];
        assert_eq!((r.actions, r.caught), (1, 1), "{r:?}");
    }

    #[test]
    fn a_start_away_from_every_action_is_false_and_short_actions_are_not_required() {
        // A 1 s fall (too short to be required) that is missed, and a firing 2 s after it.
        let truth = pulse(4..8, 1.0, 0.0);
        let scores = pulse(16..18, 0.9, 0.1);
        let r = &replay(&[current_rule()], &scores, &truth)[0];
        assert_eq!((r.actions, r.caught, r.false_events, r.events), (0, 0, 1, 1));
        assert_eq!(r.recall(), None);
    }

    #[test]
    fn an_anticipated_rule_announces_an_action_within_its_horizon() {
        let truth = pulse(8..18, 1.0, 0.0);
        // The score of chunk 8 onwards is high, so the anticipated rows see it from chunk 6 (two ahead).
        let scores = pulse(8..18, 0.9, 0.1);
        let r = &replay(&[anticipated_rule()], &scores, &truth)[0];
        assert_eq!((r.actions, r.caught, r.false_events), (1, 1, 0), "{r:?}");
        assert!((r.timings[0] - 0.5).abs() < 1e-9, "announced 0.5 s ahead: {r:?}");
        // Anticipation of an action that never comes is false.
        let no_truth = vec![0.0; 24];
        let r = &replay(&[anticipated_rule()], &scores, &no_truth)[0];
        assert_eq!((r.actions, r.caught, r.false_events), (0, 0, 1), "{r:?}");
    }
}
