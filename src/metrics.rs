//! Prometheus metrics: per-stream ingest counters (read from the sources' own atomics at scrape time),
//! batch-size and latency histograms of the model stages, the frame→scores latency of every chunk (how
//! far behind the pipeline runs, events or not), the frame→event latency, and events by rule and type.
//! Rendered in the Prometheus text format by [`Metrics::render`]; names follow
//! `actiond_<what>_<unit>[_total]`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::events::EventKind;
use crate::source::StreamStats;

/// A fixed-bucket histogram, lock-free to observe.
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    /// Non-cumulative counts per bucket; the last is +Inf.
    counts: Vec<AtomicU64>,
    sum_bits: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Self {
        Histogram { bounds: bounds.to_vec(), counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(), sum_bits: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    pub fn observe(&self, value: f64) {
        let bucket = self.bounds.iter().position(|&b| value <= b).unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self.sum_bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| Some((f64::from_bits(bits) + value).to_bits()));
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The value below which `q` of the observations fall, by linear interpolation within a bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let target = q * total as f64;
        let mut seen = 0.0;
        let mut lower = 0.0;
        for (i, c) in self.counts.iter().enumerate() {
            let c = c.load(Ordering::Relaxed) as f64;
            let upper = self.bounds.get(i).copied().unwrap_or(lower * 2.0);
            if seen + c >= target && c > 0.0 {
                return Some(lower + (upper - lower) * ((target - seen) / c));
            }
            seen += c;
            lower = upper;
        }
        Some(lower)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            let le = self.bounds.get(i).map(|b| format!("{b}")).unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
        }
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", f64::from_bits(self.sum_bits.load(Ordering::Relaxed)));
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
    }
}

const SECONDS_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// Everything `/metrics` shows.
pub struct Metrics {
    streams: RwLock<Vec<(String, Arc<StreamStats>)>>,
    pub backbone_batch_size: Histogram,
    pub backbone_seconds: Histogram,
    pub detector_batch_size: Histogram,
    pub detector_seconds: Histogram,
    /// Every chunk, from its frame's arrival to its scores reaching the rules.
    pub frame_to_scores_seconds: Histogram,
    pub frame_to_event_seconds: Histogram,
    events: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// Named counters other stages add (sink deliveries, drops).
    extra: Mutex<Vec<Box<dyn Fn(&mut String) + Send + Sync>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            streams: RwLock::new(Vec::new()),
            backbone_batch_size: Histogram::new(BATCH_BUCKETS),
            backbone_seconds: Histogram::new(SECONDS_BUCKETS),
            detector_batch_size: Histogram::new(BATCH_BUCKETS),
            detector_seconds: Histogram::new(SECONDS_BUCKETS),
            frame_to_scores_seconds: Histogram::new(SECONDS_BUCKETS),
            frame_to_event_seconds: Histogram::new(SECONDS_BUCKETS),
            events: Mutex::new(BTreeMap::new()),
            extra: Mutex::new(Vec::new()),
        }
    }
}

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Start => "start",
        EventKind::Update => "update",
        EventKind::End => "end",
        EventKind::Predicted => "predicted",
    }
}

