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
        let (batch, tokens, hidden) = xs.dims3()?;
        // [B, T, 3, H, hd] → three [B, H, T, hd]
        let qkv = self.qkv.forward(xs)?.reshape((batch, tokens, 3, self.num_heads, self.head_dim))?;
        let qkv = qkv.permute((2, 0, 3, 1, 4))?;
        let query = qkv.get(0)?.contiguous()?;
        let key = qkv.get(1)?.contiguous()?;
        let value = qkv.get(2)?.contiguous()?;
        let scores = query.matmul(&key.t()?)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights.matmul(&value)?; // [B, H, T, hd]
        let context = context.transpose(1, 2)?.contiguous()?.reshape((batch, tokens, hidden))?;
        self.output.forward(&context)
    }
}
