//! `actiond synth`: writes a labelled training set of synthetic action videos (see
//! [`crate::synth::dataset`] for the layout), and optionally a contact sheet of what each class
//! looks like.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::UsageError;
use crate::synth::background::Footage;
use crate::synth::dataset::{self, DatasetSpec};
use crate::synth::{sheet, SynthError};

/// Background footage used when --footage is not given (if it is there).
use crate::synth::background::DEFAULT_FOOTAGE;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output folder: videos/, annotations/, target_perframe/, labels.txt, synth.json.
    #[arg(long, value_name = "DIR", required_unless_present = "contact_sheet")]
    pub out: Option<PathBuf>,

    /// Number of videos.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub videos: usize,

    /// Seed of the set; video i gets its own world seeded from (seed, i). Same seed, same bytes.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,

    /// Length of each video in seconds.
    #[arg(long, value_name = "L", default_value_t = 60.0)]
    pub seconds: f64,

    /// Frame rate of the videos.
    #[arg(long, value_name = "F", default_value_t = 12.0)]
    pub fps: f64,

    /// Frame size, WIDTHxHEIGHT (even numbers).
    #[arg(long, value_name = "WxH", default_value = "320x240", value_parser = parse_size)]
    pub size: (u32, u32),

    /// Rate of the target_perframe rows (the detector's chunk rate).
    #[arg(long, value_name = "F", default_value_t = 4.0)]
    pub chunk_fps: f64,

    /// x264 quality (constant rate factor, lower is better).
    #[arg(long, default_value_t = 20)]
    pub crf: u32,

    /// Real footage whose stills serve as backdrops for about half of the videos
    /// (default: assets/media/bikes.mp4 when present).
    #[arg(long, value_name = "FILE", conflicts_with = "no_footage")]
    pub footage: Option<PathBuf>,

    /// Procedural backdrops only.
    #[arg(long)]
    pub no_footage: bool,

    /// Also write a contact sheet PNG: every class, its lead-in and idle frames.
    #[arg(long, value_name = "PNG")]
    pub contact_sheet: Option<PathBuf>,
}

pub fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(|| format!("`{text}` is not WIDTHxHEIGHT, e.g. 320x240"))?;
    let parse = |s: &str| s.trim().parse::<u32>().map_err(|_| format!("`{text}` is not WIDTHxHEIGHT, e.g. 320x240"));
    Ok((parse(w)?, parse(h)?))
}

