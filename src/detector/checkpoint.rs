//! Detector checkpoints on disk. Two forms load:
//!
//! * the project format: `NAME.safetensors` (official state-dict names) plus the sidecar `NAME.json`
//!   (`"format": "actiond-oadtr"`) holding the [`OadtrConfig`], label names, the [`FeatureSpec`] the
//!   model was trained on and the training provenance;
//! * an official OadTR state dict saved as safetensors with no sidecar of ours: the shapes of its
//!   tensors give every size, the two head counts (which shapes cannot tell) come from the caller and
//!   default to the official 8 encoder / 4 decoder heads.
//!
//! Writes are atomic: each file is written to `PATH.tmp`, synced and renamed over `PATH`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::detector::oadtr_cpu::OadtrCpu;
use crate::detector::oadtr::{Oadtr, OadtrConfig};
use crate::feature_spec::FeatureSpec;

/// The value of the sidecar's `format` key.
pub const SIDECAR_FORMAT: &str = "actiond-oadtr";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: cannot load the model: {source}")]
    Model { path: PathBuf, source: candle_core::Error },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}

/// Where the training run that made a checkpoint came from, so a model can be reproduced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingProvenance {
    pub data_dir: String,
    pub feature_dirs: Vec<String>,
    pub train_videos: usize,
    pub val_videos: usize,
    pub epochs: usize,
    pub best_epoch: Option<usize>,
    /// Validation mAP of this checkpoint (classes other than background and ignore).
    pub val_map: Option<f64>,
    pub seed: u64,
    /// Every training option as given, for the record.
    pub options: serde_json::Value,
    pub actiond_version: String,
}

/// The sidecar of a project checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub format: String,
    pub config: OadtrConfig,
    /// One name per class, index 0 background.
    pub labels: Vec<String>,
    /// Features the model reads; `None` for a model whose feature provenance is unknown (official weights).
    pub feature_spec: Option<FeatureSpec>,
    /// Class excluded from training and evaluation (THUMOS's "Ambiguous", 21), if any.
    #[serde(default)]
    pub ignore_class: Option<usize>,
    pub training: Option<TrainingProvenance>,
}

impl ModelCard {
    /// A card with generic label names `background`, `class_1`, ….
    pub fn new(config: OadtrConfig) -> Self {
        let labels = (0..config.numclass)
            .map(|i| if i == 0 { "background".to_string() } else { format!("class_{i}") })
            .collect();
        Self { format: SIDECAR_FORMAT.into(), config, labels, feature_spec: None, ignore_class: None, training: None }
    }

    /// Every field consistent with the others; errors name `path`.
    pub fn check(&self, path: &Path) -> Result<(), CheckpointError> {
        let invalid = |message: String| CheckpointError::Invalid { path: path.to_path_buf(), message };
        if self.format != SIDECAR_FORMAT {
            return Err(invalid(format!("format is {:?}, expected {SIDECAR_FORMAT:?}", self.format)));
        }
        if let Err(problems) = self.config.check() {
            return Err(invalid(format!("config: {}", problems.join("; "))));
        }
        if self.labels.len() != self.config.numclass {
            return Err(invalid(format!(
                "labels lists {} names but config.numclass is {}",
                self.labels.len(),
                self.config.numclass
            )));
        }
        if let Some(spec) = &self.feature_spec {
            if spec.dim != self.config.dim_feature {
                return Err(invalid(format!(
                    "feature_spec.dim is {} but config.dim_feature is {}",
                    spec.dim, self.config.dim_feature
                )));
            }
        }
        if let Some(ignore) = self.ignore_class {
            if ignore == 0 || ignore >= self.config.numclass {
                return Err(invalid(format!("ignore_class {ignore} is not an action class (1..{})", self.config.numclass)));
            }
        }
        Ok(())
    }
}

/// A loaded detector and its card.
#[derive(Debug, Clone)]
pub struct Detector {
    /// The candle model (trainable; debug taps).
    pub model: Oadtr,
    /// The same weights for inference on the CPU: what streams, `predict` and `eval` run.
    pub engine: OadtrCpu,
    pub card: ModelCard,
}

/// Head counts for an official checkpoint (shapes do not reveal them).
#[derive(Debug, Clone, Copy)]
pub struct HeadCounts {
    pub num_heads: usize,
    pub decoder_num_heads: usize,
}

impl Default for HeadCounts {
    fn default() -> Self {
        let official = OadtrConfig::official_default();
        Self { num_heads: official.num_heads, decoder_num_heads: official.decoder_num_heads }
    }
}

/// The sidecar path of a weights file: `NAME.safetensors` → `NAME.json`.
pub fn sidecar_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// Reads the project sidecar beside `weights`, or `None` when there is none of ours (an official state
/// dict, possibly with some other JSON beside it).
pub fn read_card(weights: &Path) -> Result<Option<ModelCard>, CheckpointError> {
    let path = sidecar_path(weights);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&path)(e)),
    };
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| CheckpointError::Invalid { path: path.clone(), message: format!("not JSON: {e}") })?;
    if value.get("format").and_then(|f| f.as_str()) != Some(SIDECAR_FORMAT) {
        return Ok(None);
    }
    let card: ModelCard = serde_path_to_error::deserialize(value)
        .map_err(|e| CheckpointError::Invalid { path: path.clone(), message: format!("at {}: {}", e.path(), e.inner()) })?;
    card.check(&path)?;
    Ok(Some(card))
}

