//! The backbone's Linear layer (`weight` [out, in], `bias` [out], Hugging Face/torch layout), with an
//! optional GELU applied to its output. On the CPU in f32 with the `openblas` feature the product runs
//! in OpenBLAS's sgemm with the bias preloaded into the output (one pass instead of three); otherwise it
//! is candle's matmul.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::cpu_kernels;

#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
    gelu: bool,
}

impl Linear {
    pub fn new(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self { inner: candle_nn::linear(in_dim, out_dim, vb)?, gelu: false })
    }

    pub fn from_weights(weight: Tensor, bias: Tensor) -> Self {
        Self { inner: candle_nn::Linear::new(weight, Some(bias)), gelu: false }
    }

    /// The same layer with its outputs multiplied per channel by `scale` [out] (folds DINOv2's layer
    /// scale into the weights: one elementwise pass fewer per residual branch).
    pub fn scaled_outputs(self, scale: &Tensor) -> Result<Self> {
        let weight = self.inner.weight().broadcast_mul(&scale.unsqueeze(1)?)?;
        let bias = match self.inner.bias() {
            Some(bias) => bias.mul(scale)?,
            None => scale.zeros_like()?,
        };
        Ok(Self { inner: candle_nn::Linear::new(weight, Some(bias)), gelu: self.gelu })
    }

    /// The same layer followed by the exact GELU.
    pub fn with_gelu(mut self) -> Self {
        self.gelu = true;
        self
    }

    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
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
}

#[cfg(feature = "openblas")]
pub(crate) mod blas {
    use candle_core::{DType, Device, Result, Storage, Tensor};
    use std::os::raw::c_int;

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

    pub(crate) fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
        if !matches!(t.device(), Device::Cpu) || t.dtype() != DType::F32 || !t.is_contiguous() {
            return None;
        }
        let (storage, layout) = t.storage_and_layout();
        match &*storage {
            Storage::Cpu(cpu) => {
                let all = cpu.as_slice::<f32>().ok()?;
                Some(f(&all[layout.start_offset()..layout.start_offset() + t.elem_count()]))
            }
            _ => None,
        }
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
