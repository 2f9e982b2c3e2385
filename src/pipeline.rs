//! The daemon's data path: decode threads (one per stream, [`crate::source`]) → one backbone worker
//! that batches frames across streams (up to `batch_max`, waiting at most `batch_timeout` for more) →
//! one detector worker that keeps each stream's window and steps all streams with a new chunk in one
//! batch → the rule thread, which turns scores into events for the sinks. Stages are threads joined by
//! bounded channels; only the sources may drop (live ones, their oldest frame), so a file run gives
//! exactly what `actiond predict` gives on the same file's features.
//!
//! Shutdown flows with the data: stopping the sources closes their channels, each stage finishes what it
//! holds and closes its output, and the rule thread ends open firings (reason `shutdown`) last. A stop is
//! bounded in time even when the backbone is far behind: frames still queued at the sources are not
//! embedded, and the rule thread waits at most [`STOP_DRAIN`] for the chunks still in the model stages
//! before it ends the firings and closes the sinks; a batch still being embedded then is left behind.
//!
//! A live stream whose connection is lost is announced the same way, after its last queued frame: the
//! detector forgets its window and its open firings end with `stream_lost` while the camera is down,
//! not when it comes back.

use std::io::Write as _;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, Receiver, Select, Sender};

use crate::events::{EndReason, Event, EventKind};
use crate::feature_spec::FeatureSpec;
use crate::http::{top_k, StreamBoard};
use crate::metrics::Metrics;
use crate::rules::{ChunkScores, RuleConfig, RuleEngine};
use crate::shutdown::Shutdown;
use crate::source::{Frame, SourceHandle, StreamStats};

/// Turns frames into feature vectors (the vision backbone).
pub trait Embedder: Send {
    fn spec(&self) -> &FeatureSpec;
    /// One feature per frame, in order.
    fn embed(&mut self, frames: &[&Frame]) -> anyhow::Result<Vec<Vec<f32>>>;
}

/// Current and anticipated class probabilities of one stream's newest chunk.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub current: Vec<f32>,
    /// Row i: probabilities for chunk t+1+i.
    pub anticipated: Vec<Vec<f32>>,
}

/// An online detector keeping a window of features per stream slot.
pub trait OnlineDetector: Send {
    fn labels(&self) -> &[String];
    /// Future chunks anticipated per step.
    fn queries(&self) -> usize;
    fn spec(&self) -> &FeatureSpec;
    /// Pushes one feature per listed slot (each slot at most once) and predicts for each, in order.
    fn step(&mut self, inputs: &[(usize, Vec<f32>)]) -> anyhow::Result<Vec<Prediction>>;
    /// Forgets a slot's window (the stream restarted).
    fn reset(&mut self, slot: usize);
}

/// Where events go (the sink set).
pub trait EventOutput: Send {
    fn emit(&mut self, event: &Event);
    /// Flushes and makes durable everything emitted; called once at the end.
    fn close(&mut self);
}

/// A request to the running pipeline.
pub enum Control {
    /// New rules (already checked), and optionally new outputs; the old outputs are closed.
    Reload { rules: Vec<RuleConfig>, output: Option<Box<dyn EventOutput>> },
}

/// Batching of the model stages.
#[derive(Debug, Clone, Copy)]
pub struct Batching {
    pub max: usize,
    pub timeout: Duration,
}

/// What a finished run did.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    pub chunks: u64,
    pub events: u64,
}

/// The parts of a pipeline, built and checked by the caller.
pub struct Parts {
    pub sources: Vec<SourceHandle>,
    pub embedder: Box<dyn Embedder>,
    pub detector: Box<dyn OnlineDetector>,
    pub rules: RuleEngine,
    pub output: Box<dyn EventOutput>,
    pub metrics: Arc<Metrics>,
    pub board: Arc<StreamBoard>,
    pub batching: Batching,
    /// Every chunk's probabilities as JSON lines (`actiond run --record-scores`), for tuning rules and
    /// for checking the daemon against `actiond predict`.
    pub scores: Option<Box<dyn std::io::Write + Send>>,
}

