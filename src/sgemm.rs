//! f32 products against a model's weight matrices: `out (+)= x · W`, with `W` [k, n] packed once at load.
//!
//! Layers multiply a fresh activation by weights that never change, so the weights are rearranged once
//! into panels of 32 columns (each panel `k` rows of 32 contiguous values, zero-padded at the right
//! edge) and an AVX-512 kernel keeps a 12×32 block of the output in registers while it streams one
//! panel and broadcasts the activation's values. A general-purpose `gemm` repacks the weights on every
//! call, and the `gemm` crate's AVX-512 kernels need a nightly compiler, so on these CPUs it runs 8-wide
//! (docs/benchmarks/oadtr.md, backbone.md). CPUs without AVX-512 keep the weights row-major and use `gemm`.

use rayon::prelude::*;

/// Columns per panel: two 16-wide vectors.
const PANEL: usize = 32;
/// Output rows the kernel keeps in registers: 12 rows × 2 vectors = 24 of the 32 vector registers.
const ROWS: usize = 12;
/// Products below this many multiply-adds stay on the calling thread: waking the pool costs more.
const SPLIT_MIN_MACS: usize = 1 << 23;

/// Runs `work` on a rayon pool thread (at once when already on one). A forward pass made of many
/// products, attention and GELU that split over the pool should run there: from any other thread each
/// parallel step hands its work to the pool and sleeps until it is back (tens of microseconds per
/// step on a busy machine, a dozen steps per detector window at batch 1), while on a pool thread the
/// steps share work with the other threads as they come.
pub fn on_pool_thread<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        work()
    } else {
        rayon::scope(|_| work())
    }
}

/// Up to this many rows, the portable kernel runs rows of broadcast multiply-adds over the weight rows
/// rather than a blocked `gemm`, which would repack the whole matrix for a handful of rows (the
/// detector's 8 queries at batch 1).
const FEW_ROWS: usize = 16;

/// Which kernel a packed matrix is laid out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// 32-column panels for the AVX-512 kernel.
    Avx512,
    /// Row-major, multiplied by the `gemm` crate.
    Portable,
}

impl Kernel {
    /// The best kernel this CPU runs.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Kernel::Avx512;
        }
        Kernel::Portable
    }
}

/// A weight matrix [k, n] laid out for [`PackedMatrix::product`].
#[derive(Debug, Clone)]
pub struct PackedMatrix {
    kernel: Kernel,
    k: usize,
    n: usize,
    values: Vec<f32>,
}

impl PackedMatrix {
    /// Packs `w` [k, n] (row-major) for this CPU's kernel.
    pub fn new(w: &[f32], k: usize, n: usize) -> PackedMatrix {
        PackedMatrix::for_kernel(w, k, n, Kernel::detect())
    }

    /// Packs the transpose of `w_t` [n, k] (torch's Linear weight layout), i.e. `W = w_tᵀ`.
    pub fn from_transposed(w_t: &[f32], n: usize, k: usize) -> PackedMatrix {
        assert_eq!(w_t.len(), n * k, "weight is [n, k]");
        let mut packed = PackedMatrix::empty(Kernel::detect());
        packed.fill_from(w_t, 0, (1, k), (k, n), 1.0);
        packed
    }

    /// Packs `w` [k, n] for `kernel` (tests compare the kernels on one CPU).
    pub fn for_kernel(w: &[f32], k: usize, n: usize, kernel: Kernel) -> PackedMatrix {
        assert!(w.len() == k * n, "weight is [{k}, {n}] but holds {} values", w.len());
        let mut packed = PackedMatrix::empty(kernel);
        packed.fill_from(w, 0, (n, 1), (k, n), 1.0);
        packed
    }

    /// A 0×0 matrix to [`fill_from`](PackedMatrix::fill_from) later, reusing its buffer.
    pub fn empty(kernel: Kernel) -> PackedMatrix {
        PackedMatrix { kernel, k: 0, n: 0, values: Vec::new() }
    }

