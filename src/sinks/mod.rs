//! Sinks: where events go once the rule engine emits them. The `[sinks.<name>]` tables of a pipeline
//! file ([`SinksConfig`]), the [`Sink`] trait each kind implements (one file each: [`jsonl`],
//! [`stdout`], [`webhook`], [`mqtt`]), and the [`SinkSet`] that runs one thread per sink behind a
//! bounded queue.
//!
//! Delivery policy is per kind: the JSONL log is the record and never loses an event, so its queue
//! blocks the dispatcher when full; stdout, webhooks and MQTT must never hold detection back, so their
//! queues drop (and count) when full.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::events::Event;

pub mod human;
pub mod jsonl;
pub mod mqtt;
pub mod output;
mod set;
pub mod stdout;
pub mod webhook;

pub use set::{SinkCounters, SinkSet, ShutdownReport};

/// Errors of building or running a sink. Texts never carry credentials (URLs pass through
/// [`crate::redact`]).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink {sink:?}: {path}: {source}")]
    Io { sink: String, path: String, source: std::io::Error },
    #[error("sink {sink:?}: cannot encode the event as JSON: {source}")]
    Encode { sink: String, source: serde_json::Error },
    #[error("sink {sink:?}: {url} answered HTTP {status}")]
    HttpStatus { sink: String, url: String, status: u16 },
    #[error("sink {sink:?}: POST to {url} failed: {message}")]
    HttpTransport { sink: String, url: String, message: String },
    /// A client library's own queue refused the event (counted as dropped, not retried).
    #[error("sink {sink:?}: queue full or closed: {message}")]
    QueueFull { sink: String, message: String },
    #[error("sink {sink:?}: {message}")]
    Config { sink: String, message: String },
    #[error("sink {sink:?}: its thread has stopped")]
    Stopped { sink: String },
}

impl SinkError {
    /// Whether trying the same event again may succeed (a timeout, a 503) rather than fail the same
    /// way (a 400, an event that cannot be encoded).
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Io { .. } | SinkError::HttpTransport { .. } => true,
            SinkError::HttpStatus { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            SinkError::Encode { .. } | SinkError::QueueFull { .. } | SinkError::Config { .. } | SinkError::Stopped { .. } => false,
        }
    }
}

/// One destination for events. A sink runs on its own thread (see [`SinkSet`]), so its calls may
/// block, but each blocking call has a deadline.
pub trait Sink: Send {
    /// The sink's name in the configuration (`[sinks.<name>]`).
    fn name(&self) -> &str;

    /// Delivers one event. An error is retried by the caller as [`Sink::delivery`] says when it is
    /// [`SinkError::is_retryable`].
    fn send(&mut self, event: &Event) -> Result<(), SinkError>;

    /// Pushes buffered output out; with `durable`, also onto stable storage (fsync) where that means
    /// something.
    fn flush(&mut self, durable: bool) -> Result<(), SinkError>;

    /// Last call before the thread ends: flushes durably and lets go of connections, finishing by
    /// `deadline`.
    fn close(&mut self, deadline: Instant) -> Result<(), SinkError> {
        let _ = deadline;
        self.flush(true)
    }

    /// How the sink's queue and retries behave.
    fn delivery(&self) -> Delivery;
}

/// What happens to an event when the sink is slow or failing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delivery {
    /// Events the sink may hold before the dispatcher blocks or drops.
    pub queue: usize,
    /// When the queue is full: block the dispatcher (the log), or drop the new event and count it.
    pub when_full: WhenFull,
    /// Retries of one failed event after the first attempt; `None` retries until shutdown.
    pub max_retries: Option<u32>,
    /// First wait before a retry; doubles each time (with jitter) up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    Block,
    Drop,
}

/// The `[sinks]` table: sink name → its configuration.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SinksConfig(pub BTreeMap<String, SinkConfig>);

/// One `[sinks.<name>]` table; `type` says which kind.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// Append events as JSON lines to a file, rotated by size: the record of what happened.
    Jsonl(jsonl::JsonlConfig),
    /// Print events on standard output, for people or as JSON lines.
    Stdout(stdout::StdoutConfig),
    /// POST each event as JSON to an HTTP(S) endpoint.
    Webhook(webhook::WebhookConfig),
    /// Publish each event to an MQTT broker, a topic per stream and label.
    Mqtt(mqtt::MqttConfig),
}

impl SinkConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Jsonl(_) => "jsonl",
            SinkConfig::Stdout(_) => "stdout",
            SinkConfig::Webhook(_) => "webhook",
            SinkConfig::Mqtt(_) => "mqtt",
        }
    }

    /// Builds the runtime sink. Opens files and parses addresses; network connections are made on
    /// the sink's own thread, so a broker that is down does not stop the daemon from starting.
    pub fn build(&self, name: &str) -> Result<Box<dyn Sink>, SinkError> {
        Ok(match self {
            SinkConfig::Jsonl(cfg) => Box::new(jsonl::JsonlSink::new(name, cfg)?),
            SinkConfig::Stdout(cfg) => Box::new(stdout::StdoutSink::new(name, cfg)),
            SinkConfig::Webhook(cfg) => Box::new(webhook::WebhookSink::new(name, cfg)?),
            SinkConfig::Mqtt(cfg) => Box::new(mqtt::MqttSink::new(name, cfg)?),
        })
    }

    fn check(&self, at: &dyn Fn(&str) -> String) -> Vec<String> {
        match self {
            SinkConfig::Jsonl(cfg) => cfg.check(at),
            SinkConfig::Stdout(cfg) => cfg.check(at),
            SinkConfig::Webhook(cfg) => cfg.check(at),
            SinkConfig::Mqtt(cfg) => cfg.check(at),
        }
    }
}

impl SinksConfig {
    /// Every problem that types alone do not catch, each starting with its key (`sinks.<name>.<key>`).
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, sink) in &self.0 {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                problems.push(format!("sinks.{name:?}: a sink name may use only letters, digits, '-', '_' and '.'"));
            }
            let at = |key: &str| format!("sinks.{name}.{key}");
            problems.extend(sink.check(&at));
        }
        problems
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// Checks a queue length shared by every kind.
fn check_queue(queue: usize, at: &dyn Fn(&str) -> String, problems: &mut Vec<String>) {
    if !(1..=1_000_000).contains(&queue) {
        problems.push(format!("{}: must be between 1 and 1000000 events, got {queue}", at("queue")));
    }
}

/// The next wait of an exponential backoff with ±20 % jitter, so that many daemons retrying one
/// endpoint do not knock in step.
pub(crate) fn backoff(delivery: &Delivery, retry: u32) -> Duration {
    let base = delivery.backoff_initial.saturating_mul(1u32 << retry.min(20)).min(delivery.backoff_max);
    base.mul_f64(0.8 + 0.4 * fastrand::f64())
}
