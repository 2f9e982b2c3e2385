//! OadTR, the online action detector: "OadTR: Online Action Detection with Transformers" (Wang et al.,
//! ICCV 2021, <https://arxiv.org/abs/2106.11149>), as the official `VisionTransformer_v3`
//! (wangxiang1230/OadTR). One model serves the daemon, `actiond predict`, `actiond train` and `actiond eval`.
//!
//! A window of T chunk features → `linear_encoding` → a learned task token appended last → learned
//! position embedding → pre-norm encoder → `pre_head_ln`. Q learned queries then run through a post-norm
//! decoder (causal self-attention, cross-attention to all T+1 encoder tokens, kernel-1 convolutions) and
//! `decoder.norm`. Current logits come from the task token beside the mean decoder output; query i
//! predicts chunk t+1+i. Tensor names are the official state-dict names, so an official checkpoint
//! saved as safetensors loads with `VarBuilder::from_mmaped_safetensors`.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Init, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

/// Model hyper-parameters, named as the official `config.py` flags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OadtrConfig {
    /// Width of one chunk feature (all feature streams concatenated).
    pub dim_feature: usize,
    /// Window length T in chunks (the official flag is named `enc_layers`).
    pub enc_layers: usize,
    /// Encoder width d.
    pub embedding_dim: usize,
    /// Encoder attention heads.
    pub num_heads: usize,
    /// Encoder blocks.
    pub num_layers: usize,
    /// Width of the encoder MLP.
    pub hidden_dim: usize,
    /// Dropout after the position embedding, the attention branch and in the encoder MLP.
    pub dropout_rate: f32,
    /// Dropout on encoder attention weights and projection.
    pub attn_dropout_rate: f32,
    /// Anticipation queries Q (future chunks predicted).
    pub query_num: usize,
    /// Decoder blocks.
    pub decoder_layers: usize,
    /// Decoder width; must equal `embedding_dim` since the decoder attends to encoder tokens directly.
    pub decoder_embedding_dim: usize,
    /// Width of the decoder feed-forward (`conv1` output channels).
    pub decoder_embedding_dim_out: usize,
    /// Decoder attention heads.
    pub decoder_num_heads: usize,
    /// Dropout inside the decoder (attention weights and residual branches).
    pub decoder_attn_dropout_rate: f32,
    /// Classes C, background (0) included.
    pub numclass: usize,
    /// LayerNorm epsilon (PyTorch default).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

fn default_eps() -> f64 {
    1e-5
}

impl OadtrConfig {
    /// The official `config.py` defaults: 3072-d features (TSN rgb+flow), d 1024, 8 encoder heads,
    /// 3 encoder blocks with MLP 1024, 5 decoder blocks with 4 heads, 8 queries, 22 THUMOS classes.
    pub fn official_default() -> Self {
        Self {
            dim_feature: 3072,
            enc_layers: 64,
            embedding_dim: 1024,
            num_heads: 8,
            num_layers: 3,
            hidden_dim: 1024,
            dropout_rate: 0.1,
            attn_dropout_rate: 0.1,
            query_num: 8,
            decoder_layers: 5,
            decoder_embedding_dim: 1024,
            decoder_embedding_dim_out: 1024,
            decoder_num_heads: 4,
            decoder_attn_dropout_rate: 0.1,
            numclass: 22,
            layer_norm_eps: 1e-5,
        }
    }

    /// The small configuration of the parity fixture: 384-d features (e.g. DINOv2 ViT-S/14 CLS),
    /// d 256, 4 heads, MLP 256, otherwise the official defaults.
    pub fn small() -> Self {
        Self {
            dim_feature: 384,
            embedding_dim: 256,
            num_heads: 4,
            hidden_dim: 256,
            decoder_embedding_dim: 256,
            decoder_embedding_dim_out: 256,
            decoder_num_heads: 4,
            ..Self::official_default()
        }
    }

    /// Window length T.
    pub fn window(&self) -> usize {
        self.enc_layers
    }

