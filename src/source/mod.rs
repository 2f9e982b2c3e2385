//! Sources: where frames come from. One decode thread per stream reads a file, an RTSP camera, a V4L2
//! device or an FFmpeg lavfi test graph, keeps one frame per chunk slot (see [`sampler`]), scales it
//! straight to the model's RGB input, and hands it on. Live sources reconnect forever with backoff
//! ([`runner`]); files end.
//!
//! [`ffmpeg`] is the only module that talks to FFmpeg.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Config, RtspTransport, StreamConfig};
use crate::redact::RedactedUrl;

pub mod backoff;
pub mod ffmpeg;
pub mod motion;
pub mod runner;
pub mod sampler;
pub mod synth;

pub use runner::{spawn, SourceHandle};

/// URL schemes FFmpeg reads from the network. Anything else with `://` is refused up front.
const NETWORK_SCHEMES: &[&str] = &["rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "srt", "udp", "tcp", "rtp"];

/// What kind of thing a stream URL names; decides the FFmpeg demuxer and whether to reconnect.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    /// A file in any container FFmpeg reads. Ends at EOF.
    File(PathBuf),
    /// An RTSP camera or server.
    Rtsp,
    /// Another network stream FFmpeg reads (RTMP, HTTP, SRT, UDP).
    Network,
    /// A Video4Linux2 device such as /dev/video0.
    V4l2(PathBuf),
    /// An FFmpeg lavfi filter graph used as a source, e.g. `testsrc2=size=640x480:rate=25`.
    Lavfi(String),
    /// The synthetic action world, `synth://seed=7?realtime=1`: generated frames with known ground truth.
    Synth(synth::SynthUrl),
}

impl SourceKind {
    /// Classifies `url`. Fails on an unknown scheme or an empty graph, naming what is accepted.
    pub fn parse(url: &str) -> Result<SourceKind, SourceError> {
        let url = url.trim();
        if let Some(graph) = url.strip_prefix("lavfi:") {
            if graph.is_empty() {
                return Err(SourceError::BadUrl { url: RedactedUrl::new(url), reason: "lavfi: needs a filter graph, e.g. lavfi:testsrc2=size=640x480:rate=25".into() });
            }
            return Ok(SourceKind::Lavfi(graph.to_string()));
        }
        if let Some(rest) = url.strip_prefix("synth://") {
            return Ok(SourceKind::Synth(synth::SynthUrl::parse(url, rest)?));
        }
        if let Some(device) = url.strip_prefix("v4l2:") {
            return Ok(SourceKind::V4l2(PathBuf::from(device.trim_start_matches("//"))));
        }
        if url.starts_with("/dev/video") {
            return Ok(SourceKind::V4l2(PathBuf::from(url)));
        }
        if let Some(path) = url.strip_prefix("file://") {
            return Ok(SourceKind::File(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            return match scheme.as_str() {
                "rtsp" | "rtsps" => Ok(SourceKind::Rtsp),
                s if NETWORK_SCHEMES.contains(&s) => Ok(SourceKind::Network),
                _ => Err(SourceError::BadUrl {
                    url: RedactedUrl::new(url),
                    reason: format!(
                        "unknown scheme `{scheme}://`; use a file path, /dev/videoN, lavfi:GRAPH, synth://seed=N or one of {}",
                        NETWORK_SCHEMES.iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(", ")
                    ),
                }),
            };
        }
        Ok(SourceKind::File(PathBuf::from(url)))
    }

    /// Live sources reconnect after an error, a stall or an end; files end once. A synth:// world
    /// cannot fail, and behaves like a file: nothing is dropped, and a `seconds=` stream ends.
    pub fn is_live(&self) -> bool {
        !matches!(self, SourceKind::File(_) | SourceKind::Synth(_))
    }

    /// The FFmpeg demuxer to force, where the URL alone does not select it.
    pub fn forced_format(&self) -> Option<&'static str> {
        match self {
            SourceKind::V4l2(_) => Some("video4linux2"),
            SourceKind::Lavfi(_) => Some("lavfi"),
            _ => None,
        }
    }
}

/// Everything a decode thread needs to know about its stream, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    pub id: Arc<str>,
    pub url: RedactedUrl,
    pub kind: SourceKind,
    /// FFmpeg input options, passed through.
    pub options: BTreeMap<String, String>,
    pub rtsp_transport: RtspTransport,
    /// Chunk rate, frames per second.
    pub fps: f64,
    /// Pace a file at its own rate.
    pub realtime: bool,
    pub open_timeout: Duration,
    pub read_timeout: Duration,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    /// Width and height frames are scaled to (RGB24).
    pub output_size: (u32, u32),
    pub decoder_threads: usize,
    pub queue_frames: usize,
    /// Attach a [`motion`] descriptor to every sampled frame (the feature kind needs one).
    pub motion: bool,
}