/// When a frame was seen, carried along with its feature and scores.
#[derive(Debug, Clone)]
struct ChunkMeta {
    slot: usize,
    pts: f64,
    wall: SystemTime,
    arrival: Instant,
    session: u64,
    backbone_ms: f64,
}

enum Embedded {
    Feature(ChunkMeta, Vec<f32>),
    /// The stream's connection was lost, or the stream ended: its context is gone. Sent after its last
    /// frame's feature.
    Gone(usize),
}

enum Scored {
    Chunk(ChunkMeta, Prediction, f64),
    /// The stream's context was lost (reconnect) or it ended.
    Lost(usize),
}

/// After a stop, how long the rule thread waits for chunks still in the backbone and detector before it
/// ends the open firings. With the sinks' 3 s to close, the daemon is gone within its 5 s stop deadline
/// however slow the backbone is.
pub const STOP_DRAIN: Duration = Duration::from_millis(1500);

/// A pipeline whose threads are running.
pub struct Running {
    threads: Vec<JoinHandle<anyhow::Result<()>>>,
    rules_thread: JoinHandle<RunSummary>,
    shutdown: Shutdown,
    pub control: Sender<Control>,
}

impl Running {
    /// Waits until every stage has finished (all sources ended or stopped), returning what the run did
    /// or the first stage error. After a stop it returns once the rule thread has closed the sinks: a
    /// model stage still busy with a batch nobody will read is not waited for.
    pub fn join(self) -> anyhow::Result<RunSummary> {
        let summary = self.rules_thread.join().map_err(|_| anyhow::anyhow!("the rule thread panicked"));
        let mut first_error = None;
        for t in self.threads {
            if self.shutdown.is_stopped() && !t.is_finished() {
                tracing::debug!(thread = t.thread().name().unwrap_or("?"), "still busy at stop; not waited for");
                continue;
            }
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(anyhow::anyhow!("a pipeline stage panicked"));
                }
            }
        }
        let summary = summary?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(summary),
        }
    }
}

/// Starts the stages. `shutdown` stops the sources; everything downstream finishes on its own.
pub fn start(parts: Parts, shutdown: Shutdown) -> std::io::Result<Running> {
    let Parts { sources, embedder, detector, rules, output, metrics, board, batching, scores } = parts;
    let ids: Vec<Arc<str>> = sources.iter().map(|s| s.id.clone()).collect();
    let labels: Vec<String> = detector.labels().to_vec();
    let (embedded_tx, embedded_rx) = bounded::<Embedded>(batching.max.max(1) * 2);
    let (scored_tx, scored_rx) = bounded::<Scored>(batching.max.max(1) * 2);
    let (control_tx, control_rx) = bounded::<Control>(4);

    let receivers: Vec<Receiver<Frame>> = sources.iter().map(|s| s.frames.clone()).collect();
    let stats: Vec<Arc<StreamStats>> = sources.iter().map(|s| s.stats.clone()).collect();
    let mut threads = Vec::new();
    {
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        threads.push(
            std::thread::Builder::new()
                .name("backbone".into())
                .spawn(move || backbone_worker(receivers, &stats, embedder, embedded_tx, batching, &metrics, &shutdown))?,
        );
    }
    {
        let metrics = metrics.clone();
        threads.push(std::thread::Builder::new().name("detector".into()).spawn(move || detector_worker(embedded_rx, detector, scored_tx, batching, &metrics))?);
    }
    for source in sources {
        let id = source.id.clone();
        threads.push(std::thread::Builder::new().name(format!("join-{id}")).spawn(move || {
            if let Err(e) = source.join() {
                tracing::error!(stream = %id, "{e}");
            }
            Ok(())
        })?);
    }
    let rules_thread = std::thread::Builder::new()
        .name("rules".into())
        .spawn({
            let shutdown = shutdown.clone();
            move || rule_worker(scored_rx, control_rx, rules, output, ids, labels, metrics, board, shutdown, scores)
        })?;
    Ok(Running { threads, rules_thread, shutdown, control: control_tx })
}