    /// Every inconsistency, in words.
    pub fn check(&self) -> std::result::Result<(), Vec<String>> {
        let mut problems = Vec::new();
        let positive = [
            ("dim_feature", self.dim_feature),
            ("enc_layers", self.enc_layers),
            ("embedding_dim", self.embedding_dim),
            ("num_heads", self.num_heads),
            ("num_layers", self.num_layers),
            ("hidden_dim", self.hidden_dim),
            ("query_num", self.query_num),
            ("decoder_layers", self.decoder_layers),
            ("decoder_embedding_dim", self.decoder_embedding_dim),
            ("decoder_embedding_dim_out", self.decoder_embedding_dim_out),
            ("decoder_num_heads", self.decoder_num_heads),
        ];
        for (name, value) in positive {
            if value == 0 {
                problems.push(format!("{name} must be at least 1"));
            }
        }
        if self.numclass < 2 {
            problems.push(format!("numclass is {}, need at least 2 (background and one action)", self.numclass));
        }
        if self.num_heads > 0 && self.embedding_dim % self.num_heads != 0 {
            problems.push(format!("embedding_dim {} is not divisible by num_heads {}", self.embedding_dim, self.num_heads));
        }
        if self.decoder_num_heads > 0 && self.decoder_embedding_dim % self.decoder_num_heads != 0 {
            problems.push(format!(
                "decoder_embedding_dim {} is not divisible by decoder_num_heads {}",
                self.decoder_embedding_dim, self.decoder_num_heads
            ));
        }
        if self.decoder_embedding_dim != self.embedding_dim {
            problems.push(format!(
                "decoder_embedding_dim {} must equal embedding_dim {} (the decoder reads encoder tokens)",
                self.decoder_embedding_dim, self.embedding_dim
            ));
        }
        for (name, p) in [
            ("dropout_rate", self.dropout_rate),
            ("attn_dropout_rate", self.attn_dropout_rate),
            ("decoder_attn_dropout_rate", self.decoder_attn_dropout_rate),
        ] {
            if !(0.0..1.0).contains(&p) {
                problems.push(format!("{name} is {p}, must be in [0, 1)"));
            }
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            problems.push(format!("layer_norm_eps is {}, must be positive", self.layer_norm_eps));
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    /// Multiply-adds of one window forward pass, ×2: the FLOPs `bench` divides by.
    /// [`OadtrConfig::check`] as the error a model constructor returns.
    pub(crate) fn ensure_valid(&self) -> Result<()> {
        match self.check() {
            Ok(()) => Ok(()),
            Err(problems) => candle_core::bail!("invalid OadTR config: {}", problems.join("; ")),
        }
    }

    pub fn flops_per_window(&self) -> f64 {
        let t = self.enc_layers as f64;
        let n = t + 1.0;
        let d = self.embedding_dim as f64;
        let q = self.query_num as f64;
        let ff = self.decoder_embedding_dim_out as f64;
        let c = self.numclass as f64;
        let input = t * self.dim_feature as f64 * d;
        let encoder_block = n * d * 3.0 * d + 2.0 * n * n * d + n * d * d + 2.0 * n * d * self.hidden_dim as f64;
        let decoder_block = 4.0 * q * d * d + 2.0 * q * q * d // self-attention
            + 2.0 * q * d * d + 2.0 * n * d * d + 2.0 * q * n * d // cross-attention
            + 2.0 * q * d * ff;
        let heads = q * d * c + 2.0 * d * c;
        2.0 * (input + self.num_layers as f64 * encoder_block + self.decoder_layers as f64 * decoder_block + heads)
    }
}

/// Logits of one forward pass.
#[derive(Debug, Clone)]
pub struct OadtrOutput {
    /// Current-chunk logits [B, C].
    pub current: Tensor,
    /// Anticipation logits [B, Q, C]: query i is chunk t+1+i.
    pub anticipation: Tensor,
}

/// Intermediate tensors of the official debug taps, for locating a parity mismatch.
#[derive(Debug, Clone)]
pub struct OadtrTaps {
    /// Chunk embeddings with the task token appended and positions added [B, T+1, d].
    pub embedded: Tensor,
    /// `pre_head_ln(encoder(embedded))` [B, T+1, d].
    pub encoder_out: Tensor,
    /// Output of each decoder block [B, Q, d].
    pub decoder_layers: Vec<Tensor>,
    /// `decoder.norm` of the last block [B, Q, d].
    pub decoder_out: Tensor,
    pub output: OadtrOutput,
}

/// Inverted dropout whose masks come from one seeded generator shared by the whole model, so training
/// is reproducible on CPU (candle's own dropout draws from an unseedable thread RNG).
#[derive(Debug, Clone)]
struct Dropout {
    p: f32,
    rng: Arc<Mutex<fastrand::Rng>>,
}

impl Dropout {
    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if !train || self.p == 0.0 {
            return Ok(xs.clone());
        }
        let keep_scale = 1.0 / (1.0 - self.p);
        let mask: Vec<f32> = {
            let mut rng = self.rng.lock().expect("no panic while the dropout generator is held");
            (0..xs.elem_count()).map(|_| if rng.f32() < self.p { 0.0 } else { keep_scale }).collect()
        };
        xs * Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?
    }
}

/// Hands out dropout layers sharing one generator.
#[derive(Debug, Clone)]
struct DropoutSource(Arc<Mutex<fastrand::Rng>>);

impl DropoutSource {
    fn layer(p: f32, source: &DropoutSource) -> Dropout {
        Dropout { p, rng: source.0.clone() }
    }
}

/// LayerNorm that runs candle's fused kernel at inference and the differentiable composition in training
/// (the fused op has no backward pass).
#[derive(Debug, Clone)]
struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl Norm {
    fn new(vb: VarBuilder, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(size, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(size, "bias", Init::Const(0.0))?,
            eps: eps as f32,
        })
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        if train || !xs.is_contiguous() {
            candle_nn::ops::layer_norm_slow(xs, &self.weight, &self.bias, self.eps)
        } else {
            candle_nn::ops::layer_norm(xs, &self.weight, &self.bias, self.eps)
        }
    }
}

