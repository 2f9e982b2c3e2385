//! The backbone's Linear layer (`weight` [out, in], `bias` [out], Hugging Face/torch layout), with an
//! optional GELU applied to its output. On the CPU in f32 the product runs in the project's kernel
//! ([`crate::sgemm`]) against the weight packed on first use, with the bias preloaded into the output
//! (one pass instead of three); with the `openblas` feature it runs in OpenBLAS's sgemm instead. A layer
//! set to int8 ([`Linear::quantize_int8`]) runs in the int8 kernel ([`crate::qgemm`]) instead. Other
//! devices and dtypes take candle's matmul.

use std::sync::{Arc, OnceLock};

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::cpu_kernels::{self, with_cpu_f32};
use crate::qgemm::QuantizedMatrix;
use crate::sgemm::PackedMatrix;

#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
    gelu: bool,
    /// Run the product in int8 (weights quantised per output channel, activations per row).
    int8: bool,
    /// The layer ready for the CPU kernel, made by the first f32 CPU forward (`None` when the weight
    /// itself is not f32 on the CPU). Shared by clones.
    packed: Arc<OnceLock<Option<Packed>>>,
}

/// The weight packed for [`crate::sgemm`] (or quantised for [`crate::qgemm`]) and the bias as plain
/// values, both made once.
#[derive(Debug)]
struct Packed {
    weight: PackedWeight,
    bias: Vec<f32>,
}

#[derive(Debug)]
enum PackedWeight {
    F32(PackedMatrix),
    Int8(QuantizedMatrix),
}

impl PackedWeight {
    fn inputs(&self) -> usize {
        match self {
            PackedWeight::F32(w) => w.inputs(),
            PackedWeight::Int8(w) => w.inputs(),
        }
    }

    fn outputs(&self) -> usize {
        match self {
            PackedWeight::F32(w) => w.outputs(),
            PackedWeight::Int8(w) => w.outputs(),
        }
    }

    /// `out += x · W` for `rows` rows.
    fn accumulate_product(&self, x: &[f32], rows: usize, out: &mut [f32]) {
        match self {
            PackedWeight::F32(w) => w.product(x, rows, out, true),
            PackedWeight::Int8(w) => w.product(x, rows, out, true),
        }
    }
}

impl Linear {
    pub fn new(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self::wrap(candle_nn::linear(in_dim, out_dim, vb)?, false))
    }

    pub fn from_weights(weight: Tensor, bias: Tensor) -> Self {
        Self::wrap(candle_nn::Linear::new(weight, Some(bias)), false)
    }

    fn wrap(inner: candle_nn::Linear, gelu: bool) -> Self {
        Self { inner, gelu, int8: false, packed: Arc::default() }
    }

    /// Runs this layer's product in int8 from now on (the CPU must pass [`crate::qgemm::supported`]).
    pub fn quantize_int8(&mut self) {
        self.int8 = true;
        self.packed = Arc::default();
    }

    /// The same layer with its outputs multiplied per channel by `scale` [out] (folds DINOv2's layer
    /// scale into the weights: one elementwise pass fewer per residual branch).
    pub fn scaled_outputs(self, scale: &Tensor) -> Result<Self> {
        let weight = self.inner.weight().broadcast_mul(&scale.unsqueeze(1)?)?;
        let bias = match self.inner.bias() {
            Some(bias) => bias.mul(scale)?,
            None => scale.zeros_like()?,
        };
        let mut scaled = Self::wrap(candle_nn::Linear::new(weight, Some(bias)), self.gelu);
        scaled.int8 = self.int8;
        Ok(scaled)
    }

    /// The same layer followed by the exact GELU.
    pub fn with_gelu(mut self) -> Self {
        self.gelu = true;
        self
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_onto(xs, None)
    }

    /// `residual + self.forward(xs)`: on the CPU path the product accumulates onto the residual stream
    /// (no separate add pass over the activations). Not for layers with a GELU.
    pub fn forward_plus(&self, xs: &Tensor, residual: &Tensor) -> Result<Tensor> {
        debug_assert!(!self.gelu, "the GELU would apply to the residual too");
        self.forward_onto(xs, Some(residual))
    }

    fn forward_onto(&self, xs: &Tensor, residual: Option<&Tensor>) -> Result<Tensor> {
        if let Some(out) = self.packed_forward(xs, residual)? {
            return Ok(out);
        }
        let out = self.unfused_forward(xs)?;
        match residual {
            Some(residual) => residual + out,
            None => Ok(out),
        }
    }

    fn unfused_forward(&self, xs: &Tensor) -> Result<Tensor> {
        #[cfg(feature = "openblas")]
        if let Some(out) = blas::forward(xs, self.inner.weight(), self.inner.bias(), self.gelu)? {
            return Ok(out);
        }
        let out = self.inner.forward(xs)?;
        if self.gelu {
            cpu_kernels::gelu(&out)
        } else {
            Ok(out)
        }
    }

    /// `(residual +) xs [.., in] · weightᵀ + bias` in the packed kernel, or `None` off the CPU or f32
    /// (or with the `openblas` feature, which takes the product instead).
    fn packed_forward(&self, xs: &Tensor, residual: Option<&Tensor>) -> Result<Option<Tensor>> {
        if cfg!(feature = "openblas") && !self.int8 {
            return Ok(None);
        }
        let Some(packed) = self.packed.get_or_init(|| self.pack()) else { return Ok(None) };
        let (in_dim, out_dim) = (packed.weight.inputs(), packed.weight.outputs());
        let rows = xs.elem_count() / in_dim;
        // The output starts as bias (plus the residual), and the product accumulates onto it.
        let mut out: Vec<f32> = Vec::with_capacity(rows * out_dim);
        match residual {
            Some(residual) if residual.elem_count() == rows * out_dim => {
                let added = with_cpu_f32(residual, |r| {
                    for row in r.chunks_exact(out_dim) {
                        out.extend(row.iter().zip(&packed.bias).map(|(r, b)| r + b));
                    }
                });
                if added.is_none() {
                    return Ok(None);
                }
            }
            Some(_) => return Ok(None),
            None => (0..rows).for_each(|_| out.extend_from_slice(&packed.bias)),
        }
        if with_cpu_f32(xs, |x| packed.weight.accumulate_product(x, rows, &mut out)).is_none() {
            return Ok(None);
        }
        if self.gelu {
            cpu_kernels::gelu_in_place(&mut out);
        }
        let mut dims = xs.dims().to_vec();
        *dims.last_mut().expect("at least 1-D") = out_dim;
        Ok(Some(Tensor::from_vec(out, dims, xs.device())?))
    }

    fn pack(&self) -> Option<Packed> {
        let (out_dim, in_dim) = self.inner.weight().dims2().ok()?;
        let weight = with_cpu_f32(self.inner.weight(), |w| {
            if self.int8 {
                PackedWeight::Int8(QuantizedMatrix::from_transposed(w, out_dim, in_dim))
            } else {
                PackedWeight::F32(PackedMatrix::from_transposed(w, out_dim, in_dim))
            }
        })?;
        let bias = match self.inner.bias() {
            Some(bias) => with_cpu_f32(bias, <[f32]>::to_vec)?,
            None => vec![0.0; out_dim],
        };
        Some(Packed { weight, bias })
    }
}