/// Embeds frames until every source has ended, or until `shutdown`: then it finishes the batch it is
/// embedding and leaves what is still queued (the rule thread ends the open firings).
///
/// A stream whose connection was lost (`stats` counts it ended) is announced as gone once its queue
/// holds none of that connection's frames, so its firings end when the camera goes away, not when it
/// comes back.
fn backbone_worker(
    receivers: Vec<Receiver<Frame>>,
    stats: &[Arc<StreamStats>],
    mut embedder: Box<dyn Embedder>,
    out: Sender<Embedded>,
    batching: Batching,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let mut open: Vec<bool> = vec![true; receivers.len()];
    // Per slot, the connection (session) of the newest frame taken, until it is announced gone.
    let mut session: Vec<Option<u64>> = vec![None; receivers.len()];
    let mut batch: Vec<(usize, Frame)> = Vec::with_capacity(batching.max);
    // Round-robin start, so a busy stream cannot starve the others.
    let mut next = 0usize;
    let mut gone: Vec<usize> = Vec::new();
    while open.iter().any(|&o| o) || !gone.is_empty() {
        batch.clear();
        // Block for the first frame, then gather more until the batch is full or the timeout passes.
        let mut deadline: Option<Instant> = None;
        while batch.len() < batching.max {
            let mut took_any = false;
            for k in 0..receivers.len() {
                let slot = (next + k) % receivers.len();
                if !open[slot] || batch.len() >= batching.max {
                    continue;
                }
                // Read before the queue: every frame of a connection counted as ended is queued already.
                let sessions_ended = stats.get(slot).map_or(0, |s| s.sessions_ended());
                match receivers[slot].try_recv() {
                    Ok(frame) => {
                        session[slot] = Some(frame.session);
                        batch.push((slot, frame));
                        took_any = true;
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        if session[slot].is_some_and(|s| s < sessions_ended) {
                            // Announced after this batch, which may hold the connection's last frames.
                            session[slot] = None;
                            gone.push(slot);
                        }
                    }
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        // Announced after this batch: its last frames of the slot must reach the detector first.
                        open[slot] = false;
                        session[slot] = None;
                        gone.push(slot);
                    }
                }
            }
            next = (next + 1) % receivers.len().max(1);
            // Nothing to embed but a stream to announce: do not wait for frames first.
            if batch.len() >= batching.max || !open.iter().any(|&o| o) || (batch.is_empty() && !gone.is_empty()) {
                break;
            }
            if took_any {
                deadline.get_or_insert_with(|| Instant::now() + batching.timeout);
                continue;
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => left,
                    None => break,
                },
                None => Duration::from_millis(200),
            };
            wait_for_any(&receivers, &open, wait);
            if deadline.is_some_and(|d| Instant::now() >= d) || shutdown.is_stopped() {
                break;
            }
        }
        if shutdown.is_stopped() {
            return Ok(());
        }
        if batch.is_empty() {
            if !announce_gone(&out, &mut gone) {
                return Ok(());
            }
            continue;
        }
        let started = Instant::now();
        let frames: Vec<&Frame> = batch.iter().map(|(_, f)| f).collect();
        let features = embedder.embed(&frames)?;
        let took = started.elapsed();
        metrics.backbone_batch_size.observe(batch.len() as f64);
        metrics.backbone_seconds.observe(took.as_secs_f64());
        let per_frame_ms = took.as_secs_f64() * 1000.0 / batch.len() as f64;
        for ((slot, frame), feature) in batch.drain(..).zip(features) {
            let meta = ChunkMeta { slot, pts: frame.pts, wall: frame.wall, arrival: frame.arrival, session: frame.session, backbone_ms: per_frame_ms };
            if out.send(Embedded::Feature(meta, feature)).is_err() {
                return Ok(());
            }
        }
        if !announce_gone(&out, &mut gone) {
            return Ok(());
        }
    }
    Ok(())
}

/// Tells the detector which streams ended or lost their connection; false when it is gone.
fn announce_gone(out: &Sender<Embedded>, gone: &mut Vec<usize>) -> bool {
    gone.drain(..).all(|slot| out.send(Embedded::Gone(slot)).is_ok())
}