fn softmax(xs: &Tensor, train: bool) -> Result<Tensor> {
    if train {
        candle_nn::ops::softmax(xs, D::Minus1)
    } else {
        candle_nn::ops::softmax_last_dim(xs)
    }
}

fn linear(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Linear> {
    candle_nn::linear(in_dim, out_dim, vb)
}

/// The position rows of the `LearnedPositionalEncoding` under `vb`, [rows, dim], in position order.
pub(crate) fn position_table(vb: VarBuilder, rows: usize, dim: usize) -> Result<Tensor> {
    LearnedPositionalEncoding::new(vb, rows, dim)?.table()
}

/// `LearnedPositionalEncoding`: an embedding table `pe` plus the int64 `position_ids` buffer PyTorch saves.
#[derive(Debug, Clone)]
struct LearnedPositionalEncoding {
    pe: Tensor,
    /// Row order from a stored `position_ids` buffer when it is not simply 0..n.
    permuted_ids: Option<Tensor>,
}

impl LearnedPositionalEncoding {
    fn new(vb: VarBuilder, rows: usize, dim: usize) -> Result<Self> {
        let pe = vb.pp("pe").get_with_hints((rows, dim), "weight", Init::Randn { mean: 0.0, stdev: 1.0 })?;
        let mut permuted_ids = None;
        if vb.contains_tensor("position_ids") {
            let ids = vb.get_unchecked_dtype("position_ids", DType::I64)?;
            let ids: Vec<i64> = ids.flatten_all()?.to_vec1()?;
            if ids.len() < rows || ids.iter().any(|&i| i < 0 || i as usize >= rows) {
                candle_core::bail!(
                    "{}.position_ids holds {} entries, expected {rows} in 0..{rows}",
                    vb.prefix(),
                    ids.len()
                );
            }
            if ids.iter().take(rows).enumerate().any(|(i, &id)| id as usize != i) {
                let ids: Vec<u32> = ids.iter().take(rows).map(|&i| i as u32).collect();
                permuted_ids = Some(Tensor::new(ids, pe.device())?);
            }
        }
        Ok(Self { pe, permuted_ids })
    }

    /// The position rows, [rows, d].
    fn table(&self) -> Result<Tensor> {
        match &self.permuted_ids {
            Some(ids) => self.pe.index_select(ids, 0),
            None => Ok(self.pe.clone()),
        }
    }
}

/// Encoder self-attention: one fused qkv projection without bias.
#[derive(Debug, Clone)]
struct SelfAttention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
    scale: f64,
    attn_drop: Dropout,
    proj_drop: Dropout,
}

