//! ViT input embeddings in Hugging Face layout (`embeddings.{cls_token,position_embeddings}`,
//! `embeddings.patch_embeddings.projection`), shared by DINOv2 and the classic ViT. The stored
//! position grid is resized once at construction for the configured input size.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::position_embedding;

#[derive(Debug, Clone, Copy)]
pub struct EmbeddingsConfig {
    pub hidden_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    /// Side of the stored position grid (training image size / patch size).
    pub stored_grid: usize,
    /// Square input size the model will run at.
    pub input_size: usize,
}

/// Patch projection, CLS token and position embeddings resized for one input size.
#[derive(Debug, Clone)]
pub struct Embeddings {
    projection: candle_nn::Conv2d,
    cls_token: Tensor,
    /// `[1, 1 + grid², D]` for the configured input size.
    position_embeddings: Tensor,
}

impl Embeddings {
    pub fn new(vb: VarBuilder, cfg: &EmbeddingsConfig) -> Result<Self> {
        let d = cfg.hidden_size;
        let conv = candle_nn::Conv2dConfig { stride: cfg.patch_size, ..Default::default() };
        let projection =
            candle_nn::conv2d(cfg.num_channels, d, cfg.patch_size, conv, vb.pp("patch_embeddings").pp("projection"))?;
        let cls_token = vb.get((1, 1, d), "cls_token")?;
        let stored_grid = cfg.stored_grid;
        let stored = vb.get((1, 1 + stored_grid * stored_grid, d), "position_embeddings")?;
        let grid = grid_size(cfg.input_size, cfg.patch_size)?;
        let position_embeddings = resize_positions(&stored, d, grid)?;
        Ok(Self { projection, cls_token, position_embeddings })
    }

    /// `[B, C, S, S]` pixels → `[B, 1 + grid², D]` tokens.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        let patches = self.projection.forward(pixels)?; // [B, D, g, g]
        let (batch, d, _, _) = patches.dims4()?;
        let patches = patches.flatten_from(2)?.transpose(1, 2)?; // [B, g², D]
        let cls = self.cls_token.expand((batch, 1, d))?;
        Tensor::cat(&[&cls, &patches], 1)?.broadcast_add(&self.position_embeddings)
    }

    pub fn position_embeddings(&self) -> &Tensor {
        &self.position_embeddings
    }
}

pub(crate) fn grid_size(input_size: usize, patch_size: usize) -> Result<usize> {
    if input_size == 0 || input_size % patch_size != 0 {
        candle_core::bail!("input size {input_size} is not a multiple of the patch size {patch_size}");
    }
    Ok(input_size / patch_size)
}

/// Bicubic resize of stored `[1, 1 + n², D]` position embeddings to a `grid`×`grid` grid (on the CPU, once).
pub(crate) fn resize_positions(stored: &Tensor, dim: usize, grid: usize) -> Result<Tensor> {
    let values = stored.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let resized = position_embedding::interpolate(&values, dim, grid, grid)
        .ok_or_else(|| candle_core::Error::Msg("position embeddings do not form a square grid".into()))?;
    Tensor::from_vec(resized, (1, 1 + grid * grid, dim), stored.device())?.to_dtype(stored.dtype())
}

