//! bfloat16 GEMMs for the `mixed_bfloat16` policy: float32 operands rounded to bfloat16 (to nearest
//! even, as TensorFlow's cast rounds) while they are packed, products summed in float32.
//!
//! Three kernels read one packed layout; [`kernel`] picks one once per process:
//! - AMX (`tdpbf16ps`, Sapphire Rapids and later): 16x16 float32 tiles, 32 products deep per
//!   instruction. Measured here in register-resident loops (benches/bf16_units.rs): ~990 GFLOP/s
//!   on one core, against ~140 for AVX-512 float32 FMAs.
//! - AVX512-BF16 (`vdpbf16ps`, two products per float32 lane), for CPUs with it but without AMX.
//!   On this machine it runs at ~65 GFLOP/s a core, below the float32 FMAs, so it is chosen only
//!   where AMX is absent or refused.
//! - Plain: the packed operands widened back to float32 and multiplied by `gemm` (the same
//!   products, since a bfloat16 product is exact in float32; another summation order).
//!
//! The packed layout: A row-major, rows padded to 32 and depth to 32 (zeros); B in 16-column
//! panels of depth pairs, `[panel][k/2][16][2]`, which is both AMX's and `vdpbf16ps`'s B layout.

use super::linear::{gemm_raw, Order, Threads};
use rayon::prelude::*;
use std::sync::OnceLock;

/// How a layer multiplies: in its variables' dtype, or (`mixed_bfloat16`) with bfloat16 operands
/// and float32 sums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    #[default]
    Full,
    Bf16,
}

/// Rows and columns of one output block (2x2 AMX tiles), and the depth of one step.
const BLOCK: usize = 32;
/// The B panels one column group keeps in a core's L2 cache (2 MB here) beside an A strip.
const B_GROUP_BYTES: usize = 1 << 20;

/// The bfloat16 kernels (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Amx,
    Avx512,
    Plain,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Amx => "AMX-BF16",
            Kernel::Avx512 => "AVX512-BF16",
            Kernel::Plain => "float32 GEMMs on bfloat16-rounded operands",
        }
    }

    /// Whether this CPU (and its OS) can run the kernel.
    pub fn available(self) -> bool {
        match self {
            Kernel::Amx => amx_permitted(),
            Kernel::Avx512 => avx512_bf16(),
            Kernel::Plain => true,
        }
    }
}

/// The kernel this process uses: the fastest available, or the one named by the environment
/// variable `KANDLE_BF16_KERNEL` (`amx`, `avx512`, `plain`) where that one is available.
pub fn kernel() -> Kernel {
    static CHOSEN: OnceLock<Kernel> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let wanted = match std::env::var("KANDLE_BF16_KERNEL").as_deref() {
            Ok("amx") => Some(Kernel::Amx),
            Ok("avx512") => Some(Kernel::Avx512),
            Ok("plain") => Some(Kernel::Plain),
            _ => None,
        };
        match wanted {
            Some(k) if k.available() => k,
            _ => [Kernel::Amx, Kernel::Avx512, Kernel::Plain].into_iter().find(|k| k.available()).unwrap_or(Kernel::Plain),
        }
    })
}

fn avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16");
    #[allow(unreachable_code)]
    false
}

/// AMX needs the CPU's AMX-BF16 and AMX-TILE bits and the kernel's leave to use the tile data
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, per process; Linux 5.16+). Asked once.
fn amx_permitted() -> bool {
    static PERMITTED: OnceLock<bool> = OnceLock::new();
    *PERMITTED.get_or_init(|| {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            if !avx512_bf16() {
                return false;
            }
            // cpuid leaf 7 exists on every x86-64 CPU that has AVX-512 (checked above).
            let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
            if leaf7.edx & (1 << 22) == 0 || leaf7.edx & (1 << 24) == 0 {
                return false;
            }
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: a plain system call asking for a permission; it touches no memory of ours.
            return unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) } == 0;
        }
        #[allow(unreachable_code)]
        false
    })
}