#[cfg(feature = "openblas")]
pub(crate) mod blas {
    use candle_core::{Result, Tensor};
    use std::os::raw::c_int;

    pub(crate) use crate::backbone::cpu_kernels::with_cpu_f32 as with_slice;

    pub(crate) const ROW_MAJOR: c_int = 101;
    pub(crate) const NO_TRANS: c_int = 111;
    pub(crate) const TRANS: c_int = 112;

    #[link(name = "openblas")]
    extern "C" {
        pub(crate) fn cblas_sgemm(
            order: c_int,
            trans_a: c_int,
            trans_b: c_int,
            m: c_int,
            n: c_int,
            k: c_int,
            alpha: f32,
            a: *const f32,
            lda: c_int,
            b: *const f32,
            ldb: c_int,
            beta: f32,
            c: *mut f32,
            ldc: c_int,
        );
        fn openblas_set_num_threads(threads: c_int);
    }

    /// OpenBLAS sizes its pool from the environment when the library loads, before `main` can set
    /// it; match it to the pool candle uses so the two do not compete for cores.
    pub(crate) fn match_thread_count() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: plain setter in OpenBLAS, called before any concurrent sgemm of ours.
        ONCE.call_once(|| unsafe { openblas_set_num_threads(rayon::current_num_threads() as c_int) });
    }

    /// `xs [.., in] · weightᵀ + bias`, or `None` when the operands are not contiguous f32 on the CPU.
    pub fn forward(xs: &Tensor, weight: &Tensor, bias: Option<&Tensor>, gelu: bool) -> Result<Option<Tensor>> {
        let (out_dim, in_dim) = weight.dims2()?;
        let rows = xs.elem_count() / in_dim;
        let Some(bias) = bias else { return Ok(None) };
        match_thread_count();
        let Some(bias) = with_slice(bias, |b| b.to_vec()) else { return Ok(None) };
        let mut out: Vec<f32> = Vec::with_capacity(rows * out_dim);
        for _ in 0..rows {
            out.extend_from_slice(&bias);
        }
        let done = with_slice(xs, |x| {
            with_slice(weight, |w| {
                // SAFETY: x is rows×in, w is out×in, out is rows×out, all contiguous row-major f32.
                unsafe {
                    cblas_sgemm(
                        ROW_MAJOR, NO_TRANS, TRANS, rows as c_int, out_dim as c_int, in_dim as c_int, 1.0,
                        x.as_ptr(), in_dim as c_int, w.as_ptr(), in_dim as c_int, 1.0, out.as_mut_ptr(),
                        out_dim as c_int,
                    )
                }
            })
        })
        .flatten();
        if done.is_none() {
            return Ok(None);
        }
        if gelu {
            super::cpu_kernels::gelu_in_place(&mut out);
        }
        let mut dims = xs.dims().to_vec();
        *dims.last_mut().expect("at least 1-D") = out_dim;
        Ok(Some(Tensor::from_vec(out, dims, xs.device())?))
    }
}
