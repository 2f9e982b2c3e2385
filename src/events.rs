//! Events: what the rule engine tells operators. One JSON object per event, the same in every sink
//! (JSONL log, stdout, webhook, MQTT). `start`, `update` and `end` of one firing share an `incident` id;
//! `predicted` announces an anticipated action.

use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning or disappears (adding fields does not bump it).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A rule on the current action fired.
    Start,
    /// The peak score of a firing rule rose (rate-limited).
    Update,
    /// A firing ended.
    End,
    /// A rule on anticipated actions fired: the label is expected soon.
    Predicted,
}

/// Why a firing ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The score fell below `clear_below` (for longer than `keep_firing_for`).
    Cleared,
    /// The daemon is stopping.
    Shutdown,
    /// The stream ended or was lost.
    StreamLost,
    /// The rules were reloaded and this one changed or went away.
    Reload,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Unique id of this event.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// Id shared by the start, updates and end of one firing (the start event's id).
    pub incident: String,
    pub rule: String,
    pub stream: String,
    pub label: String,
    pub severity: String,
    /// The score that triggered this event (for `end`: the last score seen).
    pub score: f32,
    /// Presentation time of the chunk, seconds in the stream's clock.
    pub pts: f64,
    /// Wall-clock time of the chunk's frame, Unix seconds.
    pub frame_time: f64,
    /// Time the backbone and detector took for this chunk, milliseconds.
    pub inference_ms: f64,
    /// When the event was emitted, Unix seconds.
    pub emit_time: f64,
    /// From the frame's arrival to the event's emission, milliseconds.
    pub latency_ms: f64,
    /// `update`/`end`: highest score of the firing so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_score: Option<f32>,
    /// `end`: how long the firing lasted, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// `end`: why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<EndReason>,
    /// `predicted`: the label is expected in about this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_in_s: Option<f64>,
    /// Names of the sinks this event goes to (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
}

/// A random 128-bit id, hex: unique without coordination between restarts.
pub fn new_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}
