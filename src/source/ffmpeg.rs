//! The one module that talks to FFmpeg: opening an input under a deadline, demuxing and decoding its
//! video, sampling by PTS and scaling kept frames to RGB at the model's size, and routing FFmpeg's own
//! log lines into tracing.
//!
//! Every blocking FFmpeg call runs under an interrupt callback that FFmpeg polls while it waits on a
//! socket: it aborts the call once the current deadline passes or the stream is stopped, so a camera that
//! accepts a connection and then sends nothing cannot hang the decode thread.

use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

use ffmpeg_next as ff;
use ff::ffi;

use super::motion::MotionTracker;
use super::sampler::{Decision, Ratio, Sampler};
use super::{Frame, SourceError, SourceKind, SourceSettings, StreamState, StreamStats};
use crate::clock::WallAnchor;
use crate::config::RtspTransport;
use crate::shutdown::Shutdown;

/// Consecutive demuxer errors after which a connection is given up (a live source then reconnects).
const MAX_CONSECUTIVE_READ_ERRORS: u32 = 32;
/// How long closing a connection may block (an RTSP TEARDOWN to a dead camera).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Initialises FFmpeg once per process: devices (V4L2, lavfi), networking and the log bridge.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Err(err) = ff::init() {
            tracing::error!("FFmpeg failed to initialise: {err}");
        }
        ff::device::register_all();
        unsafe {
            ffi::avformat_network_init();
            ffi::av_log_set_level(ffmpeg_log_level());
            ffi::av_log_set_callback(Some(log_bridge));
        }
    });
}

/// What an opened input carries.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StreamInfo {
    /// Demuxer, e.g. `avi`, `mov,mp4,m4a,3gp,3g2,mj2`, `rtsp`.
    pub format: String,
    pub codec: String,
    pub width: u32,
    pub height: u32,
    /// The container's average frame rate, when it declares one.
    pub declared_fps: Option<f64>,
    /// Duration in seconds, when known (files).
    pub duration: Option<f64>,
}

/// What the frame callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// How a connection ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The input ended (a file's end, or a live server closing the stream).
    Eof,
    /// The stream was asked to stop, or the callback said stop.
    Stopped,
}

/// State that outlives one connection of a stream.
pub struct StreamCursor {
    pub sampler: Sampler,
    /// Connections made so far; stamped on frames as their session.
    pub session: u64,
    /// The next sampled frame's index.
    pub next_index: u64,
}

impl StreamCursor {
    pub fn new(fps: f64) -> Self {
        StreamCursor { sampler: Sampler::new(fps), session: 0, next_index: 0 }
    }
}

/// Opens `settings`' input (or starts the synth:// world), decodes it to its end (or until stopped), and calls `on_frame` with each
/// sampled, scaled frame. `on_open` sees the stream description once the input is open.
pub fn run_session(
    settings: &SourceSettings,
    stats: &StreamStats,
    shutdown: &Shutdown,
    cursor: &mut StreamCursor,
    on_open: &mut dyn FnMut(&StreamInfo),
    on_frame: &mut dyn FnMut(Frame) -> Flow,
) -> Result<SessionEnd, SourceError> {
    if let SourceKind::Synth(synth) = &settings.kind {
        return super::synth::run_session(synth, settings, stats, shutdown, cursor, on_open, on_frame);
    }
    init();
    let _log_scope = LogScope::enter(&settings.id);
    let deadline = Deadline::new();
    stats.set_state(StreamState::Connecting);
    let mut input = match open_input(settings, shutdown, &deadline)? {
        Some(input) => input,
        None => return Ok(SessionEnd::Stopped),
    };
    let result = decode(settings, stats, shutdown, cursor, &deadline, &mut input, on_open, on_frame);
    deadline.arm(CLOSE_TIMEOUT);
    drop(input);
    result
}