/// A float32 matrix operand: entry `(i, j)` at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// The operand `op(s)` of an `(rows x cols)` product, stored as `order` says.
    pub(crate) fn of(data: &'a [f32], order: Order, (rows, cols): (usize, usize)) -> Self {
        match order {
            Order::Plain => View { data, rs: cols, cs: 1 },
            Order::Transposed => View { data, rs: 1, cs: rows },
        }
    }

    /// Whether every entry of a `(rows x cols)` matrix lies inside `data`.
    fn holds(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// `x` rounded to bfloat16 (nearest, ties to even; NaN stays NaN), as its 16 bits.
#[inline]
pub fn round(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    if x.is_nan() {
        ((b >> 16) as u16) | 0x40
    } else {
        rounded
    }
}

/// The float32 value of bfloat16 bits.
#[inline]
pub fn widen(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `dst (m x n) = alpha * dst + beta * a @ b` (or `dst = a @ b` without `accumulate`) with `a (m x
/// k)` and `b (k x n)` rounded to bfloat16 and their products summed in float32, on [`kernel`].
///
/// # Safety
/// `dst` must be valid for `m * n` writes (and reads when `accumulate`) and overlap neither operand.
pub(crate) unsafe fn gemm(dst: *mut f32, a: View, b: View, dims: (usize, usize, usize), accumulate: Option<(f32, f32)>, threads: Threads) {
    // SAFETY: the caller's guarantees carry over.
    unsafe { gemm_with(kernel(), dst, a, b, dims, accumulate, threads) }
}

/// [`gemm`] on a given kernel, which must be available (tests run each one).
///
/// # Safety
/// As [`gemm`].
pub(crate) unsafe fn gemm_with(kernel: Kernel, dst: *mut f32, a: View, b: View, (m, k, n): (usize, usize, usize), accumulate: Option<(f32, f32)>, threads: Threads) {
    assert!(a.holds(m, k) && b.holds(k, n), "bf16 gemm: operands smaller than ({m}x{k}) @ ({k}x{n})");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // An empty sum: the product is zeros.
        let (rows, cols) = (m, n);
        for i in 0..rows {
            // SAFETY: row i of dst, as the caller guarantees.
            let d = unsafe { std::slice::from_raw_parts_mut(dst.add(i * cols), cols) };
            d.iter_mut().for_each(|v| *v = accumulate.map_or(0.0, |(alpha, _)| alpha * *v));
        }
        return;
    }
    // A is packed along its rows, so a transposed A (a kernel gradient `colsᵀ @ dy`) must be
    // transposed while packing; when B is the smaller one, `Cᵀ = Bᵀ Aᵀ` transposes B instead (a
    // convolution's output gradient is several times smaller than its im2col rows).
    if a.cs != 1 && b.cs == 1 && n < m {
        let (bt, at) = (View { data: b.data, rs: b.cs, cs: b.rs }, View { data: a.data, rs: a.cs, cs: a.rs });
        // SAFETY: the same product, written transposed.
        return unsafe { run(kernel, Out { dst, transposed: true, n }, bt, at, (n, k, m), accumulate, threads) };
    }
    // SAFETY: the caller's guarantees carry over.
    unsafe { run(kernel, Out { dst, transposed: false, n }, a, b, (m, k, n), accumulate, threads) }
}

/// Where a product goes: `dst` with row stride `n`, or its transpose (entry `(i, j)` of the
/// product at `dst[j * n + i]`).
#[derive(Clone, Copy)]
struct Out {
    dst: *mut f32,
    transposed: bool,
    n: usize,
}

/// # Safety
/// As [`gemm_with`], for the product as `out` places it.
unsafe fn run(kernel: Kernel, out: Out, a: View, b: View, (m, k, n): (usize, usize, usize), accumulate: Option<(f32, f32)>, threads: Threads) {
    let kp = k.div_ceil(BLOCK) * BLOCK;
    let par = threads == Threads::All && rayon::current_num_threads() > 1;
    let vector = kernel != Kernel::Plain;
    let pa = pack_a(a, m, k, kp, par, vector);
    let pb = pack_b(b, k, n, kp, vector, par);
    let dst = super::Disjoint(out.dst);
    if kernel == Kernel::Plain {
        let wide_a: Vec<f32> = pa[..m * kp].iter().map(|&h| widen(h)).collect();
        let wide_b = unpack_b(&pb, kp, n);
        let mut c = vec![0f32; m * n];
        // SAFETY: wide_a is (m x kp), wide_b (kp x n), c (m x n).
        unsafe { gemm_raw(c.as_mut_ptr(), (&wide_a, Order::Plain), (&wide_b, Order::Plain), (m, kp, n), None, threads) };
        for (i, row) in c.chunks(n).enumerate() {
            for j0 in (0..n).step_by(BLOCK) {
                // SAFETY: the caller guarantees dst holds the product's entries.
                unsafe { store(&row[j0..], 0, Out { dst: dst.at(0), ..out }, (i, j0), (1, (n - j0).min(BLOCK)), accumulate) };
            }
        }
        return;
    }
    // Blocks run column group by column group, each group's B panels (at most B_GROUP_BYTES)
    // staying in L2 while every A strip passes by; within a group, strip by strip, so that a
    // strip (in L1/L2) meets all the group's panels.
    let (strips, cols) = (m.div_ceil(BLOCK), n.div_ceil(BLOCK));
    let group = (B_GROUP_BYTES / (kp * 2 * BLOCK)).clamp(1, cols);
    let blocks = strips * cols;
    let tasks = if par { (4 * rayon::current_num_threads()).min(blocks) } else { 1 };
    let task = |t: usize| {
        let range = (blocks * t / tasks)..(blocks * (t + 1) / tasks);
        let mut acc = [0f32; BLOCK * BLOCK];
        // SAFETY: each block writes only its own entries of dst (the blocks partition it); pa
        // and pb hold the padded operands the kernels read.
        unsafe {
            let tiles = TileConfig::load(kernel);
            for blk in range {
                // Block `blk` in group order: groups of `group` columns (the last one narrower).
                let (g, rest) = (blk / (strips * group), blk % (strips * group));
                let width = group.min(cols - g * group);
                let (strip, col) = (rest / width, g * group + rest % width);
                let (i0, j0) = (strip * BLOCK, col * BLOCK);
                block(kernel, &pa[i0 * kp..], &pb[j0 * kp..], kp, &mut acc);
                let size = ((m - i0).min(BLOCK), (n - j0).min(BLOCK));
                store(&acc, BLOCK, Out { dst: dst.at(0), ..out }, (i0, j0), size, accumulate);
            }
            drop(tiles);
        }
    };
    if tasks > 1 {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        task(0);
    }
}

/// `a (m x k) @ b (k x n)`, row-major, on a given kernel (`bf16` false: the float32 GEMM kandle
/// runs otherwise), on all threads: for benches/bf16_units.rs.
#[doc(hidden)]
pub fn bench_matmul(kernel: Option<Kernel>, a: &[f32], b: &[f32], (m, k, n): (usize, usize, usize)) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    let (va, vb) = (View::of(a, Order::Plain, (m, k)), View::of(b, Order::Plain, (k, n)));
    match kernel {
        // SAFETY: c holds m*n entries; gemm_with checks the operands.
        Some(kernel) if kernel.available() => unsafe { gemm_with(kernel, c.as_mut_ptr(), va, vb, (m, k, n), None, Threads::All) },
        Some(_) => {}
        None => {
            assert!(a.len() >= m * k && b.len() >= k * n);
            // SAFETY: sizes checked above.
            unsafe { gemm_raw(c.as_mut_ptr(), (a, Order::Plain), (b, Order::Plain), (m, k, n), None, Threads::All) }
        }
    }
    c
}

