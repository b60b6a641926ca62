//! The x86-64 parts of the bfloat16 GEMM: AMX tiles, `vdpbf16ps` blocks and AVX512-BF16's
//! rounding conversions (see bf16.rs for the layout they share).

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

/// `dst = round(src)` sixteen at a time (`vcvtneps2bf16` rounds to nearest even, as `round`).
///
/// # Safety
/// The CPU must have AVX512-BF16 (and AVX512-BW, which every such CPU has).
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx512vl")]
pub(super) unsafe fn round_row(src: &[f32], dst: &mut [u16]) {
    let len = src.len().min(dst.len());
    for j in (0..len).step_by(16) {
        let mask = if len - j >= 16 { u16::MAX } else { (1u16 << (len - j)) - 1 };
        // SAFETY: the mask keeps loads and stores inside both slices.
        unsafe {
            let v = _mm512_maskz_loadu_ps(mask, src.as_ptr().add(j));
            let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(v));
            _mm256_mask_storeu_epi16(dst.as_mut_ptr().add(j).cast(), mask, h);
        }
    }
}

/// Depth pair `(r0, r1)` of up to 16 columns (r1 absent past the depth: zeros) into one
/// panel: 16 interleaved pairs at `out[at..at + 32]`.
///
/// # Safety
/// As `round_row`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx512vl")]
pub(super) unsafe fn round_pairs(r0: &[f32], r1: Option<&[f32]>, out: &mut [u16], at: usize) {
    let n = r0.len().min(16);
    let mask = if n == 16 { u16::MAX } else { (1u16 << n) - 1 };
    assert!(at + 32 <= out.len() && r1.is_none_or(|r1| r1.len() >= n));
    // Pair c takes column c of r0 (low half of the conversion) and column c of r1 (high half).
    let idx = _mm512_set_epi16(
        31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0,
    );
    // SAFETY: masked loads stay inside the rows; the store writes 16 pairs inside out.
    unsafe {
        let lo = _mm512_maskz_loadu_ps(mask, r0.as_ptr());
        let hi = match r1 {
            Some(r1) => _mm512_maskz_loadu_ps(mask, r1.as_ptr()),
            None => _mm512_setzero_ps(),
        };
        let both: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        let pairs = _mm512_permutexvar_epi16(idx, both);
        _mm512_mask_storeu_epi32(out.as_mut_ptr().add(at).cast(), mask, pairs);
    }
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
