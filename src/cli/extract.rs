//! `actiond extract VIDEO|DIR... --out DATA`: the offline half of the daemon's first two stages. Each
//! video goes through the same ingest (PTS sampling, swscale to the model input) and the same backbone,
//! and becomes DATA/<feature_dir>/<video>.npy [chunks × feature width] with its feature spec beside it
//! as <video>.json. Finished videos are skipped, so an interrupted run resumes; a video that fails is
//! reported and the rest go on.

use std::path::PathBuf;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::UsageError;
use crate::config::Config;
use crate::dataset::extract::{embed_video, list_videos, video_name, FeatureWriter};
use crate::feature_spec::{FeatureKind, FeatureSpec};
use crate::pipeline::Embedder;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Video files, or directories searched (recursively) for videos.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Dataset directory: features go to DATA/<feature-dir>/<video>.npy.
    #[arg(long, value_name = "DATA")]
    pub out: PathBuf,
    #[command(flatten)]
    pub features: FeatureArgs,
}

/// How videos become features: shared by `extract` and `dataset build`.
#[derive(Debug, clap::Args)]
pub struct FeatureArgs {
    /// Chunk rate (frames per second).
    #[arg(long, default_value_t = 4.0)]
    pub fps: f64,
    /// Subdirectory of DATA for the features.
    #[arg(long, default_value = "dinov2_vits14")]
    pub feature_dir: String,
    /// Backbone directory (Hugging Face layout); default from the config's [model].
    #[arg(long)]
    pub backbone: Option<PathBuf>,
    /// What one chunk's feature holds: "cls" (the CLS token), "cls+mean" (and the mean patch token),
    /// "cls+motion" (and a frame-difference motion descriptor from the decoder) or "cls+motion+shape"
    /// (and the motion's shape around the actor). Default: the config's [model] feature, else what its
    /// detector reads (the bundled one: cls+motion+shape), else cls.
    #[arg(long, value_parser = parse_kind)]
    pub feature: Option<FeatureKind>,
    /// Frames per backbone batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// The backbone's number format (default: the config's [model] precision, else f32); int8 needs
    /// AVX-512 VNNI.
    #[arg(long, value_enum)]
    pub precision: Option<crate::backbone::Precision>,
    /// Take [model] defaults from this pipeline file.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl FeatureArgs {
    /// Checks the rate, loads the pipeline config and the backbone, and says where features go.
    pub fn open(&self, data: &std::path::Path) -> anyhow::Result<(Config, Box<dyn Embedder>, FeatureWriter)> {
        if !(self.fps > 0.0 && self.fps <= 60.0) {
            return Err(UsageError(format!("--fps must be above 0 and at most 60, got {}", self.fps)).into());
        }
        let (config, embedder) = load_backbone(self.config.as_deref(), self.backbone.as_ref(), self.feature, self.precision, self.fps)?;
        let writer = FeatureWriter { data: data.to_path_buf(), feature_dir: self.feature_dir.clone(), spec: FeatureSpec { fps: self.fps, ..embedder.spec().clone() } };
        Ok((config, embedder, writer))
    }
}

pub fn parse_kind(text: &str) -> Result<FeatureKind, String> {
    text.parse()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let videos = list_videos(&args.inputs)?;
    if videos.is_empty() {
        return Err(UsageError("no videos found in the inputs given".into()).into());
    }
    let (config, mut embedder, writer) = args.features.open(&args.out)?;
    let report = extract_all(&videos, &config, &writer, embedder.as_mut(), args.features.batch)?;
    println!("{} extracted, {} already done, {} failed → {}", report.extracted, report.skipped, report.failed.len(), args.out.join(&writer.feature_dir).display());
    if report.failed.is_empty() { Ok(ExitCode::SUCCESS) } else { Ok(ExitCode::from(super::EXIT_FAILURE)) }
}

/// The pipeline config (for source settings) and the backbone, with command-line overrides.
pub fn load_backbone(
    config: Option<&std::path::Path>,
    backbone: Option<&PathBuf>,
    feature: Option<FeatureKind>,
    precision: Option<crate::backbone::Precision>,
    fps: f64,
) -> anyhow::Result<(Config, Box<dyn Embedder>)> {
    let mut config = Config::load(config)?;
    if let Some(b) = backbone {
        config.model.backbone = b.clone();
    }
    if let Some(p) = precision {
        config.model.precision = p;
    }
    // Unless told otherwise, make the features the configured detector reads (the bundled one by
    // default), so extracted features and the daemon's agree. Sources read the kind from the config
    // to know whether frames need a motion descriptor.
    let kind = feature.unwrap_or_else(|| crate::models::runtime::resolve_feature(&config.model));
    tracing::info!(feature = %kind, detector = %config.model.detector.display(), "feature kind");
    config.model.feature = Some(kind);
    let embedder = crate::models::runtime::load_embedder(&config.model, fps).map_err(|e| UsageError(format!("{e:#}")))?;
    Ok((config, embedder))
}

/// What a run of [`extract_all`] did.
pub struct ExtractReport {
    pub extracted: usize,
    pub skipped: usize,
    pub failed: Vec<PathBuf>,
}

/// Extracts every video not already finished, with a progress bar; a failing video is reported on
/// stderr and the rest go on.
pub fn extract_all(videos: &[PathBuf], config: &Config, writer: &FeatureWriter, embedder: &mut dyn Embedder, batch: usize) -> anyhow::Result<ExtractReport> {
    writer.prepare()?;
    let bar = ProgressBar::new(videos.len() as u64);
    bar.set_style(ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} videos {msg}").expect("static template").progress_chars("=> "));
    let mut report = ExtractReport { extracted: 0, skipped: 0, failed: Vec::new() };
    for video in videos {
        let name = video_name(video);
        bar.set_message(name.clone());
        if writer.finished(&name).is_some() {
            report.skipped += 1;
            bar.inc(1);
            continue;
        }
        match embed_video(video, config, &writer.spec, embedder, batch, &mut || bar.tick()).and_then(|embedded| writer.write(&name, &embedded)) {
            Ok(()) => report.extracted += 1,
            Err(err) => {
                bar.suspend(|| eprintln!("actiond: {}: {err:#}", video.display()));
                report.failed.push(video.clone());
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(report)
}
