//! DINOv2 ViT (S/B/L with patch 14) in Hugging Face `Dinov2Model` layout: Oquab et al., "DINOv2:
//! Learning Robust Visual Features without Supervision" (<https://arxiv.org/abs/2304.07193>), model cards
//! facebook/dinov2-small, -base, -large. Reads `config.json` + `model.safetensors` as Hugging Face ships
//! them, or as `actiond models fetch` writes them.
//!
//! Our own rather than candle-transformers' `dinov2`: that one hard-codes a 518-pixel input and uses the
//! timm/torch-hub weight names (`blocks.N.attn.qkv`), so it cannot load Hugging Face checkpoints nor run
//! at 224×224. The position grid is resized once at construction for the configured input size.

use candle_core::{Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use super::attention::{AttentionConfig, SelfAttention};
use super::embeddings::{Embeddings, EmbeddingsConfig};
use super::linear::Linear;

/// Hugging Face `Dinov2Config` (the fields that shape the model; others are ignored).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Config {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Training resolution: sets the stored position grid (image_size / patch_size per side).
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    #[serde(default)]
    pub use_swiglu_ffn: bool,
    /// Register tokens (the `-reg` variants); only 0 is supported.
    #[serde(default)]
    pub num_register_tokens: usize,
}

fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_hidden_act() -> String {
    "gelu".into()
}
fn default_layer_norm_eps() -> f64 {
    1e-6
}
fn default_channels() -> usize {
    3
}
fn default_true() -> bool {
    true
}

impl Config {
    /// facebook/dinov2-small (ViT-S/14), the default backbone.
    pub fn vit_small_patch14() -> Self {
        Self {
            hidden_size: 384,
            num_hidden_layers: 12,
            num_attention_heads: 6,
            mlp_ratio: 4.0,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-6,
            image_size: 518,
            patch_size: 14,
            num_channels: 3,
            qkv_bias: true,
            use_swiglu_ffn: false,
            num_register_tokens: 0,
        }
    }

    fn embeddings(&self, input_size: usize) -> EmbeddingsConfig {
        EmbeddingsConfig {
            hidden_size: self.hidden_size,
            patch_size: self.patch_size,
            num_channels: self.num_channels,
            stored_grid: self.image_size / self.patch_size,
            input_size,
        }
    }

    fn intermediate_size(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_ratio) as usize
    }
}

/// The activations this crate implements, by their Hugging Face names.
pub(crate) fn check_activation(name: &str) -> Result<()> {
    match name {
        "gelu" => Ok(()),
        other => candle_core::bail!("hidden_act {other:?} is not supported (only \"gelu\")"),
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    /// `output_scale`: the layer scale that follows the MLP, folded into fc2.
    fn new(vb: VarBuilder, cfg: &Config, output_scale: &Tensor) -> Result<Self> {
        let hidden = cfg.intermediate_size();
        Ok(Self {
            fc1: Linear::new(vb.pp("fc1"), cfg.hidden_size, hidden)?.with_gelu(),
            fc2: Linear::new(vb.pp("fc2"), hidden, cfg.hidden_size)?.scaled_outputs(output_scale)?,
        })
    }
    /// `residual + mlp(xs)`.
    fn forward_plus(&self, xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.fc2.forward_plus(&self.fc1.forward(xs)?, residual)
    }
}

/// One pre-norm transformer layer with layer scale (`layer_scale{1,2}.lambda1`, a per-channel factor on
/// each residual branch, folded into the branch's last projection at load).
#[derive(Debug, Clone)]
pub struct Layer {
    norm1: LayerNorm,
    attention: SelfAttention,
    norm2: LayerNorm,
    mlp: Mlp,
}

impl Layer {
    pub fn new(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let d = cfg.hidden_size;
        let attention = AttentionConfig { hidden_size: d, num_heads: cfg.num_attention_heads, qkv_bias: cfg.qkv_bias };
        let layer_scale1 = vb.pp("layer_scale1").get(d, "lambda1")?;
        let layer_scale2 = vb.pp("layer_scale2").get(d, "lambda1")?;
        Ok(Self {
            norm1: candle_nn::layer_norm(d, cfg.layer_norm_eps, vb.pp("norm1"))?,
            attention: SelfAttention::new(vb.pp("attention"), &attention)?.scaled_outputs(&layer_scale1)?,
            norm2: candle_nn::layer_norm(d, cfg.layer_norm_eps, vb.pp("norm2"))?,
            mlp: Mlp::new(vb.pp("mlp"), cfg, &layer_scale2)?,
        })
    }

    /// The layer's Linear layers (attention projections, MLP).
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut all: Vec<&mut Linear> = self.attention.linears_mut().into_iter().collect();
        all.extend([&mut self.mlp.fc1, &mut self.mlp.fc2]);
        all
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.attention.forward_plus(&self.norm1.forward(xs)?, xs)?;
        self.mlp.forward_plus(&self.norm2.forward(&xs)?, &xs)
    }
}

/// `Dinov2Model`: embeddings, encoder layers, final LayerNorm (`last_hidden_state`).
#[derive(Debug, Clone)]
pub struct Dinov2 {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    layernorm: LayerNorm,
}

impl Dinov2 {
    /// `vb` points at the model root (keys `embeddings.*`, `encoder.layer.N.*`, `layernorm.*`).
    pub fn new(vb: VarBuilder, cfg: &Config, input_size: usize) -> Result<Self> {
        check_activation(&cfg.hidden_act)?;
        if cfg.use_swiglu_ffn {
            candle_core::bail!("SwiGLU feed-forward layers (dinov2-giant) are not supported");
        }
        if cfg.num_register_tokens != 0 {
            candle_core::bail!("register tokens (dinov2-with-registers) are not supported");
        }
        let embeddings = Embeddings::new(vb.pp("embeddings"), &cfg.embeddings(input_size))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::new(vb.pp("encoder").pp("layer").pp(i), cfg))
            .collect::<Result<Vec<_>>>()?;
        let layernorm = candle_nn::layer_norm(cfg.hidden_size, cfg.layer_norm_eps, vb.pp("layernorm"))?;
        Ok(Self { embeddings, layers, layernorm })
    }

    /// Every Linear layer of the encoder (the patch embedding is a convolution, not among them).
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        self.layers.iter_mut().flat_map(Layer::linears_mut).collect()
    }

    /// `[B, C, S, S]` normalised pixels → `last_hidden_state` `[B, 1 + grid², D]`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let mut xs = self.embeddings.forward(pixels)?;
        for layer in &self.layers {
            xs = layer.forward(&xs)?;
        }
        self.layernorm.forward(&xs)
    }

    /// Every intermediate: the embeddings, each layer's output, then `last_hidden_state` (for locating
    /// a parity mismatch).
    pub fn forward_hidden_states(&self, pixels: &Tensor) -> Result<Vec<Tensor>> {
        let mut states = vec![self.embeddings.forward(pixels)?];
        for layer in &self.layers {
            let next = layer.forward(states.last().expect("embeddings pushed"))?;
            states.push(next);
        }
        states.push(self.layernorm.forward(states.last().expect("non-empty"))?);
        Ok(states)
    }

    pub fn embeddings(&self) -> &Embeddings {
        &self.embeddings
    }
}