    /// Makes this the [k, n] matrix whose element (i, j) is `scale · src[first + i·row_stride +
    /// j·col_stride]`, reusing the buffer: operands that change on every call (attention's keys, read
    /// transposed, and values) are packed this way.
    ///
    /// Panics if the matrix reaches past the end of `src`.
    pub fn fill_from(
        &mut self,
        src: &[f32],
        first: usize,
        (row_stride, col_stride): (usize, usize),
        (k, n): (usize, usize),
        scale: f32,
    ) {
        assert!(k > 0 && n > 0, "an empty [{k}, {n}] matrix");
        assert!(first + (k - 1) * row_stride + (n - 1) * col_stride < src.len(), "matrix past the end of its source");
        (self.k, self.n) = (k, n);
        let width = self.block_width();
        self.values.clear();
        self.values.resize(n.div_ceil(width) * k * width, 0.0);
        // Both layouts are row-major blocks of `width` columns, `k` rows each; the source is read along
        // its contiguous direction.
        for (block, dst) in self.values.chunks_exact_mut(k * width).enumerate() {
            let (j0, cols) = (block * width, width.min(n - block * width));
            if col_stride == 1 {
                for (i, dst_row) in dst.chunks_exact_mut(width).enumerate() {
                    let src_row = &src[first + i * row_stride + j0..][..cols];
                    dst_row[..cols].iter_mut().zip(src_row).for_each(|(d, &v)| *d = scale * v);
                }
            } else {
                for c in 0..cols {
                    let column = first + (j0 + c) * col_stride;
                    for (i, dst_row) in dst.chunks_exact_mut(width).enumerate() {
                        dst_row[c] = scale * src[column + i * row_stride];
                    }
                }
            }
        }
    }

    /// The matrix [k, n] row-major again.
    pub fn to_rows(&self) -> Vec<f32> {
        let (k, n, width) = (self.k, self.n, self.block_width());
        let mut w = vec![0.0; k * n];
        // The inverse of `fill_from`'s layout: row-major blocks of `width` columns, `k` rows each.
        for (block, src) in self.values.chunks_exact(k * width).enumerate() {
            let (j0, cols) = (block * width, width.min(n - block * width));
            for (i, src_row) in src.chunks_exact(width).enumerate() {
                w[i * n + j0..i * n + j0 + cols].copy_from_slice(&src_row[..cols]);
            }
        }
        w
    }

    /// Columns per block of the layout: all of them (row-major) or one panel.
    fn block_width(&self) -> usize {
        match self.kernel {
            Kernel::Portable => self.n,
            Kernel::Avx512 => PANEL,
        }
    }

    /// Rows of the matrix (the inputs of a layer).
    pub fn inputs(&self) -> usize {
        self.k
    }

    /// Columns of the matrix (the outputs of a layer).
    pub fn outputs(&self) -> usize {
        self.n
    }

    /// `out[rows × n] = (accumulate ? out : 0) + x[rows × k] · W`, split over the rayon pool when large.
    ///
    /// Panics if `x` or `out` is shorter than `rows` rows.
    pub fn product(&self, x: &[f32], rows: usize, out: &mut [f32], accumulate: bool) {
        self.product_strided((x, self.k), rows, (out, self.n), accumulate)
    }