/// Escapes a label value for the text format.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Metrics::default())
    }

    pub fn add_stream(&self, id: &str, stats: Arc<StreamStats>) {
        self.streams.write().unwrap_or_else(|e| e.into_inner()).push((id.to_string(), stats));
    }

    pub fn count_event(&self, rule: &str, kind: EventKind) {
        *self.events.lock().unwrap_or_else(|e| e.into_inner()).entry((rule.to_string(), kind_name(kind))).or_default() += 1;
    }

    /// Adds a renderer for metrics another stage owns (it writes complete `# TYPE` blocks).
    pub fn add_renderer(&self, render: impl Fn(&mut String) + Send + Sync + 'static) {
        self.extra.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(render));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let streams = self.streams.read().unwrap_or_else(|e| e.into_inner());
        type Getter = fn(&StreamStats) -> f64;
        let per_stream: [(&str, &str, &str, Getter); 7] = [
            ("actiond_stream_input_fps", "gauge", "Input frame rate measured from timestamps.", |s| s.input_fps()),
            ("actiond_stream_sampled_fps", "gauge", "Rate of sampled frames handed on.", |s| s.sampled_fps()),
            ("actiond_stream_frames_decoded_total", "counter", "Frames decoded.", |s| s.frames_decoded.load(Ordering::Relaxed) as f64),
            ("actiond_stream_frames_sampled_total", "counter", "Frames kept at the chunk rate.", |s| s.frames_sampled.load(Ordering::Relaxed) as f64),
            ("actiond_stream_frames_dropped_total", "counter", "Sampled frames dropped because the pipeline fell behind.", |s| s.frames_dropped.load(Ordering::Relaxed) as f64),
            ("actiond_stream_decode_errors_total", "counter", "Demuxing and decoding errors.", |s| s.decode_errors.load(Ordering::Relaxed) as f64),
            ("actiond_stream_reconnects_total", "counter", "Reconnect attempts.", |s| s.reconnects.load(Ordering::Relaxed) as f64),
        ];
        for (name, kind, help, get) in per_stream {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (id, stats) in streams.iter() {
                let _ = writeln!(out, "{name}{{stream=\"{}\"}} {}", escape(id), get(stats));
            }
        }
        let _ = writeln!(out, "# HELP actiond_stream_up 1 while the stream delivers frames.\n# TYPE actiond_stream_up gauge");
        for (id, stats) in streams.iter() {
            let up = matches!(stats.state(), crate::source::StreamState::Streaming) as u8;
            let _ = writeln!(out, "actiond_stream_up{{stream=\"{}\"}} {up}", escape(id));
        }
        drop(streams);
        for (name, help, h) in [
            ("actiond_backbone_batch_size", "Frames per backbone batch.", &self.backbone_batch_size),
            ("actiond_backbone_batch_seconds", "Backbone time per batch.", &self.backbone_seconds),
            ("actiond_detector_batch_size", "Streams per detector batch.", &self.detector_batch_size),
            ("actiond_detector_batch_seconds", "Detector time per batch.", &self.detector_seconds),
            ("actiond_frame_to_scores_seconds", "From a frame's arrival to its chunk's scores, every chunk.", &self.frame_to_scores_seconds),
            ("actiond_frame_to_event_seconds", "From a frame's arrival to its event's emission.", &self.frame_to_event_seconds),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            h.render(&mut out, name, "");
        }
        let _ = writeln!(out, "# HELP actiond_events_total Events emitted, by rule and type.\n# TYPE actiond_events_total counter");
        for ((rule, kind), n) in self.events.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "actiond_events_total{{rule=\"{}\",type=\"{kind}\"}} {n}", escape(rule));
        }
        for render in self.extra.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            render(&mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_quantiles_interpolate() {
        let h = Histogram::new(&[1.0, 2.0, 4.0]);
        for v in [0.5, 1.5, 1.5, 3.0, 10.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"1\"} 1\nx_bucket{le=\"2\"} 3\nx_bucket{le=\"4\"} 4\nx_bucket{le=\"+Inf\"} 5\nx_sum 16.5\nx_count 5"), "{out}");
        let median = h.quantile(0.5).unwrap();
        assert!((1.0..=2.0).contains(&median), "{median}");
    }

    #[test]
    fn renders_streams_and_events() {
        let m = Metrics::new();
        let stats = StreamStats::new();
        stats.frames_decoded.store(12, Ordering::Relaxed);
        m.add_stream("cam\"1", stats);
        m.count_event("fall", EventKind::Start);
        m.count_event("fall", EventKind::Start);
        let text = m.render();
        assert!(text.contains("actiond_stream_frames_decoded_total{stream=\"cam\\\"1\"} 12"), "{text}");
        assert!(text.contains("actiond_events_total{rule=\"fall\",type=\"start\"} 2"), "{text}");
        assert!(text.contains("# TYPE actiond_frame_to_event_seconds histogram"));
        assert!(text.contains("# TYPE actiond_frame_to_scores_seconds histogram"));
    }
}