/// `a` as bfloat16, row-major `(m rounded up to 32) x kp`, zeros in the padding; `vector` where
/// the CPU has AVX512-BF16's conversions.
fn pack_a(a: View, m: usize, k: usize, kp: usize, par: bool, vector: bool) -> Vec<u16> {
    let mut out = vec![0u16; m.div_ceil(BLOCK) * BLOCK * kp];
    if a.cs == 1 {
        let row = |(i, dst): (usize, &mut [u16])| {
            if i < m {
                round_row(&a.data[i * a.rs..][..k], &mut dst[..k], vector);
            }
        };
        if par {
            out.par_chunks_mut(kp).enumerate().for_each(row);
        } else {
            out.chunks_mut(kp).enumerate().for_each(row);
        }
        return out;
    }
    // Stored transposed (rs == 1): column j of `a` lies in memory as one run; two columns at a
    // time are rounded as runs and written as depth pairs into every row.
    assert!(a.rs == 1, "bf16 gemm: an operand must have unit stride along one axis");
    let fill = |i0: usize, rows: &mut [u16]| {
        let span = rows.len() / kp;
        let (mut c0, mut c1) = (vec![0u16; span], vec![0u16; span]);
        for j in (0..k).step_by(2) {
            round_row(&a.data[j * a.cs + i0..][..span], &mut c0, vector);
            if j + 1 < k {
                round_row(&a.data[(j + 1) * a.cs + i0..][..span], &mut c1, vector);
            } else {
                c1.fill(0);
            }
            for (t, row) in rows.chunks_mut(kp).enumerate() {
                row[j] = c0[t];
                if j + 1 < k {
                    row[j + 1] = c1[t];
                }
            }
        }
    };
    // Row groups of 64 (their output rows stay in L1 while the columns pass), in parallel.
    let rows_of = |g: usize| (m - (g * 64).min(m)).min(64);
    let groups: Vec<(usize, &mut [u16])> = out.chunks_mut(64 * kp).enumerate().collect();
    let work = |(g, chunk): (usize, &mut [u16])| {
        let rows = rows_of(g);
        if rows > 0 {
            fill(g * 64, &mut chunk[..rows * kp]);
        }
    };
    if par {
        groups.into_par_iter().for_each(work);
    } else {
        groups.into_iter().for_each(work);
    }
    out
}

