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

use candle_core::{Device, Result, Tensor};

use crate::cpu_attention::softmax_rows;
use crate::detector::oadtr_cpu::{Logits, OadtrCpu};

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

/// Applies the requested activation in place to rows of `classes` logits.
pub fn activate_rows(rows: &mut [f32], classes: usize, activation: Activation) {
    let ignore = match activation {
        Activation::Logits => return,
        Activation::Probabilities { ignore_class } => ignore_class,
    };
    if let Some(ignore) = ignore.filter(|&i| i < classes) {
        rows.chunks_exact_mut(classes).for_each(|row| row[ignore] = f32::NEG_INFINITY);
    }
    softmax_rows(rows, classes);
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
    model: OadtrCpu,
    activation: Activation,
    rings: Vec<Option<ChunkRing>>,
}

impl StreamingDetector {
    pub fn new(model: OadtrCpu, activation: Activation) -> Self {
        Self { model, activation, rings: Vec::new() }
    }

    pub fn model(&self) -> &OadtrCpu {
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
        let projected = self.model.embed_chunks(&features, n);
        let mut windows = Vec::with_capacity(n * window * d);
        for ((id, _), row) in inputs.iter().zip(projected.chunks_exact(d)) {
            let ring = self.rings[id.0].as_mut().expect("checked above");
            ring.push(row.to_vec(), window);
            ring.extend_window(&mut windows, window);
        }
        let Logits { mut current, mut anticipation } = self.model.forward_embedded(&windows, n);
        let (classes, queries) = (cfg.numclass, cfg.query_num);
        activate_rows(&mut current, classes, self.activation);
        activate_rows(&mut anticipation, classes, self.activation);
        Ok(current
            .chunks_exact(classes)
            .zip(anticipation.chunks_exact(queries * classes))
            .map(|(current, anticipation)| StepOutput {
                current: current.to_vec(),
                anticipation: anticipation.chunks_exact(classes).map(<[f32]>::to_vec).collect(),
            })
            .collect())
    }
}

/// Offline inference over a whole sequence [L, D], exactly as a stream would see it: the window ending
/// at every chunk, padded by [`window_indices`]. Returns current [L, C] and anticipation [L, Q, C].
/// `on_batch` is called with the number of chunks done after each batch (for progress bars).
pub fn run_sequence(
    model: &OadtrCpu,
    features: &Tensor,
    activation: Activation,
    batch: usize,
    mut on_batch: impl FnMut(usize),
) -> Result<(Tensor, Tensor)> {
    let (len, dim) = features.dims2()?;
    let cfg = model.config();
    let (window, d, classes, queries) = (cfg.enc_layers, cfg.embedding_dim, cfg.numclass, cfg.query_num);
    if len == 0 {
        candle_core::bail!("the sequence is empty");
    }
    if dim != cfg.dim_feature {
        candle_core::bail!("features have {dim} values per chunk, the model expects {}", cfg.dim_feature);
    }
    let features: Vec<f32> = features.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1()?;
    let projected = model.embed_chunks(&features, len);
    let mut current = Vec::with_capacity(len * classes);
    let mut anticipation = Vec::with_capacity(len * queries * classes);
    let mut windows = Vec::new();
    for start in (0..len).step_by(batch.max(1)) {
        let end = (start + batch.max(1)).min(len);
        windows.clear();
        for i in (start..end).flat_map(|t| window_indices(t, window)) {
            windows.extend_from_slice(&projected[i * d..(i + 1) * d]);
        }
        let logits = model.forward_embedded(&windows, end - start);
        current.extend(logits.current);
        anticipation.extend(logits.anticipation);
        on_batch(end);
    }
    activate_rows(&mut current, classes, activation);
    activate_rows(&mut anticipation, classes, activation);
    Ok((Tensor::from_vec(current, (len, classes), &Device::Cpu)?, Tensor::from_vec(anticipation, (len, queries, classes), &Device::Cpu)?))
}
