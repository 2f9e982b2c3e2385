//! `actiond dataset build` turns raw videos and annotations into the DATA layout `train` and `eval`
//! read; `actiond dataset compose` makes long untrimmed streams out of trimmed clips, with a split
//! that keeps groups (actors, scenes) apart.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cli::extract::{extract_all, FeatureArgs};
use crate::cli::UsageError;
use crate::dataset::annotations::{self, Annotations, Format};
use crate::dataset::compose::{self, Columns, ComposeSpec, Ground, TestGroups};
use crate::dataset::extract::{list_videos, video_name};
use crate::dataset::labels::LabelMap;
use crate::dataset::targets::{chunk_targets, class_counts};
use crate::dataset::DatasetError;
use crate::train::dataset::TARGET_DIR;

#[derive(Debug, clap::Subcommand)]
pub enum DatasetCommand {
    /// Extract features from videos and make per-chunk targets from their annotations.
    Build(BuildArgs),
    /// Compose long untrimmed streams from trimmed single-action clips, split by group.
    Compose(ComposeArgs),
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Folder of videos (searched recursively); a video's name is its file name less the extension.
    #[arg(long, value_name = "DIR")]
    pub videos: PathBuf,
    /// Annotations: a folder of THUMOS `<label>.txt` files (`video start_s end_s` lines), a CSV file
    /// (`video,start_s,end_s,label`), or a folder of per-frame `<video>.txt` files (a label per frame).
    #[arg(long, value_name = "PATH")]
    pub annotations: PathBuf,
    /// Annotation format, when the guess from the path is not enough.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Label map: one class name per line (background is added first when missing; a class named
    /// `ambiguous` is kept in the targets but ignored by training and evaluation).
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Dataset directory to write.
    #[arg(long, value_name = "DATA")]
    pub out: PathBuf,
    #[command(flatten)]
    pub features: FeatureArgs,
}

#[derive(Debug, clap::Args)]
pub struct ComposeArgs {
    /// Folder the clip paths in --labels are relative to.
    #[arg(long, value_name = "DIR")]
    pub clips: PathBuf,
    /// CSV of clips with a header row: a file, a label and a group column (see the --*-column options).
    #[arg(long, value_name = "CSV")]
    pub labels: PathBuf,
    /// Output folder: videos/, annotations/, frames/, labels.txt, split/, streams.csv, compose.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[arg(long, default_value = "file")]
    pub file_column: String,
    #[arg(long, default_value = "label")]
    pub label_column: String,
    /// Column that must never cross the split (actor, scene, source video).
    #[arg(long, default_value = "group")]
    pub group_column: String,
    /// Groups for the test side, comma separated (default: a quarter of the groups, drawn by --seed).
    #[arg(long, value_delimiter = ',', conflicts_with = "test_share")]
    pub test_groups: Vec<String>,
    /// Share of groups for the test side.
    #[arg(long, default_value_t = 0.25)]
    pub test_share: f64,
    #[arg(long, default_value_t = 12)]
    pub train_streams: usize,
    #[arg(long, default_value_t = 4)]
    pub test_streams: usize,
    #[arg(long, default_value_t = 8)]
    pub clips_per_stream: usize,
    /// Idle gap before each clip, MIN-MAX seconds (the next clip's first frame, held).
    #[arg(long, default_value = "1-3", value_parser = parse_range)]
    pub gap: (f64, f64),
    /// Frame rate of the streams.
    #[arg(long, default_value_t = 25.0)]
    pub fps: f64,
    /// Frame size WIDTHxHEIGHT (default: the first clip's, made even).
    #[arg(long, value_parser = crate::cli::synth::parse_size)]
    pub size: Option<(u32, u32)>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// x264 quality (constant rate factor, lower is better).
    #[arg(long, default_value_t = 18)]
    pub crf: u32,
    /// Re-shoot each training placement of a clip (random zoomed crop, mirror, exposure), so clips
    /// reused across streams do not repeat exactly. Test streams are never augmented.
    #[arg(long)]
    pub augment: bool,
}

