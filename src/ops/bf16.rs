//! bfloat16 GEMMs for the `mixed_bfloat16` policy: float32 operands rounded to bfloat16 (to nearest
//! even, as TensorFlow's cast rounds) while they are packed, products summed in float32.
//!
//! Three kernels read one packed layout; [`kernel`] picks one once per process:
//! - AMX (`tdpbf16ps`, Sapphire Rapids and later): 16x16 float32 tiles, 32 products deep per
//!   instruction. Measured here: ~990 GFLOP/s on one core, against ~146 for AVX-512 float32 FMAs
//!   (benches/bf16_units.rs).
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
    let kp = k.div_ceil(BLOCK) * BLOCK;
    let par = threads == Threads::All && rayon::current_num_threads() > 1;
    let pa = pack_a(a, m, k, kp, par);
    let pb = pack_b(b, k, n, kp);
    let out = super::Disjoint(dst);
    if kernel == Kernel::Plain {
        let wide_a: Vec<f32> = pa[..m * kp].iter().map(|&h| widen(h)).collect();
        let wide_b = unpack_b(&pb, kp, n);
        // SAFETY: wide_a is (m x kp), wide_b (kp x n), dst as the caller guarantees.
        unsafe { gemm_raw(out.at(0), (&wide_a, Order::Plain), (&wide_b, Order::Plain), (m, kp, n), accumulate, threads) };
        return;
    }
    let (strips, cols) = (m.div_ceil(BLOCK), n.div_ceil(BLOCK));
    let blocks = strips * cols;
    let tasks = if par { (4 * rayon::current_num_threads()).min(blocks) } else { 1 };
    let run = |t: usize| {
        let range = (blocks * t / tasks)..(blocks * (t + 1) / tasks);
        let mut acc = [0f32; BLOCK * BLOCK];
        // SAFETY: each block writes only its own rows and columns of dst (the blocks partition
        // it); pa and pb hold the padded operands the kernels read.
        unsafe {
            let tiles = TileConfig::load(kernel);
            for blk in range {
                let (i0, j0) = (blk / cols * BLOCK, blk % cols * BLOCK);
                block(kernel, &pa[i0 * kp..], &pb[j0 * kp..], kp, &mut acc);
                store(&acc, out.at(i0 * n + j0), (m - i0).min(BLOCK), (n - j0).min(BLOCK), n, accumulate);
            }
            drop(tiles);
        }
    };
    if tasks > 1 {
        (0..tasks).into_par_iter().for_each(run);
    } else {
        run(0);
    }
}

/// `a` as bfloat16, row-major `(m rounded up to 32) x kp`, zeros in the padding.
fn pack_a(a: View, m: usize, k: usize, kp: usize, par: bool) -> Vec<u16> {
    let mut out = vec![0u16; m.div_ceil(BLOCK) * BLOCK * kp];
    if a.cs == 1 {
        let row = |(i, dst): (usize, &mut [u16])| {
            if i < m {
                let src = &a.data[i * a.rs..][..k];
                dst[..k].iter_mut().zip(src).for_each(|(d, &s)| *d = round(s));
            }
        };
        if par {
            out.par_chunks_mut(kp).enumerate().for_each(row);
        } else {
            out.chunks_mut(kp).enumerate().for_each(row);
        }
    } else {
        // Stored transposed: read each column of `a` (a row in memory) once, write it across rows.
        for j in 0..k {
            for i in 0..m {
                out[i * kp + j] = round(a.data[i * a.rs + j * a.cs]);
            }
        }
    }
    out
}

