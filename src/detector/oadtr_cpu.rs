//! OadTR inference on the CPU in plain f32: the model of [`super::oadtr`] (same official weight names,
//! same arithmetic up to summation order) with its weights packed once for the product kernel
//! ([`crate::sgemm`]) and attention read in place from the projections ([`crate::cpu_attention`]), so
//! nothing is transposed or copied per op.
//! A streaming step at batch 1 is about 80 small ops; as candle tensors, each allocating and
//! dispatching, they cost more than their arithmetic (docs/benchmarks/oadtr.md). The daemon, `predict`,
//! `eval` and the trainer's validation run this; training and the debug taps run the candle model.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::oadtr::{position_table, OadtrConfig};
use crate::backbone::cpu_kernels::gelu_in_place;
use crate::cpu_attention::{attend, Heads};
use crate::sgemm::PackedMatrix;

fn values(tensor: Tensor) -> Result<Vec<f32>> {
    tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
}

/// A Linear (or kernel-1 Conv1d) layer, its weight packed once for the product kernel.
#[derive(Debug, Clone)]
struct Dense {
    weight: PackedMatrix,
    bias: Option<Vec<f32>>,
    inputs: usize,
    outputs: usize,
}

impl Dense {
    fn from_torch(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let (outputs, inputs) = (weight.dim(0)?, weight.elem_count() / weight.dim(0)?);
        let weight = PackedMatrix::from_transposed(&values(weight)?, outputs, inputs);
        Ok(Self { weight, bias: bias.map(values).transpose()?, inputs, outputs })
    }

    fn linear(vb: &VarBuilder, inputs: usize, outputs: usize) -> Result<Self> {
        Self::from_torch(vb.get((outputs, inputs), "weight")?, Some(vb.get(outputs, "bias")?))
    }

    fn linear_no_bias(vb: &VarBuilder, inputs: usize, outputs: usize) -> Result<Self> {
        Self::from_torch(vb.get((outputs, inputs), "weight")?, None)
    }

    fn conv1(vb: &VarBuilder, inputs: usize, outputs: usize) -> Result<Self> {
        Self::from_torch(vb.get((outputs, inputs, 1), "weight")?, Some(vb.get(outputs, "bias")?))
    }

    /// `out[rows × outputs] (+)= x[rows × inputs] · W + b`; with `accumulate` the product is added to
    /// what `out` holds (a residual stream).
    fn apply(&self, x: &[f32], rows: usize, out: &mut [f32], accumulate: bool) {
        let out = &mut out[..rows * self.outputs];
        let mut accumulate = accumulate;
        if let Some(bias) = &self.bias {
            for row in out.chunks_exact_mut(self.outputs) {
                if accumulate {
                    row.iter_mut().zip(bias).for_each(|(o, b)| *o += b);
                } else {
                    row.copy_from_slice(bias);
                }
            }
            accumulate = true;
        }
        self.weight.product(x, rows, out, accumulate);
    }

    fn forward(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = vec![0.0; rows * self.outputs];
        self.apply(x, rows, &mut out, false);
        out
    }

    /// Layers on the same input side by side: one product instead of several.
    fn side_by_side(layers: &[&Dense]) -> Dense {
        let inputs = layers[0].inputs;
        assert!(layers.iter().all(|l| l.inputs == inputs && l.bias.is_some()));
        let rows: Vec<Vec<f32>> = layers.iter().map(|l| l.weight.to_rows()).collect();
        let outputs = layers.iter().map(|l| l.outputs).sum();
        let weight: Vec<f32> = (0..inputs)
            .flat_map(|r| {
                layers.iter().zip(&rows).flat_map(move |(l, w)| w[r * l.outputs..(r + 1) * l.outputs].iter().copied())
            })
            .collect();
        let bias = layers.iter().flat_map(|l| l.bias.iter().flatten().copied()).collect();
        Dense { weight: PackedMatrix::new(&weight, inputs, outputs), bias: Some(bias), inputs, outputs }
    }
}

/// `Σ f(v)` over `values`, summed in 16 lanes: a single running sum is one long chain of dependent
/// additions the compiler may not reorder, and made LayerNorm a tenth of the detector's time.
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f32>() + chunks.remainder().iter().map(|&v| f(v)).sum::<f32>()
}