fn usage(err: SynthError) -> anyhow::Error {
    match err {
        SynthError::Settings(message) => UsageError(message).into(),
        other => other.into(),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (width, height) = args.size;
    let spec_for = |footage: Footage, out: PathBuf| DatasetSpec {
        out,
        videos: args.videos,
        seed: args.seed,
        seconds: args.seconds,
        fps: args.fps,
        width,
        height,
        chunk_fps: args.chunk_fps,
        crf: args.crf,
        footage,
    };
    // Check the arguments before the (slow) footage decode.
    dataset::check(&spec_for(Footage::none(), PathBuf::new())).map_err(usage)?;

    let footage = if args.no_footage {
        Footage::none()
    } else {
        match &args.footage {
            Some(path) => Footage::load(path, width, height, 2.0, 40).map_err(usage)?,
            None if std::path::Path::new(DEFAULT_FOOTAGE).exists() => Footage::load(DEFAULT_FOOTAGE.as_ref(), width, height, 2.0, 40)?,
            None => {
                tracing::warn!("{DEFAULT_FOOTAGE} not found: procedural backdrops only (give --footage FILE to use real footage)");
                Footage::none()
            }
        }
    };

    if let Some(out) = &args.out {
        let spec = spec_for(footage.clone(), out.clone());
        let total = dataset::frames_per_video(&spec) * spec.videos as u64;
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} frames, {per_sec}, eta {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_message("rendering");
        dataset::write(&spec, &mut || bar.inc(1)).map_err(usage).with_context(|| format!("writing the synthetic set to {}", out.display()))?;
        bar.finish_and_clear();
        println!(
            "wrote {} videos of {} s ({}x{} at {} fps) to {}",
            spec.videos,
            spec.seconds,
            width,
            height,
            spec.fps,
            out.display()
        );
    }
    if let Some(path) = &args.contact_sheet {
        // The sheet's tiles have their own size: decode the footage again at that size.
        let sheet_footage = match (&args.footage, args.no_footage) {
            (_, true) => Footage::none(),
            (Some(path), false) => Footage::load(path, 192, 144, 2.0, 40)?,
            (None, false) if std::path::Path::new(DEFAULT_FOOTAGE).exists() => Footage::load(DEFAULT_FOOTAGE.as_ref(), 192, 144, 2.0, 40)?,
            (None, false) => Footage::none(),
        };
        let canvas = sheet::render(args.seed, 192, 144, args.fps, &sheet_footage);
        sheet::write_png(path, &canvas)?;
        println!("wrote contact sheet {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `actiond bench synth`: render speed of the synthetic world, beside FFmpeg's own synthetic source.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Frames to render per run.
    #[arg(long, default_value_t = 240)]
    pub frames: u64,
    /// Frame size, WIDTHxHEIGHT.
    #[arg(long, value_name = "WxH", default_value = "320x240", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Timed runs per side; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
struct BenchRow {
    width: u32,
    height: u32,
    frames: u64,
    actiond_ms_per_frame: f64,
    actiond_fps: f64,
    /// `ffmpeg -f lavfi -i testsrc2 … -f rawvideo -pix_fmt rgb24` to a null sink.
    ffmpeg_testsrc2_ms_per_frame: Option<f64>,
    /// ffmpeg's time per frame over ours (above 1: we render faster than testsrc2 is produced).
    ratio: Option<f64>,
    runs: usize,
}

pub fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    use std::time::Instant;
    let (width, height) = args.size;
    let frames = args.frames.max(1);
    let runs = args.runs.max(1);
    let mut ours = Vec::new();
    for run in 0..runs {
        let mut stream = crate::synth::SynthStream::new(run as u64, width, height, 12.0);
        let start = Instant::now();
        for _ in 0..frames {
            std::hint::black_box(stream.next_frame());
        }
        ours.push(start.elapsed().as_secs_f64() * 1000.0 / frames as f64);
    }
    let mut theirs = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i"])
            .arg(format!("testsrc2=size={width}x{height}:rate=12"))
            .args(["-frames:v", &frames.to_string(), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => theirs.push(start.elapsed().as_secs_f64() * 1000.0 / frames as f64),
            Ok(_) => anyhow::bail!("ffmpeg failed to run testsrc2"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!("ffmpeg is not on PATH: no reference to compare with");
                break;
            }
            Err(e) => return Err(e).context("cannot run ffmpeg"),
        }
    }
    let median = |xs: &mut Vec<f64>| {
        xs.sort_by(|a, b| a.total_cmp(b));
        xs.get(xs.len() / 2).copied()
    };
    let ours = median(&mut ours).expect("at least one run");
    let theirs = median(&mut theirs);
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let row = BenchRow {
        width,
        height,
        frames,
        actiond_ms_per_frame: round(ours),
        actiond_fps: round(1000.0 / ours),
        ffmpeg_testsrc2_ms_per_frame: theirs.map(round),
        ratio: theirs.map(|t| round(t / ours)),
        runs,
    };
    if args.json {
        println!("{}", serde_json::to_string(&row)?);
    } else {
        let opt = |x: Option<f64>| x.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
        println!("{:<10} {:>7} {:>16} {:>12} {:>20} {:>7}", "size", "frames", "actiond ms/frame", "actiond f/s", "testsrc2 ms/frame", "ratio");
        println!(
            "{:<10} {:>7} {:>16.3} {:>12.1} {:>20} {:>7}",
            format!("{width}x{height}"),
            frames,
            row.actiond_ms_per_frame,
            row.actiond_fps,
            opt(row.ffmpeg_testsrc2_ms_per_frame),
            opt(row.ratio)
        );
        println!("ratio = ffmpeg testsrc2 time per frame / actiond synth render time per frame, medians of {runs} runs, same session");
    }
    Ok(ExitCode::SUCCESS)
}
