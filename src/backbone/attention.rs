//! Multi-head self-attention with Hugging Face's ViT/DINOv2 weight layout
//! (`attention.attention.{query,key,value}`, `attention.output.dense`), shared by both models.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::linear::Linear;

/// The shape of an attention block.
#[derive(Debug, Clone, Copy)]
pub struct AttentionConfig {
    pub hidden_size: usize,
    pub num_heads: usize,
    pub qkv_bias: bool,
}

#[derive(Debug, Clone)]
pub struct SelfAttention {
    /// Query, key and value projections stacked into one [3·D, D] matrix: one matmul instead of three.
    qkv: Linear,
    output: Linear,
    num_heads: usize,
    head_dim: usize,
}

impl SelfAttention {
    /// `vb` points at a layer's `attention`.
    pub fn new(vb: VarBuilder, cfg: &AttentionConfig) -> Result<Self> {
        let d = cfg.hidden_size;
        if d % cfg.num_heads != 0 {
            candle_core::bail!("hidden size {d} is not a multiple of the {} attention heads", cfg.num_heads);
        }
        let inner = vb.pp("attention");
        let mut weights = Vec::with_capacity(3);
        let mut biases = Vec::with_capacity(3);
        for name in ["query", "key", "value"] {
            let vb = inner.pp(name);
            weights.push(vb.get((d, d), "weight")?);
            biases.push(if cfg.qkv_bias { vb.get(d, "bias")? } else { Tensor::zeros(d, vb.dtype(), vb.device())? });
        }
        let head_dim = d / cfg.num_heads;
        // The 1/√d attention scale is applied to the query projection's weights once, not to the
        // queries on every call (exact for the usual head size 64: the scale is a power of two).
        let scale = 1.0 / (head_dim as f64).sqrt();
        weights[0] = (&weights[0] * scale)?;
        biases[0] = (&biases[0] * scale)?;
        let qkv = Linear::from_weights(Tensor::cat(&weights, 0)?, Tensor::cat(&biases, 0)?);
        let output = Linear::new(vb.pp("output").pp("dense"), d, d)?;
        Ok(Self { qkv, output, num_heads: cfg.num_heads, head_dim })
    }

    /// Multiplies the block's outputs per channel by `scale` [D], folded into the output projection.
    pub fn scaled_outputs(mut self, scale: &Tensor) -> Result<Self> {
        self.output = self.output.scaled_outputs(scale)?;
        Ok(self)
    }

    /// `[B, T, D]` → `[B, T, D]`.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.output.forward(&self.context(xs)?)
    }

    /// The query/key/value and output projections.
    pub fn linears_mut(&mut self) -> [&mut Linear; 2] {
        [&mut self.qkv, &mut self.output]
    }

    /// `residual + self.forward(xs)`, the residual added inside the output projection.
    pub fn forward_plus(&self, xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.output.forward_plus(&self.context(xs)?, residual)
    }

    /// The heads' attended values side by side, `[B, T, D]`, before the output projection.
    fn context(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, tokens, hidden) = xs.dims3()?;
        // [B, T, 3, H, hd] → three [B, H, T, hd]
        let qkv = self.qkv.forward(xs)?;
        #[cfg(feature = "openblas")]
        if let Some(context) = blas_attention(&qkv, batch, tokens, self.num_heads, self.head_dim)? {
            return Ok(context);
        }
        if let Some(context) = cpu_attention(&qkv, batch, tokens, self.num_heads, self.head_dim)? {
            return Ok(context);
        }
        let qkv = qkv.reshape((batch, tokens, 3, self.num_heads, self.head_dim))?;
        let qkv = qkv.permute((2, 0, 3, 1, 4))?;
        let query = qkv.get(0)?.contiguous()?;
        let key = qkv.get(1)?.contiguous()?;
        let value = qkv.get(2)?.contiguous()?;
        let scores = query.matmul(&key.t()?)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights.matmul(&value)?; // [B, H, T, hd]
        context.transpose(1, 2)?.contiguous()?.reshape((batch, tokens, hidden))
    }
}

/// Attention straight from the packed `[B, T, 3·D]` projections ([`crate::cpu_attention`]: heads read in
/// place, no transposes or copies), or `None` when the input is not contiguous f32 on the CPU.
fn cpu_attention(qkv: &Tensor, batch: usize, tokens: usize, heads: usize, head_dim: usize) -> Result<Option<Tensor>> {
    use crate::cpu_attention::{attend, Heads};
    let hidden = heads * head_dim;
    let mut context = vec![0f32; batch * tokens * hidden];
    let at = |column| Heads { rows: tokens, stride: 3 * hidden, column };
    let (q, k, v) = (at(0), at(hidden), at(2 * hidden));
    // The 1/√d scale is already in the query projection's weights.
    let done = super::cpu_kernels::with_cpu_f32(qkv, |qkv| {
        attend(batch, (heads, head_dim), 1.0, (qkv, q), (qkv, k), (qkv, v), false, &mut context)
    });
    if done.is_none() {
        return Ok(None);
    }
    Ok(Some(Tensor::from_vec(context, (batch, tokens, hidden), qkv.device())?))
}

/// Attention straight from the packed `[B, T, 3·D]` projections with OpenBLAS: each head's Q·Kᵀ and
/// P·V read the heads in place (row stride 3·D) and write the context in `[B, T, D]` order, so no
/// transposes or copies are made. `None` when the input is not contiguous f32 on the CPU.
#[cfg(feature = "openblas")]
fn blas_attention(qkv: &Tensor, batch: usize, tokens: usize, heads: usize, head_dim: usize) -> Result<Option<Tensor>> {
    use super::linear::blas::{cblas_sgemm, match_thread_count, with_slice, NO_TRANS, ROW_MAJOR, TRANS};
    use std::os::raw::c_int;
    let hidden = heads * head_dim;
    let mut context = vec![0f32; batch * tokens * hidden];
    let mut scores = vec![0f32; tokens * tokens];
    match_thread_count();
    let done = with_slice(qkv, |packed| {
        let (t, hd, stride) = (tokens as c_int, head_dim as c_int, (3 * hidden) as c_int);
        for b in 0..batch {
            let base = &packed[b * tokens * 3 * hidden..];
            for h in 0..heads {
                let query = base[h * head_dim..].as_ptr();
                let key = base[hidden + h * head_dim..].as_ptr();
                let value = base[2 * hidden + h * head_dim..].as_ptr();
                let out = context[b * tokens * hidden + h * head_dim..].as_mut_ptr();
                // SAFETY: every operand lies inside its buffer: rows of `stride` (or `hidden`) floats,
                // `tokens` rows, starting at a column offset below the row width.
                unsafe {
                    cblas_sgemm(ROW_MAJOR, NO_TRANS, TRANS, t, t, hd, 1.0, query, stride, key, stride, 0.0, scores.as_mut_ptr(), t);
                }
                for row in scores.chunks_exact_mut(tokens) {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f32;
                    for v in row.iter_mut() {
                        *v = (*v - max).exp();
                        sum += *v;
                    }
                    let inv = 1.0 / sum;
                    row.iter_mut().for_each(|v| *v *= inv);
                }
                // SAFETY: as above; `out` rows are `hidden` floats apart.
                unsafe {
                    cblas_sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, t, hd, t, 1.0, scores.as_ptr(), t, value, stride, 0.0, out, hidden as c_int);
                }
            }
        }
    });
    if done.is_none() {
        return Ok(None);
    }
    Ok(Some(Tensor::from_vec(context, (batch, tokens, hidden), qkv.device())?))
}