/// Blocks until any open receiver has a frame (or closes), or `timeout` passes.
fn wait_for_any(receivers: &[Receiver<Frame>], open: &[bool], timeout: Duration) {
    let mut select = Select::new();
    let mut any = false;
    for (r, &o) in receivers.iter().zip(open) {
        if o {
            select.recv(r);
            any = true;
        }
    }
    if any {
        let _ = select.ready_timeout(timeout);
    }
}

fn detector_worker(input: Receiver<Embedded>, mut detector: Box<dyn OnlineDetector>, out: Sender<Scored>, batching: Batching, metrics: &Metrics) -> anyhow::Result<()> {
    let mut sessions: Vec<Option<u64>> = Vec::new();
    let mut pending: Vec<Embedded> = Vec::new();
    loop {
        // Gather what is queued: at least one message, at most `batch_max` features.
        if pending.is_empty() {
            match input.recv() {
                Ok(m) => pending.push(m),
                Err(_) => return Ok(()),
            }
        }
        while pending.len() < batching.max {
            match input.try_recv() {
                Ok(m) => pending.push(m),
                Err(_) => break,
            }
        }
        // One step takes each slot at most once; a slot's later chunks wait for the next step, in order.
        let mut step: Vec<(ChunkMeta, Vec<f32>)> = Vec::new();
        let mut rest = Vec::new();
        for message in pending.drain(..) {
            match message {
                Embedded::Feature(meta, feature) if !step.iter().any(|(m, _)| m.slot == meta.slot) && rest.is_empty() => {
                    if sessions.len() <= meta.slot {
                        sessions.resize(meta.slot + 1, None);
                    }
                    if sessions[meta.slot].is_some_and(|s| s != meta.session) {
                        // Reconnected: the old window is no context for the new stream.
                        detector.reset(meta.slot);
                        if out.send(Scored::Lost(meta.slot)).is_err() {
                            return Ok(());
                        }
                    }
                    sessions[meta.slot] = Some(meta.session);
                    step.push((meta, feature));
                }
                Embedded::Gone(slot) if step.is_empty() && rest.is_empty() => {
                    detector.reset(slot);
                    // The next connection's first chunk needs no second reset.
                    if let Some(s) = sessions.get_mut(slot) {
                        *s = None;
                    }
                    if out.send(Scored::Lost(slot)).is_err() {
                        return Ok(());
                    }
                }
                other => rest.push(other),
            }
        }
        pending = rest;
        if step.is_empty() {
            continue;
        }
        let inputs: Vec<(usize, Vec<f32>)> = step.iter().map(|(m, f)| (m.slot, f.clone())).collect();
        let started = Instant::now();
        let predictions = detector.step(&inputs)?;
        let took = started.elapsed();
        metrics.detector_batch_size.observe(inputs.len() as f64);
        metrics.detector_seconds.observe(took.as_secs_f64());
        let detector_ms = took.as_secs_f64() * 1000.0;
        for ((meta, _), prediction) in step.into_iter().zip(predictions) {
            let inference_ms = meta.backbone_ms + detector_ms;
            if out.send(Scored::Chunk(meta, prediction, inference_ms)).is_err() {
                return Ok(());
            }
        }
    }
}

/// The rule thread's state: turns scored chunks into events and hands them to the outputs.
struct RuleStage {
    rules: RuleEngine,
    output: Box<dyn EventOutput>,
    ids: Vec<Arc<str>>,
    labels: Vec<String>,
    metrics: Arc<Metrics>,
    board: Arc<StreamBoard>,
    shutdown: Shutdown,
    summary: RunSummary,
    scores: Option<Box<dyn std::io::Write + Send>>,
}

