//! GEMM where one dimension is a small batch: `x @ kernel` for at most [`MAX_ROWS`] samples (or a
//! single image's late convolutions), the input gradient `dy @ kernelᵀ` and the kernel update
//! `w += scale * xᵀ @ dy` from such a batch. The `gemm` crate packs the whole right-hand matrix first, which for 32 rows costs more
//! than the product; here the large matrix is streamed once, straight from where it lies, with the
//! next tile's part prefetched. f32 with AVX-512 only (elsewhere `gemm` runs).

/// Up to this many rows the unpacked product beats `gemm` (measured: 2x at 32 rows with a 12 MB
/// kernel, even at 64, behind it from ~100 rows on).
pub(crate) const MAX_ROWS: usize = 64;

/// `c (m x n) = a (m x k) @ b (k x n)`, all row-major and contiguous, split over `tasks` threads by
/// column ranges; `None` where this CPU has no AVX-512 or a dimension is 0 (the caller runs `gemm`).
///
/// # Safety
/// `c` must be valid for `m * n` writes and overlap neither `a` (`m * k`) nor `b` (`k * n`).
pub(crate) unsafe fn gemm_f32(c: *mut f32, a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), tasks: usize) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if runs((m, k, n)) && a.len() >= m * k && b.len() >= k * n {
        // SAFETY: AVX-512F is present; the caller guarantees `c`, the slices' sizes are checked.
        unsafe { avx512::gemm(c, a, b, (m, k, n), tasks) };
        return Some(());
    }
    let _ = (c, a, b, m, k, n, tasks);
    None
}

/// `c (m x n) = [c +] scale * aᵀ @ b` for `a (k x m)`, `b (k x n)` with few rows `k` (a Dense
/// kernel's gradient or plain-SGD update from a batch of `k` samples): every register tile of `c`
/// gets all `k` rank-1 updates in one visit, so `c` is read and written once; `gemm` spends half
/// its time there on the tiny reduction's overheads. Same contract as [`gemm_f32`].
///
/// # Safety
/// `c` must be valid for `m * n` writes (and reads when `accumulate`) and overlap neither input.
pub(crate) unsafe fn gemm_tn_f32(
    c: *mut f32, a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), scale: f32, accumulate: bool, tasks: usize,
) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if runs((m, k, n)) && a.len() >= k * m && b.len() >= k * n {
        // SAFETY: AVX-512F is present; the caller guarantees `c`, the slices' sizes are checked.
        unsafe { avx512::gemm_tn(c, a, b, (m, k, n), scale, accumulate, tasks) };
        return Some(());
    }
    let _ = (c, a, b, m, k, n, scale, accumulate, tasks);
    None
}

/// `c (m x n) = a (m x k) @ bᵀ` for `b` stored `(n x k)`, few rows `m` (a Dense layer's input
/// gradient `dy @ kernelᵀ` for a small batch): dot products along the rows of both, so the large
/// `b` is read once, in order, and never packed. Same contract as [`gemm_f32`].
///
/// # Safety
/// `c` must be valid for `m * n` writes and overlap neither input.
pub(crate) unsafe fn gemm_nt_f32(c: *mut f32, a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), tasks: usize) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if runs((m, k, n)) && a.len() >= m * k && b.len() >= n * k {
        // SAFETY: AVX-512F is present; the caller guarantees `c`, the slices' sizes are checked.
        unsafe { avx512::gemm_nt(c, a, b, (m, k, n), tasks) };
        return Some(());
    }
    let _ = (c, a, b, m, k, n, tasks);
    None
}