    /// [`product`](PackedMatrix::product) on rows `x_stride` and `out_stride` values apart (e.g. one
    /// head's columns of a wider matrix).
    ///
    /// Panics if `x` or `out` is shorter than `rows` such rows.
    pub fn product_strided(
        &self,
        (x, x_stride): (&[f32], usize),
        rows: usize,
        (out, out_stride): (&mut [f32], usize),
        accumulate: bool,
    ) {
        let (k, n) = (self.k, self.n);
        if rows == 0 {
            return;
        }
        assert!(
            x_stride >= k && x.len() >= (rows - 1) * x_stride + k,
            "input holds {} values, not {rows} rows of {k} (stride {x_stride})",
            x.len()
        );
        assert!(
            out_stride >= n && out.len() >= (rows - 1) * out_stride + n,
            "output holds {} values, not {rows} rows of {n} (stride {out_stride})",
            out.len()
        );
        let threads = rayon::current_num_threads();
        let panels = n.div_ceil(PANEL);
        let split = threads > 1 && rows * n * k >= SPLIT_MIN_MACS && panels >= 2;
        // Column blocks of whole panels, one or a few per thread.
        let per_block = if split { panels.div_ceil(threads) } else { panels };
        let out = Strided(out.as_mut_ptr(), out_stride);
        let block = |b: usize| {
            let first = b * per_block * PANEL;
            let cols = (per_block * PANEL).min(n - first);
            // SAFETY: the block's columns first..first+cols of every row lie inside `out` (checked above)
            // and no other block writes them.
            unsafe { self.product_columns((x, x_stride), rows, out, first, cols, accumulate) };
        };
        let blocks = panels.div_ceil(per_block);
        if blocks > 1 {
            (0..blocks).into_par_iter().for_each(block);
        } else {
            block(0);
        }
    }

    /// Columns `first..first + cols` of the product (`first` a multiple of the panel width).
    ///
    /// # Safety
    /// `x` must hold `rows` rows of `k` values and `out` `rows` rows of `n` values at their strides, and
    /// no other thread may touch these columns meanwhile.
    unsafe fn product_columns(
        &self,
        (x, ldx): (&[f32], usize),
        rows: usize,
        Strided(out, ldo): Strided,
        first: usize,
        cols: usize,
        accumulate: bool,
    ) {
        let (k, n) = (self.k, self.n);
        match self.kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                for p in first / PANEL..(first + cols).div_ceil(PANEL) {
                    let panel = self.values.as_ptr().add(p * k * PANEL);
                    let width = PANEL.min(n - p * PANEL);
                    let mut row = 0;
                    while row < rows {
                        let block = ROWS.min(rows - row);
                        let (x, out) = (x.as_ptr().add(row * ldx), out.add(row * ldo + p * PANEL));
                        avx512::block(block, (x, ldx), k, panel, (out, ldo), width, accumulate);
                        row += block;
                    }
                }
            }
            _ if rows <= FEW_ROWS => {
                let w = self.values.as_slice();
                for r in 0..rows {
                    let out_row = std::slice::from_raw_parts_mut(out.add(r * ldo + first), cols);
                    few_rows::row_product(&x[r * ldx..r * ldx + k], w, n, first, out_row, accumulate);
                }
            }
            _ => gemm::gemm(
                rows,
                cols,
                k,
                out.add(first),
                1,
                ldo as isize,
                accumulate,
                x.as_ptr(),
                1,
                ldx as isize,
                self.values.as_ptr().add(first),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            ),
        }
    }
}

/// An output (first element, row stride) shared by tasks that write disjoint columns of it.
#[derive(Clone, Copy)]
struct Strided(*mut f32, usize);
// SAFETY: `product_strided` hands each task its own columns.
unsafe impl Send for Strided {}
unsafe impl Sync for Strided {}