impl SourceSettings {
    /// Settings for one configured stream. The config has been checked, so the URL parses.
    pub fn from_config(config: &Config, stream: &StreamConfig) -> Result<SourceSettings, SourceError> {
        let ingest = &config.ingest;
        let kind = SourceKind::parse(&stream.url)?;
        let is_lavfi = matches!(kind, SourceKind::Lavfi(_));
        Ok(SourceSettings {
            id: Arc::from(stream.id.as_str()),
            url: RedactedUrl::new(stream.url.trim()),
            kind,
            options: stream.options.iter().map(|(k, v)| (k.clone(), v.to_string())).collect(),
            rtsp_transport: stream.rtsp_transport,
            fps: config.stream_fps(stream),
            // lavfi graphs generate frames as fast as they are read; a test pattern should behave like a camera.
            realtime: stream.realtime || is_lavfi,
            open_timeout: ingest.open_timeout,
            read_timeout: ingest.read_timeout,
            reconnect_initial: ingest.reconnect_initial,
            reconnect_max: ingest.reconnect_max,
            output_size: (config.model.input_size, config.model.input_size),
            decoder_threads: ingest.decoder_threads,
            queue_frames: ingest.queue_frames,
            motion: config.model.feature.is_some_and(|kind| kind.needs_motion()),
        })
    }

    /// Settings for a URL given on the command line, with the configuration's defaults.
    pub fn for_url(config: &Config, id: &str, url: &str) -> Result<SourceSettings, SourceError> {
        let stream = StreamConfig { id: id.to_string(), url: url.to_string(), ..StreamConfig::default() };
        Self::from_config(config, &stream)
    }
}

/// One sampled frame, scaled for the model.
#[derive(Clone)]
pub struct Frame {
    pub stream: Arc<str>,
    /// Sampled frames of this stream so far, counting from 0 across reconnects.
    pub index: u64,
    /// Connection number, from 0: a change means the stream was lost and came back, so what came
    /// before is no longer context for what follows.
    pub session: u64,
    /// Presentation time in seconds, in the stream's own clock.
    pub pts: f64,
    /// When the decoder produced it (monotonic).
    pub arrival: Instant,
    /// Wall-clock time of `arrival`, derived from a per-connection anchor.
    pub wall: SystemTime,
    pub width: u32,
    pub height: u32,
    /// Packed RGB24, `width * height * 3` bytes, rows top to bottom.
    pub rgb: Vec<u8>,
    /// The [`motion`] descriptor at this frame, when the settings ask for one.
    pub motion: Option<Vec<f32>>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("stream", &self.stream)
            .field("index", &self.index)
            .field("pts", &self.pts)
            .field("size", &(self.width, self.height))
            .finish_non_exhaustive()
    }
}

/// What a stream is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum StreamState {
    Connecting = 0,
    Streaming = 1,
    /// Waiting before the next reconnect attempt.
    Backoff = 2,
    /// A file reached its end, or the stream was stopped.
    Ended = 3,
    /// Gave up: a file that cannot be read.
    Failed = 4,
}

