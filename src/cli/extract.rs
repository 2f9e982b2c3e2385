//! `actiond extract VIDEO|DIR... --out DATA`: the offline half of the daemon's first two stages. Each
//! video goes through the same ingest (PTS sampling, swscale to the model input) and the same backbone,
//! and becomes DATA/<feature_dir>/<video>.npy [chunks × feature width] with its feature spec beside it
//! as <video>.json. Finished videos are skipped, so an interrupted run resumes; a video that fails is
//! reported and the rest go on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::UsageError;
use crate::config::Config;
use crate::feature_spec::{FeatureKind, FeatureSpec};
use crate::pipeline::Embedder;
use crate::shutdown::Shutdown;
use crate::source::ffmpeg::{run_session, Flow, StreamCursor};
use crate::source::{Frame, SourceSettings, StreamStats};

/// Video file extensions picked up from directories.
const VIDEO_EXTENSIONS: &[&str] = &["mp4", "avi", "mkv", "mov", "webm", "m4v", "mpg", "mpeg", "ts", "flv", "wmv"];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Video files, or directories searched (recursively) for videos.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Dataset directory: features go to DATA/<feature-dir>/<video>.npy.
    #[arg(long, value_name = "DATA")]
    pub out: PathBuf,
    /// Chunk rate (frames per second).
    #[arg(long, default_value_t = 4.0)]
    pub fps: f64,
    /// Subdirectory of DATA for these features.
    #[arg(long, default_value = "dinov2_vits14")]
    pub feature_dir: String,
    /// Backbone directory (Hugging Face layout); default from the config's [model].
    #[arg(long)]
    pub backbone: Option<PathBuf>,
    /// "cls" or "cls+mean".
    #[arg(long, value_parser = parse_kind)]
    pub feature: Option<FeatureKind>,
    /// Frames per backbone batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Take [model] defaults from this pipeline file.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

fn parse_kind(text: &str) -> Result<FeatureKind, String> {
    match text {
        "cls" => Ok(FeatureKind::Cls),
        "cls+mean" => Ok(FeatureKind::ClsMean),
        other => Err(format!("{other:?} is not a feature kind: use cls or cls+mean")),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !(args.fps > 0.0 && args.fps <= 60.0) {
        return Err(UsageError(format!("--fps must be above 0 and at most 60, got {}", args.fps)).into());
    }
    let videos = list_videos(&args.inputs)?;
    if videos.is_empty() {
        return Err(UsageError("no videos found in the inputs given".into()).into());
    }
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(b) = &args.backbone {
        config.model.backbone = b.clone();
    }
    if let Some(k) = args.feature {
        config.model.feature = k;
    }
    let mut embedder = crate::models::runtime::load_embedder(&config.model, args.fps).map_err(|e| UsageError(format!("{e:#}")))?;
    let spec = FeatureSpec { fps: args.fps, ..embedder.spec().clone() };
    let dir = args.out.join(&args.feature_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let bar = ProgressBar::new(videos.len() as u64);
    bar.set_style(ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} videos {msg}").expect("static template").progress_chars("=> "));
    let (mut done, mut skipped, mut failed) = (0, 0, Vec::new());
    for video in &videos {
        let name = video_name(video);
        let npy = dir.join(format!("{name}.npy"));
        let sidecar = dir.join(format!("{name}.json"));
        bar.set_message(name.clone());
        if is_finished(&npy, &sidecar, &spec) {
            skipped += 1;
            bar.inc(1);
            continue;
        }
        match extract_one(video, &config, &spec, embedder.as_mut(), args.batch.max(1), &bar) {
            Ok((chunks, features)) => {
                crate::npy::write(&npy, &[chunks, spec.dim], &features)?;
                crate::detector::checkpoint::write_atomically(&sidecar, serde_json::to_string_pretty(&spec)?.as_bytes())?;
                done += 1;
            }
            Err(err) => {
                bar.suspend(|| eprintln!("actiond: {}: {err:#}", video.display()));
                failed.push(video.clone());
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!("{done} extracted, {skipped} already done, {} failed → {}", failed.len(), dir.display());
    if failed.is_empty() { Ok(ExitCode::SUCCESS) } else { Ok(ExitCode::from(super::EXIT_FAILURE)) }
}

/// A finished video has its features and a sidecar with the same spec.
fn is_finished(npy: &Path, sidecar: &Path, spec: &FeatureSpec) -> bool {
    npy.exists()
        && std::fs::read(sidecar).ok().and_then(|b| serde_json::from_slice::<FeatureSpec>(&b).ok()).is_some_and(|s| &s == spec)
}

fn extract_one(video: &Path, config: &Config, spec: &FeatureSpec, embedder: &mut dyn Embedder, batch: usize, bar: &ProgressBar) -> anyhow::Result<(usize, Vec<f32>)> {
    let mut settings = SourceSettings::for_url(config, "extract", &video.display().to_string())?;
    settings.fps = spec.fps;
    settings.output_size = (spec.input_size, spec.input_size);
    let mut features: Vec<f32> = Vec::new();
    let mut pending: Vec<Frame> = Vec::with_capacity(batch);
    let mut failure: Option<anyhow::Error> = None;
    let mut flush = |pending: &mut Vec<Frame>, features: &mut Vec<f32>| -> anyhow::Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Frame> = pending.iter().collect();
        for row in embedder.embed(&refs)? {
            features.extend_from_slice(&row);
        }
        pending.clear();
        Ok(())
    };
    let stats = StreamStats::new();
    run_session(&settings, &stats, &Shutdown::new(), &mut StreamCursor::new(spec.fps), &mut |_| {}, &mut |frame| {
        pending.push(frame);
        if pending.len() >= batch {
            if let Err(e) = flush(&mut pending, &mut features) {
                failure = Some(e);
                return Flow::Stop;
            }
            bar.tick();
        }
        Flow::Continue
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    flush(&mut pending, &mut features)?;
    let chunks = features.len() / spec.dim;
    anyhow::ensure!(chunks > 0, "no frame could be decoded ({} decode errors)", stats.snapshot().decode_errors);
    Ok((chunks, features))
}

/// The dataset name of a video: its file name without the extension.
pub fn video_name(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| path.display().to_string())
}

fn list_videos(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            collect_dir(input, &mut out).with_context(|| format!("cannot list {}", input.display()))?;
        } else if input.exists() {
            out.push(input.clone());
        } else {
            return Err(UsageError(format!("{}: no such file or directory", input.display())).into());
        }
    }
    out.sort();
    out.dedup();
    let mut names = std::collections::BTreeMap::new();
    for v in &out {
        if let Some(other) = names.insert(video_name(v), v.clone()) {
            return Err(UsageError(format!("{} and {} would both be named {:?} in the dataset", other.display(), v.display(), video_name(v))).into());
        }
    }
    Ok(out)
}

fn collect_dir(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_dir(&path, out)?;
        } else if path.extension().and_then(|e| e.to_str()).is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())) {
            out.push(path);
        }
    }
    Ok(())
}
