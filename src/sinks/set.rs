//! The running sinks: one thread per sink behind a bounded queue, the dispatcher that routes each event
//! to the sinks its rule names, the retry loop, per-sink counters for metrics, and an orderly shutdown
//! that drains, fsyncs and joins by a deadline.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::{backoff, Delivery, Sink, SinkError, SinksConfig, WhenFull};
use crate::events::Event;
use crate::shutdown::Shutdown;

/// How often at most a sink logs that it is dropping or failing events.
const LOG_EVERY: Duration = Duration::from_secs(10);
/// How long a sink without a shutdown deadline gets to close (a dropped [`SinkSet`]).
const DEFAULT_CLOSE: Duration = Duration::from_secs(5);

/// Per-sink counters, read by the metrics endpoint while the sink runs. All monotonic but `queued`.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Events delivered (for MQTT: handed to the client, which sends and retransmits them).
    pub sent: AtomicU64,
    /// Events given up on after their retries, or refused for good (a 4xx).
    pub failed: AtomicU64,
    /// Events dropped because the sink's queue was full.
    pub dropped: AtomicU64,
    /// Attempts repeated after a failure.
    pub retries: AtomicU64,
    /// Events waiting in the queue now.
    pub queued: AtomicU64,
}

impl SinkCounters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

enum Command {
    Event(Arc<Event>),
    Flush { durable: bool, done: Sender<()> },
}

/// Rate-limits one kind of warning of one sink, counting what happened in between.
#[derive(Default)]
struct Throttle {
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// Records one occurrence; returns how many happened since the last report when it is time to
    /// report again.
    fn note(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 += 1;
        if state.0.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            state.0 = Some(Instant::now());
            Some(std::mem::take(&mut state.1))
        } else {
            None
        }
    }
}

struct Worker {
    name: String,
    queue: Option<Sender<Command>>,
    when_full: WhenFull,
    counters: Arc<SinkCounters>,
    drops: Throttle,
    /// Disconnects when the thread ends.
    finished: Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

/// The sinks of a running daemon. [`SinkSet::dispatch`] may be called from any thread.
pub struct SinkSet {
    workers: Vec<Worker>,
    stop: Shutdown,
    deadline: Arc<OnceLock<Instant>>,
    unknown_names: Mutex<BTreeSet<String>>,
}

/// What [`SinkSet::shutdown`] managed.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Sinks whose thread had not finished by the deadline (left running; the process may exit).
    pub unfinished: Vec<String>,
}

impl SinkSet {
    /// Builds every configured sink (opening files, checking addresses), then starts their threads.
    /// Nothing starts when one sink cannot be built.
    pub fn start(config: &SinksConfig) -> Result<SinkSet, SinkError> {
        let sinks = config.0.iter().map(|(name, cfg)| cfg.build(name)).collect::<Result<Vec<_>, _>>()?;
        SinkSet::from_sinks(sinks)
    }

    /// Runs the given sinks, one thread each.
    pub fn from_sinks(sinks: Vec<Box<dyn Sink>>) -> Result<SinkSet, SinkError> {
        let stop = Shutdown::new();
        let deadline = Arc::new(OnceLock::new());
        let mut set = SinkSet { workers: Vec::with_capacity(sinks.len()), stop, deadline, unknown_names: Mutex::default() };
        for sink in sinks {
            let name = sink.name().to_string();
            let delivery = sink.delivery();
            let (queue, commands) = crossbeam_channel::bounded(delivery.queue.max(1));
            let (finished_tx, finished) = crossbeam_channel::bounded::<()>(0);
            let counters = Arc::new(SinkCounters::default());
            let context = WorkerContext { delivery, counters: counters.clone(), stop: set.stop.clone(), deadline: set.deadline.clone(), failures: Throttle::default() };
            let thread = std::thread::Builder::new()
                .name(format!("sink-{name}"))
                .spawn(move || {
                    let _finished = finished_tx;
                    context.run(sink, commands);
                })
                .map_err(|e| SinkError::Config { sink: name.clone(), message: format!("cannot start its thread: {e}") })?;
            set.workers.push(Worker { name, queue: Some(queue), when_full: delivery.when_full, counters, drops: Throttle::default(), finished, thread: Some(thread) });
        }
        Ok(set)
    }