impl SelfAttention {
    fn new(vb: VarBuilder, cfg: &OadtrConfig, drop: &DropoutSource) -> Result<Self> {
        let dim = cfg.embedding_dim;
        Ok(Self {
            qkv: candle_nn::linear_no_bias(dim, 3 * dim, vb.pp("qkv"))?,
            proj: linear(vb.pp("proj"), dim, dim)?,
            num_heads: cfg.num_heads,
            scale: 1.0 / ((dim / cfg.num_heads) as f64).sqrt(),
            attn_drop: DropoutSource::layer(cfg.attn_dropout_rate, drop),
            proj_drop: DropoutSource::layer(cfg.attn_dropout_rate, drop),
        })
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let (b, n, c) = xs.dims3()?;
        let head_dim = c / self.num_heads;
        let qkv = self.qkv.forward(xs)?.reshape((b, n, 3, self.num_heads, head_dim))?.permute((2, 0, 3, 1, 4))?;
        let q = (qkv.get(0)?.contiguous()? * self.scale)?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let attn = softmax(&q.matmul(&k.t()?)?, train)?;
        let attn = self.attn_drop.forward(&attn, train)?;
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, n, c))?;
        self.proj_drop.forward(&self.proj.forward(&out)?, train)
    }
}

/// Encoder MLP: Linear → exact GELU → Dropout → Linear → Dropout (`net.0` and `net.3`).
#[derive(Debug, Clone)]
struct FeedForward {
    fc1: Linear,
    fc2: Linear,
    dropout: Dropout,
}

impl FeedForward {
    fn new(vb: VarBuilder, cfg: &OadtrConfig, drop: &DropoutSource) -> Result<Self> {
        Ok(Self {
            fc1: linear(vb.pp("net").pp(0), cfg.embedding_dim, cfg.hidden_dim)?,
            fc2: linear(vb.pp("net").pp(3), cfg.hidden_dim, cfg.embedding_dim)?,
            dropout: DropoutSource::layer(cfg.dropout_rate, drop),
        })
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let hidden = self.dropout.forward(&self.fc1.forward(xs)?.gelu_erf()?, train)?;
        self.dropout.forward(&self.fc2.forward(&hidden)?, train)
    }
}

/// One pre-norm encoder block: `net.{2i}` is `x + Dropout(attn(norm(x)))`, `net.{2i+1}` is `x + mlp(norm(x))`.
#[derive(Debug, Clone)]
struct EncoderBlock {
    attn_norm: Norm,
    attn: SelfAttention,
    attn_dropout: Dropout,
    mlp_norm: Norm,
    mlp: FeedForward,
}

