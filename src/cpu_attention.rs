//! Multi-head scaled dot-product attention on the CPU in f32, straight from projections laid out side
//! by side in one buffer (`[rows, …q…k…v…]`, the fused qkv product's layout). Each head's queries are
//! read in place; its keys (transposed, scaled) and values are packed for the product kernel
//! ([`crate::sgemm`]), a copy of lk·e values each against lq·lk·e multiply-adds per product. The
//! detector's engine and the backbone both run it.

use rayon::prelude::*;

use crate::sgemm::{Kernel, PackedMatrix};

/// Attentions below this many multiply-adds run on the calling thread: waking the pool costs more.
const SPLIT_MIN_MACS: usize = 1 << 21;

/// Softmax over each row of `cols` values, in place (entries at -inf get 0).
pub(crate) fn softmax_rows(x: &mut [f32], cols: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was just detected on this CPU.
        unsafe { softmax_rows_avx512(x, cols) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the features were just detected on this CPU.
        unsafe { softmax_rows_avx2(x, cols) };
        return;
    }
    softmax_rows_portable(x, cols)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_rows_avx512(x: &mut [f32], cols: usize) {
    // The same code, compiled with 16-wide vectors.
    softmax_rows_portable(x, cols)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_rows_avx2(x: &mut [f32], cols: usize) {
    // The same code, compiled with 8-wide vectors.
    softmax_rows_portable(x, cols)
}

/// Lanes of the partial maxima and sums, so the reductions vectorise.
const LANES: usize = 16;

#[inline(always)]
fn softmax_rows_portable(x: &mut [f32], cols: usize) {
    for row in x.chunks_exact_mut(cols) {
        let mut max = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            max.iter_mut().zip(chunk).for_each(|(m, &v)| *m = m.max(v));
        }
        let max = chunks.remainder().iter().chain(&max).copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = [0.0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            for (s, v) in sum.iter_mut().zip(chunk) {
                *v = exp(*v - max);
                *s += *v;
            }
        }
        let mut total = sum.iter().sum::<f32>();
        for v in chunks.into_remainder() {
            *v = exp(*v - max);
            total += *v;
        }
        let inv = 1.0 / total;
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// eˣ in f32 to about 1 ulp (Cephes' `expf`: x = n·ln 2 + r, a degree-6 polynomial for eʳ, 2ⁿ built in
/// the exponent bits), written so it vectorises; 0 below -87 (and for -inf).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let clamped = x.clamp(-87.0, 88.0);
    let n = (clamped * std::f32::consts::LOG2_E + 0.5).floor();
    // ln 2 in two parts, so n·ln 2 is exact to float precision.
    let r = clamped - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_2e-4_f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let e_r = p.mul_add(r * r, r) + 1.0;
    // 2ⁿ without a float-to-int conversion (Rust's saturating `as` does not vectorise): adding
    // 1.5·2²³ puts n, an integer in [-126, 127], in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    let n_bits = (n + SHIFTER).to_bits().wrapping_sub(SHIFTER.to_bits());
    let two_n = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if x < -87.0 {
        0.0
    } else {
        e_r * two_n
    }
}

/// Where one attention's operands sit: per item, `rows` rows of `stride` values, heads of width `e`
/// side by side from column `column`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Heads {
    pub rows: usize,
    pub stride: usize,
    pub column: usize,
}

/// Multi-head scaled dot-product attention for `batch` items, written into `out` [batch·lq, heads·e]
/// with the heads side by side. Scores are Q·Kᵀ times `scale`; `causal` masks keys after the query's
/// own index.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    batch: usize,
    (heads, e): (usize, usize),
    scale: f32,
    (q, qh): (&[f32], Heads),
    (k, kh): (&[f32], Heads),
    (v, vh): (&[f32], Heads),
    causal: bool,
    out: &mut [f32],
) {
    let (lq, lk) = (qh.rows, kh.rows);
    let width = heads * e;
    assert!(out.len() >= batch * lq * width, "attention output out of bounds");
    for (x, h) in [(q.len(), qh), (k.len(), kh), (v.len(), vh)] {
        assert!(
            h.column + width <= h.stride && x >= (batch * h.rows - 1) * h.stride + h.column + width,
            "attention operand out of bounds"
        );
    }
    // One task per item and head: the head's context [lq, e] into the task's own buffer.
    let task = |work: &mut Work, task: usize| -> Vec<f32> {
        let (b, head) = (task / heads, task % heads);
        let (qc, kc, vc) = (qh.column + head * e, kh.column + head * e, vh.column + head * e);
        work.keys.fill_from(k, b * lk * kh.stride + kc, (1, kh.stride), (e, lk), scale);
        work.values.fill_from(v, b * lk * vh.stride + vc, (vh.stride, 1), (lk, e), 1.0);
        let scores = &mut work.scores;
        work.keys.product_strided((&q[b * lq * qh.stride + qc..], qh.stride), lq, (scores, lk), false);
        if causal {
            for (i, row) in scores.chunks_exact_mut(lk).enumerate() {
                row.iter_mut().skip(i + 1).for_each(|s| *s = f32::NEG_INFINITY);
            }
        }
        softmax_rows(scores, lk);
        let mut context = vec![0.0; lq * e];
        work.values.product(scores, lq, &mut context, false);
        context
    };
    let new_work = || Work {
        keys: PackedMatrix::empty(Kernel::detect()),
        values: PackedMatrix::empty(Kernel::detect()),
        scores: vec![0.0; lq * lk],
    };
    let tasks = batch * heads;
    // Two products per task (Q·Kᵀ and P·V).
    let contexts: Vec<Vec<f32>> = if 2 * tasks * lq * lk * e < SPLIT_MIN_MACS {
        let mut work = new_work();
        (0..tasks).map(|t| task(&mut work, t)).collect()
    } else {
        (0..tasks).into_par_iter().map_init(new_work, task).collect()
    };
    for (t, context) in contexts.iter().enumerate() {
        let (b, head) = (t / heads, t % heads);
        for (i, row) in context.chunks_exact(e).enumerate() {
            let at = (b * lq + i) * width + head * e;
            out[at..at + e].copy_from_slice(row);
        }
    }
}

/// One task's buffers, reused across the tasks a thread runs.
struct Work {
    /// Kᵀ of one head, scaled: [e, lk].
    keys: PackedMatrix,
    /// V of one head: [lk, e].
    values: PackedMatrix,
    /// [lq, lk]
    scores: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_standard_library_to_float_precision() {
        let mut worst = 0f64;
        for i in -87_000..=88_000 {
            let x = i as f32 / 1000.0;
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64) - want).abs() / want);
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_masked_entries_get_zero() {
        let cols = 37; // two full 16-lane chunks and a remainder
        let mut x: Vec<f32> = (0..2 * cols).map(|i| ((i * 7) % 23) as f32 / 3.0 - 4.0).collect();
        x[cols + 5] = f32::NEG_INFINITY;
        let want: Vec<f64> = x
            .chunks(cols)
            .flat_map(|row| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
                row.iter().map(move |&v| (v as f64 - max).exp() / sum).collect::<Vec<_>>()
            })
            .collect();
        let mut portable = x.clone();
        softmax_rows(&mut x, cols);
        softmax_rows_portable(&mut portable, cols);
        for got in [&x, &portable] {
            for (got, want) in got.iter().zip(&want) {
                assert!((*got as f64 - want).abs() < 1e-7, "{got} vs {want}");
            }
            assert_eq!(got[cols + 5], 0.0);
        }
    }
}