impl RuleStage {
    /// Appends one chunk to the score record; a failing record is reported once and dropped, since
    /// detection must go on.
    fn record(&mut self, stream: &str, pts: f64, latency_s: f64, inference_ms: f64, prediction: &Prediction) {
        let Some(out) = self.scores.as_mut() else { return };
        let line = serde_json::json!({
            "stream": stream,
            "pts": pts,
            "latency_ms": (latency_s * 1e4).round() / 10.0,
            "inference_ms": (inference_ms * 10.0).round() / 10.0,
            "current": prediction.current,
            "anticipated": prediction.anticipated,
        });
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            tracing::error!("cannot write the score record, no more scores are recorded: {e}");
            self.scores = None;
        }
    }

    fn scored(&mut self, message: Scored) {
        let events = match message {
            Scored::Chunk(meta, prediction, inference_ms) => {
                self.summary.chunks += 1;
                let latency_s = meta.arrival.elapsed().as_secs_f64();
                self.metrics.frame_to_scores_seconds.observe(latency_s);
                let stream = self.ids[meta.slot].clone();
                self.record(&stream, meta.pts, latency_s, inference_ms, &prediction);
                let stream = &stream;
                let over_horizon: Vec<f32> = (0..self.labels.len()).map(|c| prediction.anticipated.iter().map(|row| row[c]).fold(0.0, f32::max)).collect();
                self.board.update(stream, meta.pts, top_k(&self.labels, &prediction.current, 3), top_k(&self.labels, &over_horizon, 3));
                let chunk = ChunkScores {
                    stream,
                    pts: meta.pts,
                    frame_time: meta.wall,
                    arrival: meta.arrival,
                    inference_ms,
                    current: &prediction.current,
                    anticipated: &prediction.anticipated,
                };
                self.rules.observe(&chunk)
            }
            // A stream that goes away because the daemon stops ends its firings with `shutdown`.
            Scored::Lost(slot) => {
                // What the lost connection last saw is not what the camera shows now.
                self.board.forget(&self.ids[slot]);
                let reason = if self.shutdown.is_stopped() { EndReason::Shutdown } else { EndReason::StreamLost };
                self.rules.end_stream(&self.ids[slot], reason)
            }
        };
        self.emit(events);
    }

    fn control(&mut self, message: Control) {
        match message {
            Control::Reload { rules, output } => {
                match self.rules.reload(&rules, &self.labels) {
                    Ok(events) => {
                        self.emit(events);
                        tracing::info!(rules = rules.len(), "rules reloaded");
                    }
                    Err(problems) => tracing::error!("reload refused, the running rules stay: {}", problems.join("; ")),
                }
                if let Some(output) = output {
                    let mut old = std::mem::replace(&mut self.output, output);
                    old.close();
                    tracing::info!("sinks reloaded");
                }
            }
        }
    }

    fn emit(&mut self, events: Vec<Event>) {
        for event in events {
            self.metrics.count_event(&event.rule, event.kind);
            if event.kind != EventKind::End {
                self.metrics.frame_to_event_seconds.observe(event.latency_ms / 1000.0);
            }
            self.output.emit(&event);
            self.summary.events += 1;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn rule_worker(
    input: Receiver<Scored>,
    control: Receiver<Control>,
    rules: RuleEngine,
    output: Box<dyn EventOutput>,
    ids: Vec<Arc<str>>,
    labels: Vec<String>,
    metrics: Arc<Metrics>,
    board: Arc<StreamBoard>,
    shutdown: Shutdown,
    scores: Option<Box<dyn std::io::Write + Send>>,
) -> RunSummary {
    let mut stage = RuleStage { rules, output, ids, labels, metrics, board, shutdown, summary: RunSummary::default(), scores };
    let mut control = control;
    // Set when the stop is first seen: the model stages have until then to hand over what they hold.
    let mut drain_until: Option<Instant> = None;
    loop {
        if stage.shutdown.is_stopped() && Instant::now() >= *drain_until.get_or_insert_with(|| Instant::now() + STOP_DRAIN) {
            tracing::warn!("the model stages are still busy {} after the stop: ending without their last chunks", humantime::format_duration(STOP_DRAIN));
            break;
        }
        crossbeam_channel::select! {
            recv(input) -> message => match message {
                Ok(message) => stage.scored(message),
                Err(_) => break,
            },
            recv(control) -> message => match message {
                Ok(message) => stage.control(message),
                Err(_) => control = crossbeam_channel::never(),
            },
            // Wakes up to notice a stop while the model stages are busy.
            default(Duration::from_millis(100)) => {}
        }
    }
    let events = stage.rules.shutdown();
    stage.emit(events);
    stage.output.close();
    stage.summary
}
