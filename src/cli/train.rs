//! `actiond train`: trains the detector on DATA/<feature_dir>/<video>.npy + DATA/target_perframe/,
//! official recipe by default (see `train::trainer`), with a progress bar and resumable checkpoints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::cli::UsageError;
use crate::dataset::labels::LabelMap;
use crate::detector::checkpoint::{ModelCard, TrainingProvenance};
use crate::detector::oadtr::OadtrConfig;
use crate::feature_spec::FeatureSpec;
use crate::train::dataset::{read_split, DatasetLayout, Video};
use crate::train::trainer::{train, EpochReport, Progress, TrainOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset root.
    #[arg(long, value_name = "DATA")]
    pub data: PathBuf,
    /// Feature directories under DATA, concatenated in this order (e.g. rgb,flow).
    #[arg(long, value_delimiter = ',', default_value = "dinov2_vits14")]
    pub feature_dirs: Vec<String>,
    /// File listing training videos (one per line).
    #[arg(long, value_name = "FILE")]
    pub train_split: Option<PathBuf>,
    /// File listing validation videos.
    #[arg(long, value_name = "FILE")]
    pub val_split: Option<PathBuf>,
    /// Training videos, comma separated (instead of --train-split).
    #[arg(long, value_delimiter = ',', conflicts_with = "train_split")]
    pub train_videos: Vec<String>,
    /// Validation videos, comma separated (instead of --val-split).
    #[arg(long, value_delimiter = ',', conflicts_with = "val_split")]
    pub val_videos: Vec<String>,
    /// Output directory: last.* and best.* checkpoints, optimizer state.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Continue from OUT/last.* when present.
    #[arg(long)]
    pub resume: bool,
    /// Model config JSON (OadtrConfig fields); default: the official config with --dim-feature and
    /// --classes taken from the data.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Start from the `small` preset instead of the official default (d 256, 4 heads).
    #[arg(long)]
    pub small: bool,
    /// Window length T.
    #[arg(long)]
    pub window: Option<usize>,
    /// Class names, comma separated, background first (default: DATA/labels.txt when present, else
    /// background, class_1, …).
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Feature spec JSON (backbone, input_size, fps, kind, dim) recorded in the checkpoint (default:
    /// the spec written beside the first training video's features).
    #[arg(long, value_name = "FILE")]
    pub feature_spec: Option<PathBuf>,
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Gradient-norm clipping (0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub clip_max_norm: f64,
    /// Epochs between learning-rate drops.
    #[arg(long, default_value_t = 1)]
    pub lr_drop: usize,
    /// Learning-rate factor at each drop.
    #[arg(long, default_value_t = 0.1)]
    pub lr_gamma: f64,
    /// Weight of the anticipation loss.
    #[arg(long, default_value_t = 0.5)]
    pub anticipation_weight: f64,
    /// Distance between training window ends.
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    /// Cap on windows per epoch.
    #[arg(long)]
    pub max_windows: Option<usize>,
    /// Class excluded from loss and metrics (THUMOS: 21; default: the `ambiguous` column of
    /// DATA/labels.txt when there is one).
    #[arg(long)]
    pub ignore_class: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

struct Bar {
    bar: indicatif::ProgressBar,
    epochs: usize,
}

impl Progress for Bar {
    fn epoch_start(&mut self, epoch: usize, windows: usize) {
        self.bar.reset();
        self.bar.set_length(windows as u64);
        self.bar.set_prefix(format!("epoch {}/{}", epoch + 1, self.epochs));
    }
    fn batch(&mut self, done: usize, loss: f64) {
        self.bar.set_position(done as u64);
        self.bar.set_message(format!("loss {loss:.4}"));
    }
    fn epoch_end(&mut self, r: &EpochReport) {
        let val = r.val_map.map(|m| format!("{m:.4}")).unwrap_or_else(|| "-".into());
        let line = format!(
            "epoch {} lr {:.1e} loss {:.4} val mAP {val} ({} windows, {:.1}s, {:.1} windows/s)",
            r.epoch,
            r.lr,
            r.train_loss,
            r.windows,
            r.seconds,
            r.windows as f64 / r.seconds.max(1e-9)
        );
        // A hidden bar (stderr is not a terminal) drops println; the epoch summary must still show.
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

fn load_all(layout: &DatasetLayout, names: &[String], config: &OadtrConfig) -> anyhow::Result<Vec<Video>> {
    names.iter().map(|n| Ok(layout.load(n, Some(config.dim_feature), Some(config.numclass))?)).collect()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let layout = DatasetLayout { root: args.data.clone(), feature_dirs: args.feature_dirs.clone() };
    let mut train_names = match &args.train_split {
        Some(split) => read_split(split)?,
        None => args.train_videos.clone(),
    };
    let val_names = match &args.val_split {
        Some(split) => read_split(split)?,
        None => args.val_videos.clone(),
    };
    if train_names.is_empty() {
        train_names = layout.all_videos()?.into_iter().filter(|v| !val_names.contains(v)).collect();
    }
    if train_names.is_empty() {
        return Err(UsageError("no training videos: give --train-split or --train-videos".into()).into());
    }
    // Sizes from the first training video; every other video is checked against them.
    let probe = layout.load(&train_names[0], None, None)?;
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str::<OadtrConfig>(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?
        }
        None => {
            let base = if args.small { OadtrConfig::small() } else { OadtrConfig::official_default() };
            OadtrConfig { dim_feature: probe.dim, numclass: probe.classes, ..base }
        }
    };
    if let Some(window) = args.window {
        config.enc_layers = window;
    }
    if let Err(problems) = config.check() {
        return Err(UsageError(format!("model config: {}", problems.join("; "))).into());
    }
    let mut card = ModelCard::new(config.clone());
    let mut ignore_class = args.ignore_class;
    if !args.labels.is_empty() {
        if args.labels.len() != config.numclass {
            return Err(UsageError(format!("--labels lists {} names, the data has {} classes", args.labels.len(), config.numclass)).into());
        }
        card.labels = args.labels.clone();
    } else if let Some(labels) = LabelMap::of_dataset(&args.data, config.numclass).map_err(|e| UsageError(e.to_string()))? {
        card.labels = labels.names().to_vec();
        ignore_class = ignore_class.or(labels.ambiguous());
    }
    let spec_path = match &args.feature_spec {
        Some(path) => Some(path.clone()),
        None => Some(layout.root.join(&args.feature_dirs[0]).join(format!("{}.json", train_names[0]))).filter(|p| args.feature_dirs.len() == 1 && p.exists()),
    };
    if let Some(path) = &spec_path {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        card.feature_spec = Some(serde_json::from_str(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?);
    }
    if let (Some(spec), Some(spec_path)) = (&card.feature_spec, &spec_path) {
        let spec: &FeatureSpec = spec;
        if spec.dim != config.dim_feature {
            let model = args.config.as_ref().map_or_else(|| "the model".to_string(), |p| format!("the model config {}", p.display()));
            return Err(UsageError(format!(
                "{}: {} features are {} values wide, but {model} reads dim_feature = {}",
                spec_path.display(),
                spec.kind,
                spec.dim,
                config.dim_feature
            ))
            .into());
        }
    }
    card.ignore_class = ignore_class;
    let train_videos = load_all(&layout, &train_names, &config)?;
    let val_videos = load_all(&layout, &val_names, &config)?;
    card.training = Some(TrainingProvenance {
        data_dir: args.data.display().to_string(),
        feature_dirs: args.feature_dirs.clone(),
        train_videos: train_videos.len(),
        val_videos: val_videos.len(),
        ..Default::default()
    });
    let options = TrainOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        weight_decay: args.weight_decay,
        clip_max_norm: args.clip_max_norm,
        lr_drop: args.lr_drop,
        lr_gamma: args.lr_gamma,
        anticipation_weight: args.anticipation_weight,
        stride: args.stride,
        max_windows_per_epoch: args.max_windows,
        seed: args.seed,
        ignore_class,
    };
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} windows {per_sec} {msg} eta {eta}")
            .expect("the template is valid"),
    );
    let mut progress = Bar { bar, epochs: options.epochs };
    let reports = train(&config, card, &options, &train_videos, &val_videos, &args.out, args.resume, &mut progress)?;
    progress.bar.finish_and_clear();
    if reports.is_empty() {
        println!("nothing to do: {} already holds {} epochs", args.out.display(), options.epochs);
    }
    println!("checkpoints in {} (last.safetensors, best.safetensors)", args.out.display());
    Ok(ExitCode::SUCCESS)
}
