//! `actiond predict`: runs the detector over a feature sequence exactly as a live stream would (the
//! window ending at every chunk, padded as `detector::window` documents) and writes per-chunk current
//! and anticipated outputs as `.npy`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use candle_core::{Device, Tensor};

use crate::cli::UsageError;
use crate::detector::checkpoint::{Detector, HeadCounts};
use crate::detector::window::{run_sequence, Activation};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Detector weights: a project checkpoint (NAME.safetensors + NAME.json) or an official OadTR
    /// state dict saved as safetensors.
    #[arg(long, value_name = "M")]
    pub model: PathBuf,
    #[command(flatten)]
    pub heads: HeadArgs,
    /// Feature sequence [L × D] (float32 .npy), one row per chunk.
    #[arg(long, value_name = "X.npy")]
    pub features: PathBuf,
    /// Where to write current-chunk outputs [L × C].
    #[arg(long, value_name = "Y.npy")]
    pub out: PathBuf,
    /// Also write the anticipated outputs [L × Q × C]: row t, query i is chunk t+1+i.
    #[arg(long, value_name = "Z.npy")]
    pub anticipation: Option<PathBuf>,
    /// Write raw logits instead of probabilities.
    #[arg(long)]
    pub logits: bool,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
}

/// Options for checkpoints without an actiond sidecar (official state dicts).
#[derive(Debug, Clone, clap::Args)]
pub struct HeadArgs {
    /// Encoder attention heads of an official state dict (its shapes do not tell).
    #[arg(long, default_value_t = HeadCounts::default().num_heads)]
    pub num_heads: usize,
    /// Decoder attention heads of an official state dict.
    #[arg(long, default_value_t = HeadCounts::default().decoder_num_heads)]
    pub decoder_num_heads: usize,
    /// Class left out of the softmax (THUMOS "Ambiguous" is 21); overrides the checkpoint's.
    #[arg(long, value_name = "CLASS")]
    pub ignore_class: Option<usize>,
}

impl HeadArgs {
    /// Loads the detector, applying `--ignore-class`.
    pub fn load(&self, model: &Path) -> anyhow::Result<Detector> {
        let heads = HeadCounts { num_heads: self.num_heads, decoder_num_heads: self.decoder_num_heads };
        let mut detector = Detector::load(model, heads, &Device::Cpu)?;
        if let Some(ignore) = self.ignore_class {
            let classes = detector.card.config.numclass;
            if ignore == 0 || ignore >= classes {
                return Err(UsageError(format!("--ignore-class {ignore} is not an action class of this model (1..{classes})")).into());
            }
            detector.card.ignore_class = Some(ignore);
        }
        Ok(detector)
    }
}

/// Reads a feature sequence and checks it against the model: finite, non-empty, the right width.
pub fn read_features(path: &Path, detector: &Detector, model_path: &Path) -> anyhow::Result<Tensor> {
    let array = crate::npy::read_matrix(path)?;
    let (rows, cols) = array.dims2(path)?;
    if rows == 0 {
        anyhow::bail!("{}: the feature sequence is empty (0 chunks)", path.display());
    }
    let expected = detector.card.config.dim_feature;
    if cols != expected {
        anyhow::bail!(
            "{}: features are {cols} wide but the model {} reads {expected}-wide features",
            path.display(),
            model_path.display()
        );
    }
    Ok(Tensor::from_vec(array.data, (rows, cols), &Device::Cpu)?)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.batch == 0 {
        return Err(UsageError("--batch must be at least 1".into()).into());
    }
    let detector = args.heads.load(&args.model)?;
    let features = read_features(&args.features, &detector, &args.model)?;
    let activation = if args.logits {
        Activation::Logits
    } else {
        Activation::Probabilities { ignore_class: detector.card.ignore_class }
    };
    let len = features.dim(0)?;
    let bar = indicatif::ProgressBar::new(len as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} chunks {per_sec} eta {eta}")
            .expect("the template is valid"),
    );
    let (current, anticipation) = run_sequence(&detector.engine, &features, activation, args.batch, |done| {
        bar.set_position(done as u64)
    })
    .with_context(|| format!("running {} on {}", args.model.display(), args.features.display()))?;
    bar.finish_and_clear();
    let (l, c) = current.dims2()?;
    crate::npy::write(&args.out, &[l, c], &current.flatten_all()?.to_vec1()?)?;
    if let Some(path) = &args.anticipation {
        let (l, q, c) = anticipation.dims3()?;
        crate::npy::write(path, &[l, q, c], &anticipation.flatten_all()?.to_vec1()?)?;
    }
    tracing::info!(chunks = l, classes = c, out = %args.out.display(), "predictions written");
    Ok(ExitCode::SUCCESS)
}
