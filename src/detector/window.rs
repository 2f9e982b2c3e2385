//! Windows of chunk features, live and offline, with one padding rule shared by the daemon, `predict`,
//! `eval` and `train`.
//!
//! **Padding:** the window ending at chunk t holds chunks t-T+1 ..= t; positions before the first chunk
//! of the sequence repeat the first chunk. (Zeros would put an input the model never sees in a real
//! window at the front of every early window; repeating the first chunk reads as "the scene was already
//! like this".) `train` builds its windows with [`window_indices`], so the model is trained on exactly
//! the padded windows it is run on.
//!
//! **Reuse:** the input projection (`linear_encoding`) acts on each chunk alone, so a stream projects each
//! new chunk once and keeps the projected rows in its ring; a step only runs the encoder and decoder.
//! The result is the same computation as projecting the whole window, up to float summation order.

use std::collections::VecDeque;

use candle_core::{DType, Device, Result, Tensor, D};

use crate::detector::oadtr::Oadtr;

/// Chunk index at each of the T window positions for the window ending at chunk `t` (padding included).
pub fn window_indices(t: usize, window: usize) -> impl Iterator<Item = usize> {
    (0..window).map(move |j| (t + j + 1).saturating_sub(window))
}

/// Current and anticipated outputs for one chunk of one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutput {
    /// [C] probabilities (or logits, see [`Activation`]) for the chunk just pushed.
    pub current: Vec<f32>,
    /// [Q][C]: row i is chunk t+1+i.
    pub anticipation: Vec<Vec<f32>>,
}

/// What the detector returns per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Raw logits.
    Logits,
    /// Softmax over the classes; an ignore class (THUMOS's "Ambiguous") is left out of the softmax and
    /// reported as 0, as the official evaluation does.
    Probabilities { ignore_class: Option<usize> },
}

/// Turns logits [.., C] into the requested activation.
pub fn activate(logits: &Tensor, activation: Activation) -> Result<Tensor> {
    match activation {
        Activation::Logits => Ok(logits.clone()),
        Activation::Probabilities { ignore_class: None } => candle_nn::ops::softmax_last_dim(&logits.contiguous()?),
        Activation::Probabilities { ignore_class: Some(ignore) } => {
            let c = logits.dim(D::Minus1)?;
            let mask: Vec<f32> = (0..c).map(|i| if i == ignore { f32::NEG_INFINITY } else { 0.0 }).collect();
            let mask = Tensor::from_vec(mask, c, logits.device())?;
            candle_nn::ops::softmax_last_dim(&logits.broadcast_add(&mask)?.contiguous()?)
        }
    }
}

/// The last T projected chunks of one stream.
#[derive(Debug, Clone, Default)]
struct ChunkRing {
    rows: VecDeque<Vec<f32>>,
    first: Option<Vec<f32>>,
}

impl ChunkRing {
    fn push(&mut self, row: Vec<f32>, window: usize) {
        if self.first.is_none() {
            self.first = Some(row.clone());
        }
        if self.rows.len() == window {
            self.rows.pop_front();
        }
        self.rows.push_back(row);
    }

    /// The window, oldest first, padded in front with the first chunk.
    fn extend_window(&self, out: &mut Vec<f32>, window: usize) {
        let first = self.first.as_ref().expect("a stream is stepped only after a push");
        for _ in self.rows.len()..window {
            out.extend_from_slice(first);
        }
        for row in &self.rows {
            out.extend_from_slice(row);
        }
    }
}

/// Handle of a stream in a [`StreamingDetector`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(usize);

impl StreamId {
    /// The slot number of this stream.
    pub fn slot(self) -> usize {
        self.0
    }
}

/// Many live streams, one batched forward pass per step.
#[derive(Debug)]
pub struct StreamingDetector {
    model: Oadtr,
    activation: Activation,
    rings: Vec<Option<ChunkRing>>,
}

impl StreamingDetector {
    pub fn new(model: Oadtr, activation: Activation) -> Self {
        Self { model, activation, rings: Vec::new() }
    }

    pub fn model(&self) -> &Oadtr {
        &self.model
    }

    /// A new stream with an empty window.
    pub fn add_stream(&mut self) -> StreamId {
        if let Some(free) = self.rings.iter().position(Option::is_none) {
            self.rings[free] = Some(ChunkRing::default());
            return StreamId(free);
        }
        self.rings.push(Some(ChunkRing::default()));
        StreamId(self.rings.len() - 1)
    }