impl EncoderBlock {
    fn new(vb: VarBuilder, cfg: &OadtrConfig, index: usize, drop: &DropoutSource) -> Result<Self> {
        let attn_vb = vb.pp(2 * index).pp("fn");
        let mlp_vb = vb.pp(2 * index + 1).pp("fn");
        Ok(Self {
            attn_norm: Norm::new(attn_vb.pp("norm"), cfg.embedding_dim, cfg.layer_norm_eps)?,
            attn: SelfAttention::new(attn_vb.pp("fn"), cfg, drop)?,
            attn_dropout: DropoutSource::layer(cfg.dropout_rate, drop),
            mlp_norm: Norm::new(mlp_vb.pp("norm"), cfg.embedding_dim, cfg.layer_norm_eps)?,
            mlp: FeedForward::new(mlp_vb.pp("fn"), cfg, drop)?,
        })
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let attended = self.attn.forward(&self.attn_norm.forward(xs, train)?, train)?;
        let xs = (xs + self.attn_dropout.forward(&attended, train)?)?;
        &xs + self.mlp.forward(&self.mlp_norm.forward(&xs, train)?, train)?
    }
}

/// Informer-style attention layer of the decoder: separate q/k/v/out projections with biases.
#[derive(Debug, Clone)]
struct AttentionLayer {
    query_projection: Linear,
    key_projection: Linear,
    value_projection: Linear,
    out_projection: Linear,
    num_heads: usize,
    dropout: Dropout,
}

impl AttentionLayer {
    fn new(vb: VarBuilder, cfg: &OadtrConfig, drop: &DropoutSource) -> Result<Self> {
        let d = cfg.decoder_embedding_dim;
        Ok(Self {
            query_projection: linear(vb.pp("query_projection"), d, d)?,
            key_projection: linear(vb.pp("key_projection"), d, d)?,
            value_projection: linear(vb.pp("value_projection"), d, d)?,
            out_projection: linear(vb.pp("out_projection"), d, d)?,
            num_heads: cfg.decoder_num_heads,
            dropout: DropoutSource::layer(cfg.decoder_attn_dropout_rate, drop),
        })
    }

    /// `mask` is added to the scores (0 or -inf), [L, S].
    fn forward(&self, queries: &Tensor, keys_values: &Tensor, mask: Option<&Tensor>, train: bool) -> Result<Tensor> {
        let (b, l, d) = queries.dims3()?;
        let s = keys_values.dim(1)?;
        let h = self.num_heads;
        let e = d / h;
        let split = |x: Tensor, n: usize| x.reshape((b, n, h, e))?.transpose(1, 2)?.contiguous();
        let q = (split(self.query_projection.forward(queries)?, l)? * (1.0 / (e as f64).sqrt()))?;
        let k = split(self.key_projection.forward(keys_values)?, s)?;
        let v = split(self.value_projection.forward(keys_values)?, s)?;
        let mut scores = q.matmul(&k.t()?)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let attn = self.dropout.forward(&softmax(&scores, train)?, train)?;
        // Heads side by side per query, as Informer's `mix=False`; the debug taps rule out `mix=True`.
        let out = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, l, d))?;
        self.out_projection.forward(&out)
    }
}

/// A kernel-size-1 Conv1d over tokens, i.e. a Linear whose weight is stored [out, in, 1].
#[derive(Debug, Clone)]
struct PointwiseConv {
    weight: Tensor,
    bias: Tensor,
}

impl PointwiseConv {
    fn new(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        Ok(Self { weight: vb.get_with_hints((out_dim, in_dim, 1), "weight", init)?, bias: vb.get_with_hints(out_dim, "bias", init)? })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (out_dim, in_dim, _) = self.weight.dims3()?;
        let w = self.weight.reshape((out_dim, in_dim))?;
        Linear::new(w, Some(self.bias.clone())).forward(xs)
    }
}

/// One post-norm decoder block (Informer `DecoderLayer`).
#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attention: AttentionLayer,
    cross_attention: AttentionLayer,
    conv1: PointwiseConv,
    conv2: PointwiseConv,
    norm1: Norm,
    norm2: Norm,
    norm3: Norm,
    dropout: Dropout,
}

