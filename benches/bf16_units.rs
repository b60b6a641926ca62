//! The CPU's bfloat16 units against its float32 FMAs, and kandle's bfloat16 GEMM against its
//! float32 one on the tutorial CNN's shapes: `cargo bench --bench bf16_units`.
//!
//! Part 1 runs register-resident loops (no memory traffic) on one core: 24 independent
//! accumulators of `vfmadd231ps` (float32) and of `vdpbf16ps` (AVX512-BF16), and four AMX
//! accumulator tiles of `tdpbf16ps`.
//! Part 2 times whole products (packing included) on all cores, median of 7 after warm-up.

use kandle::ops::bf16::{bench_matmul, Kernel};
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[cfg(target_arch = "x86_64")]
mod units {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma(iters: usize) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 24];
        let (b0, b1) = (_mm512_set1_ps(1.0), _mm512_set1_ps(1.0001));
        for _ in 0..iters {
            for r in 0..12 {
                let a = _mm512_set1_ps(0.001 * r as f32);
                acc[2 * r] = _mm512_fmadd_ps(a, b0, acc[2 * r]);
                acc[2 * r + 1] = _mm512_fmadd_ps(a, b1, acc[2 * r + 1]);
            }
        }
        acc.iter().fold(_mm512_setzero_ps(), |s, &a| _mm512_add_ps(s, a)).lanes_sum()
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn dpbf16(iters: usize) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 24];
        let b0: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(0x3f803f80u32 as i32)) };
        let b1: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(0x3f803f81u32 as i32)) };
        for _ in 0..iters {
            for r in 0..12 {
                let a: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi32(0x3c003c00 + r as i32)) };
                acc[2 * r] = _mm512_dpbf16_ps(acc[2 * r], a, b0);
                acc[2 * r + 1] = _mm512_dpbf16_ps(acc[2 * r + 1], a, b1);
            }
        }
        acc.iter().fold(_mm512_setzero_ps(), |s, &a| _mm512_add_ps(s, a)).lanes_sum()
    }

    /// `tdpbf16ps` on four accumulator tiles (16x16 float32 each) from two A and two B tiles
    /// (loaded once): GFLOP/s. The process must have the AMX permission (kandle asks for it when
    /// it picks the AMX kernel).
    pub unsafe fn amx(iters: usize) -> f64 {
        use std::arch::asm;
        #[repr(C, align(64))]
        struct Config([u8; 16], [u16; 16], [u8; 16]);
        let mut cfg = Config([0; 16], [0; 16], [0; 16]);
        cfg.0[0] = 1;
        cfg.1[..8].fill(64);
        cfg.2[..8].fill(16);
        let data = vec![0x3f80_3f80u32; 256];
        let t = std::time::Instant::now();
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) &cfg as *const Config);
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3");
            asm!("tileloadd tmm4, [{p} + {s}*1]", "tileloadd tmm5, [{p} + {s}*1]", "tileloadd tmm6, [{p} + {s}*1]",
                 "tileloadd tmm7, [{p} + {s}*1]", p = in(reg) data.as_ptr(), s = in(reg) 64usize);
            for _ in 0..iters {
                asm!("tdpbf16ps tmm0, tmm4, tmm6", "tdpbf16ps tmm1, tmm4, tmm7", "tdpbf16ps tmm2, tmm5, tmm6",
                     "tdpbf16ps tmm3, tmm5, tmm7");
            }
            asm!("tilerelease");
        }
        (iters * 4 * 16 * 16 * 32 * 2) as f64 / t.elapsed().as_secs_f64() / 1e9
    }

    trait Sum {
        fn lanes_sum(self) -> f32;
    }
    impl Sum for __m512 {
        fn lanes_sum(self) -> f32 {
            // SAFETY: a plain reinterpretation of 16 lanes.
            unsafe { std::mem::transmute::<__m512, [f32; 16]>(self) }.iter().sum()
        }
    }
}

fn main() {
    println!("bf16 kernel chosen: {:?}", kandle::ops::bf16::kernel());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bf16") {
        let n = 20_000_000;
        for _ in 0..3 {
            let t = Instant::now();
            let x = unsafe { units::fma(n) };
            let fma = (n * 24 * 32) as f64 / t.elapsed().as_secs_f64() / 1e9;
            let t = Instant::now();
            let y = unsafe { units::dpbf16(n) };
            let dp = (n * 24 * 64) as f64 / t.elapsed().as_secs_f64() / 1e9;
            let amx = if kandle::ops::bf16::kernel() == Kernel::Amx { format!(", AMX tdpbf16ps {:.0} GFLOP/s", unsafe { units::amx(n / 4) }) } else { String::new() };
            println!("one core: float32 FMA {fma:.0} GFLOP/s, vdpbf16ps {dp:.0} GFLOP/s{amx} ({x:.0} {y:.0})");
        }
    }
    // (m, k, n): conv2 per group, conv4/conv5/conv6 over the batch (32 images), dense 1.
    let shapes = [("conv2 group", 3136, 288, 64), ("conv4", 3200, 1152, 256), ("conv5", 2048, 2304, 512), ("conv6", 128, 4608, 1024), ("dense", 32, 1024, 500)];
    for (what, m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1009) as f32 / 504.5 - 1.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 1013) as f32 / 506.5 - 1.0).collect();
        let flops = (2 * m * k * n) as f64;
        let mut line = format!("{what:12} ({m}x{k}x{n}):");
        for (name, kernel) in [("float32", None), ("AMX", Some(Kernel::Amx)), ("AVX512-BF16", Some(Kernel::Avx512))] {
            if kernel.is_some_and(|k| !k.available()) {
                continue;
            }
            bench_matmul(kernel, &a, &b, (m, k, n));
            let t = median((0..7).map(|_| {
                let t = Instant::now();
                std::hint::black_box(bench_matmul(kernel, &a, &b, (m, k, n)));
                t.elapsed().as_secs_f64()
            }).collect());
            line += &format!("  {name} {:.2} ms ({:.0} GFLOP/s)", t * 1e3, flops / t / 1e9);
        }
        println!("{line}");
    }
}