/// What an opened input carries, from its container, its best video stream and that stream's decoder.
fn describe(input: &ff::format::context::Input, stream: &ff::format::stream::Stream, decoder: &ff::decoder::Video) -> StreamInfo {
    let declared = stream.avg_frame_rate();
    StreamInfo {
        format: input.format().name().to_string(),
        // The codec's name as ffprobe shows it (msmpeg4v3), not the decoder's (msmpeg4).
        codec: decoder.id().name().to_string(),
        width: decoder.width(),
        height: decoder.height(),
        declared_fps: (declared.numerator() > 0 && declared.denominator() > 0).then(|| f64::from(declared)),
        duration: (input.duration() > 0).then(|| input.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE)),
    }
}

/// Describes a media file without decoding it (size, declared rate, duration): what `dataset` needs
/// before hours of work start.
pub fn file_info(path: &std::path::Path) -> Result<StreamInfo, String> {
    init();
    let input = ff::format::input(path).map_err(|e| first_lower(&e.to_string()))?;
    let stream = input.streams().best(ff::media::Type::Video).ok_or("has no video stream")?;
    let decoder = ff::codec::context::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(|e| first_lower(&e.to_string()))?;
    Ok(describe(&input, &stream, &decoder))
}

/// Decodes a finite source (a file) from start to end as fast as it decodes, sampled to `fps` and
/// scaled to `size`, with the daemon's own ingest; returns the stream's counters.
pub fn decode_offline(
    config: &crate::config::Config,
    id: &str,
    url: &str,
    fps: f64,
    size: (u32, u32),
    on_open: &mut dyn FnMut(&StreamInfo),
    on_frame: &mut dyn FnMut(Frame) -> Flow,
) -> Result<Arc<StreamStats>, SourceError> {
    let mut settings = SourceSettings::for_url(config, id, url)?;
    settings.fps = fps;
    settings.output_size = size;
    settings.realtime = false;
    let stats = StreamStats::new();
    run_session(&settings, &stats, &Shutdown::new(), &mut StreamCursor::new(fps), on_open, on_frame)?;
    Ok(stats)
}

/// A deadline FFmpeg's interrupt callback checks, as nanoseconds since a process-wide origin.
#[derive(Clone)]
struct Deadline(Arc<AtomicI64>);

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn nanos_now() -> i64 {
    origin().elapsed().as_nanos() as i64
}

impl Deadline {
    fn new() -> Self {
        Deadline(Arc::new(AtomicI64::new(i64::MAX)))
    }

    fn arm(&self, within: Duration) {
        self.0.store(nanos_now().saturating_add(within.as_nanos() as i64), Ordering::SeqCst);
    }

    fn passed(&self) -> bool {
        nanos_now() > self.0.load(Ordering::SeqCst)
    }
}

/// FFmpeg options for the input, ours first so the user's `options` win.
fn input_options(settings: &SourceSettings) -> ff::Dictionary<'static> {
    let mut dict = ff::Dictionary::new();
    let micros = settings.read_timeout.as_micros().to_string();
    match settings.kind {
        SourceKind::Rtsp => {
            dict.set("rtsp_transport", settings.rtsp_transport.as_ffmpeg());
            // Socket I/O timeout of the RTSP demuxer, in microseconds.
            dict.set("timeout", &micros);
            // A camera's SDP already names the codec and size; FFmpeg's default stream probing then
            // only delays every (re)connect, by ~2.7 s against a loopback H.264 server (3.0 s → 1.0 s
            // measured with ffprobe). Half a second still covers cameras whose SDP omits them.
            dict.set("analyzeduration", "500000");
            if settings.rtsp_transport == RtspTransport::Udp {
                // Reorder a little instead of decoding holes when UDP packets arrive out of order.
                dict.set("reorder_queue_size", "64");
            }
        }
        SourceKind::Network => {
            dict.set("rw_timeout", &micros);
        }
        _ => {}
    }
    for (key, value) in &settings.options {
        dict.set(key, value);
    }
    dict
}