/// `dst = round(src)` entry by entry.
fn round_row(src: &[f32], dst: &mut [u16], vector: bool) {
    #[cfg(target_arch = "x86_64")]
    if vector {
        // SAFETY: `vector` only where the CPU has AVX512-BF16 (the AMX and AVX512 kernels).
        return unsafe { x86::round_row(src, dst) };
    }
    let _ = vector;
    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = round(s));
}

/// `b` as bfloat16 in 16-column panels of depth pairs, `[panel][kp/2][16][2]`, with the panels
/// rounded up to an even count (whole 32-column blocks), zeros in the padding.
fn pack_b(b: View, k: usize, n: usize, kp: usize, vector: bool, par: bool) -> Vec<u16> {
    let panel = kp * 16;
    let mut out = vec![0u16; n.div_ceil(BLOCK) * 2 * panel];
    if b.cs == 1 {
        // Row pairs in memory order (each fills one depth pair of every panel), in parallel
        // over ranges of pairs: tasks write disjoint depth pairs.
        let out_ptr = super::Disjoint(out.as_mut_ptr());
        let pairs = k.div_ceil(2);
        let rows = |range: std::ops::Range<usize>| {
            for p in range {
                let r = 2 * p;
                for j0 in (0..n).step_by(16) {
                    let width = (n - j0).min(16);
                    let r0 = &b.data[r * b.rs + j0..][..width];
                    let r1 = (r + 1 < k).then(|| &b.data[(r + 1) * b.rs + j0..][..width]);
                    let at = (j0 / 16) * panel + p * 32;
                    // SAFETY: depth pair p of panel j0/16: 32 entries that only this pair's task
                    // writes, inside `out`.
                    let dst = unsafe { std::slice::from_raw_parts_mut(out_ptr.at(at), 32) };
                    #[cfg(target_arch = "x86_64")]
                    if vector {
                        // SAFETY: AVX512-BF16 present (as for round_row).
                        unsafe { x86::round_pairs(r0, r1, dst, 0) };
                        continue;
                    }
                    for c in 0..width {
                        dst[2 * c] = round(r0[c]);
                        if let Some(r1) = r1 {
                            dst[2 * c + 1] = round(r1[c]);
                        }
                    }
                }
            }
        };
        if par {
            let tasks = 4 * rayon::current_num_threads();
            (0..tasks).into_par_iter().for_each(|t| rows(pairs * t / tasks..pairs * (t + 1) / tasks));
        } else {
            rows(0..pairs);
        }
        return out;
    }
    // Stored transposed (rs == 1): column j is one run in memory, its pairs adjacent; one
    // 16-column panel per task.
    assert!(b.rs == 1, "bf16 gemm: an operand must have unit stride along one axis");
    let fill = |(p, dst): (usize, &mut [u16])| {
        let j0 = p * 16;
        let mut col = vec![0u16; k];
        for c in 0..n.saturating_sub(j0).min(16) {
            round_row(&b.data[(j0 + c) * b.cs..][..k], &mut col, vector);
            for (r, &v) in col.iter().enumerate() {
                dst[(r / 2 * 16 + c) * 2 + r % 2] = v;
            }
        }
    };
    if par {
        out.par_chunks_mut(panel).enumerate().for_each(fill);
    } else {
        out.chunks_mut(panel).enumerate().for_each(fill);
    }
    out
}