    /// Opens slot `slot` if it is not open yet (for callers that number their streams themselves) and
    /// returns its id.
    pub fn open_slot(&mut self, slot: usize) -> StreamId {
        if self.rings.len() <= slot {
            self.rings.resize_with(slot + 1, || None);
        }
        self.rings[slot].get_or_insert_with(ChunkRing::default);
        StreamId(slot)
    }

    /// Empties a stream's window (the stream restarted); the next push starts a new padded window.
    pub fn reset(&mut self, id: StreamId) {
        if let Some(Some(ring)) = self.rings.get_mut(id.0) {
            *ring = ChunkRing::default();
        }
    }

    /// Forgets a stream (its id may be reused).
    pub fn remove_stream(&mut self, id: StreamId) {
        if let Some(slot) = self.rings.get_mut(id.0) {
            *slot = None;
        }
    }

    /// Pushes one chunk feature per listed stream and returns each one's outputs, in input order, from
    /// a single forward pass. A stream may appear at most once per step.
    pub fn step(&mut self, inputs: &[(StreamId, &[f32])]) -> Result<Vec<StepOutput>> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let cfg = self.model.config().clone();
        let (window, d) = (cfg.enc_layers, cfg.embedding_dim);
        let mut seen = std::collections::HashSet::new();
        let mut features = Vec::with_capacity(inputs.len() * cfg.dim_feature);
        for (id, feature) in inputs {
            if self.rings.get(id.0).and_then(Option::as_ref).is_none() {
                candle_core::bail!("stream {} is not open", id.0);
            }
            if !seen.insert(id.0) {
                candle_core::bail!("stream {} is pushed twice in one step", id.0);
            }
            if feature.len() != cfg.dim_feature {
                candle_core::bail!("feature has {} values, the model expects {}", feature.len(), cfg.dim_feature);
            }
            features.extend_from_slice(feature);
        }
        let n = inputs.len();
        let device = Device::Cpu;
        let projected = self.model.embed_chunks(&Tensor::from_vec(features, (n, cfg.dim_feature), &device)?)?;
        let projected: Vec<Vec<f32>> = projected.to_vec2()?;
        let mut windows = Vec::with_capacity(n * window * d);
        for ((id, _), row) in inputs.iter().zip(projected) {
            let ring = self.rings[id.0].as_mut().expect("checked above");
            ring.push(row, window);
            ring.extend_window(&mut windows, window);
        }
        let windows = Tensor::from_vec(windows, (n, window, d), &device)?;
        let out = self.model.forward_embedded(&windows, false)?;
        let current: Vec<Vec<f32>> = activate(&out.current, self.activation)?.to_vec2()?;
        let anticipation: Vec<Vec<Vec<f32>>> = activate(&out.anticipation, self.activation)?.to_vec3()?;
        Ok(current.into_iter().zip(anticipation).map(|(current, anticipation)| StepOutput { current, anticipation }).collect())
    }
}

/// Offline inference over a whole sequence [L, D], exactly as a stream would see it: the window ending
/// at every chunk, padded by [`window_indices`]. Returns current [L, C] and anticipation [L, Q, C].
/// `on_batch` is called with the number of chunks done after each batch (for progress bars).
pub fn run_sequence(
    model: &Oadtr,
    features: &Tensor,
    activation: Activation,
    batch: usize,
    mut on_batch: impl FnMut(usize),
) -> Result<(Tensor, Tensor)> {
    let (len, _) = features.dims2()?;
    let window = model.config().enc_layers;
    if len == 0 {
        candle_core::bail!("the sequence is empty");
    }
    let projected = model.embed_chunks(features)?;
    let mut currents = Vec::new();
    let mut anticipations = Vec::new();
    for start in (0..len).step_by(batch.max(1)) {
        let end = (start + batch.max(1)).min(len);
        let indices: Vec<u32> = (start..end).flat_map(|t| window_indices(t, window)).map(|i| i as u32).collect();
        let indices = Tensor::from_vec(indices, (end - start) * window, features.device())?;
        let windows = projected.index_select(&indices, 0)?.reshape((end - start, window, ()))?;
        let out = model.forward_embedded(&windows, false)?;
        currents.push(activate(&out.current, activation)?);
        anticipations.push(activate(&out.anticipation, activation)?);
        on_batch(end);
    }
    Ok((Tensor::cat(&currents, 0)?.to_dtype(DType::F32)?, Tensor::cat(&anticipations, 0)?))
}