/// Opens the input under the open deadline. `Ok(None)` means the stream was stopped meanwhile.
fn open_input(settings: &SourceSettings, shutdown: &Shutdown, deadline: &Deadline) -> Result<Option<ff::format::context::Input>, SourceError> {
    let url = &settings.url;
    let target = match &settings.kind {
        SourceKind::File(path) => {
            if !path.exists() {
                return Err(SourceError::Open { url: url.clone(), reason: "no such file".into() });
            }
            path.display().to_string()
        }
        SourceKind::V4l2(device) => device.display().to_string(),
        SourceKind::Lavfi(graph) => graph.clone(),
        SourceKind::Rtsp | SourceKind::Network => url.expose().to_string(),
        SourceKind::Synth(_) => return Err(SourceError::Open { url: url.clone(), reason: "synth:// is generated, not opened with FFmpeg".into() }),
    };
    let c_target = CString::new(target).map_err(|_| SourceError::BadUrl { url: url.clone(), reason: "contains a NUL byte".into() })?;
    let format = match settings.kind.forced_format() {
        Some(name) => {
            let c_name = CString::new(name).expect("static name");
            let fmt = unsafe { ffi::av_find_input_format(c_name.as_ptr()) };
            if fmt.is_null() {
                return Err(SourceError::Open { url: url.clone(), reason: format!("this FFmpeg has no `{name}` input device") });
            }
            fmt
        }
        None => std::ptr::null(),
    };

    let interrupt = {
        let deadline = deadline.clone();
        let shutdown = shutdown.clone();
        ff::util::interrupt::new(Box::new(move || shutdown.is_stopped() || deadline.passed()))
    };
    deadline.arm(settings.open_timeout);
    let options = input_options(settings);
    unsafe {
        let mut ctx = ffi::avformat_alloc_context();
        if ctx.is_null() {
            return Err(SourceError::Open { url: url.clone(), reason: "out of memory".into() });
        }
        (*ctx).interrupt_callback = interrupt.interrupt;
        let mut opts = options.disown();
        let opened = ffi::avformat_open_input(&mut ctx, c_target.as_ptr(), format, &mut opts);
        let unused = ff::Dictionary::own(opts);
        if opened < 0 {
            // avformat_open_input frees the context on failure.
            return Err(open_error(settings, shutdown, deadline, ff::Error::from(opened)));
        }
        for (key, value) in unused.iter() {
            tracing::warn!(stream = %settings.id, "FFmpeg did not use option {key}={value}");
        }
        let found = ffi::avformat_find_stream_info(ctx, std::ptr::null_mut());
        if found < 0 {
            let err = open_error(settings, shutdown, deadline, ff::Error::from(found));
            deadline.arm(CLOSE_TIMEOUT);
            ffi::avformat_close_input(&mut ctx);
            return Err(err);
        }
        if shutdown.is_stopped() {
            deadline.arm(CLOSE_TIMEOUT);
            ffi::avformat_close_input(&mut ctx);
            return Ok(None);
        }
        Ok(Some(ff::format::context::Input::wrap_with_interrupt(ctx, interrupt.guard)))
    }
}

fn open_error(settings: &SourceSettings, shutdown: &Shutdown, deadline: &Deadline, err: ff::Error) -> SourceError {
    let url = settings.url.clone();
    if matches!(err, ff::Error::Exit) && !shutdown.is_stopped() && deadline.passed() {
        return SourceError::OpenTimeout { url, timeout: settings.open_timeout };
    }
    let reason = match err {
        ff::Error::InvalidData => "not a media file FFmpeg can read (invalid data)".to_string(),
        ff::Error::Exit => "stopped".to_string(),
        ff::Error::HttpUnauthorized => "the server refused the credentials (401 Unauthorized)".to_string(),
        ff::Error::HttpForbidden => "the server refused access (403 Forbidden)".to_string(),
        ff::Error::HttpNotFound => "the server has no such stream (404 Not Found)".to_string(),
        other => first_lower(&other.to_string()),
    };
    SourceError::Open { url, reason }
}

