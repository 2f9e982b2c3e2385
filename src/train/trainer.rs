//! Training OadTR on the per-frame feature layout, following the official recipe by default: windows
//! of T chunks ending at every chunk from a random start offset, soft-label cross-entropy on the
//! current chunk plus `anticipation_weight` × the same on the Q future chunks, Adam (PyTorch's, with
//! weight decay added to the gradient) lr 1e-4 and weight decay 1e-4, batch 128, gradient-norm clipping
//! at 1.0, step decay (×0.1 every epoch, the official `lr_drop` 1), 5 epochs.
//!
//! Windows are padded as live streams pad them (`detector::window`), so early chunks are trained on.
//! Future targets past the end of a video are masked out; frames whose target is the ignore class are
//! left out of the loss, as in the official criterion, which also removes that class from the softmax.
//!
//! Reproducible on CPU: initial weights, the shuffle and dropout masks all derive from the seed, and
//! each epoch reseeds from (seed, epoch), so a resumed run continues exactly as an unbroken one would.
//! After every epoch `OUT/last.*` (weights, card, optimizer state) is written atomically and
//! `OUT/best.*` is replaced when validation mAP improves.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::detector::checkpoint::{self, CheckpointError, ModelCard, TrainingProvenance};
use crate::detector::oadtr::{Oadtr, OadtrConfig};
use crate::detector::oadtr_cpu::OadtrCpu;
use crate::detector::window::{run_sequence, window_indices, Activation};
use crate::eval::metrics::frame_metrics;
use crate::train::dataset::Video;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("model: {0}")]
    Model(#[from] candle_core::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {message}")]
    Resume { path: PathBuf, message: String },
}

/// Optimisation settings (the official recipe by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Global gradient-norm limit; 0 disables clipping.
    pub clip_max_norm: f64,
    /// Multiply the learning rate by `lr_gamma` every `lr_drop` epochs.
    pub lr_drop: usize,
    pub lr_gamma: f64,
    /// Weight of the anticipation loss beside the current-chunk loss.
    pub anticipation_weight: f64,
    /// Distance between the ends of consecutive training windows.
    pub stride: usize,
    /// Cap on windows per epoch (after shuffling), for quick runs.
    pub max_windows_per_epoch: Option<usize>,
    pub seed: u64,
    /// Class excluded from the loss and the metrics (THUMOS "Ambiguous" 21).
    pub ignore_class: Option<usize>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 5,
            batch_size: 128,
            lr: 1e-4,
            weight_decay: 1e-4,
            clip_max_norm: 1.0,
            lr_drop: 1,
            lr_gamma: 0.1,
            anticipation_weight: 0.5,
            stride: 1,
            max_windows_per_epoch: None,
            seed: 0,
            ignore_class: None,
        }
    }
}

/// What one epoch did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub windows: usize,
    pub val_map: Option<f64>,
    pub seconds: f64,
}

/// Progress callbacks: per batch (done, total, running loss) and per epoch.
pub trait Progress {
    fn epoch_start(&mut self, _epoch: usize, _windows: usize) {}
    fn batch(&mut self, _done: usize, _loss: f64) {}
    fn epoch_end(&mut self, _report: &EpochReport) {}
}

/// No progress output.
pub struct Quiet;
impl Progress for Quiet {}

/// Optimizer and schedule state saved beside `last` so training can resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ResumeState {
    epochs_done: usize,
    adam_step: u64,
    best_val_map: Option<f64>,
    best_epoch: Option<usize>,
    options: TrainOptions,
    config: OadtrConfig,
    history: Vec<EpochReport>,
}

/// PyTorch's `Adam` with L2 weight decay added to the gradient (not AdamW).
struct Adam {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
    weight_decay: f64,
}

impl Adam {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;