mod few_rows {
    /// `out (+)= x · w[.., first..first + out.len()]` for one row `x` [k], `w` [k, n] row-major.
    pub(super) fn row_product(x: &[f32], w: &[f32], n: usize, first: usize, out: &mut [f32], accumulate: bool) {
        if !accumulate {
            out.fill(0.0);
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features were just detected on this CPU.
            unsafe { row_product_avx2(x, w, n, first, out) };
            return;
        }
        row_product_portable(x, w, n, first, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row_product_avx2(x: &[f32], w: &[f32], n: usize, first: usize, out: &mut [f32]) {
        // The same code, compiled with 8-wide vectors.
        row_product_portable(x, w, n, first, out)
    }

    #[inline(always)]
    fn row_product_portable(x: &[f32], w: &[f32], n: usize, first: usize, out: &mut [f32]) {
        for (&a, w_row) in x.iter().zip(w.chunks_exact(n)) {
            for (o, &b) in out.iter_mut().zip(&w_row[first..]) {
                *o += a * b;
            }
        }
    }
}

/// `$kernel::<R>(args…)` with the const row count `R` = `$rows` (1 to 12): the kernels spell their rows
/// out for a const `R`, and a block's row count is known only at run time.
#[cfg(target_arch = "x86_64")]
macro_rules! with_row_count {
    ($rows:expr, $kernel:ident($($arg:expr),* $(,)?)) => {
        match $rows {
            12 => $kernel::<12>($($arg),*),
            11 => $kernel::<11>($($arg),*),
            10 => $kernel::<10>($($arg),*),
            9 => $kernel::<9>($($arg),*),
            8 => $kernel::<8>($($arg),*),
            7 => $kernel::<7>($($arg),*),
            6 => $kernel::<6>($($arg),*),
            5 => $kernel::<5>($($arg),*),
            4 => $kernel::<4>($($arg),*),
            3 => $kernel::<3>($($arg),*),
            2 => $kernel::<2>($($arg),*),
            1 => $kernel::<1>($($arg),*),
            _ => unreachable!("blocks hold 1 to 12 rows"),
        }
    };
}
#[cfg(target_arch = "x86_64")]
pub(crate) use with_row_count;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::*;

    /// The mask of the first `n` of 16 lanes (all of them from 16 on).
    #[inline(always)]
    pub(crate) fn lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xFFFF
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// One block of up to 12 output rows × one panel (`width` ≤ 32 real columns).
    ///
    /// # Safety
    /// The CPU supports AVX-512F; `x` holds `rows` rows of `k` (stride `ldx`), `panel` k×32 values and
    /// `out` `rows` rows of at least `width` values (stride `ldo`).
    #[inline]
    pub(super) unsafe fn block(
        rows: usize,
        x: (*const f32, usize),
        k: usize,
        panel: *const f32,
        out: (*mut f32, usize),
        width: usize,
        accumulate: bool,
    ) {
        with_row_count!(rows, rows_x_panel(x, k, panel, out, width, accumulate))
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn rows_x_panel<const R: usize>(
        (x, ldx): (*const f32, usize),
        k: usize,
        panel: *const f32,
        (out, ldo): (*mut f32, usize),
        width: usize,
        accumulate: bool,
    ) {
        let (low, high) = (lanes(width), lanes(width.saturating_sub(16)));
        // Pointers advance with `wrapping_add`, values are read with load intrinsics (masked ones: the
        // plain unaligned load is a `read_unaligned` underneath) and the loop runs on pointer
        // comparisons: the same instructions as `add`, `*` and a counted loop, without the overflow and
        // precondition checks a debug build (`cargo test`) would put in this loop, which also keep the
        // compiler from unrolling it.
        const ALL: __mmask16 = 0xFFFF;
        let row = |r: usize| out.wrapping_add(r * ldo);
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        if accumulate {
            for (r, a) in acc.iter_mut().enumerate() {
                a[0] = _mm512_maskz_loadu_ps(low, row(r));
                a[1] = _mm512_maskz_loadu_ps(high, row(r).wrapping_add(16));
            }
        }
        let mut inputs: [*const f32; R] = std::array::from_fn(|r| x.wrapping_add(r * ldx));
        let (mut b, end) = (panel, panel.wrapping_add(k * 32));
        while b != end {
            let b0 = _mm512_maskz_loadu_ps(ALL, b);
            let b1 = _mm512_maskz_loadu_ps(ALL, b.wrapping_add(16));
            // Spelled out row by row (rows past R fold away): a loop over 12 rows is beyond what the
            // compiler unrolls at the dev profile's optimisation level, and rolled up it keeps the
            // accumulators in memory.
            macro_rules! row {
                ($($r:literal)*) => {$(
                    if $r < R {
                        let v = _mm512_broadcastss_ps(_mm_load_ss(inputs[$r]));
                        acc[$r][0] = _mm512_fmadd_ps(v, b0, acc[$r][0]);
                        acc[$r][1] = _mm512_fmadd_ps(v, b1, acc[$r][1]);
                        inputs[$r] = inputs[$r].wrapping_add(1);
                    }
                )*};
            }
            row!(0 1 2 3 4 5 6 7 8 9 10 11);
            b = b.wrapping_add(32);
        }
        for (r, a) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(row(r), low, a[0]);
            _mm512_mask_storeu_ps(row(r).wrapping_add(16), high, a[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], rows: usize, w: &[f32], k: usize, n: usize) -> Vec<f64> {
        let mut out = vec![0.0f64; rows * n];
        for r in 0..rows {
            for i in 0..k {
                for j in 0..n {
                    out[r * n + j] += x[r * k + i] as f64 * w[i * n + j] as f64;
                }
            }
        }
        out
    }

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..len).map(|_| rng.f32() * 2.0 - 1.0).collect()
    }

    /// Every row-block size, ragged last panels, accumulation, and the split over threads, on both
    /// kernels (the AVX-512 one where the CPU has it).
    #[test]
    fn products_match_a_naive_product() {
        let kernels: Vec<Kernel> = [Kernel::Portable, Kernel::detect()].into_iter().collect();
        for &(rows, k, n) in
            &[(1, 1, 1), (8, 256, 768), (13, 7, 33), (25, 64, 50), (65, 256, 768), (257, 384, 47), (3, 1536, 16)]
        {
            let x = values(rows * k, 1);
            let w = values(k * n, 2);
            let start = values(rows * n, 3);
            let want = naive(&x, rows, &w, k, n);
            for &kernel in &kernels {
                let packed = PackedMatrix::for_kernel(&w, k, n, kernel);
                for accumulate in [false, true] {
                    let mut out = start.clone();
                    packed.product(&x, rows, &mut out, accumulate);
                    for (i, (&got, &exact)) in out.iter().zip(&want).enumerate() {
                        let exact = exact + if accumulate { start[i] as f64 } else { 0.0 };
                        let tolerance = 1e-5 * (k as f64).sqrt() + 1e-6;
                        assert!(
                            (got as f64 - exact).abs() < tolerance,
                            "{kernel:?} {rows}×{k}·{k}×{n} accumulate {accumulate}: element {i} is {got}, want {exact}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn transposed_and_strided_sources_pack_the_same_matrix() {
        let (k, n) = (5, 40);
        let w = values(k * n, 4);
        let mut w_t = vec![0.0; n * k];
        for i in 0..k {
            for j in 0..n {
                w_t[j * k + i] = w[i * n + j];
            }
        }
        let packed = PackedMatrix::from_transposed(&w_t, n, k);
        assert_eq!(packed.values, PackedMatrix::new(&w, k, n).values);
        assert_eq!(packed.to_rows(), w);
        // A strided, transposed view (one head's keys read as Kᵀ), scaled, on both kernels.
        let wide: Vec<f32> = (0..n * 3 * k).map(|i| i as f32).collect();
        for kernel in [Kernel::Portable, Kernel::detect()] {
            let mut view = PackedMatrix::empty(kernel);
            view.fill_from(&wide, 2, (1, 3 * k), (k, n), 0.5);
            let want: Vec<f32> = (0..k).flat_map(|i| (0..n).map(move |j| 0.5 * (2 + i + j * 3 * k) as f32)).collect();
            assert_eq!(view.to_rows(), want, "{kernel:?}");
        }
    }
}
