//! `actiond probe URL`: opens one source exactly as the daemon would (same options, timeouts, sampling
//! and scaling), decodes it for a while and reports what it carries. One connection, no reconnects:
//! what fails is reported.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context as _;

use crate::cli::UsageError;
use crate::config::{Config, OptionValue, RtspTransport};
use crate::shutdown::Shutdown;
use crate::source::ffmpeg::{run_session, Flow, StreamCursor, StreamInfo};
use crate::source::{SourceSettings, StreamStats};

/// Live sources are probed this long unless --seconds says otherwise.
const DEFAULT_LIVE_SECONDS: f64 = 10.0;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to open: a file, rtsp://[user:pass@]host/path, /dev/videoN, or lavfi:GRAPH
    /// (e.g. lavfi:testsrc2=size=640x480:rate=25).
    pub url: String,

    /// Decode this many seconds (media time for files, wall time for live sources), then stop.
    /// Files default to their end, live sources to 10 s.
    #[arg(long, value_name = "N")]
    pub seconds: Option<f64>,

    /// Chunk rate to sample at (frames per second).
    #[arg(long, value_name = "F")]
    pub fps: Option<f64>,

    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Also list the presentation time of every sampled frame.
    #[arg(long)]
    pub timestamps: bool,

    /// An FFmpeg input option, repeatable: -o input_format=mjpeg -o video_size=1280x720.
    #[arg(short = 'o', long = "option", value_name = "KEY=VALUE")]
    pub options: Vec<String>,

    /// RTSP transport.
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    pub rtsp_transport: TransportArg,

    /// Take timeouts, input size and defaults from this pipeline file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TransportArg {
    Tcp,
    Udp,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    source: String,
    format: String,
    codec: String,
    width: u32,
    height: u32,
    /// Measured from timestamp spacing.
    input_fps: f64,
    declared_fps: Option<f64>,
    duration: Option<f64>,
    frames_decoded: u64,
    frames_sampled: u64,
    decode_errors: u64,
    fps: f64,
    output_size: [u32; 2],
    first_pts: Option<f64>,
    last_pts: Option<f64>,
    elapsed_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    sampled_pts: Option<Vec<f64>>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(args.config.as_deref())?;
    let mut settings = SourceSettings::for_url(&config, "probe", &args.url).map_err(|e| UsageError(e.to_string()))?;
    if let Some(fps) = args.fps {
        if !(fps > 0.0 && fps <= 60.0) {
            return Err(UsageError(format!("--fps must be above 0 and at most 60, got {fps}")).into());
        }
        settings.fps = fps;
    }
    if let Some(seconds) = args.seconds {
        if !(seconds > 0.0) {
            return Err(UsageError(format!("--seconds must be above 0, got {seconds}")).into());
        }
    }
    for option in &args.options {
        let (key, value) = option.split_once('=').ok_or_else(|| UsageError(format!("--option {option:?} is not KEY=VALUE")))?;
        settings.options.insert(key.to_string(), OptionValue::Text(value.to_string()).to_string());
    }
    settings.rtsp_transport = match args.rtsp_transport {
        TransportArg::Tcp => RtspTransport::Tcp,
        TransportArg::Udp => RtspTransport::Udp,
    };
    let live = settings.kind.is_live();
    let limit = args.seconds.or(live.then_some(DEFAULT_LIVE_SECONDS));

    let stats = StreamStats::new();
    let shutdown = Shutdown::new();
    let mut cursor = StreamCursor::new(settings.fps);
    let mut info: Option<StreamInfo> = None;
    let mut pts_seen: Vec<f64> = Vec::new();
    let started = Instant::now();
    let mut first_frame_at: Option<Instant> = None;
    run_session(&settings, &stats, &shutdown, &mut cursor, &mut |i| info = Some(i.clone()), &mut |frame| {
        let first = *first_frame_at.get_or_insert_with(Instant::now);
        // Media time decides, so a paced source gives the same count on a fast or a loaded machine; a live
        // source whose timestamps crawl is still cut off by the wall clock a second later.
        let media = frame.pts - pts_seen.first().copied().unwrap_or(frame.pts);
        let wall_over = |l: f64| live && first.elapsed().as_secs_f64() >= l + 1.0;
        if limit.is_some_and(|l| media >= l || wall_over(l)) {
            return Flow::Stop;
        }
        pts_seen.push(frame.pts);
        Flow::Continue
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let info = info.context("the source opened but reported no video stream")?;
    let snapshot = stats.snapshot();
    if snapshot.frames_decoded == 0 {
        anyhow::bail!("{}: opened, but no frame could be decoded ({} decode errors)", settings.url, snapshot.decode_errors);
    }
    let report = Report {
        source: settings.url.to_string(),
        format: info.format,
        codec: info.codec,
        width: info.width,
        height: info.height,
        input_fps: round3(stats.input_fps()),
        declared_fps: info.declared_fps.map(round3),
        duration: info.duration.map(round3),
        frames_decoded: snapshot.frames_decoded,
        frames_sampled: stats.frames_sampled.load(Ordering::Relaxed).min(pts_seen.len() as u64),
        decode_errors: snapshot.decode_errors,
        fps: settings.fps,
        output_size: [settings.output_size.0, settings.output_size.1],
        first_pts: pts_seen.first().copied(),
        last_pts: pts_seen.last().copied(),
        elapsed_s: round3(elapsed),
        sampled_pts: args.timestamps.then(|| pts_seen.clone()),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn print_table(r: &Report) {
    let declared = r.declared_fps.map(|f| format!(" (declared {f:.2})")).unwrap_or_default();
    println!("source      {}", r.source);
    println!("format      {}", r.format);
    println!("codec       {} {}x{}", r.codec, r.width, r.height);
    println!("input fps   {:.2}{declared}", r.input_fps);
    if let Some(d) = r.duration {
        println!("duration    {d:.2} s");
    }
    println!("decoded     {} frames", r.frames_decoded);
    println!("sampled     {} frames at {} fps, scaled to {}x{} RGB", r.frames_sampled, r.fps, r.output_size[0], r.output_size[1]);
    if let (Some(a), Some(b)) = (r.first_pts, r.last_pts) {
        println!("pts         {a:.3} s … {b:.3} s");
    }
    println!("errors      {} decode errors", r.decode_errors);
    println!("elapsed     {:.2} s ({:.0} frames/s decoded)", r.elapsed_s, r.frames_decoded as f64 / r.elapsed_s.max(1e-9));
    if let Some(pts) = &r.sampled_pts {
        let shown: Vec<String> = pts.iter().map(|p| format!("{p:.3}")).collect();
        println!("sampled at  {}", shown.join(" "));
    }
}