/// `b` as bfloat16 in 16-column panels of depth pairs, `[panel][kp/2][16][2]`, with the panels
/// rounded up to an even count (whole 32-column blocks), zeros in the padding.
fn pack_b(b: View, k: usize, n: usize, kp: usize) -> Vec<u16> {
    let mut out = vec![0u16; n.div_ceil(BLOCK) * 2 * kp * 16];
    let at = |r: usize, j: usize| (j / 16) * kp * 16 + (r / 2 * 16 + j % 16) * 2 + r % 2;
    // Reads follow memory order: rows of a plain operand, columns of a transposed one.
    if b.cs == 1 {
        for r in 0..k {
            b.data[r * b.rs..][..n].iter().enumerate().for_each(|(j, &v)| out[at(r, j)] = round(v));
        }
    } else {
        for j in 0..n {
            for r in 0..k {
                out[at(r, j)] = round(b.data[r * b.rs + j * b.cs]);
            }
        }
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

/// Writes a block's `rows x cols` valid part into `dst` (row stride `n`).
///
/// # Safety
/// `dst` must be valid for the block's entries (and reads of them when accumulating).
unsafe fn store(acc: &[f32; BLOCK * BLOCK], dst: *mut f32, rows: usize, cols: usize, n: usize, accumulate: Option<(f32, f32)>) {
    for r in 0..rows {
        // SAFETY: row r of the block lies inside dst, as the caller guarantees.
        let d = unsafe { std::slice::from_raw_parts_mut(dst.add(r * n), cols) };
        let s = &acc[r * BLOCK..][..cols];
        match accumulate {
            None => d.copy_from_slice(s),
            Some((alpha, beta)) => d.iter_mut().zip(s).for_each(|(d, &s)| *d = alpha * *d + beta * s),
        }
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
mod x86 {
    use super::BLOCK;
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// Palette 1, tiles 0-7 of 16 rows x 64 bytes: C in 0-3 (16x16 float32 each), A in 4-5 (16
    /// rows x 32 bfloat16), B in 6-7 (16 depth pairs x 16 columns).
    #[repr(C, align(64))]
    struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    /// # Safety
    /// The process must have the AMX tile permission.
    pub(super) unsafe fn load_tiles() {
        let mut cfg = Config { palette: 1, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
        cfg.colsb[..8].fill(64);
        cfg.rows[..8].fill(16);
        // SAFETY: a valid palette-1 configuration, 64-byte aligned.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &cfg as *const Config, options(nostack, readonly)) };
    }

    /// # Safety
    /// See `super::block`; tiles loaded by `load_tiles` on this thread.
    pub(super) unsafe fn amx_block(pa: *const u16, pb: *const u16, kp: usize, acc: &mut [f32; BLOCK * BLOCK]) {
        let lda = kp * 2;
        // SAFETY (all): every load reads 16 rows of 64 bytes inside the packed operands (the A
        // strip has 32 rows of kp entries, each panel kp/2 pairs of 16 columns), the stores
        // write the 32x32 float32 block.
        unsafe {
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
            let (b0, b1) = (pb, pb.add(kp * 16));
            for s in 0..kp / BLOCK {
                asm!(
                    "tileloadd tmm4, [{a0} + {lda}*1]",
                    "tileloadd tmm5, [{a1} + {lda}*1]",
                    "tileloadd tmm6, [{b0} + {ldb}*1]",
                    "tileloadd tmm7, [{b1} + {ldb}*1]",
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    a0 = in(reg) pa.add(s * BLOCK),
                    a1 = in(reg) pa.add(16 * kp + s * BLOCK),
                    b0 = in(reg) b0.add(s * 512),
                    b1 = in(reg) b1.add(s * 512),
                    lda = in(reg) lda,
                    ldb = in(reg) 64usize,
                    options(nostack, readonly),
                );
            }
            let c = acc.as_mut_ptr();
            asm!(
                "tilestored [{c0} + {ldc}*1], tmm0",
                "tilestored [{c1} + {ldc}*1], tmm1",
                "tilestored [{c2} + {ldc}*1], tmm2",
                "tilestored [{c3} + {ldc}*1], tmm3",
                c0 = in(reg) c,
                c1 = in(reg) c.add(16),
                c2 = in(reg) c.add(16 * BLOCK),
                c3 = in(reg) c.add(16 * BLOCK + 16),
                ldc = in(reg) BLOCK * 4,
                options(nostack),
            );
        }
    }

    /// The same block with `vdpbf16ps`: 8 rows x 32 columns of accumulators at a time.
    ///
    /// # Safety
    /// See `super::block`; the CPU must have AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn dp_block(pa: *const u16, pb: *const u16, kp: usize, acc: &mut [f32; BLOCK * BLOCK]) {
        for r0 in (0..BLOCK).step_by(8) {
            let mut c = [[_mm512_setzero_ps(); 2]; 8];
            for p in 0..kp / 2 {
                // SAFETY: pair p of both panels and of rows r0..r0+8 lie inside the packed data.
                unsafe {
                    let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(pb.add(p * 32).cast()));
                    let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(pb.add(kp * 16 + p * 32).cast()));
                    for (r, c) in c.iter_mut().enumerate() {
                        let pair = pa.add((r0 + r) * kp + 2 * p).cast::<i32>().read_unaligned();
                        let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                        c[0] = _mm512_dpbf16_ps(c[0], a, b0);
                        c[1] = _mm512_dpbf16_ps(c[1], a, b1);
                    }
                }
            }
            for (r, c) in c.iter().enumerate() {
                // SAFETY: row r0+r of the 32x32 block.
                unsafe {
                    _mm512_storeu_ps(acc.as_mut_ptr().add((r0 + r) * BLOCK), c[0]);
                    _mm512_storeu_ps(acc.as_mut_ptr().add((r0 + r) * BLOCK + 16), c[1]);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "bf16_tests.rs"]
mod tests;