    /// Sink names, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.workers.iter().map(|w| w.name.as_str())
    }

    /// Each sink's counters, to read from another thread.
    pub fn counters(&self) -> Vec<(String, Arc<SinkCounters>)> {
        self.workers.iter().map(|w| (w.name.clone(), w.counters.clone())).collect()
    }

    /// Sends `event` to the sinks in `event.actions`, or to every sink when it names none. Blocks
    /// only while a blocking sink's queue (the log's) is full.
    pub fn dispatch(&self, event: &Event) {
        let event = Arc::new(event.clone());
        if event.actions.is_empty() {
            for worker in &self.workers {
                self.enqueue(worker, &event);
            }
            return;
        }
        for name in &event.actions {
            match self.workers.iter().find(|w| &w.name == name) {
                Some(worker) => self.enqueue(worker, &event),
                None => {
                    let mut warned = self.unknown_names.lock().unwrap_or_else(|e| e.into_inner());
                    if warned.insert(name.clone()) {
                        tracing::warn!(sink = %name, rule = %event.rule, "a rule names a sink that is not configured; its events go nowhere there");
                    }
                }
            }
        }
    }

    fn enqueue(&self, worker: &Worker, event: &Arc<Event>) {
        let Some(queue) = &worker.queue else { return };
        worker.counters.queued.fetch_add(1, Ordering::Relaxed);
        let command = Command::Event(event.clone());
        let outcome = match worker.when_full {
            WhenFull::Block => queue.send(command).map_err(|_| false),
            WhenFull::Drop => queue.try_send(command).map_err(|e| matches!(e, TrySendError::Full(_))),
        };
        if let Err(full) = outcome {
            worker.counters.queued.fetch_sub(1, Ordering::Relaxed);
            if full {
                SinkCounters::add(&worker.counters.dropped);
                if let Some(count) = worker.drops.note() {
                    tracing::warn!(sink = %worker.name, dropped = count, "sink queue full: dropping events so detection does not wait");
                }
            } else {
                SinkCounters::add(&worker.counters.failed);
                if let Some(count) = worker.drops.note() {
                    tracing::error!(sink = %worker.name, lost = count, "sink thread has stopped; events for it are lost");
                }
            }
        }
    }

    /// Asks every sink to flush (durably: fsync) what it has taken so far, waiting up to `timeout`.
    /// Returns whether all answered in time.
    pub fn flush(&self, durable: bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut answers = Vec::new();
        for worker in &self.workers {
            let Some(queue) = &worker.queue else { continue };
            let (done, answer) = crossbeam_channel::bounded(1);
            if queue.send_deadline(Command::Flush { durable, done }, deadline).is_ok() {
                answers.push(answer);
            } else {
                return false;
            }
        }
        answers.iter().all(|answer| answer.recv_deadline(deadline).is_ok())
    }

    /// Stops taking events, lets every sink deliver what it holds (one more attempt each for
    /// webhooks, no new retries), flushes and fsyncs, and joins the threads by `deadline`.
    pub fn shutdown(mut self, deadline: Instant) -> ShutdownReport {
        self.close(deadline)
    }

    fn close(&mut self, deadline: Instant) -> ShutdownReport {
        let _ = self.deadline.set(deadline);
        self.stop.stop();
        for worker in &mut self.workers {
            worker.queue = None;
        }
        let mut report = ShutdownReport::default();
        for worker in &mut self.workers {
            let Some(thread) = worker.thread.take() else { continue };
            match worker.finished.recv_deadline(deadline) {
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) | Ok(()) => {
                    if thread.join().is_err() {
                        tracing::error!(sink = %worker.name, "sink thread panicked");
                    }
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    tracing::warn!(sink = %worker.name, "sink did not finish by the shutdown deadline");
                    report.unfinished.push(worker.name.clone());
                }
            }
        }
        report
    }
}

impl Drop for SinkSet {
    fn drop(&mut self) {
        if self.workers.iter().any(|w| w.thread.is_some()) {
            self.close(Instant::now() + DEFAULT_CLOSE);
        }
    }
}

/// What a sink thread needs besides its sink.
struct WorkerContext {
    delivery: Delivery,
    counters: Arc<SinkCounters>,
    stop: Shutdown,
    deadline: Arc<OnceLock<Instant>>,
    failures: Throttle,
}

impl WorkerContext {
    fn run(&self, mut sink: Box<dyn Sink>, commands: Receiver<Command>) {
        // Ends when the set has let go of the queue and the queue is empty.
        for command in commands.iter() {
            match command {
                Command::Event(event) => {
                    self.counters.queued.fetch_sub(1, Ordering::Relaxed);
                    self.deliver(sink.as_mut(), &event);
                }
                Command::Flush { durable, done } => {
                    if let Err(err) = sink.flush(durable) {
                        tracing::warn!(sink = %sink.name(), error = %err, "flush failed");
                    }
                    let _ = done.send(());
                }
            }
        }
        let deadline = self.deadline.get().copied().unwrap_or_else(|| Instant::now() + DEFAULT_CLOSE);
        if let Err(err) = sink.close(deadline) {
            tracing::error!(sink = %sink.name(), error = %err, "closing the sink failed");
        }
    }

    fn past_deadline(&self) -> bool {
        self.deadline.get().is_some_and(|d| Instant::now() >= *d)
    }

    /// Sends one event, retrying as the sink's [`Delivery`] allows.
    fn deliver(&self, sink: &mut dyn Sink, event: &Event) {
        let delivery = &self.delivery;
        if delivery.when_full == WhenFull::Drop && self.past_deadline() {
            SinkCounters::add(&self.counters.failed);
            return;
        }
        let mut retry = 0u32;
        loop {
            let err = match sink.send(event) {
                Ok(()) => {
                    SinkCounters::add(&self.counters.sent);
                    if retry > 0 {
                        tracing::info!(sink = %sink.name(), event = %event.id, retries = retry, "delivered after retrying");
                    }
                    return;
                }
                Err(err) => err,
            };
            if let SinkError::QueueFull { .. } = err {
                SinkCounters::add(&self.counters.dropped);
                if let Some(count) = self.failures.note() {
                    tracing::warn!(sink = %sink.name(), dropped = count, error = %err, "dropping events");
                }
                return;
            }
            let stopping = self.stop.is_stopped();
            let retries_left = match delivery.max_retries {
                None => true,
                Some(max) => retry < max && !stopping,
            };
            if !err.is_retryable() || !retries_left || self.past_deadline() {
                SinkCounters::add(&self.counters.failed);
                tracing::error!(sink = %sink.name(), event = %event.id, kind = ?event.kind, retries = retry, error = %err, "giving up on an event");
                return;
            }
            if retry == 0 {
                if let Some(count) = self.failures.note() {
                    tracing::warn!(sink = %sink.name(), failures = count, error = %err, "delivery failed; retrying with backoff");
                }
            }
            SinkCounters::add(&self.counters.retries);
            let wait = backoff(delivery, retry);
            retry = retry.saturating_add(1);
            if stopping {
                // Only sinks that never give up get here: keep trying until the deadline, briskly.
                std::thread::sleep(wait.min(Duration::from_millis(50)));
            } else {
                self.stop.sleep(wait);
            }
        }
    }
}