impl DecoderLayer {
    fn new(vb: VarBuilder, cfg: &OadtrConfig, drop: &DropoutSource) -> Result<Self> {
        let d = cfg.decoder_embedding_dim;
        let ff = cfg.decoder_embedding_dim_out;
        let eps = cfg.layer_norm_eps;
        Ok(Self {
            self_attention: AttentionLayer::new(vb.pp("self_attention"), cfg, drop)?,
            cross_attention: AttentionLayer::new(vb.pp("cross_attention"), cfg, drop)?,
            conv1: PointwiseConv::new(vb.pp("conv1"), d, ff)?,
            conv2: PointwiseConv::new(vb.pp("conv2"), ff, d)?,
            norm1: Norm::new(vb.pp("norm1"), d, eps)?,
            norm2: Norm::new(vb.pp("norm2"), d, eps)?,
            norm3: Norm::new(vb.pp("norm3"), d, eps)?,
            dropout: DropoutSource::layer(cfg.decoder_attn_dropout_rate, drop),
        })
    }

    fn forward(&self, xs: &Tensor, memory: &Tensor, causal_mask: &Tensor, train: bool) -> Result<Tensor> {
        let attended = self.self_attention.forward(xs, xs, Some(causal_mask), train)?;
        let xs = self.norm1.forward(&(xs + self.dropout.forward(&attended, train)?)?, train)?;
        let attended = self.cross_attention.forward(&xs, memory, None, train)?;
        let xs = self.norm2.forward(&(xs + self.dropout.forward(&attended, train)?)?, train)?;
        let ys = self.dropout.forward(&self.conv1.forward(&xs)?.gelu_erf()?, train)?;
        let ys = self.dropout.forward(&self.conv2.forward(&ys)?, train)?;
        self.norm3.forward(&(xs + ys)?, train)
    }
}

/// The OadTR model.
#[derive(Debug, Clone)]
pub struct Oadtr {
    linear_encoding: Linear,
    cls_token: Tensor,
    position_encoding: LearnedPositionalEncoding,
    pe_dropout: Dropout,
    encoder: Vec<EncoderBlock>,
    pre_head_ln: Norm,
    decoder_cls_token: Tensor,
    decoder: Vec<DecoderLayer>,
    decoder_norm: Norm,
    /// Loaded (the official state dict has it, and a checkpoint we save must too) but, as in the official
    /// forward pass, never applied.
    _decoder_position_encoding: LearnedPositionalEncoding,
    classifier: Linear,
    mlp_head: Linear,
    causal_mask: Tensor,
    dropout_rng: DropoutSource,
    cfg: OadtrConfig,
}

