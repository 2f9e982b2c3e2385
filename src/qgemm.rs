//! int8 products against a model's weight matrices for the backbone's opt-in `int8` precision:
//! `out (+)= x · W` with `W` quantised once at load and `x` at every call, multiplied by AVX-512 VNNI.
//!
//! Weights are quantised symmetrically per output column (`w ≈ scale_j · q`, q in -127..=127) and laid
//! out in panels of 32 columns holding groups of 4 consecutive inputs, the operand layout of
//! `vpdpbusd` (4 unsigned × signed byte products summed into each 32-bit lane). Activations are
//! quantised per row at run time (`x ≈ s_r · (u − 128)`, u in 1..=255): the offset makes them unsigned
//! for the instruction, and `128 · Σ_k q[k][j]` per column, computed at load, takes it out again. The
//! kernel keeps a 12×32 block of 32-bit sums in registers as the f32 kernel ([`crate::sgemm`]) does;
//! on this CPU class one `vpdpbusd` does 64 multiply-adds where an f32 FMA does 16, at the same rate.

use rayon::prelude::*;

/// Columns per panel: two vectors of 16 32-bit lanes.
const PANEL: usize = 32;
/// Inputs per group: the 4 bytes one 32-bit lane of `vpdpbusd` sums.
const GROUP: usize = 4;
/// Output rows the kernel keeps in registers.
const ROWS: usize = 12;
/// Products below this many multiply-adds stay on the calling thread.
const SPLIT_MIN_MACS: usize = 1 << 23;
/// The activation offset that makes signed values unsigned bytes.
const OFFSET: i32 = 128;

/// Whether this CPU runs the int8 kernel (AVX-512 with VNNI).
pub fn supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A weight matrix [k, n] quantised to int8 per column, in VNNI panels.
#[derive(Debug, Clone)]
pub struct QuantizedMatrix {
    k: usize,
    n: usize,
    /// Inputs rounded up to whole groups.
    k_padded: usize,
    /// Per panel: `k_padded / 4` groups of 32 columns × 4 bytes.
    values: Vec<i8>,
    /// Per column: the dequantisation scale.
    scales: Vec<f32>,
    /// Per column: `128 · Σ_k q[k][j]`, the activation offset's share of the integer sum.
    offsets: Vec<i32>,
}

impl QuantizedMatrix {
    /// Quantises the transpose of `w_t` [n, k] (torch's Linear weight layout), i.e. `W = w_tᵀ`.
    pub fn from_transposed(w_t: &[f32], n: usize, k: usize) -> QuantizedMatrix {
        assert!(n > 0 && k > 0 && w_t.len() == n * k, "weight is [{n}, {k}] but holds {} values", w_t.len());
        let k_padded = k.div_ceil(GROUP) * GROUP;
        let panels = n.div_ceil(PANEL);
        let mut values = vec![0i8; panels * k_padded * PANEL];
        let mut scales = vec![0.0f32; n];
        let mut offsets = vec![0i32; n];
        for (j, column) in w_t.chunks_exact(k).enumerate() {
            let max = column.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            scales[j] = scale;
            let (panel, c) = (j / PANEL, j % PANEL);
            let base = panel * k_padded * PANEL;
            let mut sum = 0i32;
            for (i, &w) in column.iter().enumerate() {
                let q = (w / scale).round_ties_even().clamp(-127.0, 127.0) as i8;
                sum += q as i32;
                values[base + (i / GROUP) * PANEL * GROUP + c * GROUP + i % GROUP] = q;
            }
            offsets[j] = OFFSET * sum;
        }
        QuantizedMatrix { k, n, k_padded, values, scales, offsets }
    }

    /// Rows of the matrix (the inputs of a layer).
    pub fn inputs(&self) -> usize {
        self.k
    }

    /// Columns of the matrix (the outputs of a layer).
    pub fn outputs(&self) -> usize {
        self.n
    }

    /// The matrix as the kernel sees it, dequantised, [k, n] row-major (for error measurements).
    pub fn dequantized(&self) -> Vec<f32> {
        let mut w = vec![0.0; self.k * self.n];
        for j in 0..self.n {
            let (panel, c) = (j / PANEL, j % PANEL);
            let base = panel * self.k_padded * PANEL;
            for i in 0..self.k {
                let q = self.values[base + (i / GROUP) * PANEL * GROUP + c * GROUP + i % GROUP];
                w[i * self.n + j] = q as f32 * self.scales[j];
            }
        }
        w
    }