/// Whether these kernels run for an `(m, k, n)` product on this CPU.
#[cfg(target_arch = "x86_64")]
fn runs((m, k, n): (usize, usize, usize)) -> bool {
    m > 0 && k > 0 && n > 0 && std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::Disjoint;
    use std::arch::x86_64::*;

    /// Rows and columns of one register tile: 8 x 48 accumulators (24 of the 32 zmm registers).
    const MR: usize = 8;
    const NR: usize = 48;
    /// Rows of `b` per pass: a 64 x 48 panel (12 KB) stays in L1 while every row tile uses it, and
    /// consecutive panels read consecutive parts of the same 64 rows (contiguous memory streams).
    const KC: usize = 64;

    /// Rows of 48 floats (3 cache lines each) that a later tile reads, fetched into L1 while this
    /// tile computes, one row per step of its loop: without it every tile first waits for memory
    /// (measured: the kernel update ran at ~95 GFLOP/s, memory latency-bound).
    #[derive(Clone, Copy)]
    struct Ahead {
        at: *const f32,
        ld: usize,
        rows: usize,
    }

    impl Ahead {
        #[inline(always)]
        fn fetch(self, row: usize) {
            if row < self.rows {
                let line = self.at.wrapping_add(row * self.ld) as *const i8;
                // SAFETY: prefetches never fault, whatever the address.
                unsafe {
                    _mm_prefetch::<_MM_HINT_T0>(line);
                    _mm_prefetch::<_MM_HINT_T0>(line.wrapping_add(64));
                    _mm_prefetch::<_MM_HINT_T0>(line.wrapping_add(128));
                }
            }
        }
    }

    pub(super) unsafe fn gemm(c: *mut f32, a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), tasks: usize) {
        let c = Disjoint(c);
        split_columns(n.div_ceil(NR), tasks, |panels| {
            for p0 in (0..k).step_by(KC) {
                let kc = (k - p0).min(KC);
                for panel in panels.clone() {
                    let j = panel * NR;
                    let cols = (n - j).min(NR);
                    // The row tiles share the prefetch of the next panel's rows `p0..p0+kc`.
                    let share = kc.div_ceil(m.div_ceil(MR));
                    for i in (0..m).step_by(MR) {
                        let first = share * (i / MR);
                        let ahead = Ahead { at: b.as_ptr().wrapping_add((p0 + first) * n + j + NR), ld: n, rows: share.min(kc.saturating_sub(first)) };
                        // SAFETY: row `i..i+rows`, columns `j..j+cols` and rows `p0..p0+kc` lie inside
                        // the operands; this task alone writes these columns of `c`.
                        unsafe {
                            tile(
                                a.as_ptr().add(i * k + p0), k, (m - i).min(MR),
                                b.as_ptr().add(p0 * n + j), n, cols,
                                c.at(i * n + j), n, kc, p0 > 0, ahead,
                            )
                        };
                    }
                }
            }
        });
    }

    /// Column ranges of `panels` panels for each of `tasks` tasks, run on rayon unless single.
    fn split_columns(panels: usize, tasks: usize, run: impl Fn(std::ops::Range<usize>) + Sync) {
        let tasks = tasks.clamp(1, panels);
        if tasks == 1 {
            run(0..panels);
        } else {
            use rayon::prelude::*;
            (0..tasks).into_par_iter().for_each(|t| run(panels * t / tasks..panels * (t + 1) / tasks));
        }
    }

    pub(super) unsafe fn gemm_tn(c: *mut f32, a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), scale: f32, accumulate: bool, tasks: usize) {
        // `scale` goes into a copy of the small factor `b` (k x n), not into every step of the tiles.
        let scaled: Vec<f32>;
        let b = if scale == 1.0 {
            b
        } else {
            scaled = b[..k * n].iter().map(|v| v * scale).collect();
            &scaled
        };
        let c = Disjoint(c);
        split_columns(m.div_ceil(MR), tasks, |row_tiles| {
            for i in row_tiles.map(|t| t * MR) {
                for panel in 0..n.div_ceil(NR) {
                    let j = panel * NR;
                    // SAFETY: rows `i..i+rows` and columns `j..j+cols` lie inside `c` (this task alone
                    // writes these columns), `a`'s columns `i..` and `b`'s columns `j..` inside them.
                    let rows = (m - i).min(MR);
                    let ahead = Ahead { at: c.at(i * n + j + NR), ld: n, rows: if accumulate { rows } else { 0 } };
                    unsafe { tile_tn(a.as_ptr().add(i), m, rows, b.as_ptr().add(j), n, (n - j).min(NR), c.at(i * n + j), n, k, accumulate, ahead) };
                }
            }
        });
    }

    /// `c[rows x cols] = [c +] a[kc x rows]ᵀ @ b[kc x cols]` for `rows <= 8`, `cols <= 48`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_tn(
        a: *const f32, lda: usize, rows: usize,
        b: *const f32, ldb: usize, cols: usize,
        c: *mut f32, ldc: usize, kc: usize, accumulate: bool, ahead: Ahead,
    ) {
        let mask = masks(cols);
        let mut acc = if accumulate { unsafe { load_tile(c, ldc, rows, mask) } } else { [[_mm512_setzero_ps(); 3]; MR] };
        for p in 0..kc {
            ahead.fetch(p);
            let (ap, bp) = unsafe { (a.add(p * lda), b.add(p * ldb)) };
            let bv = unsafe { [0, 1, 2].map(|v| _mm512_maskz_loadu_ps(mask[v], bp.add(16 * v))) };
            for i in 0..MR {
                // Missing rows repeat the last one (never stored).
                let av = _mm512_set1_ps(unsafe { *ap.add(i.min(rows - 1)) });
                for v in 0..3 {
                    acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
                }
            }
        }
        unsafe { store_tile(c, ldc, rows, mask, &acc) };
    }

    pub(super) unsafe fn gemm_nt(c: *mut f32, a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize), tasks: usize) {
        let c = Disjoint(c);
        split_columns(n.div_ceil(NT_COLS), tasks, |blocks| {
            for j in blocks.map(|block| block * NT_COLS) {
                for i in (0..m).step_by(NT_ROWS) {
                    // SAFETY: rows `i..` of `a`, rows `j..` of `b` and their output block lie inside
                    // the operands; this task alone writes output columns `j..j+NT_COLS`.
                    unsafe { tile_nt(a.as_ptr().add(i * k), (m - i).min(NT_ROWS), b.as_ptr().add(j * k), (n - j).min(NT_COLS), k, c.at(i * n + j), n) };
                }
            }
        });
    }

    /// Rows of `a` and of `b` per dot-product tile: 4 x 6 accumulators over 16 lanes of `k`.
    const NT_ROWS: usize = 4;
    const NT_COLS: usize = 6;

    /// `c[rows x cols] = a[rows x k] @ b[cols x k]ᵀ`: one vector of partial sums per output, summed
    /// across its lanes at the end. Missing rows repeat the last one (never stored); the last
    /// partial vector of `k` is masked.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile_nt(a: *const f32, rows: usize, b: *const f32, cols: usize, k: usize, c: *mut f32, ldc: usize) {
        let ap: [*const f32; NT_ROWS] = std::array::from_fn(|i| a.wrapping_add(i.min(rows - 1) * k));
        let bp: [*const f32; NT_COLS] = std::array::from_fn(|j| b.wrapping_add(j.min(cols - 1) * k));
        let mut acc = [[_mm512_setzero_ps(); NT_COLS]; NT_ROWS];
        for p in (0..k).step_by(16) {
            let mask = lanes((k - p) as isize);
            let bv = bp.map(|b| unsafe { _mm512_maskz_loadu_ps(mask, b.add(p)) });
            for i in 0..NT_ROWS {
                let av = unsafe { _mm512_maskz_loadu_ps(mask, ap[i].add(p)) };
                for j in 0..NT_COLS {
                    acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
                }
            }
        }
        for (i, acc) in acc.iter().enumerate().take(rows) {
            for (j, acc) in acc.iter().enumerate().take(cols) {
                unsafe { *c.add(i * ldc + j) = _mm512_reduce_add_ps(*acc) };
            }
        }
    }

    /// The lanes of a 48-column tile's three vectors that hold its `cols` columns.
    fn masks(cols: usize) -> [__mmask16; 3] {
        let cols = cols as isize;
        [lanes(cols), lanes(cols - 16), lanes(cols - 32)]
    }

    /// The first `rows` rows of an 8 x 48 output tile (the rest zeros).
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load_tile(c: *const f32, ldc: usize, rows: usize, mask: [__mmask16; 3]) -> [[__m512; 3]; MR] {
        let mut acc = [[_mm512_setzero_ps(); 3]; MR];
        for (i, acc) in acc.iter_mut().enumerate().take(rows) {
            for (v, acc) in acc.iter_mut().enumerate() {
                *acc = unsafe { _mm512_maskz_loadu_ps(mask[v], c.add(i * ldc + 16 * v)) };
            }
        }
        acc
    }

    /// Stores the first `rows` rows of an 8 x 48 tile, masked to its columns.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store_tile(c: *mut f32, ldc: usize, rows: usize, mask: [__mmask16; 3], acc: &[[__m512; 3]; MR]) {
        for (i, acc) in acc.iter().enumerate().take(rows) {
            for (v, acc) in acc.iter().enumerate() {
                unsafe { _mm512_mask_storeu_ps(c.add(i * ldc + 16 * v), mask[v], *acc) };
            }
        }
    }

    /// Lanes of a 16-wide vector that hold columns, for `cols` columns left from its start.
    #[inline(always)]
    fn lanes(cols: isize) -> __mmask16 {
        if cols >= 16 {
            0xffff
        } else if cols <= 0 {
            0
        } else {
            ((1u32 << cols) - 1) as __mmask16
        }
    }

    /// `c[rows x cols] (+)= a[rows x kc] @ b[kc x cols]` for `rows <= 8`, `cols <= 48`: adds to `c`
    /// when `accumulate`, overwrites it otherwise. Missing rows repeat the last one (never stored);
    /// missing columns are masked off in every load and store.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        a: *const f32, lda: usize, rows: usize,
        b: *const f32, ldb: usize, cols: usize,
        c: *mut f32, ldc: usize, kc: usize, accumulate: bool, ahead: Ahead,
    ) {
        let mut row = [a; MR];
        for (i, r) in row.iter_mut().enumerate() {
            *r = unsafe { a.add(i.min(rows - 1) * lda) };
        }
        let mask = masks(cols);
        let mut acc = if accumulate { unsafe { load_tile(c, ldc, rows, mask) } } else { [[_mm512_setzero_ps(); 3]; MR] };
        let mut bp = b;
        for p in 0..kc {
            ahead.fetch(p);
            let bv = unsafe { [0, 1, 2].map(|v| _mm512_maskz_loadu_ps(mask[v], bp.add(16 * v))) };
            for i in 0..MR {
                let av = _mm512_set1_ps(unsafe { *row[i].add(p) });
                for v in 0..3 {
                    acc[i][v] = _mm512_fmadd_ps(av, bv[v], acc[i][v]);
                }
            }
            bp = bp.wrapping_add(ldb);
        }
        unsafe { store_tile(c, ldc, rows, mask, &acc) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize)) -> Vec<f32> {
        let mut c = vec![0f64; m * n];
        for i in 0..m {
            for p in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + p] as f64 * b[p * n + j] as f64;
                }
            }
        }
        c.into_iter().map(|v| v as f32).collect()
    }

    fn numbers(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * seed) % 101) as f32 / 50.0 - 1.0).collect()
    }

    /// `(rows x cols)` stored row-major -> its `(cols x rows)` transpose.
    fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        (0..rows * cols).map(|idx| x[(idx % rows) * cols + idx / rows]).collect()
    }

    /// An output buffer with 16 guard cells after it, which catch a store past column n or row m.
    fn guarded(start: &[f32]) -> Vec<f32> {
        start.iter().copied().chain([f32::NAN; 16]).collect()
    }

    fn assert_matches(what: &str, c: &[f32], want: &[f32]) {
        for (idx, (&got, &want)) in c.iter().zip(want).enumerate() {
            assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{what} at {idx}: {got} vs {want}");
        }
        assert!(c[want.len()..].iter().all(|v| v.is_nan()), "{what}: wrote past the output");
    }

    /// Runs `test(m, k, n)` on every combination of the given sizes.
    fn each_shape(ms: &[usize], ks: &[usize], ns: &[usize], mut test: impl FnMut(usize, usize, usize)) {
        for &m in ms {
            for &k in ks {
                for &n in ns {
                    test(m, k, n);
                }
            }
        }
    }

    fn avx512() -> bool {
        cfg!(target_arch = "x86_64") && std::arch::is_x86_feature_detected!("avx512f")
    }

    #[test]
    fn matches_the_plain_product_on_ragged_shapes() {
        if !avx512() {
            // The dispatcher must then decline, so that `gemm` runs instead.
            assert!(unsafe { gemm_f32(std::ptr::null_mut(), &[1.0], &[1.0], (1, 1, 1), 1) }.is_none());
            return;
        }
        each_shape(&[1, 3, 8, 9, 33, 64], &[1, 5, 64, 65, 200], &[1, 15, 16, 17, 47, 48, 49, 100, 145], |m, k, n| {
            let (a, b) = (numbers(m * k, 37), numbers(k * n, 53));
            let want = reference(&a, &b, (m, k, n));
            for tasks in [1, 2, 5] {
                let mut c = guarded(&vec![f32::NAN; m * n]);
                unsafe { gemm_f32(c.as_mut_ptr(), &a, &b, (m, k, n), tasks) }.unwrap();
                assert_matches(&format!("{m}x{k}x{n} tasks {tasks}"), &c, &want);
            }
        });
    }

    #[test]
    fn transposed_left_factor_product_matches_and_accumulates() {
        if !avx512() {
            assert!(unsafe { gemm_tn_f32(std::ptr::null_mut(), &[1.0], &[1.0], (1, 1, 1), 1.0, false, 1) }.is_none());
            return;
        }
        each_shape(&[1, 7, 8, 9, 70], &[1, 3, 32, 64], &[1, 16, 17, 48, 49, 145], |m, k, n| {
            // a is stored (k x m): its transpose is the (m x k) left factor.
            let (a, b) = (numbers(k * m, 37), numbers(k * n, 53));
            let product = reference(&transpose(&a, k, m), &b, (m, k, n));
            let start: Vec<f32> = (0..m * n).map(|i| (i % 11) as f32 - 5.0).collect();
            for (accumulate, tasks) in [(false, 1), (true, 1), (true, 3)] {
                let mut c = guarded(&start);
                unsafe { gemm_tn_f32(c.as_mut_ptr(), &a, &b, (m, k, n), -0.5, accumulate, tasks) }.unwrap();
                let want: Vec<f32> = start.iter().zip(&product).map(|(s, p)| if accumulate { *s } else { 0.0 } - 0.5 * p).collect();
                assert_matches(&format!("{m}x{k}x{n} accumulate {accumulate} tasks {tasks}"), &c, &want);
            }
        });
    }

    #[test]
    fn transposed_right_factor_product_matches() {
        if !avx512() {
            assert!(unsafe { gemm_nt_f32(std::ptr::null_mut(), &[1.0], &[1.0], (1, 1, 1), 1) }.is_none());
            return;
        }
        each_shape(&[1, 3, 4, 5, 33, 64], &[1, 15, 16, 17, 200], &[1, 5, 6, 7, 13, 100], |m, k, n| {
            // b is stored (n x k): its transpose is the (k x n) right factor.
            let (a, b) = (numbers(m * k, 37), numbers(n * k, 53));
            let want = reference(&a, &transpose(&b, n, k), (m, k, n));
            for tasks in [1, 2, 5] {
                let mut c = guarded(&vec![f32::NAN; m * n]);
                unsafe { gemm_nt_f32(c.as_mut_ptr(), &a, &b, (m, k, n), tasks) }.unwrap();
                assert_matches(&format!("{m}x{k}x{n} tasks {tasks}"), &c, &want);
            }
        });
    }

    #[test]
    fn declines_empty_products() {
        assert!(unsafe { gemm_f32(std::ptr::null_mut(), &[], &[], (0, 3, 4), 1) }.is_none());
        assert!(unsafe { gemm_f32(std::ptr::null_mut(), &[], &[], (2, 0, 4), 1) }.is_none());
        assert!(unsafe { gemm_tn_f32(std::ptr::null_mut(), &[], &[], (2, 0, 4), 1.0, true, 1) }.is_none());
        assert!(unsafe { gemm_nt_f32(std::ptr::null_mut(), &[], &[], (2, 3, 0), 1) }.is_none());
    }
}