impl Oadtr {
    pub fn new(vb: VarBuilder, cfg: &OadtrConfig) -> Result<Self> {
        cfg.ensure_valid()?;
        let d = cfg.embedding_dim;
        let q = cfg.query_num;
        let zeros = Init::Const(0.0);
        let drop = DropoutSource(Arc::new(Mutex::new(fastrand::Rng::with_seed(0))));
        let encoder = (0..cfg.num_layers)
            .map(|i| EncoderBlock::new(vb.pp("encoder").pp("net"), cfg, i, &drop))
            .collect::<Result<Vec<_>>>()?;
        let decoder = (0..cfg.decoder_layers)
            .map(|i| DecoderLayer::new(vb.pp("decoder").pp("layers").pp(i), cfg, &drop))
            .collect::<Result<Vec<_>>>()?;
        let mask: Vec<f32> =
            (0..q).flat_map(|i| (0..q).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
        Ok(Self {
            linear_encoding: linear(vb.pp("linear_encoding"), cfg.dim_feature, d)?,
            cls_token: vb.get_with_hints((1, 1, d), "cls_token", zeros)?,
            position_encoding: LearnedPositionalEncoding::new(vb.pp("position_encoding"), cfg.enc_layers + 1, d)?,
            pe_dropout: DropoutSource::layer(cfg.dropout_rate, &drop),
            encoder,
            pre_head_ln: Norm::new(vb.pp("pre_head_ln"), d, cfg.layer_norm_eps)?,
            decoder_cls_token: vb.get_with_hints((1, q, cfg.decoder_embedding_dim), "decoder_cls_token", zeros)?,
            decoder,
            decoder_norm: Norm::new(vb.pp("decoder").pp("norm"), cfg.decoder_embedding_dim, cfg.layer_norm_eps)?,
            _decoder_position_encoding: LearnedPositionalEncoding::new(
                vb.pp("decoder_position_encoding"),
                q,
                cfg.decoder_embedding_dim,
            )?,
            classifier: linear(vb.pp("classifier"), cfg.decoder_embedding_dim, cfg.numclass)?,
            mlp_head: linear(vb.pp("mlp_head"), d + cfg.decoder_embedding_dim, cfg.numclass)?,
            causal_mask: Tensor::from_vec(mask, (q, q), vb.device())?.to_dtype(vb.dtype())?,
            dropout_rng: drop,
            cfg: cfg.clone(),
        })
    }

    /// Restarts the dropout generator (shared by clones of this model) from `seed`.
    pub fn seed_dropout(&self, seed: u64) {
        self.dropout_rng.0.lock().expect("no panic while the dropout generator is held").seed(seed);
    }

    pub fn config(&self) -> &OadtrConfig {
        &self.cfg
    }

    /// Logits for windows of chunk features [B, T, dim_feature]; the last row is the current chunk.
    pub fn forward(&self, features: &Tensor, train: bool) -> Result<OadtrOutput> {
        self.forward_embedded(&self.embed_chunks(features)?, train)
    }

    /// The input projection alone, [.., dim_feature] → [.., d]. It acts on each chunk independently,
    /// so a stream can project each chunk once and keep the result for the T windows it appears in.
    pub fn embed_chunks(&self, features: &Tensor) -> Result<Tensor> {
        self.linear_encoding.forward(features)
    }

    /// Logits for windows of already projected chunks [B, T, d] (see [`Oadtr::embed_chunks`]).
    pub fn forward_embedded(&self, chunks: &Tensor, train: bool) -> Result<OadtrOutput> {
        Ok(self.run(chunks, train, false)?.output)
    }

    /// Forward pass that also returns the intermediate tensors the official debug taps record.
    pub fn forward_with_taps(&self, features: &Tensor) -> Result<OadtrTaps> {
        self.run(&self.embed_chunks(features)?, false, true)
    }

    fn run(&self, chunks: &Tensor, train: bool, keep_taps: bool) -> Result<OadtrTaps> {
        let (b, t, d) = chunks.dims3()?;
        if t != self.cfg.enc_layers {
            candle_core::bail!("window holds {t} chunks, the model expects {}", self.cfg.enc_layers);
        }
        let cls = self.cls_token.broadcast_as((b, 1, d))?;
        let xs = Tensor::cat(&[chunks, &cls], 1)?.broadcast_add(&self.position_encoding.table()?)?;
        let embedded = self.pe_dropout.forward(&xs, train)?;
        let mut xs = embedded.clone();
        for block in &self.encoder {
            xs = block.forward(&xs, train)?;
        }
        let encoder_out = self.pre_head_ln.forward(&xs, train)?;
        let q = self.cfg.query_num;
        let mut dec = self.decoder_cls_token.broadcast_as((b, q, self.cfg.decoder_embedding_dim))?.contiguous()?;
        let mut decoder_layers = Vec::new();
        for layer in &self.decoder {
            dec = layer.forward(&dec, &encoder_out, &self.causal_mask, train)?;
            if keep_taps {
                decoder_layers.push(dec.clone());
            }
        }
        let decoder_out = self.decoder_norm.forward(&dec, train)?;
        let anticipation = self.classifier.forward(&decoder_out)?;
        let task_token = encoder_out.narrow(1, t, 1)?.squeeze(1)?;
        let pooled = decoder_out.mean(1)?;
        let current = self.mlp_head.forward(&Tensor::cat(&[&task_token, &pooled], 1)?)?;
        Ok(OadtrTaps { embedded, encoder_out, decoder_layers, decoder_out, output: OadtrOutput { current, anticipation } })
    }
}
