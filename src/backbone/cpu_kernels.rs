//! CPU fast paths for the two places where candle's generic kernels cost the most on a ViT: the exact
//! (erf) GELU, evaluated here with a rational erf approximation accurate to a few float ulps (Eigen's
//! `generic_fast_erf_float`) instead of a scalar libm call per element; and, with the `openblas`
//! feature, the Linear layers through OpenBLAS's sgemm with the bias folded into the product.
//! Other devices and dtypes take candle's own ops.

use candle_core::{DType, Device, Result, Storage, Tensor};

/// `f` of a contiguous f32 CPU tensor's values, or `None` when the tensor is elsewhere, another dtype
/// or strided.
pub fn with_cpu_f32<R>(xs: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    if !matches!(xs.device(), Device::Cpu) || xs.dtype() != DType::F32 || !xs.is_contiguous() {
        return None;
    }
    let (storage, layout) = xs.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => {
            let all = cpu.as_slice::<f32>().ok()?;
            Some(f(&all[layout.start_offset()..layout.start_offset() + xs.elem_count()]))
        }
        _ => None,
    }
}

/// Makes glibc keep freed large buffers for reuse instead of returning them to the kernel.
///
/// Every tensor op allocates a fresh output; at ViT sizes (MBs per activation) glibc serves those with
/// mmap and unmaps them on free, so each op pays page faults and page zeroing again. Measured on
/// DINOv2-S/14 batch 4 (one thread): about 20% of the CPU time, all in the kernel. Raising the mmap and
/// trim thresholds once per process removes it; the cost is that up to the peak working set (about
/// 100 MB at batch 4) stays mapped between batches.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes allocator tuning parameters; both values are in range.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
            }
        });
    }
}

/// GELU with the exact erf form Hugging Face's `"gelu"` uses.
pub fn gelu(xs: &Tensor) -> Result<Tensor> {
    match with_cpu_f32(xs, <[f32]>::to_vec) {
        Some(mut values) => {
            gelu_in_place(&mut values);
            Tensor::from_vec(values, xs.shape(), xs.device())
        }
        None => xs.gelu_erf(),
    }
}

/// Values per chunk of work: cache-sized.
const GELU_CHUNK: usize = 16 * 1024;

/// Splits the work over the candle/rayon pool in cache-sized chunks when there are several; one chunk's
/// worth (the detector's activations at batch 1) runs on the calling thread, since handing it to the
/// pool and waiting for it back costs more than the chunk (tens of microseconds on a busy machine).
pub fn gelu_in_place(values: &mut [f32]) {
    use rayon::prelude::*;
    if values.len() <= 2 * GELU_CHUNK {
        values.chunks_mut(GELU_CHUNK).for_each(gelu_chunk);
    } else {
        values.par_chunks_mut(GELU_CHUNK).for_each(gelu_chunk);
    }
}

fn gelu_chunk(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected on this CPU.
        unsafe { gelu_chunk_avx2(values) };
        return;
    }
    gelu_chunk_portable(values);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_chunk_avx2(values: &mut [f32]) {
    // The same scalar code, compiled with 8-wide vectors and fused multiply-adds.
    gelu_chunk_portable(values)
}

#[inline(always)]
fn gelu_chunk_portable(values: &mut [f32]) {
    for v in values.iter_mut() {
        let x = *v;
        *v = 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// erf(x) for f32, max error a few ulps (rational approximation on [-4, 4], ±1 outside).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p.mul_add(x2, 2.770_681_4e-8);
    p = p.mul_add(x2, -2.101_024e-6);
    p = p.mul_add(x2, -5.692_506_4e-5);
    p = p.mul_add(x2, -7.349_906_3e-4);
    p = p.mul_add(x2, -2.954_600_5e-3);
    p = p.mul_add(x2, -1.609_603_3e-2);
    p *= x;
    let mut q = -1.456_607_2e-5_f32;
    q = q.mul_add(x2, -2.133_740_6e-4);
    q = q.mul_add(x2, -1.682_827e-3);
    q = q.mul_add(x2, -7.373_329e-3);
    q = q.mul_add(x2, -1.426_474e-2);
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_a_reference_to_float_precision() {
        // erf values from the series at double precision.
        fn erf64(x: f64) -> f64 {
            // Maclaurin series converges well for |x| <= 3 with enough terms.
            let mut sum = 0.0;
            let mut term = x;
            let mut n = 0.0;
            while n < 200.0 {
                sum += term / (2.0 * n + 1.0);
                n += 1.0;
                term *= -x * x / n;
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        }
        let mut worst = 0f64;
        for i in -3000..=3000 {
            let x = i as f64 / 1000.0;
            worst = worst.max((f64::from(erf(x as f32)) - erf64(x)).abs());
        }
        assert!(worst < 5e-7, "worst erf error {worst}");
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(erf(-10.0), -1.0);
    }

    #[test]
    fn gelu_matches_candles_exact_gelu() {
        let xs = Tensor::arange(-3000f32, 3000f32, &Device::Cpu).unwrap().affine(1.0 / 500.0, 0.0).unwrap();
        let ours = gelu(&xs).unwrap();
        let reference = xs.gelu_erf().unwrap();
        let diff = (ours - reference).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6, "max difference {diff}");
    }
}