/// Packed `b` back to float32, `(kp x n)` row-major (the plain kernel's operand).
fn unpack_b(pb: &[u16], kp: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0f32; kp * n];
    for (r, row) in out.chunks_mut(n).enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = widen(pb[(j / 16) * kp * 16 + (r / 2 * 16 + j % 16) * 2 + r % 2]);
        }
    }
    out
}

/// Writes the `rows x cols` block at `(i0, j0)` of the product (row stride `stride` in `acc`)
/// where `out` places it: `d = acc`, or `d = alpha * d + beta * acc`.
///
/// # Safety
/// `out` must be valid for the block's entries (and reads of them when accumulating).
unsafe fn store(acc: &[f32], stride: usize, out: Out, (i0, j0): (usize, usize), (rows, cols): (usize, usize), accumulate: Option<(f32, f32)>) {
    let put = |d: &mut f32, s: f32| match accumulate {
        None => *d = s,
        Some((alpha, beta)) => *d = alpha * *d + beta * s,
    };
    if out.transposed {
        // Transposed here, in L1, so that dst is written row by row.
        let mut t = [0f32; BLOCK * BLOCK];
        debug_assert!(rows * cols <= t.len());
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = acc[r * stride + c];
            }
        }
        // SAFETY: the same entries, as a (cols x rows) block at (j0, i0) of dst.
        return unsafe { store(&t, rows, Out { transposed: false, ..out }, (j0, i0), (cols, rows), accumulate) };
    }
    for r in 0..rows {
        let s = &acc[r * stride..][..cols];
        // SAFETY: row i0 + r of the block lies inside dst, as the caller guarantees.
        let d = unsafe { std::slice::from_raw_parts_mut(out.dst.add((i0 + r) * out.n + j0), cols) };
        d.iter_mut().zip(s).for_each(|(d, &v)| put(d, v));
    }
}

/// One 32x32 output block (row stride 32 in `acc`) from the A strip at `pa` (rows of `kp`) and
/// the two B panels at `pb`.
///
/// # Safety
/// `pa` must hold 32 rows of `kp`, `pb` two panels of `kp * 16`; the kernel must be available
/// (and for AMX its tiles configured on this thread).
unsafe fn block(kernel: Kernel, pa: &[u16], pb: &[u16], kp: usize, acc: &mut [f32; BLOCK * BLOCK]) {
    debug_assert!(pa.len() >= BLOCK * kp && pb.len() >= 2 * kp * 16);
    #[cfg(target_arch = "x86_64")]
    match kernel {
        // SAFETY: as the caller guarantees.
        Kernel::Amx => return unsafe { x86::amx_block(pa.as_ptr(), pb.as_ptr(), kp, acc) },
        Kernel::Avx512 => return unsafe { x86::dp_block(pa.as_ptr(), pb.as_ptr(), kp, acc) },
        Kernel::Plain => {}
    }
    let _ = (pa, pb, kp, acc);
    unreachable!("bf16 gemm: the plain kernel runs no blocks");
}

/// AMX's tile configuration for this thread while it lives (released on drop); nothing for the
/// other kernels.
struct TileConfig(bool);

impl TileConfig {
    /// # Safety
    /// For AMX the process must have the tile permission ([`Kernel::available`]).
    unsafe fn load(kernel: Kernel) -> Self {
        #[cfg(target_arch = "x86_64")]
        if kernel == Kernel::Amx {
            // SAFETY: as the caller guarantees.
            unsafe { x86::load_tiles() };
            return TileConfig(true);
        }
        let _ = kernel;
        TileConfig(false)
    }
}

impl Drop for TileConfig {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if self.0 {
            // SAFETY: the tiles were configured on this thread by `load`.
            unsafe { std::arch::asm!("tilerelease", options(nostack)) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[path = "bf16_x86.rs"]
mod x86;

#[cfg(test)]
#[path = "bf16_tests.rs"]
mod tests;