fn first_lower(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[allow(clippy::too_many_arguments)]
fn decode(
    settings: &SourceSettings,
    stats: &StreamStats,
    shutdown: &Shutdown,
    cursor: &mut StreamCursor,
    deadline: &Deadline,
    input: &mut ff::format::context::Input,
    on_open: &mut dyn FnMut(&StreamInfo),
    on_frame: &mut dyn FnMut(Frame) -> Flow,
) -> Result<SessionEnd, SourceError> {
    let url = &settings.url;
    let stream = input.streams().best(ff::media::Type::Video).ok_or_else(|| SourceError::NoVideo { url: url.clone() })?;
    let stream_index = stream.index();
    let time_base = stream.time_base();
    let time_base = Ratio::new(time_base.numerator() as i64, time_base.denominator().max(1) as i64);
    let mut codec_ctx = ff::codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| SourceError::Decoder { url: url.clone(), reason: first_lower(&e.to_string()) })?;
    // Frame threading adds a frame of latency per thread: only files can afford it.
    let kind = if settings.kind.is_live() { ff::codec::threading::Type::Slice } else { ff::codec::threading::Type::Frame };
    codec_ctx.set_threading(ff::codec::threading::Config { kind, count: settings.decoder_threads, ..Default::default() });
    let mut decoder = codec_ctx.decoder().video().map_err(|e| SourceError::Decoder { url: url.clone(), reason: first_lower(&e.to_string()) })?;
    let info = describe(input, &stream, &decoder);
    let declared_fps = info.declared_fps;
    if settings.kind.is_live() {
        tracing::info!(stream = %settings.id, url = %url, codec = %info.codec, width = info.width, height = info.height, "connected");
    } else {
        tracing::debug!(stream = %settings.id, url = %url, codec = %info.codec, width = info.width, height = info.height, "opened");
    }
    on_open(&info);
    stats.set_state(StreamState::Streaming);

    let anchor = WallAnchor::now();
    let mut state = DecodeState {
        settings,
        stats,
        shutdown,
        time_base,
        frame_period_ticks: declared_fps.map(|fps| ((time_base.den as f64) / (time_base.num as f64 * fps)).round() as i64).filter(|&t| t > 0).unwrap_or(1),
        anchor,
        scaler: None,
        motion: settings.motion.then(MotionTracker::new),
        last_ts: None,
        pts_interval: None,
        pace: None,
        last_sample: None,
    };
    let mut packet = ff::Packet::empty();
    let mut consecutive_errors = 0u32;
    loop {
        if shutdown.is_stopped() {
            return Ok(SessionEnd::Stopped);
        }
        deadline.arm(settings.read_timeout);
        match packet.read(input) {
            Ok(()) => consecutive_errors = 0,
            Err(ff::Error::Eof) => break,
            Err(ff::Error::Exit) => {
                if shutdown.is_stopped() {
                    return Ok(SessionEnd::Stopped);
                }
                return Err(SourceError::Stalled { url: url.clone(), timeout: settings.read_timeout });
            }
            Err(err) => {
                stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                consecutive_errors += 1;
                if consecutive_errors >= MAX_CONSECUTIVE_READ_ERRORS || !matches!(err, ff::Error::InvalidData) {
                    return Err(SourceError::Read { url: url.clone(), reason: first_lower(&err.to_string()) });
                }
                continue;
            }
        }
        if packet.stream() != stream_index {
            continue;
        }
        if decoder.send_packet(&packet).is_err() {
            // A corrupt packet: the decoder resynchronises on the next key frame.
            stats.decode_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if state.drain(&mut decoder, cursor, on_frame)? == Flow::Stop {
            return Ok(SessionEnd::Stopped);
        }
    }
    // Flush the frames the decoder still holds (frame threading keeps several).
    if decoder.send_eof().is_ok() && state.drain(&mut decoder, cursor, on_frame)? == Flow::Stop {
        return Ok(SessionEnd::Stopped);
    }
    Ok(SessionEnd::Eof)
}

struct DecodeState<'a> {
    settings: &'a SourceSettings,
    stats: &'a StreamStats,
    shutdown: &'a Shutdown,
    time_base: Ratio,
    /// Ticks between frames at the declared rate, to stamp frames that come without a timestamp.
    frame_period_ticks: i64,
    anchor: WallAnchor,
    scaler: Option<Scaler>,
    /// Thumbnails of every decoded frame, when sampled frames carry a motion descriptor.
    motion: Option<MotionTracker>,
    last_ts: Option<i64>,
    /// Smoothed spacing of consecutive timestamps, seconds.
    pts_interval: Option<f64>,
    /// (monotonic start, first pts) for real-time pacing.
    pace: Option<(Instant, f64)>,
    /// Arrival of the previous sampled frame and the smoothed spacing of sampled arrivals, seconds.
    last_sample: Option<(Instant, Option<f64>)>,
}

