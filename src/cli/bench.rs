//! `actiond bench …`: speed of a stage, beside its reference measured in the same run (the machine is
//! shared and noisy, so only same-session ratios mean anything).

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::Context as _;

use crate::config::Config;
use crate::shutdown::Shutdown;
use crate::source::ffmpeg::{run_session, Flow, StreamCursor};
use crate::source::{SourceSettings, StreamStats};

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Decode + sample + scale throughput of files, against
    /// `ffmpeg -i FILE -vf fps=F,scale=S:S -f null -`.
    Ingest(IngestArgs),
    /// OadTR detector latency (batch 1) and per-window cost (batch 16), small and official-default
    /// configs, beside the official PyTorch figures.
    Oadtr(super::bench_oadtr::Args),
    /// Backbone speed (ms per frame, GFLOP/s) at batch 1 and 4, optionally beside onnxruntime.
    Backbone(super::bench_backbone::Args),
    /// Render speed of the synthetic action world, against FFmpeg's testsrc2 generator.
    Synth(crate::cli::synth::BenchArgs),
}

pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Ingest(args) => ingest(args),
        BenchCommand::Oadtr(args) => super::bench_oadtr::run(args),
        BenchCommand::Backbone(args) => super::bench_backbone::run(args),
        BenchCommand::Synth(args) => crate::cli::synth::bench(args),
    }
}

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Video files to decode.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Chunk rate.
    #[arg(long, default_value_t = 4.0)]
    pub fps: f64,
    /// Output size (square), as the model input.
    #[arg(long, default_value_t = 224)]
    pub size: u32,
    /// Timed runs per file and side; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Print one JSON object per file.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
struct IngestRow {
    file: String,
    frames_decoded: u64,
    frames_sampled: u64,
    actiond_ms: f64,
    actiond_fps: f64,
    ffmpeg_ms: Option<f64>,
    ffmpeg_fps: Option<f64>,
    /// actiond throughput over ffmpeg's (above 1 is faster).
    ratio: Option<f64>,
    runs: usize,
}

fn ingest(args: IngestArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(None)?;
    config.model.input_size = args.size;
    let runs = args.runs.max(1);
    let mut rows = Vec::new();
    for file in &args.files {
        let url = file.display().to_string();
        let mut settings = SourceSettings::for_url(&config, "bench", &url)?;
        settings.fps = args.fps;
        let mut ours = Vec::new();
        let mut counts = (0, 0);
        for _ in 0..runs {
            let stats = StreamStats::new();
            let mut cursor = StreamCursor::new(settings.fps);
            let start = Instant::now();
            run_session(&settings, &stats, &Shutdown::new(), &mut cursor, &mut |_| {}, &mut |frame| {
                std::hint::black_box(&frame.rgb);
                Flow::Continue
            })?;
            ours.push(start.elapsed().as_secs_f64() * 1000.0);
            let s = stats.snapshot();
            counts = (s.frames_decoded, s.frames_sampled);
        }
        let theirs = ffmpeg_reference(file, args.fps, args.size, runs)?;
        let actiond_ms = median(&mut ours);
        let frames = counts.0 as f64;
        let row = IngestRow {
            file: url,
            frames_decoded: counts.0,
            frames_sampled: counts.1,
            actiond_ms: round2(actiond_ms),
            actiond_fps: round2(frames / (actiond_ms / 1000.0)),
            ffmpeg_ms: theirs.map(round2),
            ffmpeg_fps: theirs.map(|ms| round2(frames / (ms / 1000.0))),
            ratio: theirs.map(|ms| round2(ms / actiond_ms)),
            runs,
        };
        if args.json {
            println!("{}", serde_json::to_string(&row)?);
        }
        rows.push(row);
    }
    if !args.json {
        println!("{:<28} {:>8} {:>8} {:>12} {:>12} {:>12} {:>12} {:>7}", "file", "decoded", "sampled", "actiond ms", "actiond f/s", "ffmpeg ms", "ffmpeg f/s", "ratio");
        for r in &rows {
            let opt = |x: Option<f64>| x.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
            let name = std::path::Path::new(&r.file).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            println!(
                "{:<28} {:>8} {:>8} {:>12.1} {:>12.1} {:>12} {:>12} {:>7}",
                name, r.frames_decoded, r.frames_sampled, r.actiond_ms, r.actiond_fps, opt(r.ffmpeg_ms), opt(r.ffmpeg_fps), opt(r.ratio)
            );
        }
        println!("ratio = actiond throughput / ffmpeg throughput, medians of {runs} runs each, same session");
    }
    Ok(ExitCode::SUCCESS)
}

/// Median wall time of the ffmpeg CLI doing the same job, or None when ffmpeg is not installed.
fn ffmpeg_reference(file: &std::path::Path, fps: f64, size: u32, runs: usize) -> anyhow::Result<Option<f64>> {
    let filter = format!("fps={fps},scale={size}:{size}");
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let status = match Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
            .arg(file)
            .args(["-vf", &filter, "-f", "null", "-"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(status) => status,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!("ffmpeg is not on PATH: no reference to compare with");
                return Ok(None);
            }
            Err(e) => return Err(e).context("cannot run ffmpeg"),
        };
        anyhow::ensure!(status.success(), "ffmpeg failed on {}", file.display());
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(Some(median(&mut times)))
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