#[derive(Debug, Clone)]
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl Norm {
    fn new(vb: &VarBuilder, size: usize, eps: f64) -> Result<Self> {
        Ok(Self { weight: values(vb.get(size, "weight")?)?, bias: values(vb.get(size, "bias")?)?, eps: eps as f32 })
    }

    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut out = x.to_vec();
        self.in_place(&mut out);
        out
    }

    fn in_place(&self, x: &mut [f32]) {
        let dim = self.weight.len();
        for row in x.chunks_exact_mut(dim) {
            let mean = lane_sum(row, |v| v) / dim as f32;
            let var = lane_sum(row, |v| (v - mean) * (v - mean)) / dim as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, w), b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
                *v = (*v - mean) * inv * w + b;
            }
        }
    }
}

#[derive(Debug, Clone)]
struct EncoderBlock {
    attn_norm: Norm,
    qkv: Dense,
    proj: Dense,
    mlp_norm: Norm,
    fc1: Dense,
    fc2: Dense,
    heads: usize,
}

impl EncoderBlock {
    fn new(vb: &VarBuilder, cfg: &OadtrConfig, index: usize) -> Result<Self> {
        let d = cfg.embedding_dim;
        let attn = vb.pp(2 * index).pp("fn");
        let mlp = vb.pp(2 * index + 1).pp("fn");
        Ok(Self {
            attn_norm: Norm::new(&attn.pp("norm"), d, cfg.layer_norm_eps)?,
            qkv: Dense::linear_no_bias(&attn.pp("fn").pp("qkv"), d, 3 * d)?,
            proj: Dense::linear(&attn.pp("fn").pp("proj"), d, d)?,
            mlp_norm: Norm::new(&mlp.pp("norm"), d, cfg.layer_norm_eps)?,
            fc1: Dense::linear(&mlp.pp("fn").pp("net").pp(0), d, cfg.hidden_dim)?,
            fc2: Dense::linear(&mlp.pp("fn").pp("net").pp(3), cfg.hidden_dim, d)?,
            heads: cfg.num_heads,
        })
    }

    /// Updates the residual stream `x` [batch·n, d] in place.
    fn forward(&self, x: &mut [f32], batch: usize, n: usize) {
        let d = self.proj.outputs;
        let rows = batch * n;
        let qkv = self.qkv.forward(&self.attn_norm.forward(x), rows);
        let mut attended = vec![0.0; rows * d];
        let at = |column| Heads { rows: n, stride: 3 * d, column };
        let e = d / self.heads;
        attend(
            batch,
            (self.heads, e),
            1.0 / (e as f32).sqrt(),
            (&qkv, at(0)),
            (&qkv, at(d)),
            (&qkv, at(2 * d)),
            false,
            &mut attended,
        );
        self.proj.apply(&attended, rows, x, true);
        let mut hidden = self.fc1.forward(&self.mlp_norm.forward(x), rows);
        gelu_in_place(&mut hidden);
        self.fc2.apply(&hidden, rows, x, true);
    }
}

/// Informer-style attention with separate q/k/v/out projections.
#[derive(Debug, Clone)]
struct AttentionLayer {
    query: Dense,
    key: Dense,
    value: Dense,
    out: Dense,
    heads: usize,
}

impl AttentionLayer {
    fn new(vb: &VarBuilder, cfg: &OadtrConfig) -> Result<Self> {
        let d = cfg.decoder_embedding_dim;
        Ok(Self {
            query: Dense::linear(&vb.pp("query_projection"), d, d)?,
            key: Dense::linear(&vb.pp("key_projection"), d, d)?,
            value: Dense::linear(&vb.pp("value_projection"), d, d)?,
            out: Dense::linear(&vb.pp("out_projection"), d, d)?,
            heads: cfg.decoder_num_heads,
        })
    }

    /// `x += attention(x → x)` among the `lq` queries of each item, each seeing itself and earlier ones.
    fn add_causal_self(&self, x: &mut [f32], lq: usize, batch: usize) {
        let d = self.out.outputs;
        let k = self.key.forward(x, batch * lq);
        let v = self.value.forward(x, batch * lq);
        let heads = Heads { rows: lq, stride: d, column: 0 };
        self.add_attended(x, lq, batch, (&k, heads), (&v, heads), true);
    }