fn parse_range(text: &str) -> Result<(f64, f64), String> {
    let bad = || format!("`{text}` is not MIN-MAX seconds, e.g. 1-3");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (f64, f64) = (lo.trim().parse().map_err(|_| bad())?, hi.trim().parse().map_err(|_| bad())?);
    if !(lo >= 0.0 && hi >= lo && hi.is_finite()) {
        return Err(format!("`{text}`: need 0 ≤ MIN ≤ MAX"));
    }
    Ok((lo, hi))
}

pub fn run(command: DatasetCommand) -> anyhow::Result<ExitCode> {
    match command {
        DatasetCommand::Build(args) => build(args),
        DatasetCommand::Compose(args) => compose(args),
    }
}

/// Problems in what the user gave exit 2; the message already names the file and line.
fn usage(err: DatasetError) -> anyhow::Error {
    match err {
        DatasetError::Io { .. } | DatasetError::Npy(_) => err.into(),
        other => UsageError(other.to_string()).into(),
    }
}

fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    if !args.videos.is_dir() {
        return Err(UsageError(format!("--videos {}: not a folder", args.videos.display())).into());
    }
    let labels = LabelMap::read(&args.labels).map_err(usage)?;
    let videos = list_videos(std::slice::from_ref(&args.videos))?;
    if videos.is_empty() {
        return Err(UsageError(format!("--videos {}: no videos found", args.videos.display())).into());
    }
    let names: BTreeSet<String> = videos.iter().map(|v| video_name(v)).collect();
    let annotations = annotations::read(&args.annotations, args.format, &labels, &names).map_err(usage)?;
    // Segments past a video's end are caught before hours of extraction, not after.
    if let Annotations::Segments(map) = &annotations {
        for video in &videos {
            if let Some(segments) = map.get(&video_name(video)) {
                let duration = media_duration(video).with_context(|| format!("reading the duration of {}", video.display()))?;
                annotations::check_ranges(&video_name(video), segments, duration).map_err(usage)?;
            }
        }
    }

    let (config, mut embedder, writer) = args.features.open(&args.out)?;
    let report = extract_all(&videos, &config, &writer, embedder.as_mut(), args.features.batch)?;

    let target_dir = args.out.join(TARGET_DIR);
    std::fs::create_dir_all(&target_dir).with_context(|| format!("cannot create {}", target_dir.display()))?;
    let classes = labels.len();
    let mut counts = vec![0usize; classes];
    let (mut built, mut chunks) = (0usize, 0usize);
    for video in videos.iter().filter(|v| !report.failed.contains(v)) {
        let name = video_name(video);
        let times = writer.finished(&name).with_context(|| format!("{}: features were not written", video.display()))?;
        let targets = chunk_targets(&annotations, &name, &times.times, times.frame_rate, classes).map_err(usage)?;
        crate::npy::write(&target_dir.join(format!("{name}.npy")), &[times.times.len(), classes], &targets)?;
        class_counts(&targets, classes, &mut counts);
        chunks += times.times.len();
        built += 1;
    }
    let write = |path: PathBuf, bytes: &[u8]| crate::detector::checkpoint::write_atomically(&path, bytes);
    write(LabelMap::path_in(&args.out), labels.to_text().as_bytes())?;
    let summary = json!({
        "videos": built,
        "failed": report.failed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "chunks": chunks,
        "chunk_fps": args.features.fps,
        "feature_dir": writer.feature_dir,
        "feature_spec": writer.spec,
        "ignore_class": labels.ambiguous(),
        "annotations": args.annotations.display().to_string(),
        "chunks_per_class": labels.names().iter().zip(&counts).map(|(n, c)| (n.clone(), json!(c))).collect::<serde_json::Map<_, _>>(),
    });
    write(args.out.join("dataset.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;

    println!("{built} videos, {chunks} chunks at {} fps → {}", args.features.fps, args.out.display());
    let width = labels.names().iter().map(String::len).max().unwrap_or(0);
    for (index, (name, count)) in labels.names().iter().zip(&counts).enumerate() {
        let share = 100.0 * *count as f64 / chunks.max(1) as f64;
        let note = if labels.ambiguous() == Some(index) { "  (ignored in training and evaluation)" } else { "" };
        println!("  {name:<width$}  {count:>7} chunks  {share:5.1}%{note}");
    }
    let unannotated = names.iter().filter(|n| !annotations.videos().contains(n.as_str())).count();
    if unannotated > 0 {
        println!("  {unannotated} video(s) have no annotation: all background");
    }
    if report.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!("  {} video(s) failed (above); run the same command again to retry them", report.failed.len());
        Ok(ExitCode::from(super::EXIT_FAILURE))
    }
}

