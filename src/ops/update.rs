//! In-place element-wise updates, so an optimizer step rewrites each weight and state buffer once
//! instead of allocating a new tensor per arithmetic operation.

use super::unary::PAR_CHUNK;
use super::unsupported;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Tensor, WithDType};
use rayon::prelude::*;

/// `dst[i] = f(dst[i], [a[i]])` and `f(dst[i], [a[i], b[i]])`, computed in f64.
struct InPlace1<F>(F);
struct InPlace2<F>(F);

fn run<T: WithDType, const N: usize>(dst: &mut [T], srcs: [&[T]; N], f: &(impl Fn(f64, [f64; N]) -> f64 + Sync)) {
    dst.par_chunks_mut(PAR_CHUNK).enumerate().for_each(|(c, chunk)| {
        let base = c * PAR_CHUNK;
        for (i, d) in chunk.iter_mut().enumerate() {
            let args = std::array::from_fn(|s| srcs[s][base + i].to_f64());
            *d = T::from_f64(f(d.to_f64(), args));
        }
    });
}

fn slice<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout, len: usize) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((start, end)) if end - start == len => Ok(&s.as_slice::<T>()?[start..end]),
        _ => candle_core::bail!("kandle update: operands must be contiguous and of equal size"),
    }
}

fn apply<const N: usize>(
    dst: &mut CpuStorage,
    dst_l: &Layout,
    srcs: [(&CpuStorage, &Layout); N],
    f: &(impl Fn(f64, [f64; N]) -> f64 + Sync),
) -> Result<()> {
    let Some((start, end)) = dst_l.contiguous_offsets() else {
        candle_core::bail!("kandle update: destination must be contiguous")
    };
    let len = end - start;
    match dst {
        CpuStorage::F32(d) => {
            let mut args: [&[f32]; N] = [&[]; N];
            for (a, (s, l)) in args.iter_mut().zip(srcs) {
                *a = slice(s, l, len)?;
            }
            run(&mut d[start..end], args, f);
        }
        CpuStorage::F64(d) => {
            let mut args: [&[f64]; N] = [&[]; N];
            for (a, (s, l)) in args.iter_mut().zip(srcs) {
                *a = slice(s, l, len)?;
            }
            run(&mut d[start..end], args, f);
        }
        other => return Err(unsupported("kandle-update", other.dtype())),
    }
    Ok(())
}

impl<F: Fn(f64, [f64; 1]) -> f64 + Sync> InplaceOp2 for InPlace1<F> {
    fn name(&self) -> &'static str {
        "kandle-update"
    }
    fn cpu_fwd(&self, d: &mut CpuStorage, dl: &Layout, a: &CpuStorage, al: &Layout) -> Result<()> {
        apply(d, dl, [(a, al)], &self.0)
    }
}

impl<F: Fn(f64, [f64; 2]) -> f64 + Sync> InplaceOp3 for InPlace2<F> {
    fn name(&self) -> &'static str {
        "kandle-update"
    }
    fn cpu_fwd(&self, d: &mut CpuStorage, dl: &Layout, a: &CpuStorage, al: &Layout, b: &CpuStorage, bl: &Layout) -> Result<()> {
        apply(d, dl, [(a, al), (b, bl)], &self.0)
    }
}

/// `dst <- f(dst, a)` element-wise.
pub fn update1(dst: &Tensor, a: &Tensor, f: impl Fn(f64, [f64; 1]) -> f64 + Sync) -> Result<()> {
    dst.inplace_op2(&a.contiguous()?, &InPlace1(f))
}

/// `dst <- f(dst, a, b)` element-wise.
pub fn update2(dst: &Tensor, a: &Tensor, b: &Tensor, f: impl Fn(f64, [f64; 2]) -> f64 + Sync) -> Result<()> {
    dst.inplace_op3(&a.contiguous()?, &b.contiguous()?, &InPlace2(f))
}