    /// `x += attention(x → memory)` with the memory's keys and values already projected.
    fn add_attended(
        &self,
        x: &mut [f32],
        lq: usize,
        batch: usize,
        k: (&[f32], Heads),
        v: (&[f32], Heads),
        causal: bool,
    ) {
        let d = self.out.outputs;
        let q = self.query.forward(x, batch * lq);
        let mut attended = vec![0.0; batch * lq * d];
        let qh = Heads { rows: lq, stride: d, column: 0 };
        let e = d / self.heads;
        attend(batch, (self.heads, e), 1.0 / (e as f32).sqrt(), (&q, qh), k, v, causal, &mut attended);
        self.out.apply(&attended, batch * lq, x, true);
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attention: AttentionLayer,
    cross_attention: AttentionLayer,
    conv1: Dense,
    conv2: Dense,
    norm1: Norm,
    norm2: Norm,
    norm3: Norm,
}

impl DecoderLayer {
    fn new(vb: &VarBuilder, cfg: &OadtrConfig) -> Result<Self> {
        let (d, ff, eps) = (cfg.decoder_embedding_dim, cfg.decoder_embedding_dim_out, cfg.layer_norm_eps);
        Ok(Self {
            self_attention: AttentionLayer::new(&vb.pp("self_attention"), cfg)?,
            cross_attention: AttentionLayer::new(&vb.pp("cross_attention"), cfg)?,
            conv1: Dense::conv1(&vb.pp("conv1"), d, ff)?,
            conv2: Dense::conv1(&vb.pp("conv2"), ff, d)?,
            norm1: Norm::new(&vb.pp("norm1"), d, eps)?,
            norm2: Norm::new(&vb.pp("norm2"), d, eps)?,
            norm3: Norm::new(&vb.pp("norm3"), d, eps)?,
        })
    }

    /// The causal self-attention half-block of the post-norm layer.
    fn self_block(&self, x: &mut [f32], q: usize, batch: usize) {
        self.self_attention.add_causal_self(x, q, batch);
        self.norm1.in_place(x);
    }

    /// Cross-attention to the memory (keys and values already projected) and the feed-forward.
    fn memory_block(&self, x: &mut [f32], q: usize, batch: usize, k: (&[f32], Heads), v: (&[f32], Heads)) {
        self.cross_attention.add_attended(x, q, batch, k, v, false);
        self.norm2.in_place(x);
        let mut hidden = self.conv1.forward(x, batch * q);
        gelu_in_place(&mut hidden);
        self.conv2.apply(&hidden, batch * q, x, true);
        self.norm3.in_place(x);
    }
}

/// Logits of a batch of windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    /// [batch, C]
    pub current: Vec<f32>,
    /// [batch, Q, C]: row i predicts chunk t+1+i.
    pub anticipation: Vec<f32>,
}

/// OadTR ready for inference on the CPU.
#[derive(Debug, Clone)]
pub struct OadtrCpu {
    cfg: OadtrConfig,
    linear_encoding: Dense,
    cls_token: Vec<f32>,
    /// [T+1, d], rows in position order.
    position: Vec<f32>,
    encoder: Vec<EncoderBlock>,
    pre_head_ln: Norm,
    /// The learned queries after the first decoder layer's self-attention, which sees nothing but
    /// them: computed once at load, [Q, d].
    decoder_start: Vec<f32>,
    decoder: Vec<DecoderLayer>,
    /// Every decoder layer's cross-attention key and value projections side by side: all of them read
    /// the same encoder output, so they run as one product, [d, layers·2d].
    memory_keys_values: Dense,
    decoder_norm: Norm,
    classifier: Dense,
    mlp_head: Dense,
}

impl OadtrCpu {
    /// Reads the weights under their official names (as [`super::oadtr::Oadtr::new`] does).
    pub fn new(vb: VarBuilder, cfg: &OadtrConfig) -> Result<Self> {
        cfg.ensure_valid()?;
        let (d, dd, q) = (cfg.embedding_dim, cfg.decoder_embedding_dim, cfg.query_num);
        let decoder: Vec<DecoderLayer> = (0..cfg.decoder_layers)
            .map(|i| DecoderLayer::new(&vb.pp("decoder").pp("layers").pp(i), cfg))
            .collect::<Result<_>>()?;
        let mut decoder_start = values(vb.get((1, q, dd), "decoder_cls_token")?)?;
        decoder[0].self_block(&mut decoder_start, q, 1);
        let projections: Vec<&Dense> =
            decoder.iter().flat_map(|l| [&l.cross_attention.key, &l.cross_attention.value]).collect();
        Ok(Self {
            linear_encoding: Dense::linear(&vb.pp("linear_encoding"), cfg.dim_feature, d)?,
            cls_token: values(vb.get((1, 1, d), "cls_token")?)?,
            position: values(position_table(vb.pp("position_encoding"), cfg.enc_layers + 1, d)?)?,
            encoder: (0..cfg.num_layers)
                .map(|i| EncoderBlock::new(&vb.pp("encoder").pp("net"), cfg, i))
                .collect::<Result<_>>()?,
            pre_head_ln: Norm::new(&vb.pp("pre_head_ln"), d, cfg.layer_norm_eps)?,
            decoder_start,
            memory_keys_values: Dense::side_by_side(&projections),
            decoder,
            decoder_norm: Norm::new(&vb.pp("decoder").pp("norm"), dd, cfg.layer_norm_eps)?,
            classifier: Dense::linear(&vb.pp("classifier"), dd, cfg.numclass)?,
            mlp_head: Dense::linear(&vb.pp("mlp_head"), d + dd, cfg.numclass)?,
            cfg: cfg.clone(),
        })
    }