    fn new(varmap: &VarMap, weight_decay: f64) -> candle_core::Result<Self> {
        let mut vars: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .expect("the var map lock is never poisoned")
            .iter()
            .map(|(name, var)| (name.clone(), var.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let m = vars.iter().map(|(_, v)| v.zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        let v = vars.iter().map(|(_, v)| v.zeros_like()).collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { vars, m, v, step: 0, weight_decay })
    }

    /// One step; returns the gradient norm before clipping.
    fn step(&mut self, grads: &candle_core::backprop::GradStore, lr: f64, clip: f64) -> candle_core::Result<f64> {
        let grads: Vec<Option<Tensor>> = self.vars.iter().map(|(_, var)| grads.get(var).cloned()).collect();
        let mut norm_sq = 0.0f64;
        for g in grads.iter().flatten() {
            norm_sq += g.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        }
        let norm = norm_sq.sqrt();
        // torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when that is below 1.
        let scale = if clip > 0.0 && norm > clip { clip / (norm + 1e-6) } else { 1.0 };
        self.step += 1;
        let bias1 = 1.0 - Self::BETA1.powi(self.step as i32);
        let bias2 = 1.0 - Self::BETA2.powi(self.step as i32);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = &grads[i] else { continue };
            // Detached: moments computed from a variable would otherwise keep a backprop graph
            // reaching through every earlier step, and memory would grow with each batch.
            let g = ((g.detach() * scale)? + (var.as_tensor().detach() * self.weight_decay)?)?;
            self.m[i] = ((&self.m[i] * Self::BETA1)? + (&g * (1.0 - Self::BETA1))?)?.detach();
            self.v[i] = ((&self.v[i] * Self::BETA2)? + (g.sqr()? * (1.0 - Self::BETA2))?)?.detach();
            let denom = ((self.v[i].sqrt()? / bias2.sqrt())? + Self::EPS)?;
            let update = ((&self.m[i] / denom)? * (lr / bias1))?;
            var.set(&(var.as_tensor() - update)?)?;
        }
        Ok(norm)
    }

    fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("adam.m.{name}"), self.m[i].clone());
            out.insert(format!("adam.v.{name}"), self.v[i].clone());
        }
        out
    }

    fn load_state(&mut self, tensors: &HashMap<String, Tensor>, step: u64) -> Result<(), String> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (kind, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let t = tensors.get(&format!("adam.{kind}.{name}")).ok_or_else(|| format!("no optimizer state for {name}"))?;
                if t.dims() != var.dims() {
                    return Err(format!("optimizer state for {name} is {:?}, the model has {:?}", t.dims(), var.dims()));
                }
                *slot = t.clone();
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Standard normal sample (Box–Muller).
fn normal(rng: &mut fastrand::Rng) -> f32 {
    let u1 = rng.f64().max(f64::MIN_POSITIVE);
    let u2 = rng.f64();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Overwrites every variable with a seeded draw from PyTorch's default initialisation for its layer:
/// Linear/Conv1d weight and bias U(±1/√fan_in), LayerNorm 1 and 0, Embedding N(0, 1), tokens 0.
fn seeded_init(varmap: &VarMap, seed: u64) -> candle_core::Result<()> {
    let data = varmap.data().lock().expect("the var map lock is never poisoned");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = fastrand::Rng::with_seed(seed);
    for name in names {
        let var = &data[name];
        let n = var.elem_count();
        let is_norm = name.contains("norm") || name.starts_with("pre_head_ln");
        let values: Vec<f32> = if name.ends_with("cls_token") {
            vec![0.0; n]
        } else if is_norm {
            vec![if name.ends_with("weight") { 1.0 } else { 0.0 }; n]
        } else if name.ends_with("pe.weight") {
            (0..n).map(|_| normal(&mut rng)).collect()
        } else {
            let weight_name = name.strip_suffix("bias").map(|p| format!("{p}weight")).unwrap_or_else(|| name.clone());
            let fan_in: usize = data.get(&weight_name).map(|w| w.dims()[1..].iter().product()).unwrap_or(1);
            let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
            (0..n).map(|_| (rng.f32() * 2.0 - 1.0) * bound).collect()
        };
        var.set(&Tensor::from_vec(values, var.shape(), var.device())?)?;
    }
    Ok(())
}

/// Soft-label cross-entropy averaged over rows with non-zero `weight`: Σ_c −y_c log softmax(x)_c over
/// the kept classes.
fn soft_cross_entropy(logits: &Tensor, targets: &Tensor, weight: &Tensor, kept: &Tensor) -> candle_core::Result<Tensor> {
    let logits = logits.index_select(kept, D::Minus1)?;
    let targets = targets.index_select(kept, D::Minus1)?;
    let per_row = (targets * candle_nn::ops::log_softmax(&logits, D::Minus1)?)?.sum(D::Minus1)?.neg()?;
    let total = weight.sum_all()?.to_scalar::<f32>()?;
    (per_row * weight)?.sum_all()? / f64::from(total.max(1.0))
}

/// A training window: which video, ending at which chunk.
#[derive(Debug, Clone, Copy)]
struct WindowRef {
    video: usize,
    end: usize,
}

/// Trains (or resumes) and writes checkpoints to `out_dir`. Returns the per-epoch reports of the run.
#[allow(clippy::too_many_arguments)]
pub fn train(
    config: &OadtrConfig,
    mut card: ModelCard,
    options: &TrainOptions,
    train_videos: &[Video],
    val_videos: &[Video],
    out_dir: &Path,
    resume: bool,
    progress: &mut dyn Progress,
) -> Result<Vec<EpochReport>, TrainError> {
    if train_videos.is_empty() {
        return Err(TrainError::Invalid("no training videos".into()));
    }
    if options.batch_size == 0 || options.stride == 0 || options.lr_drop == 0 {
        return Err(TrainError::Invalid("batch size, stride and lr_drop must be at least 1".into()));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| TrainError::Invalid(format!("{}: {e}", out_dir.display())))?;
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let model = Oadtr::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), config)?;
    seeded_init(&varmap, options.seed)?;
    let mut adam = Adam::new(&varmap, options.weight_decay)?;
    let last = out_dir.join("last.safetensors");
    let best = out_dir.join("best.safetensors");
    let state_path = out_dir.join("last.state.json");
    let optimizer_path = out_dir.join("last.optimizer.safetensors");
    let mut state = ResumeState {
        epochs_done: 0,
        adam_step: 0,
        best_val_map: None,
        best_epoch: None,
        options: options.clone(),
        config: config.clone(),
        history: Vec::new(),
    };
    if resume && state_path.exists() {
        let resume_err = |path: &Path, message: String| TrainError::Resume { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(&state_path).map_err(|e| resume_err(&state_path, e.to_string()))?;
        let saved: ResumeState = serde_json::from_str(&text).map_err(|e| resume_err(&state_path, e.to_string()))?;
        if saved.config != *config {
            return Err(resume_err(&state_path, "was written for a different model config".into()));
        }
        let mut varmap_load = varmap.clone();
        varmap_load.load(&last).map_err(|e| resume_err(&last, e.to_string()))?;
        let tensors = candle_core::safetensors::load(&optimizer_path, &device).map_err(|e| resume_err(&optimizer_path, e.to_string()))?;
        adam.load_state(&tensors, saved.adam_step).map_err(|m| resume_err(&optimizer_path, m))?;
        state = ResumeState { options: options.clone(), ..saved };
    }

    let classes = config.numclass;
    let q = config.query_num;
    let t_window = config.enc_layers;
    let kept_classes: Vec<u32> = (0..classes as u32).filter(|&c| Some(c as usize) != options.ignore_class).collect();
    let kept = Tensor::new(kept_classes, &device)?;
    let mut reports = Vec::new();
    for epoch in state.epochs_done..options.epochs {
        let started = std::time::Instant::now();
        let epoch_seed = options.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64 + 1);
        let mut rng = fastrand::Rng::with_seed(epoch_seed);
        model.seed_dropout(epoch_seed ^ 0x9e37_79b9_7f4a_7c15);
        let mut windows = Vec::new();
        for (video, v) in train_videos.iter().enumerate() {
            let offset = rng.usize(0..t_window.min(v.len).max(1));
            windows.extend((offset..v.len).step_by(options.stride).map(|end| WindowRef { video, end }));
        }
        rng.shuffle(&mut windows);
        if let Some(cap) = options.max_windows_per_epoch {
            windows.truncate(cap);
        }
        let lr = options.lr * options.lr_gamma.powi((epoch / options.lr_drop) as i32);
        progress.epoch_start(epoch, windows.len());
        let (mut loss_sum, mut seen) = (0.0f64, 0usize);
        for (batch_index, batch) in windows.chunks(options.batch_size).enumerate() {
            let b = batch.len();
            let dim = config.dim_feature;
            let mut features = Vec::with_capacity(b * t_window * dim);
            let mut current = Vec::with_capacity(b * classes);
            let mut current_weight = Vec::with_capacity(b);
            let mut future = Vec::with_capacity(b * q * classes);
            let mut future_weight = Vec::with_capacity(b * q);
            let not_ignored = |row: &[f32]| options.ignore_class.is_none_or(|i| row[i] <= 0.5);
            for w in batch {
                let v = &train_videos[w.video];
                for i in window_indices(w.end, t_window) {
                    features.extend_from_slice(v.feature_row(i));
                }
                let row = v.target_row(w.end);
                current.extend_from_slice(row);
                current_weight.push(if not_ignored(row) { 1.0f32 } else { 0.0 });
                for step in 0..q {
                    let t = w.end + 1 + step;
                    if t < v.len {
                        let row = v.target_row(t);
                        future.extend_from_slice(row);
                        future_weight.push(if not_ignored(row) { 1.0f32 } else { 0.0 });
                    } else {
                        future.extend(std::iter::repeat_n(0.0, classes));
                        future_weight.push(0.0);
                    }
                }
            }
            let x = Tensor::from_vec(features, (b, t_window, dim), &device)?;
            let out = model.forward(&x, true)?;
            let current = Tensor::from_vec(current, (b, classes), &device)?;
            let current_weight = Tensor::from_vec(current_weight, b, &device)?;
            let future = Tensor::from_vec(future, (b * q, classes), &device)?;
            let future_weight = Tensor::from_vec(future_weight, b * q, &device)?;
            let loss_current = soft_cross_entropy(&out.current, &current, &current_weight, &kept)?;
            let loss_future = soft_cross_entropy(&out.anticipation.reshape((b * q, classes))?, &future, &future_weight, &kept)?;
            let loss = (loss_current + (loss_future * options.anticipation_weight)?)?;
            let value = f64::from(loss.to_scalar::<f32>()?);
            if !value.is_finite() {
                return Err(TrainError::Invalid(format!("the loss became {value} at epoch {} batch {batch_index}; lower --lr", epoch + 1)));
            }
            let grads = loss.backward()?;
            adam.step(&grads, lr, options.clip_max_norm)?;
            loss_sum += value * b as f64;
            seen += b;
            progress.batch(seen, loss_sum / seen as f64);
        }
        let val_map = if val_videos.is_empty() {
            None
        } else {
            // Scored by the inference engine on this epoch's weights, as the daemon would run them.
            let engine = OadtrCpu::new(VarBuilder::from_varmap(&varmap, DType::F32, &device), config)?;
            Some(validation_map(&engine, val_videos, options.ignore_class)?)
        };
        let report = EpochReport {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            windows: seen,
            val_map,
            seconds: started.elapsed().as_secs_f64(),
        };
        state.epochs_done = epoch + 1;
        state.adam_step = adam.step;
        state.history.push(report.clone());
        let improved = match (val_map, state.best_val_map) {
            (Some(new), Some(old)) => new > old,
            (Some(_), None) => true,
            (None, _) => true,
        };
        if improved {
            state.best_val_map = val_map;
            state.best_epoch = Some(epoch + 1);
        }
        card.training = Some(TrainingProvenance {
            epochs: epoch + 1,
            best_epoch: state.best_epoch,
            val_map,
            seed: options.seed,
            options: serde_json::to_value(options).expect("options serialize"),
            actiond_version: env!("CARGO_PKG_VERSION").to_string(),
            ..card.training.clone().unwrap_or_default()
        });
        card.config = config.clone();
        checkpoint::save(&varmap, &card, &last)?;
        checkpoint::write_tensors_atomically(&adam.state_tensors(), &optimizer_path)?;
        checkpoint::write_atomically(&state_path, serde_json::to_string_pretty(&state).expect("state serializes").as_bytes())?;
        if improved {
            checkpoint::save(&varmap, &card, &best)?;
        }
        progress.epoch_end(&report);
        reports.push(report);
    }
    Ok(reports)
}

/// Current-chunk mAP of the model on videos, windows as a stream sees them.
pub fn validation_map(model: &OadtrCpu, videos: &[Video], ignore_class: Option<usize>) -> Result<f64, TrainError> {
    let classes = model.config().numclass;
    let mut scores = Vec::new();
    let mut targets = Vec::new();
    for v in videos {
        let x = Tensor::from_slice(&v.features, (v.len, v.dim), &Device::Cpu)?;
        let (current, _) = run_sequence(model, &x, Activation::Probabilities { ignore_class }, 64, |_| {})?;
        scores.extend(current.flatten_all()?.to_vec1::<f32>()?);
        targets.extend_from_slice(&v.targets);
    }
    frame_metrics(&scores, &targets, classes, ignore_class)
        .map(|m| m.map)
        .map_err(|e| TrainError::Invalid(format!("validation: {e}")))
}
