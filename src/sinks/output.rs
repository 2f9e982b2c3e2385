//! The sink set as the pipeline's [`EventOutput`], and the sinks' counters on `/metrics`. A reload
//! builds a new set and the pipeline swaps it in; the counters shown follow the set in use.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::set::{SinkCounters, SinkSet};
use super::SinksConfig;
use crate::events::Event;
use crate::metrics::Metrics;
use crate::pipeline::EventOutput;

/// How long closing the sinks may take at shutdown or when a reload replaces them.
const CLOSE_DEADLINE: Duration = Duration::from_secs(3);

/// The counters of the sink set in use, shared with the metrics renderer.
#[derive(Clone, Default)]
pub struct SinkBoard(Arc<Mutex<Vec<(String, String, Arc<SinkCounters>)>>>);

impl SinkBoard {
    /// Adds the `actiond_sink_*` families to `metrics`.
    pub fn register(&self, metrics: &Metrics) {
        let board = self.clone();
        metrics.add_renderer(move |out| board.render(out));
    }

    fn render(&self, out: &mut String) {
        let sinks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let families: [(&str, &str, &str, fn(&SinkCounters) -> u64); 5] = [
            ("actiond_sink_sent_total", "counter", "Events delivered by the sink.", |c| c.sent.load(Ordering::Relaxed)),
            ("actiond_sink_failed_total", "counter", "Events the sink gave up on.", |c| c.failed.load(Ordering::Relaxed)),
            ("actiond_sink_dropped_total", "counter", "Events dropped because the sink's queue was full.", |c| c.dropped.load(Ordering::Relaxed)),
            ("actiond_sink_retries_total", "counter", "Delivery attempts repeated after a failure.", |c| c.retries.load(Ordering::Relaxed)),
            ("actiond_sink_queued", "gauge", "Events waiting in the sink's queue.", |c| c.queued.load(Ordering::Relaxed)),
        ];
        for (name, kind, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (sink, sink_kind, counters) in sinks.iter() {
                let _ = writeln!(out, "{name}{{sink=\"{sink}\",type=\"{sink_kind}\"}} {}", get(counters));
            }
        }
    }
}

/// A started [`SinkSet`] feeding the pipeline's events to every configured sink.
pub struct SinkOutput {
    set: Option<SinkSet>,
}

impl SinkOutput {
    /// Checks and starts the sinks of `config`, and shows their counters on `board`. Problems come
    /// back one per line, each naming its key.
    pub fn start(config: &SinksConfig, board: &SinkBoard) -> Result<SinkOutput, Vec<String>> {
        let problems = config.check();
        if !problems.is_empty() {
            return Err(problems);
        }
        let set = SinkSet::start(config).map_err(|e| vec![e.to_string()])?;
        let kinds: std::collections::BTreeMap<&str, &str> = config.0.iter().map(|(n, c)| (n.as_str(), c.kind())).collect();
        let counters = set.counters().into_iter().map(|(name, c)| {
            let kind = kinds.get(name.as_str()).copied().unwrap_or("unknown").to_string();
            (name, kind, c)
        });
        *board.0.lock().unwrap_or_else(|e| e.into_inner()) = counters.collect();
        Ok(SinkOutput { set: Some(set) })
    }
}

impl EventOutput for SinkOutput {
    fn emit(&mut self, event: &Event) {
        if let Some(set) = &self.set {
            set.dispatch(event);
        }
    }

    fn close(&mut self) {
        if let Some(set) = self.set.take() {
            let report = set.shutdown(Instant::now() + CLOSE_DEADLINE);
            if !report.unfinished.is_empty() {
                tracing::warn!(sinks = ?report.unfinished, "sinks still busy at close");
            }
        }
    }
}

impl Drop for SinkOutput {
    fn drop(&mut self) {
        self.close();
    }
}