    pub fn config(&self) -> &OadtrConfig {
        &self.cfg
    }

    /// The input projection of `rows` chunk features [rows, dim_feature] → [rows, d]. It acts on each
    /// chunk alone, so a stream projects each chunk once for all T windows it appears in.
    ///
    /// Panics if the input length does not match (callers check widths first, as `window` does).
    pub fn embed_chunks(&self, features: &[f32], rows: usize) -> Vec<f32> {
        assert_eq!(features.len(), rows * self.cfg.dim_feature, "features are [rows, dim_feature]");
        self.linear_encoding.forward(features, rows)
    }

    /// Logits for `batch` windows of raw chunk features [batch, T, dim_feature].
    ///
    /// Panics if the input length does not match (callers check widths first, as `window` does).
    pub fn forward(&self, features: &[f32], batch: usize) -> Logits {
        self.forward_embedded(&self.embed_chunks(features, batch * self.cfg.enc_layers), batch)
    }

    /// Logits for `batch` windows of projected chunks [batch, T, d] (see [`OadtrCpu::embed_chunks`]).
    ///
    /// Panics if the input length does not match (callers check widths first, as `window` does).
    pub fn forward_embedded(&self, chunks: &[f32], batch: usize) -> Logits {
        crate::sgemm::on_pool_thread(|| self.forward_on_pool(chunks, batch))
    }

    fn forward_on_pool(&self, chunks: &[f32], batch: usize) -> Logits {
        let cfg = &self.cfg;
        let (t, d, q, c) = (cfg.enc_layers, cfg.embedding_dim, cfg.query_num, cfg.numclass);
        let dd = cfg.decoder_embedding_dim;
        assert_eq!(chunks.len(), batch * t * d, "windows are [batch, T, d]");
        let n = t + 1;
        let mut x = Vec::with_capacity(batch * n * d);
        for window in chunks.chunks_exact(t * d) {
            x.extend_from_slice(window);
            x.extend_from_slice(&self.cls_token);
        }
        for item in x.chunks_exact_mut(n * d) {
            item.iter_mut().zip(&self.position).for_each(|(v, p)| *v += p);
        }
        for block in &self.encoder {
            block.forward(&mut x, batch, n);
        }
        self.pre_head_ln.in_place(&mut x);
        let memory = x;
        let keys_values = self.memory_keys_values.forward(&memory, batch * n);
        let stride = self.memory_keys_values.outputs;
        let mut queries = self.decoder_start.repeat(batch);
        for (i, layer) in self.decoder.iter().enumerate() {
            if i > 0 {
                layer.self_block(&mut queries, q, batch);
            }
            let k = Heads { rows: n, stride, column: 2 * i * dd };
            let v = Heads { rows: n, stride, column: (2 * i + 1) * dd };
            layer.memory_block(&mut queries, q, batch, (&keys_values, k), (&keys_values, v));
        }
        self.decoder_norm.in_place(&mut queries);
        let anticipation = self.classifier.forward(&queries, batch * q);
        let mut head_input = Vec::with_capacity(batch * (d + dd));
        for b in 0..batch {
            head_input.extend_from_slice(&memory[(b * n + t) * d..(b * n + n) * d]);
            let mut pooled = vec![0.0f32; dd];
            for row in queries[b * q * dd..(b + 1) * q * dd].chunks_exact(dd) {
                pooled.iter_mut().zip(row).for_each(|(p, v)| *p += v);
            }
            head_input.extend(pooled.iter().map(|p| p / q as f32));
        }
        let current = self.mlp_head.forward(&head_input, batch);
        debug_assert_eq!(current.len(), batch * c);
        Logits { current, anticipation }
    }
}
