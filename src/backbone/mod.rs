//! The vision backbone: a batch of RGB frames in, one feature vector per frame out, with the
//! [`FeatureSpec`] that says how it was made.
//!
//! Models load from a Hugging Face-style folder (`config.json` + `model.safetensors`): DINOv2 /14
//! (S, B, L: [`dinov2`]) and the classic ViT (google/vit-*-patch16-224: [`vit`]), chosen by the config's
//! `model_type`. `actiond models fetch` writes the default one, DINOv2 ViT-S/14.

pub mod attention;
pub mod cpu_kernels;
pub mod device;
pub mod dinov2;
pub mod embeddings;
pub mod linear;
pub mod position_embedding;
pub mod preprocess;
pub mod vit;

use std::path::{Path, PathBuf};

use candle_core::{DType, IndexOp, Tensor};
use candle_nn::VarBuilder;

pub use device::{DeviceSpec, Precision};

use crate::feature_spec::{FeatureKind, FeatureSpec};

/// Why a backbone could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    #[error("{}: {cause}{}", path.display(), fetch_hint(path))]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("{}: cannot load the weights: {cause}", path.display())]
    Weights { path: PathBuf, cause: candle_core::Error },
    #[error("{0}")]
    Device(String),
    #[error("backbone failed: {0}")]
    Run(candle_core::Error),
}

impl From<candle_core::Error> for BackboneError {
    fn from(error: candle_core::Error) -> Self {
        BackboneError::Run(error)
    }
}

fn fetch_hint(path: &Path) -> &'static str {
    if path.exists() {
        ""
    } else {
        " (run `actiond models fetch` to download the default backbone)"
    }
}

/// What to load and how to run it.
#[derive(Debug, Clone)]
pub struct BackboneOptions {
    /// A folder with `config.json` and `model.safetensors`.
    pub model_dir: PathBuf,
    /// Name recorded in feature specs; defaults to the folder name.
    pub name: Option<String>,
    /// Square input size in pixels (a multiple of the patch size).
    pub input_size: usize,
    pub kind: FeatureKind,
    pub device: DeviceSpec,
    pub precision: Precision,
}

impl BackboneOptions {
    /// The default backbone as `actiond models fetch` writes it, at 224×224, CLS feature, on the CPU.
    pub fn default_in(models_dir: &Path) -> Self {
        Self {
            model_dir: models_dir.join(crate::models::fetch::DINOV2_VITS14.name),
            name: None,
            input_size: 224,
            kind: FeatureKind::Cls,
            device: DeviceSpec::Cpu,
            precision: Precision::F32,
        }
    }
}

#[derive(Debug, Clone)]
enum Model {
    Dinov2(dinov2::Dinov2),
    Vit(vit::Vit),
}

/// A loaded backbone.
#[derive(Debug, Clone)]
pub struct Backbone {
    model: Model,
    name: String,
    input_size: usize,
    hidden_size: usize,
    kind: FeatureKind,
    device: candle_core::Device,
    dtype: DType,
    shape: TransformerShape,
}

/// Sizes that set a ViT's arithmetic cost per frame.
#[derive(Debug, Clone, Copy)]
pub struct TransformerShape {
    pub layers: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    /// Sequence length (CLS + patches).
    pub tokens: usize,
    /// Inputs per patch (channels × patch²).
    pub patch_inputs: usize,
}

#[derive(serde::Deserialize)]
struct ModelType {
    model_type: Option<String>,
}

impl Backbone {
    pub fn load(options: &BackboneOptions) -> Result<Self, BackboneError> {
        let config_path = options.model_dir.join("config.json");
        let weights_path = options.model_dir.join("model.safetensors");
        let config_text = std::fs::read_to_string(&config_path)
            .map_err(|cause| BackboneError::Read { path: config_path.clone(), cause })?;
        let config_error = |message: String| BackboneError::Config { path: config_path.clone(), message };
        let model_type: ModelType = serde_json::from_str(&config_text).map_err(|e| config_error(e.to_string()))?;
        if !weights_path.is_file() {
            return Err(BackboneError::Read {
                path: weights_path,
                cause: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        options.precision.check_for(options.device).map_err(BackboneError::Device)?;
        let device = options.device.open().map_err(BackboneError::Device)?;
        if device.is_cpu() {
            cpu_kernels::keep_freed_buffers();
        }
        let dtype = options.precision.dtype();
        let weights_error = |cause| BackboneError::Weights { path: weights_path.clone(), cause };
        // SAFETY: the file is memory-mapped read-only; like every safetensors loader we rely on it not
        // being truncated while loaded (the fetcher replaces model folders by rename, never in place).
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights_path], dtype, &device) }.map_err(weights_error)?;
        let input_size = options.input_size;
        let (mut model, shape) = match model_type.model_type.as_deref() {
            Some("dinov2") => {
                let cfg: dinov2::Config = serde_json::from_str(&config_text).map_err(|e| config_error(e.to_string()))?;
                let vb = root_of(vb, "dinov2");
                let model = dinov2::Dinov2::new(vb, &cfg, input_size).map_err(weights_error)?;
                let shape = TransformerShape {
                    layers: cfg.num_hidden_layers,
                    hidden_size: cfg.hidden_size,
                    intermediate_size: (cfg.hidden_size as f64 * cfg.mlp_ratio) as usize,
                    tokens: 1 + (input_size / cfg.patch_size).pow(2),
                    patch_inputs: cfg.num_channels * cfg.patch_size * cfg.patch_size,
                };
                (Model::Dinov2(model), shape)
            }
            Some("vit") => {
                let cfg: vit::Config = serde_json::from_str(&config_text).map_err(|e| config_error(e.to_string()))?;
                let vb = root_of(vb, "vit");
                let model = vit::Vit::new(vb, &cfg, input_size).map_err(weights_error)?;
                let shape = TransformerShape {
                    layers: cfg.num_hidden_layers,
                    hidden_size: cfg.hidden_size,
                    intermediate_size: cfg.intermediate_size,
                    tokens: 1 + (input_size / cfg.patch_size).pow(2),
                    patch_inputs: cfg.num_channels * cfg.patch_size * cfg.patch_size,
                };
                (Model::Vit(model), shape)
            }
            other => {
                return Err(config_error(format!(
                    "model_type is {other:?}; supported: \"dinov2\" (facebook/dinov2-*) and \"vit\" (google/vit-*)"
                )))
            }
        };
        if options.precision == Precision::Int8 {
            let linears = match &mut model {
                Model::Dinov2(m) => m.linears_mut(),
                Model::Vit(m) => m.linears_mut(),
            };
            linears.into_iter().for_each(linear::Linear::quantize_int8);
        }
        let name = options.name.clone().unwrap_or_else(|| {
            options.model_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backbone".into())
        });
        Ok(Self { model, name, input_size, hidden_size: shape.hidden_size, kind: options.kind, device, dtype, shape })
    }

