//! Events on standard output: one line per event for people (see [`super::human`]), or JSON lines for
//! a pipe (`format = "json"`). Logs go to stderr, so stdout carries only events.

use std::io::Write;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::human::{self, Stamp};
use super::{check_queue, Delivery, Sink, SinkError, WhenFull};
use crate::events::Event;

/// `type = "stdout"`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StdoutConfig {
    /// `human` (default): aligned text lines; `json`: the event objects, one per line.
    pub format: StdoutFormat,
    /// Events that may wait for a slow terminal or pipe; when full, new ones are dropped and counted.
    pub queue: usize,
}

impl Default for StdoutConfig {
    fn default() -> Self {
        StdoutConfig { format: StdoutFormat::Human, queue: 1024 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StdoutFormat {
    Human,
    Json,
}

impl StdoutConfig {
    pub(super) fn check(&self, at: &dyn Fn(&str) -> String) -> Vec<String> {
        let mut problems = Vec::new();
        check_queue(self.queue, at, &mut problems);
        problems
    }
}

pub struct StdoutSink {
    name: String,
    format: StdoutFormat,
    queue: usize,
}

impl StdoutSink {
    pub fn new(name: &str, cfg: &StdoutConfig) -> Self {
        StdoutSink { name: name.to_string(), format: cfg.format, queue: cfg.queue }
    }

    /// The line for `event`, with its newline.
    pub fn line(&self, event: &Event) -> Result<String, SinkError> {
        let mut line = match self.format {
            StdoutFormat::Human => human::render(event, Stamp::Time),
            StdoutFormat::Json => serde_json::to_string(event).map_err(|source| SinkError::Encode { sink: self.name.clone(), source })?,
        };
        line.push('\n');
        Ok(line)
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&mut self, event: &Event) -> Result<(), SinkError> {
        let line = self.line(event)?;
        let mut out = std::io::stdout().lock();
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|source| SinkError::Io { sink: self.name.clone(), path: "standard output".into(), source })
    }

    fn flush(&mut self, _durable: bool) -> Result<(), SinkError> {
        std::io::stdout().flush().map_err(|source| SinkError::Io { sink: self.name.clone(), path: "standard output".into(), source })
    }

    fn delivery(&self) -> Delivery {
        // A closed pipe or a full terminal will not heal by retrying; detection must not wait for it.
        Delivery {
            queue: self.queue,
            when_full: WhenFull::Drop,
            max_retries: Some(0),
            backoff_initial: Duration::ZERO,
            backoff_max: Duration::ZERO,
        }
    }
}