impl DecodeState<'_> {
    /// Takes every frame the decoder has ready.
    fn drain(&mut self, decoder: &mut ff::decoder::Video, cursor: &mut StreamCursor, on_frame: &mut dyn FnMut(Frame) -> Flow) -> Result<Flow, SourceError> {
        let mut decoded = ff::frame::Video::empty();
        loop {
            match decoder.receive_frame(&mut decoded) {
                Ok(()) => {}
                Err(ff::Error::Eof) => return Ok(Flow::Continue),
                Err(ff::Error::Other { errno }) if errno == libc::EAGAIN => return Ok(Flow::Continue),
                Err(_) => {
                    self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    return Ok(Flow::Continue);
                }
            }
            self.stats.frames_decoded.fetch_add(1, Ordering::Relaxed);
            // Concealed damage: the decoder returned a picture but flagged it.
            if decoded.is_corrupt() || unsafe { (*decoded.as_ptr()).decode_error_flags } != 0 {
                self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
            }
            let ts = match decoded.timestamp() {
                Some(ts) => ts,
                None => self.last_ts.map_or(0, |t| t + self.frame_period_ticks),
            };
            self.track_rate(ts);
            let pts = ts as f64 * self.time_base.num as f64 / self.time_base.den as f64;
            if let Some(motion) = self.motion.as_mut() {
                motion
                    .observe(&decoded, pts)
                    .map_err(|e| SourceError::Decoder { url: self.settings.url.clone(), reason: format!("cannot make a motion thumbnail: {e}") })?;
            }
            if let Decision::Keep { .. } = cursor.sampler.offer(ts, self.time_base) {
                if self.settings.realtime && self.wait_for_presentation(pts) {
                    return Ok(Flow::Stop);
                }
                let mut frame = self.scale(&decoded, pts, cursor.next_index, cursor.session)?;
                frame.motion = self.motion.as_ref().map(MotionTracker::describe);
                self.stats.track_sampled(frame.arrival, &mut self.last_sample);
                cursor.next_index += 1;
                self.stats.frames_sampled.fetch_add(1, Ordering::Relaxed);
                if on_frame(frame) == Flow::Stop {
                    return Ok(Flow::Stop);
                }
            }
        }
    }

    fn track_rate(&mut self, ts: i64) {
        if let Some(last) = self.last_ts {
            let dt = (ts - last) as f64 * self.time_base.num as f64 / self.time_base.den as f64;
            if dt > 0.0 && dt < 5.0 {
                let smoothed = match self.pts_interval {
                    Some(prev) => 0.9 * prev + 0.1 * dt,
                    None => dt,
                };
                self.pts_interval = Some(smoothed);
                self.stats.set_input_fps(1.0 / smoothed);
            }
        }
        self.last_ts = Some(ts);
    }

    /// Sleeps until `pts` is due at real-time pace; returns true if stopped meanwhile.
    fn wait_for_presentation(&mut self, pts: f64) -> bool {
        let (start, first) = *self.pace.get_or_insert((Instant::now(), pts));
        let due = start + Duration::from_secs_f64((pts - first).max(0.0));
        let now = Instant::now();
        // A big jump ahead (a gap in the file) is not slept through whole.
        if due > now + Duration::from_secs(5) {
            self.pace = Some((now, pts));
            return self.shutdown.is_stopped();
        }
        due > now && self.shutdown.sleep(due - now)
    }

    fn scale(&mut self, decoded: &ff::frame::Video, pts: f64, index: u64, session: u64) -> Result<Frame, SourceError> {
        let (out_w, out_h) = self.settings.output_size;
        let key = (decoded.format(), decoded.width(), decoded.height());
        // Cameras change resolution mid-stream (a profile switch); rebuild the scaler when they do.
        if self.scaler.as_ref().is_none_or(|s| s.key != key) {
            let context = ff::software::scaling::Context::get(key.0, key.1, key.2, ff::format::Pixel::RGB24, out_w, out_h, ff::software::scaling::Flags::BILINEAR)
                .map_err(|e| SourceError::Decoder { url: self.settings.url.clone(), reason: format!("cannot scale {}x{} {:?}: {e}", key.1, key.2, key.0) })?;
            self.scaler = Some(Scaler { key, context, output: ff::frame::Video::empty() });
        }
        let scaler = self.scaler.as_mut().expect("just set");
        scaler
            .context
            .run(decoded, &mut scaler.output)
            .map_err(|e| SourceError::Decoder { url: self.settings.url.clone(), reason: format!("scaling failed: {e}") })?;
        let stride = scaler.output.stride(0);
        let row = out_w as usize * 3;
        let data = scaler.output.data(0);
        let mut rgb = Vec::with_capacity(row * out_h as usize);
        for y in 0..out_h as usize {
            rgb.extend_from_slice(&data[y * stride..y * stride + row]);
        }
        let arrival = Instant::now();
        Ok(Frame { stream: self.settings.id.clone(), index, session, pts, arrival, wall: self.anchor.wall_time(arrival), width: out_w, height: out_h, rgb, motion: None })
    }
}