/// The container's duration in seconds.
fn media_duration(path: &Path) -> anyhow::Result<f64> {
    let info = crate::source::ffmpeg::file_info(path).map_err(anyhow::Error::msg)?;
    info.duration.ok_or_else(|| anyhow::anyhow!("the container declares no duration"))
}

fn compose(args: ComposeArgs) -> anyhow::Result<ExitCode> {
    if !(args.fps > 0.0 && args.fps <= 120.0) {
        return Err(UsageError(format!("--fps must be above 0 and at most 120, got {}", args.fps)).into());
    }
    if args.clips_per_stream == 0 || args.train_streams == 0 || args.test_streams == 0 {
        return Err(UsageError("--train-streams, --test-streams and --clips-per-stream must be at least 1".into()).into());
    }
    let columns = Columns { file: args.file_column.clone(), label: args.label_column.clone(), group: args.group_column.clone() };
    let clips = compose::read_clips(&args.labels, &args.clips, &columns).map_err(usage)?;
    LabelMap::new(clips.iter().map(|c| c.label.clone()).collect::<BTreeSet<_>>()).map_err(|m| UsageError(format!("{}: {m}", args.labels.display())))?;
    let test = if args.test_groups.is_empty() { TestGroups::Fraction(args.test_share) } else { TestGroups::Named(args.test_groups.clone()) };
    let split = compose::split_groups(&clips, &test, args.seed).map_err(|m| UsageError(format!("{}: {m}", args.labels.display())))?;
    let (width, height) = match args.size {
        Some(size) => size,
        None => {
            let info = crate::source::ffmpeg::file_info(&clips[0].file).map_err(|m| anyhow::anyhow!("{}: {m}", clips[0].file.display()))?;
            (info.width + info.width % 2, info.height + info.height % 2)
        }
    };
    let spec = ComposeSpec {
        out: args.out.clone(),
        train_streams: args.train_streams,
        test_streams: args.test_streams,
        clips_per_stream: args.clips_per_stream,
        gap_s: args.gap,
        fps: args.fps,
        width,
        height,
        seed: args.seed,
        crf: args.crf,
        augment: args.augment,
    };
    let plans = compose::plan(&clips, &split, &spec);
    let video_dir = args.out.join("videos");
    std::fs::create_dir_all(&video_dir).with_context(|| format!("cannot create {}", video_dir.display()))?;
    let config = crate::config::Config::load(None)?;
    let bar = ProgressBar::new(plans.len() as u64)
        .with_style(ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} streams {msg}").expect("static template").progress_chars("=> "));
    let mut ground = Ground::new();
    for plan in &plans {
        bar.set_message(plan.name.clone());
        let (placed, frames) = compose::write_stream(plan, &clips, &config, &spec)?;
        ground.add(plan, &placed, frames, &clips, &spec);
        bar.inc(1);
    }
    bar.finish_and_clear();
    ground.write(&clips, &split, &spec)?;
    let list = |groups: &BTreeSet<String>| groups.iter().cloned().collect::<Vec<_>>().join(", ");
    println!(
        "{} train and {} test streams of {} clips ({width}x{height}, {} fps) → {}",
        args.train_streams,
        args.test_streams,
        args.clips_per_stream,
        args.fps,
        args.out.display()
    );
    println!("  train groups: {}\n  test groups:  {}", list(&split.train), list(&split.test));
    Ok(ExitCode::SUCCESS)
}