    /// The spec of the features this backbone makes when frames are sampled at `fps`.
    pub fn feature_spec(&self, fps: f64) -> FeatureSpec {
        FeatureSpec {
            backbone: self.name.clone(),
            input_size: self.input_size as u32,
            fps,
            kind: self.kind,
            dim: self.feature_dim(),
        }
    }

    pub fn feature_dim(&self) -> usize {
        self.kind.dim(self.hidden_size)
    }

    pub fn input_size(&self) -> usize {
        self.input_size
    }

    pub fn device(&self) -> &candle_core::Device {
        &self.device
    }

    /// `count` RGB frames (`input_size`² × 3 bytes each, back to back) → the token part of the features
    /// ([`pool`]), f32 on the CPU. For `cls+motion` that is the CLS token only: the caller appends each
    /// frame's motion descriptor to reach [`Backbone::feature_dim`].
    pub fn embed_frames(&self, frames: &[u8], count: usize) -> Result<Tensor, BackboneError> {
        let pixels = preprocess::frames_to_tensor(frames, count, self.input_size, &self.device)?;
        self.embed_pixels(&pixels)
    }

    /// Normalised pixels `[N, 3, S, S]` → the token part of the features (see [`Backbone::embed_frames`]),
    /// f32 on the CPU.
    pub fn embed_pixels(&self, pixels: &Tensor) -> Result<Tensor, BackboneError> {
        let tokens = self.last_hidden_state(pixels)?;
        Ok(pool(&tokens, self.kind)?.to_dtype(DType::F32)?.to_device(&candle_core::Device::Cpu)?)
    }

    /// Normalised pixels `[N, 3, S, S]` → `last_hidden_state` `[N, 1 + grid², D]` (model dtype and device).
    pub fn last_hidden_state(&self, pixels: &Tensor) -> Result<Tensor, BackboneError> {
        let pixels = pixels.to_device(&self.device)?.to_dtype(self.dtype)?;
        let forward = || match &self.model {
            Model::Dinov2(model) => model.forward(&pixels),
            Model::Vit(model) => model.forward(&pixels),
        };
        Ok(if self.device.is_cpu() { crate::sgemm::on_pool_thread(forward)? } else { forward()? })
    }

    /// Sizes that set the backbone's arithmetic cost.
    pub fn transformer_shape(&self) -> Option<TransformerShape> {
        Some(self.shape)
    }

    /// The DINOv2 model, when that is what was loaded (for debug taps).
    pub fn as_dinov2(&self) -> Option<&dinov2::Dinov2> {
        match &self.model {
            Model::Dinov2(model) => Some(model),
            Model::Vit(_) => None,
        }
    }
}

/// Tokens `[N, T, D]` (CLS first) → the token part of the features: `[N, D]`, or `[N, 2D]` for
/// `cls+mean`. (The `cls+motion` kinds' motion part comes from the decode side, not from the tokens.)
pub fn pool(tokens: &Tensor, kind: FeatureKind) -> candle_core::Result<Tensor> {
    let cls = tokens.i((.., 0, ..))?;
    match kind {
        FeatureKind::Cls | FeatureKind::ClsMotion | FeatureKind::ClsMotionShape => cls.contiguous(),
        FeatureKind::ClsMean => {
            let patches = tokens.i((.., 1.., ..))?;
            let mean = patches.to_dtype(DType::F32)?.mean(1)?.to_dtype(tokens.dtype())?;
            Tensor::cat(&[&cls, &mean], 1)
        }
    }
}

/// Hugging Face task checkpoints nest the base model under a prefix (`vit.` in ViTForImageClassification,
/// `dinov2.` in Dinov2ForImageClassification); base-model checkpoints do not.
fn root_of<'a>(vb: VarBuilder<'a>, prefix: &str) -> VarBuilder<'a> {
    if vb.contains_tensor("embeddings.cls_token") {
        vb
    } else {
        vb.pp(prefix)
    }
}