/// Per-stream counters, shared between the decode thread and whoever reports them.
#[derive(Debug, Default)]
pub struct StreamStats {
    pub frames_decoded: AtomicU64,
    pub frames_sampled: AtomicU64,
    /// Sampled frames a live source threw away because its consumer fell behind.
    pub frames_dropped: AtomicU64,
    pub decode_errors: AtomicU64,
    pub reconnects: AtomicU64,
    /// Connections of a live source that have ended (lost, stalled or closed by the server), counted once
    /// all their frames are queued: frames with a `session` below this come from a connection that is gone.
    sessions_ended: AtomicU64,
    /// Input frame rate from presentation-time spacing, as f64 bits.
    input_fps_bits: AtomicU64,
    /// Rate of sampled frames by arrival time, as f64 bits.
    sampled_fps_bits: AtomicU64,
    state: AtomicU8,
}

impl StreamStats {
    pub fn new() -> Arc<Self> {
        Arc::new(StreamStats::default())
    }

    /// How many connections have ended: every frame of a session below this has been queued.
    pub fn sessions_ended(&self) -> u64 {
        self.sessions_ended.load(Ordering::Acquire)
    }

    /// Notes that connection `session` ended, after its last frame was queued.
    pub(crate) fn end_session(&self, session: u64) {
        self.sessions_ended.fetch_max(session + 1, Ordering::Release);
    }

    pub fn input_fps(&self) -> f64 {
        f64::from_bits(self.input_fps_bits.load(Ordering::Relaxed))
    }

    pub(crate) fn set_input_fps(&self, fps: f64) {
        self.input_fps_bits.store(fps.to_bits(), Ordering::Relaxed);
    }

    pub fn sampled_fps(&self) -> f64 {
        f64::from_bits(self.sampled_fps_bits.load(Ordering::Relaxed))
    }

    pub(crate) fn set_sampled_fps(&self, fps: f64) {
        self.sampled_fps_bits.store(fps.to_bits(), Ordering::Relaxed);
    }

    /// Notes that a sampled frame left at `arrival`, updating the smoothed sampled rate.
    pub(crate) fn track_sampled(&self, arrival: Instant, last: &mut Option<(Instant, Option<f64>)>) {
        let smoothed = last.and_then(|(prev, interval)| {
            let dt = arrival.duration_since(prev).as_secs_f64();
            let s = interval.map_or(dt, |i| 0.9 * i + 0.1 * dt);
            if s > 0.0 {
                self.set_sampled_fps(1.0 / s);
            }
            Some(s)
        });
        *last = Some((arrival, smoothed));
    }

    pub fn state(&self) -> StreamState {
        match self.state.load(Ordering::Relaxed) {
            0 => StreamState::Connecting,
            1 => StreamState::Streaming,
            2 => StreamState::Backoff,
            3 => StreamState::Ended,
            _ => StreamState::Failed,
        }
    }

    pub(crate) fn set_state(&self, state: StreamState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            frames_decoded: self.frames_decoded.load(Ordering::Relaxed),
            frames_sampled: self.frames_sampled.load(Ordering::Relaxed),
            frames_dropped: self.frames_dropped.load(Ordering::Relaxed),
            decode_errors: self.decode_errors.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            input_fps: self.input_fps(),
            state: self.state(),
        }
    }
}

/// A copy of [`StreamStats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StatsSnapshot {
    pub frames_decoded: u64,
    pub frames_sampled: u64,
    pub frames_dropped: u64,
    pub decode_errors: u64,
    pub reconnects: u64,
    pub input_fps: f64,
    pub state: StreamState,
}

/// Why a source could not be read. Every variant names the (redacted) URL.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{url}: {reason}")]
    BadUrl { url: RedactedUrl, reason: String },
    #[error("cannot open {url}: {reason}")]
    Open { url: RedactedUrl, reason: String },
    #[error("cannot open {url}: no answer within {}", humantime::format_duration(*.timeout))]
    OpenTimeout { url: RedactedUrl, timeout: Duration },
    #[error("{url} has no video stream")]
    NoVideo { url: RedactedUrl },
    #[error("cannot decode {url}: {reason}")]
    Decoder { url: RedactedUrl, reason: String },
    #[error("{url}: no data within {} (stalled)", humantime::format_duration(*.timeout))]
    Stalled { url: RedactedUrl, timeout: Duration },
    #[error("{url}: read failed: {reason}")]
    Read { url: RedactedUrl, reason: String },
}
