//! The classic ViT (Dosovitskiy et al., "An Image is Worth 16x16 Words",
//! <https://arxiv.org/abs/2010.11929>) in Hugging Face `ViTModel` layout, e.g. google/vit-base-patch16-224
//! (whose `ViTForImageClassification` checkpoints nest the model under `vit.`; the loader strips that).
//!
//! Our own rather than candle-transformers' `vit`: that one is a classifier (it returns logits, not the
//! final hidden states) and leaves position-embedding interpolation as `todo!()`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use super::attention::{AttentionConfig, SelfAttention};
use super::dinov2::check_activation;
use super::embeddings::{Embeddings, EmbeddingsConfig};
use super::linear::Linear;

/// Hugging Face `ViTConfig` (the fields that shape the model; others are ignored).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Config {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
}

fn default_hidden_act() -> String {
    "gelu".into()
}
fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_channels() -> usize {
    3
}
fn default_true() -> bool {
    true
}

impl Config {
    /// google/vit-base-patch16-224.
    pub fn vit_base_patch16_224() -> Self {
        Self {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-12,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
        }
    }
}

/// One pre-norm transformer layer (no layer scale).
#[derive(Debug, Clone)]
pub struct Layer {
    layernorm_before: LayerNorm,
    attention: SelfAttention,
    layernorm_after: LayerNorm,
    intermediate: Linear,
    output: Linear,
}

impl Layer {
    pub fn new(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let d = cfg.hidden_size;
        let attention = AttentionConfig { hidden_size: d, num_heads: cfg.num_attention_heads, qkv_bias: cfg.qkv_bias };
        Ok(Self {
            layernorm_before: candle_nn::layer_norm(d, cfg.layer_norm_eps, vb.pp("layernorm_before"))?,
            attention: SelfAttention::new(vb.pp("attention"), &attention)?,
            layernorm_after: candle_nn::layer_norm(d, cfg.layer_norm_eps, vb.pp("layernorm_after"))?,
            intermediate: Linear::new(vb.pp("intermediate").pp("dense"), d, cfg.intermediate_size)?.with_gelu(),
            output: Linear::new(vb.pp("output").pp("dense"), cfg.intermediate_size, d)?,
        })
    }

    /// The layer's Linear layers (attention projections, MLP).
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut all: Vec<&mut Linear> = self.attention.linears_mut().into_iter().collect();
        all.extend([&mut self.intermediate, &mut self.output]);
        all
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.attention.forward_plus(&self.layernorm_before.forward(xs)?, xs)?;
        let hidden = self.intermediate.forward(&self.layernorm_after.forward(&xs)?)?;
        self.output.forward_plus(&hidden, &xs)
    }
}

/// `ViTModel` without the pooler: embeddings, encoder layers, final LayerNorm.
#[derive(Debug, Clone)]
pub struct Vit {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    layernorm: LayerNorm,
}

impl Vit {
    /// `vb` points at the model root (keys `embeddings.*`, `encoder.layer.N.*`, `layernorm.*`).
    pub fn new(vb: VarBuilder, cfg: &Config, input_size: usize) -> Result<Self> {
        check_activation(&cfg.hidden_act)?;
        let embeddings_cfg = EmbeddingsConfig {
            hidden_size: cfg.hidden_size,
            patch_size: cfg.patch_size,
            num_channels: cfg.num_channels,
            stored_grid: cfg.image_size / cfg.patch_size,
            input_size,
        };
        let embeddings = Embeddings::new(vb.pp("embeddings"), &embeddings_cfg)?;
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
}