struct Scaler {
    key: (ff::format::Pixel, u32, u32),
    context: ff::software::scaling::Context,
    output: ff::frame::Video,
}

// ---- FFmpeg's log, through tracing ----

thread_local! {
    /// The stream a decode thread serves, so FFmpeg's messages can name it.
    static CURRENT_STREAM: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
}

/// Names the current thread's stream in FFmpeg's log lines while alive.
struct LogScope;

impl LogScope {
    fn enter(id: &Arc<str>) -> LogScope {
        CURRENT_STREAM.with(|s| *s.borrow_mut() = Some(id.clone()));
        LogScope
    }
}

impl Drop for LogScope {
    fn drop(&mut self) {
        CURRENT_STREAM.with(|s| *s.borrow_mut() = None);
    }
}

/// FFmpeg formats only the levels tracing would show for the `ffmpeg` target.
fn ffmpeg_log_level() -> libc::c_int {
    if tracing::enabled!(target: "ffmpeg", tracing::Level::DEBUG) {
        ffi::AV_LOG_VERBOSE
    } else if tracing::enabled!(target: "ffmpeg", tracing::Level::INFO) {
        ffi::AV_LOG_INFO
    } else if tracing::enabled!(target: "ffmpeg", tracing::Level::WARN) {
        ffi::AV_LOG_ERROR
    } else {
        ffi::AV_LOG_FATAL
    }
}

unsafe extern "C" fn log_bridge(avcl: *mut libc::c_void, level: libc::c_int, fmt: *const libc::c_char, args: *mut ffi::__va_list_tag) {
    if level > unsafe { ffi::av_log_get_level() } {
        return;
    }
    let mut line = [0 as libc::c_char; 1024];
    let mut print_prefix: libc::c_int = 1;
    unsafe { ffi::av_log_format_line2(avcl, level, fmt, args, line.as_mut_ptr(), line.len() as libc::c_int, &mut print_prefix) };
    let text = unsafe { CStr::from_ptr(line.as_ptr()) }.to_string_lossy();
    let text = crate::redact::redact_text(text.trim_end());
    if text.is_empty() {
        return;
    }
    let stream = CURRENT_STREAM.with(|s| s.borrow().clone());
    let stream = stream.as_deref().unwrap_or("-");
    // FFmpeg's "errors" are mostly recoverable damage in the input: warnings for us.
    match level {
        l if l <= ffi::AV_LOG_FATAL => tracing::error!(target: "ffmpeg", stream, "{text}"),
        l if l <= ffi::AV_LOG_WARNING => tracing::warn!(target: "ffmpeg", stream, "{text}"),
        l if l <= ffi::AV_LOG_INFO => tracing::info!(target: "ffmpeg", stream, "{text}"),
        _ => tracing::debug!(target: "ffmpeg", stream, "{text}"),
    }
}
