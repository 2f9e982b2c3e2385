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
    for row in x.chunks_exact_mut(cols) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        row.iter_mut().for_each(|v| *v /= sum);
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
    // Waking the pool costs more than small attentions do.
    let contexts: Vec<Vec<f32>> = if batch * heads * lq * lk * e < SPLIT_MIN_MACS / 2 {
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