/// Derives the configuration of an official state dict from its tensor shapes.
pub fn infer_config(weights: &Path, heads: HeadCounts) -> Result<OadtrConfig, CheckpointError> {
    let invalid = |message: String| CheckpointError::Invalid { path: weights.to_path_buf(), message };
    // SAFETY: the file is only read; a concurrent writer would break any reader.
    let tensors = unsafe { candle_core::safetensors::MmapedSafetensors::new(weights) }
        .map_err(|e| invalid(format!("not a safetensors file: {e}")))?;
    let shape = |name: &str| -> Result<Vec<usize>, CheckpointError> {
        tensors
            .get(name)
            .map(|view| view.shape().to_vec())
            .map_err(|_| invalid(format!("has no tensor {name:?}: not an OadTR state dict")))
    };
    let count = |prefix: &str, suffix: &str| {
        (0..).take_while(|i| tensors.get(&format!("{prefix}{i}{suffix}")).is_ok()).count()
    };
    let linear = shape("linear_encoding.weight")?;
    let pe = shape("position_encoding.pe.weight")?;
    let mlp = shape("encoder.net.1.fn.fn.net.0.weight")?;
    let queries = shape("decoder_cls_token")?;
    let conv1 = shape("decoder.layers.0.conv1.weight")?;
    let classifier = shape("classifier.weight")?;
    let (Some(&d), Some(&dim_feature), Some(&rows), Some(&hidden), Some(&q), Some(&dd), Some(&ff), Some(&c)) = (
        linear.first(),
        linear.get(1),
        pe.first(),
        mlp.first(),
        queries.get(1),
        queries.get(2),
        conv1.first(),
        classifier.first(),
    ) else {
        return Err(invalid("tensor shapes are not those of an OadTR state dict".into()));
    };
    let config = OadtrConfig {
        dim_feature,
        enc_layers: rows.saturating_sub(1),
        embedding_dim: d,
        num_heads: heads.num_heads,
        num_layers: count("encoder.net.", ".fn.norm.weight") / 2,
        hidden_dim: hidden,
        query_num: q,
        decoder_layers: count("decoder.layers.", ".norm1.weight"),
        decoder_embedding_dim: dd,
        decoder_embedding_dim_out: ff,
        decoder_num_heads: heads.decoder_num_heads,
        numclass: c,
        ..OadtrConfig::official_default()
    };
    config.check().map_err(|problems| invalid(format!("inferred config: {}", problems.join("; "))))?;
    Ok(config)
}

impl Detector {
    /// Loads a project checkpoint, or an official state dict (config from its shapes and `heads`).
    pub fn load(weights: &Path, heads: HeadCounts, device: &Device) -> Result<Self, CheckpointError> {
        if !weights.is_file() {
            return Err(io_error(weights)(std::io::Error::new(std::io::ErrorKind::NotFound, "no such model file")));
        }
        let card = match read_card(weights)? {
            Some(card) => card,
            None => ModelCard::new(infer_config(weights, heads)?),
        };
        // SAFETY: as above, the weights file is only read.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, device) }
            .map_err(|source| CheckpointError::Model { path: weights.to_path_buf(), source })?;
        let model_error = |source| CheckpointError::Model { path: weights.to_path_buf(), source };
        let model = Oadtr::new(vb.clone(), &card.config).map_err(model_error)?;
        let engine = OadtrCpu::new(vb, &card.config).map_err(model_error)?;
        Ok(Self { model, engine, card })
    }
}

/// Writes the trainable tensors of `varmap` and the card (see [`save_tensors`]).
pub fn save(varmap: &candle_nn::VarMap, card: &ModelCard, weights: &Path) -> Result<(), CheckpointError> {
    let tensors: HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .expect("the var map lock is never poisoned: nothing panics while holding it")
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect();
    save_tensors(&tensors, card, weights)
}

/// Writes weights and card atomically: both temporary files first, then the renames, weights first.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, card: &ModelCard, weights: &Path) -> Result<(), CheckpointError> {
    card.check(weights)?;
    let card_path = sidecar_path(weights);
    let weights_tmp = tmp_path(weights);
    let card_tmp = tmp_path(&card_path);
    candle_core::safetensors::save(tensors, &weights_tmp)
        .map_err(|source| CheckpointError::Model { path: weights_tmp.clone(), source })?;
    let json = serde_json::to_string_pretty(card).expect("a model card always serializes");
    write_synced(&card_tmp, json.as_bytes())?;
    sync_file(&weights_tmp)?;
    std::fs::rename(&weights_tmp, weights).map_err(io_error(weights))?;
    std::fs::rename(&card_tmp, &card_path).map_err(io_error(&card_path))?;
    Ok(())
}

/// Writes tensors as safetensors atomically (temporary file, sync, rename).
pub fn write_tensors_atomically(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<(), CheckpointError> {
    let tmp = tmp_path(path);
    candle_core::safetensors::save(tensors, &tmp).map_err(|source| CheckpointError::Model { path: tmp.clone(), source })?;
    sync_file(&tmp)?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

/// `PATH.tmp`, the name a file is written under before its rename.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(path).map_err(io_error(path))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io_error(path))
}

fn sync_file(path: &Path) -> Result<(), CheckpointError> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(io_error(path))
}

/// Writes `bytes` to `path` atomically (temporary file, sync, rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let tmp = tmp_path(path);
    write_synced(&tmp, bytes)?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}
