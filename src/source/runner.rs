//! The decode thread of one stream: runs connections one after another until stopped. A live source
//! that errors, stalls or ends is reconnected after a backoff with jitter, the reason logged and the
//! reconnect counted; a file ends once. Frames go out on a bounded channel whose full-policy depends on
//! the source: live drops its oldest queued frame (latency stays bounded, the drop is counted), a file
//! waits (nothing is lost, so offline and live results agree).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, SendTimeoutError, Sender, TrySendError};

use super::backoff::Backoff;
use super::ffmpeg::{run_session, Flow, SessionEnd, StreamCursor};
use super::{Frame, SourceError, SourceSettings, StreamState, StreamStats};
use crate::shutdown::Shutdown;

/// What to do when the consumer is behind and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Throw away the oldest queued frame (live sources).
    DropOldest,
    /// Wait for room (files).
    Block,
}

/// A running source: its frames, counters and thread.
pub struct SourceHandle {
    pub id: Arc<str>,
    pub stats: Arc<StreamStats>,
    pub frames: Receiver<Frame>,
    thread: JoinHandle<Result<(), SourceError>>,
}

impl SourceHandle {
    /// Waits for the thread; a file that could not be read returns its error.
    pub fn join(self) -> Result<(), SourceError> {
        self.thread.join().unwrap_or_else(|_| Ok(()))
    }
}

/// Starts the decode thread of one stream. It runs until its input ends (files), `shutdown` is
/// stopped, or every receiver of its frames is gone.
pub fn spawn(settings: SourceSettings, shutdown: Shutdown) -> std::io::Result<SourceHandle> {
    let stats = StreamStats::new();
    let (tx, rx) = bounded(settings.queue_frames.max(1));
    let policy = if settings.kind.is_live() { WhenFull::DropOldest } else { WhenFull::Block };
    let id = settings.id.clone();
    let thread = {
        let stats = stats.clone();
        let own_rx = (policy == WhenFull::DropOldest).then(|| rx.clone());
        std::thread::Builder::new()
            .name(format!("decode-{id}"))
            .spawn(move || run(&settings, &stats, &shutdown, Output { tx, rx: own_rx, policy }))?
    };
    Ok(SourceHandle { id, stats, frames: rx, thread })
}

struct Output {
    tx: Sender<Frame>,
    /// Our own handle on the queue, to drop its oldest frame when full (live sources only: holding it
    /// keeps the channel open, so a live source stops on shutdown rather than on its consumers leaving).
    rx: Option<Receiver<Frame>>,
    policy: WhenFull,
}

impl Output {
    fn send(&self, frame: Frame, stats: &StreamStats, shutdown: &Shutdown) -> Flow {
        let mut frame = frame;
        loop {
            match self.policy {
                WhenFull::DropOldest => match self.tx.try_send(frame) {
                    Ok(()) => return Flow::Continue,
                    Err(TrySendError::Full(back)) => {
                        if self.rx.as_ref().is_some_and(|rx| rx.try_recv().is_ok()) {
                            stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        frame = back;
                    }
                    Err(TrySendError::Disconnected(_)) => return Flow::Stop,
                },
                WhenFull::Block => match self.tx.send_timeout(frame, Duration::from_millis(100)) {
                    Ok(()) => return Flow::Continue,
                    Err(SendTimeoutError::Timeout(back)) => {
                        if shutdown.is_stopped() {
                            return Flow::Stop;
                        }
                        frame = back;
                    }
                    Err(SendTimeoutError::Disconnected(_)) => return Flow::Stop,
                },
            }
            if shutdown.is_stopped() {
                return Flow::Stop;
            }
        }
    }
}

fn run(settings: &SourceSettings, stats: &StreamStats, shutdown: &Shutdown, output: Output) -> Result<(), SourceError> {
    let mut backoff = Backoff::new(settings.reconnect_initial, settings.reconnect_max);
    let mut cursor = StreamCursor::new(settings.fps);
    let live = settings.kind.is_live();
    loop {
        let sampled_before = stats.frames_sampled.load(Ordering::Relaxed);
        let result = run_session(settings, stats, shutdown, &mut cursor, &mut |_| {}, &mut |frame| output.send(frame, stats, shutdown));
        let reason = match result {
            Ok(SessionEnd::Stopped) => {
                stats.set_state(StreamState::Ended);
                return Ok(());
            }
            Ok(SessionEnd::Eof) if !live => {
                tracing::info!(stream = %settings.id, "end of file");
                stats.set_state(StreamState::Ended);
                return Ok(());
            }
            Err(err) if !live => {
                tracing::error!(stream = %settings.id, "{err}");
                stats.set_state(StreamState::Failed);
                return Err(err);
            }
            Ok(SessionEnd::Eof) => "the stream ended".to_string(),
            Err(err) => err.to_string(),
        };
        if stats.frames_sampled.load(Ordering::Relaxed) > sampled_before {
            backoff.reset();
        }
        // The connection is gone: downstream may end what it started (its frames are all queued).
        stats.end_session(cursor.session);
        // A new connection starts a new timeline.
        cursor.sampler.reset();
        cursor.session += 1;
        let delay = backoff.next_delay();
        tracing::warn!(stream = %settings.id, attempt = backoff.attempts(), "reconnecting in {}: {reason}", humantime::format_duration(round_ms(delay)));
        stats.set_state(StreamState::Backoff);
        if shutdown.sleep(delay) {
            stats.set_state(StreamState::Ended);
            return Ok(());
        }
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