    /// `out[rows × n] = (accumulate ? out : 0) + x[rows × k] · W`, the activations quantised per row.
    /// Split over the rayon pool when large.
    ///
    /// Panics if the CPU lacks the kernel's instructions ([`supported`]) or `x` or `out` is short.
    pub fn product(&self, x: &[f32], rows: usize, out: &mut [f32], accumulate: bool) {
        assert!(supported(), "the int8 kernel needs AVX-512 VNNI");
        let (k, n, kp) = (self.k, self.n, self.k_padded);
        assert!(x.len() >= rows * k, "input holds {} values, not {rows} rows of {k}", x.len());
        assert!(out.len() >= rows * n, "output holds {} values, not {rows} rows of {n}", out.len());
        if rows == 0 {
            return;
        }
        let threads = rayon::current_num_threads();
        let split = threads > 1 && rows * n * k >= SPLIT_MIN_MACS;
        // Four bytes per element of a u32 buffer: the kernel reads the bytes four at a time through
        // 4-byte loads, which need the alignment a byte vector does not promise.
        let mut words = vec![u32::from_ne_bytes([OFFSET as u8; GROUP]); rows * kp / GROUP];
        // SAFETY: the same allocation viewed as bytes (u8 has no alignment or validity requirements),
        // `words` is not used directly while this view lives.
        let quantized: &mut [u8] =
            unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), rows * kp) };
        let mut row_scales = vec![0.0f32; rows];
        let quantize = |(q, (x, s)): (&mut [u8], (&[f32], &mut f32))| {
            // SAFETY: `supported` was checked above.
            *s = unsafe { quantize_row(x, q) };
        };
        if split {
            quantized
                .par_chunks_exact_mut(kp)
                .zip(x.par_chunks_exact(k).zip(row_scales.par_iter_mut()))
                .for_each(quantize);
        } else {
            quantized.chunks_exact_mut(kp).zip(x.chunks_exact(k).zip(row_scales.iter_mut())).for_each(quantize);
        }
        let panels = n.div_ceil(PANEL);
        let per_block = if split && panels >= 2 { panels.div_ceil(threads) } else { panels };
        let out = SharedOut(out.as_mut_ptr());
        let block = |b: usize| {
            for p in b * per_block..((b + 1) * per_block).min(panels) {
                // SAFETY: the CPU supports the kernel (checked above); each panel's columns of `out` are
                // written by this task alone, and every row read or written lies inside the slices.
                unsafe { self.panel_product(quantized, &row_scales, rows, p, out, accumulate) };
            }
        };
        let blocks = panels.div_ceil(per_block);
        if blocks > 1 {
            (0..blocks).into_par_iter().for_each(block);
        } else {
            block(0);
        }
    }

    /// All row blocks of panel `p`.
    ///
    /// # Safety
    /// AVX-512 VNNI is available; `quantized` holds `rows` rows of `k_padded` bytes, `out` `rows` rows of
    /// `n` values, and no other thread touches panel `p`'s columns of `out` meanwhile.
    #[cfg(target_arch = "x86_64")]
    unsafe fn panel_product(
        &self,
        quantized: &[u8],
        row_scales: &[f32],
        rows: usize,
        p: usize,
        out: SharedOut,
        accumulate: bool,
    ) {
        let (n, kp) = (self.n, self.k_padded);
        let panel = self.values.as_ptr().wrapping_add(p * kp * PANEL);
        let first = p * PANEL;
        let width = PANEL.min(n - first);
        let columns = Columns {
            scales: self.scales.as_ptr().wrapping_add(first),
            offsets: self.offsets.as_ptr().wrapping_add(first),
            width,
        };
        let mut row = 0;
        while row < rows {
            let count = ROWS.min(rows - row);
            let x = quantized.as_ptr().wrapping_add(row * kp);
            let o = out.0.wrapping_add(row * n + first);
            vnni::block(count, (x, kp), kp / GROUP, panel, &row_scales[row..row + count], columns, (o, n), accumulate);
            row += count;
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn panel_product(&self, _: &[u8], _: &[f32], _: usize, _: usize, _: SharedOut, _: bool) {
        unreachable!("`supported` is false off x86_64")
    }
}

/// Quantises one row to offset bytes (`q` holds at least `x.len()` values; the rest keep the offset,
/// which meets zero weights) and returns its scale.
///
/// # Safety
/// AVX-512F and BW are available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_row(x: &[f32], q: &mut [u8]) -> f32 {
    use crate::sgemm::avx512::lanes;
    use std::arch::x86_64::*;
    let k = x.len();
    assert!(q.len() >= k);
    let mask = |i: usize| lanes(k - i);
    let mut max = _mm512_setzero_ps();
    // `vmaxps` drops a NaN in its first operand, so NaNs are looked for separately.
    let mut nan: __mmask16 = 0;
    let mut i = 0;
    while i < k {
        let v = _mm512_maskz_loadu_ps(mask(i), x.as_ptr().wrapping_add(i));
        max = _mm512_max_ps(max, _mm512_abs_ps(v));
        nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        i += 16;
    }
    let max = if nan != 0 { f32::NAN } else { _mm512_reduce_max_ps(max) };
    // A NaN or infinite input makes the whole row's outputs NaN, as the f32 product would, instead of
    // vanishing into saturated bytes.
    let scale = if !max.is_finite() {
        f32::NAN
    } else if max > 0.0 {
        max / 127.0
    } else {
        1.0
    };
    let inverse = _mm512_set1_ps(1.0 / scale);
    let offset = _mm512_set1_ps(OFFSET as f32);
    let mut i = 0;
    while i < k {
        let m = mask(i);
        let v = _mm512_maskz_loadu_ps(m, x.as_ptr().wrapping_add(i));
        // Rounds to nearest (the default mode); |v / scale| ≤ 127, so the bytes are 1..=255.
        let ints = _mm512_cvtps_epi32(_mm512_fmadd_ps(v, inverse, offset));
        _mm512_mask_cvtusepi32_storeu_epi8(q.as_mut_ptr().wrapping_add(i) as *mut i8, m, ints);
        i += 16;
    }
    scale
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn quantize_row(_: &[f32], _: &mut [u8]) -> f32 {
    unreachable!("`supported` is false off x86_64")
}

/// The output, shared by tasks that write disjoint panels of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: `product` hands each task its own panels.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// One panel's per-column dequantisation data.
#[derive(Clone, Copy)]
struct Columns {
    scales: *const f32,
    offsets: *const i32,
    /// Real columns in the panel (≤ 32).
    width: usize,
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::Columns;
    use crate::sgemm::avx512::lanes;
    use std::arch::x86_64::*;

    /// One block of up to 12 rows × one panel.
    ///
    /// # Safety
    /// AVX-512 VNNI is available; `x` holds `rows` rows of `groups · 4` bytes (stride `ldx`), `panel`
    /// `groups` groups of 128 bytes, `columns` `width` entries and `out` `rows` rows of at least `width`
    /// values (stride `ldo`).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn block(
        rows: usize,
        x: (*const u8, usize),
        groups: usize,
        panel: *const i8,
        row_scales: &[f32],
        columns: Columns,
        out: (*mut f32, usize),
        accumulate: bool,
    ) {
        crate::sgemm::with_row_count!(rows, rows_x_panel(x, groups, panel, row_scales, columns, out, accumulate))
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn rows_x_panel<const R: usize>(
        (x, ldx): (*const u8, usize),
        groups: usize,
        panel: *const i8,
        row_scales: &[f32],
        columns: Columns,
        (out, ldo): (*mut f32, usize),
        accumulate: bool,
    ) {
        let (low, high) = (lanes(columns.width), lanes(columns.width.saturating_sub(16)));
        // As in the f32 kernel: pointer bumps, load intrinsics and rows spelled out, so that a debug
        // build compiles the loop to the same instructions as a release build.
        const ALL: __mmask16 = 0xFFFF;
        let mut acc = [[_mm512_setzero_si512(); 2]; R];
        let mut inputs: [*const u8; R] = std::array::from_fn(|r| x.wrapping_add(r * ldx));
        let (mut b, end) = (panel, panel.wrapping_add(groups * 128));
        while b != end {
            let b0 = _mm512_maskz_loadu_epi32(ALL, b as *const i32);
            let b1 = _mm512_maskz_loadu_epi32(ALL, b.wrapping_add(64) as *const i32);
            macro_rules! row {
                ($($r:literal)*) => {$(
                    if $r < R {
                        // Four input bytes, broadcast to every lane.
                        let a = _mm512_broadcastd_epi32(_mm_castps_si128(_mm_load_ss(inputs[$r] as *const f32)));
                        acc[$r][0] = _mm512_dpbusd_epi32(acc[$r][0], a, b0);
                        acc[$r][1] = _mm512_dpbusd_epi32(acc[$r][1], a, b1);
                        inputs[$r] = inputs[$r].wrapping_add(4);
                    }
                )*};
            }
            row!(0 1 2 3 4 5 6 7 8 9 10 11);
            b = b.wrapping_add(128);
        }
        let scales =
            [_mm512_maskz_loadu_ps(low, columns.scales), _mm512_maskz_loadu_ps(high, columns.scales.wrapping_add(16))];
        let offsets = [
            _mm512_maskz_loadu_epi32(low, columns.offsets),
            _mm512_maskz_loadu_epi32(high, columns.offsets.wrapping_add(16)),
        ];
        for (r, a) in acc.iter().enumerate() {
            let row = out.wrapping_add(r * ldo);
            let s = _mm512_set1_ps(row_scales[r]);
            for (half, mask) in [(0, low), (1, high)] {
                let at = row.wrapping_add(16 * half);
                let sums = _mm512_cvtepi32_ps(_mm512_sub_epi32(a[half], offsets[half]));
                let base = if accumulate { _mm512_maskz_loadu_ps(mask, at) } else { _mm512_setzero_ps() };
                _mm512_mask_storeu_ps(at, mask, _mm512_fmadd_ps(sums, _mm512_mul_ps(s, scales[half]), base));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(count: usize, seed: u64) -> Vec<f32> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..count).map(|_| rng.f32() * 2.0 - 1.0).collect()
    }

    /// The kernel's integer arithmetic, one value at a time: what the VNNI code must reproduce.
    fn reference(w: &QuantizedMatrix, x: &[f32], rows: usize) -> Vec<f32> {
        let (k, n) = (w.k, w.n);
        let deq = w.dequantized();
        let mut out = vec![0.0f32; rows * n];
        for r in 0..rows {
            let row = &x[r * k..(r + 1) * k];
            let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let s = if max > 0.0 { max / 127.0 } else { 1.0 };
            let q: Vec<f32> = row.iter().map(|v| v.mul_add(1.0 / s, 128.0).round_ties_even() - 128.0).collect();
            for j in 0..n {
                let sum: f64 = (0..k).map(|i| q[i] as f64 * (deq[i * n + j] / w.scales[j]) as f64).sum();
                out[r * n + j] = (sum * s as f64 * w.scales[j] as f64) as f32;
            }
        }
        out
    }

    #[test]
    fn vnni_products_match_the_integer_arithmetic_and_approximate_f32() {
        if !supported() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        // Ragged in every dimension: inputs not a multiple of 4, a partial panel, every row-block size.
        let (k, n) = (45, 70);
        let w_t = values(n * k, 1);
        let w = QuantizedMatrix::from_transposed(&w_t, n, k);
        for rows in [1, 5, 12, 13, 31] {
            let x = values(rows * k, rows as u64 + 7);
            let mut out = vec![0.5f32; rows * n];
            w.product(&x, rows, &mut out, true);
            let want = reference(&w, &x, rows);
            for (i, (got, want)) in out.iter().zip(&want).enumerate() {
                assert!((got - 0.5 - want).abs() < 1e-4, "rows {rows}, value {i}: {got} vs {want} + 0.5");
            }
            let mut fresh = vec![9.0f32; rows * n];
            w.product(&x, rows, &mut fresh, false);
            // Against the exact f32 product: within the quantisation error.
            for r in 0..rows {
                for j in 0..n {
                    let exact: f32 = (0..k).map(|i| x[r * k + i] * w_t[j * k + i]).sum();
                    assert!((fresh[r * n + j] - exact).abs() < 0.05, "({r}, {j}): {} vs {exact}", fresh[r * n + j]);
                }
            }
        }
    }

    #[test]
    fn zero_rows_and_columns_stay_zero() {
        if !supported() {
            return;
        }
        let (k, n) = (8, 3);
        let mut w_t = values(n * k, 3);
        w_t[k..2 * k].fill(0.0); // column 1 all zero
        let w = QuantizedMatrix::from_transposed(&w_t, n, k);
        let mut x = values(2 * k, 4);
        x[..k].fill(0.0); // row 0 all zero
        let mut out = vec![1.0f32; 2 * n];
        w.product(&x, 2, &mut out, false);
        assert_eq!(&out[..n], &[0.0; 3]);
        assert_eq!(out[n + 1], 0.0);
    }

    #[test]
    fn a_row_with_nan_or_infinity_comes_out_nan() {
        if !supported() {
            return;
        }
        let (k, n) = (20, 5);
        let w = QuantizedMatrix::from_transposed(&values(n * k, 8), n, k);
        let mut x = values(3 * k, 9);
        x[3] = f32::NAN;
        x[k + 7] = f32::INFINITY;
        let mut out = vec![0.0f32; 3 * n];
        w.product(&x, 3, &mut out, false);
        assert!(out[..2 * n].iter().all(|v| v.is_nan()), "{out:?}");
        assert!(out[2 * n..].iter().all(|v| v.is_finite()), "{out:?}");
    }

    #[test]
    fn large_products_split_over_threads_give_the_same_values() {
        if !supported() {
            return;
        }
        let (rows, k, n) = (100, 384, 300);
        let w = QuantizedMatrix::from_transposed(&values(n * k, 5), n, k);
        let x = values(rows * k, 6);
        let mut split = vec![0.0f32; rows * n];
        w.product(&x, rows, &mut split, false);
        let mut single = vec![0.0f32; rows * n];
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| w.product(&x, rows, &mut single, false));
        assert_eq!(split, single);
    }
}
