//! BatchNormalization over the last axis of channels-last data, the input viewed as `(m, c)` rows:
//! per-channel batch statistics accumulated in f64, the output as one fused per-channel affine
//! pass (training and inference alike), and the training-mode backward pass in two more passes.

use super::unary::PAR_CHUNK;
use super::{add_partials, float_map, Elem};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use num_traits::ToPrimitive;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// What the training pass gives the caller, and what [`batch_norm_backward`] takes back.
#[derive(Clone, Debug)]
pub struct BnTrain {
    /// The normalised batch, shaped like the input.
    pub y: Tensor,
    /// Per-channel batch mean, `(c,)`, in the input's dtype.
    pub mean: Tensor,
    /// Per-channel biased batch variance (the mean squared deviation), `(c,)`: what Keras 3 moves
    /// the moving variance towards.
    pub var: Tensor,
    /// `1 / sqrt(var + epsilon)`, `(c,)`.
    pub inv_std: Tensor,
    /// The input, shared rather than copied: the backward pass recomputes `x̂ = (x - mean) *
    /// inv_std` from it instead of keeping a normalised copy of the batch.
    pub x: Tensor,
}

/// f64 view of an element, inlined (candle's `WithDType::to_f64` is not marked `#[inline]`, and
/// these conversions sit in the statistics' inner loops).
#[inline(always)]
fn wide<T: Elem>(v: T) -> f64 {
    ToPrimitive::to_f64(&v).unwrap_or(f64::NAN)
}

/// Per-channel values (computed in f64) in the kernel's element type.
fn narrow<T: Elem>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&v| T::from(v).unwrap()).collect()
}

/// Rows per parallel task: about [`PAR_CHUNK`] elements each.
fn rows_per_task(c: usize) -> usize {
    (PAR_CHUNK / c.max(1)).max(1)
}

/// Defines a row kernel compiled three times, for AVX-512 and for AVX2 where the CPU has them and
/// for the SSE2 baseline the crate is built for, and picks one at run time. The loops vectorise
/// across channels, so each channel's arithmetic, and its result, is the same in all three; the
/// wider ones run the f64 statistics up to twice as fast.
macro_rules! row_kernel {
    ($(#[$doc:meta])* fn $name:ident<T: Elem>($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        fn $name<T: Elem>($($arg: $ty),*) {
            #[inline(always)]
            fn body<T: Elem>($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512<T: Elem>($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2<T: Elem>($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

row_kernel! {
    /// Adds each row's `x - shift` and its square to `acc = [sums; sums of squares]`, in f64.
    fn moment_rows<T: Elem>(x: &[T], shift: &[f64], acc: &mut [f64]) {
        let (s, q) = acc.split_at_mut(shift.len());
        for row in x.chunks_exact(shift.len()) {
            for (((&v, &k), s), q) in row.iter().zip(shift).zip(s.iter_mut()).zip(q.iter_mut()) {
                let d = wide(v) - k;
                *s += d;
                *q += d * d;
            }
        }
    }
}

row_kernel! {
    /// Adds each row's `dy * (x - mean)` and `dy` to `acc = [the first sums; the second]`, in f64.
    fn grad_sum_rows<T: Elem>(dy: &[T], x: &[T], mean: &[f64], acc: &mut [f64]) {
        let c = mean.len();
        let (sx, sg) = acc.split_at_mut(c);
        for (g, x) in dy.chunks_exact(c).zip(x.chunks_exact(c)) {
            for ((((&g, &x), &mu), sx), sg) in g.iter().zip(x).zip(mean).zip(sx.iter_mut()).zip(sg.iter_mut()) {
                let g = wide(g);
                *sx += g * (wide(x) - mu);
                *sg += g;
            }
        }
    }
}

row_kernel! {
    /// `y = (x - center) * scale + shift` row by row, writing every element of `y`.
    fn affine_rows<T: Elem>(x: &[T], y: &mut [MaybeUninit<T>], coefficients: [&[T]; 3]) {
        let [center, scale, shift] = coefficients;
        let c = center.len();
        for (y, x) in y.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            for ((((y, &x), &a), &s), &b) in y.iter_mut().zip(x).zip(center).zip(scale).zip(shift) {
                y.write((x - a) * s + b);
            }
        }
    }
}

row_kernel! {
    /// `dx = p * dy + q * (x - mean) + r` row by row, writing every element of `dx`.
    fn input_grad_rows<T: Elem>(dy: &[T], x: &[T], dx: &mut [MaybeUninit<T>], coefficients: [&[T]; 4]) {
        let [mean, p, q, r] = coefficients;
        let c = mean.len();
        for ((dx, g), x) in dx.chunks_exact_mut(c).zip(dy.chunks_exact(c)).zip(x.chunks_exact(c)) {
            let coefficients = mean.iter().zip(p).zip(q).zip(r);
            for (((d, &g), &x), (((&mu, &p), &q), &r)) in dx.iter_mut().zip(g).zip(x).zip(coefficients) {
                d.write(p * g + q * (x - mu) + r);
            }
        }
    }
}

/// `width` per-channel sums over `m` rows: each task adds up a block of rows (`add(acc, rows)`),
/// and the blocks' sums are added in block order, so the result is the same on any thread count.
fn channel_sums(m: usize, c: usize, width: usize, add: impl Fn(&mut [f64], Range<usize>) + Sync) -> Vec<f64> {
    let rows = rows_per_task(c);
    let partials: Vec<Vec<f64>> = (0..m.div_ceil(rows))
        .into_par_iter()
        .map(|b| {
            let mut acc = vec![0.0; width];
            add(&mut acc, b * rows..((b + 1) * rows).min(m));
            acc
        })
        .collect();
    partials.into_iter().reduce(add_partials).unwrap_or_else(|| vec![0.0; width])
}

/// A `(rows, c)` output of `len` elements, written block by block of rows in parallel by
/// `fill(the block's element range, the block)`, which writes every element: the buffer is not
/// zeroed first.
fn rows_out<T: Elem>(len: usize, c: usize, fill: impl Fn(Range<usize>, &mut [MaybeUninit<T>]) + Sync) -> Vec<T> {
    super::linear::uninit(len, |p: *mut T| {
        // SAFETY: `uninit` hands over room for `len` elements, which as `MaybeUninit` may hold
        // anything; the row kernels write every element of every block.
        let out = unsafe { std::slice::from_raw_parts_mut(p.cast::<MaybeUninit<T>>(), len) };
        let block = rows_per_task(c) * c;
        out.par_chunks_mut(block).enumerate().for_each(|(b, out)| fill(b * block..b * block + out.len(), out));
    })
}

/// Refuses a tensor whose last axis is not `c` channels: the row kernels take whole rows of `c`,
/// and [`rows_out`]'s kernels must write every element.
fn channels_last(op: &str, l: &Layout, c: usize) -> Result<()> {
    match l.dims().last() {
        Some(&d) if d == c && c > 0 => Ok(()),
        _ => candle_core::bail!("{op}: shape {:?} does not end in {c} channels", l.dims()),
    }
}

/// `(m, c)` -> `(2, c)`: each channel's mean, then its biased variance. The sums are of `x -
/// x[0]` and its square in f64: shifting by a sample keeps the sum of squares from cancelling when
/// the mean is large against the spread, so one pass suffices.
#[derive(Clone, Copy, Debug)]
struct Moments {
    c: usize,
}

impl Moments {
    fn run<T: Elem>(&self, x: &[T]) -> Vec<T> {
        let c = self.c;
        let m = x.len() / c;
        let shift: Vec<f64> = x[..c].iter().map(|&v| wide(v)).collect();
        let sums = channel_sums(m, c, 2 * c, |acc, rows| moment_rows(&x[rows.start * c..rows.end * c], &shift, acc));
        let (s, q) = sums.split_at(c);
        let mf = m as f64;
        let mean = shift.iter().zip(s).map(|(k, s)| k + s / mf);
        // Round-off can take a constant channel's variance just below 0; NaN stays NaN.
        let var = s.iter().zip(q).map(|(s, q)| q / mf - (s / mf) * (s / mf)).map(|v| if v < 0.0 { 0.0 } else { v });
        narrow(&mean.chain(var).collect::<Vec<f64>>())
    }
}

impl CustomOp1 for Moments {
    fn name(&self) -> &'static str {
        "kandle-batch-norm-moments"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        channels_last(self.name(), l, self.c)?;
        if l.shape().elem_count() == 0 {
            candle_core::bail!("{}: an empty batch has no statistics", self.name());
        }
        let out = float_map!(self.name(), s, l, |x| self.run(x));
        Ok((out, Shape::from((2, self.c))))
    }
}

/// `y = (x - center) * scale + shift`, per channel, in the input's shape.
#[derive(Clone, Debug)]
struct Affine {
    center: Vec<f64>,
    scale: Vec<f64>,
    shift: Vec<f64>,
}

impl Affine {
    fn run<T: Elem>(&self, x: &[T]) -> Vec<T> {
        let c = self.center.len();
        let [center, scale, shift] = [&self.center, &self.scale, &self.shift].map(|v| narrow::<T>(v));
        rows_out(x.len(), c, |span, y| affine_rows(&x[span], y, [&center, &scale, &shift]))
    }
}

impl CustomOp1 for Affine {
    fn name(&self) -> &'static str {
        "kandle-batch-norm"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        channels_last(self.name(), l, self.center.len())?;
        let out = float_map!(self.name(), s, l, |x| self.run(x));
        Ok((out, l.shape().clone()))
    }
}

/// `(dy, x)` -> `(2, c)`: each channel's `sum(dy * (x - mean))`, then its `sum(dy)`, in f64.
#[derive(Clone, Debug)]
struct GradSums {
    mean: Vec<f64>,
}

impl GradSums {
    fn run<T: Elem>(&self, dy: &[T], x: &[T]) -> Vec<T> {
        let c = self.mean.len();
        let sums = channel_sums(x.len() / c, c, 2 * c, |acc, rows| {
            let span = rows.start * c..rows.end * c;
            grad_sum_rows(&dy[span.clone()], &x[span], &self.mean, acc)
        });
        narrow(&sums)
    }
}

impl CustomOp2 for GradSums {
    fn name(&self) -> &'static str {
        "kandle-batch-norm-grad-sums"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("batch-norm backward: gradient {:?} for an input {:?}", l1.dims(), l2.dims());
        }
        channels_last(self.name(), l2, self.mean.len())?;
        let out = float_map!(self.name(), [g = (s1, l1), x = (s2, l2)], self.run(g, x));
        Ok((out, Shape::from((2, self.mean.len()))))
    }
}

/// `(dy, x)` -> `dx = p * dy + q * (x - mean) + r`, per channel: the training-mode input gradient
/// with its per-channel sums folded into `p`, `q` and `r`.
#[derive(Clone, Debug)]
struct InputGrad {
    mean: Vec<f64>,
    p: Vec<f64>,
    q: Vec<f64>,
    r: Vec<f64>,
}

impl InputGrad {
    fn run<T: Elem>(&self, dy: &[T], x: &[T]) -> Vec<T> {
        let c = self.mean.len();
        let [mean, p, q, r] = [&self.mean, &self.p, &self.q, &self.r].map(|v| narrow::<T>(v));
        rows_out(x.len(), c, |span, dx| input_grad_rows(&dy[span.clone()], &x[span], dx, [&mean, &p, &q, &r]))
    }
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "kandle-batch-norm-input-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            candle_core::bail!("batch-norm backward: gradient {:?} for an input {:?}", l1.dims(), l2.dims());
        }
        channels_last(self.name(), l2, self.mean.len())?;
        let out = float_map!(self.name(), [g = (s1, l1), x = (s2, l2)], self.run(g, x));
        Ok((out, l1.shape().clone()))
    }
}

/// The channel count (the last axis) and the row count of `x`.
fn rows_and_channels(x: &Tensor, op: &str) -> Result<(usize, usize)> {
    match x.dims().last() {
        Some(&c) if c > 0 => Ok((x.elem_count() / c, c)),
        _ => candle_core::bail!("{op}: input of shape {:?} has no channels on its last axis", x.dims()),
    }
}

/// A per-channel parameter as f64, `default` everywhere when absent.
fn per_channel(t: Option<&Tensor>, c: usize, default: f64, what: &str) -> Result<Vec<f64>> {
    match t {
        None => Ok(vec![default; c]),
        Some(t) if t.dims() == [c] => t.to_dtype(DType::F64)?.to_vec1(),
        Some(t) => candle_core::bail!("batch-norm: {what} has shape {:?}, expected ({c},)", t.dims()),
    }
}

/// A `(c,)` tensor of per-channel values in `dtype`.
fn channel_tensor(v: Vec<f64>, like: &Tensor) -> Result<Tensor> {
    let c = v.len();
    Tensor::from_vec(v, c, like.device())?.to_dtype(like.dtype())
}

fn inv_std(var: &[f64], epsilon: f64) -> Vec<f64> {
    var.iter().map(|v| 1.0 / (v + epsilon).sqrt()).collect()
}

/// Training mode: normalises with the batch's own statistics,
/// `y = gamma * (x - mean) / sqrt(var + epsilon) + beta` per channel (absent gamma is 1, absent
/// beta 0). The statistics are over every axis but the last; an empty batch has none and is
/// refused.
pub fn batch_norm_train(x: &Tensor, gamma: Option<&Tensor>, beta: Option<&Tensor>, epsilon: f64) -> Result<BnTrain> {
    let (m, c) = rows_and_channels(x, "batch-norm")?;
    if m == 0 {
        candle_core::bail!("batch-norm: an empty batch {:?} has no statistics", x.dims());
    }
    let (gamma, beta) = (per_channel(gamma, c, 1.0, "gamma")?, per_channel(beta, c, 0.0, "beta")?);
    let x = x.contiguous()?;
    let moments = x.apply_op1_no_bwd(&Moments { c })?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let [mean, var]: [Vec<f64>; 2] = moments.try_into().expect("moments are two rows");
    let inv = inv_std(&var, epsilon);
    // (x - mean) * scale + beta, as TensorFlow's fused kernel computes it: centring first keeps
    // f32 precise when the mean is large against the spread.
    let scale = gamma.iter().zip(&inv).map(|(g, i)| g * i).collect();
    let y = x.apply_op1_no_bwd(&Affine { center: mean.clone(), scale, shift: beta })?;
    Ok(BnTrain { y, mean: channel_tensor(mean, &x)?, var: channel_tensor(var, &x)?, inv_std: channel_tensor(inv, &x)?, x })
}

/// Inference mode: `y = x * scale + shift` per channel in one pass, with `scale = gamma /
/// sqrt(moving_var + epsilon)` and `shift = beta - moving_mean * scale` (tf.nn.batch_normalization's
/// arrangement, which Keras uses), the two computed in f64.
pub fn batch_norm_infer(
    x: &Tensor,
    gamma: Option<&Tensor>,
    beta: Option<&Tensor>,
    moving_mean: &Tensor,
    moving_var: &Tensor,
    epsilon: f64,
) -> Result<Tensor> {
    let (_, c) = rows_and_channels(x, "batch-norm")?;
    let (gamma, beta) = (per_channel(gamma, c, 1.0, "gamma")?, per_channel(beta, c, 0.0, "beta")?);
    let mean = per_channel(Some(moving_mean), c, 0.0, "moving mean")?;
    let var = per_channel(Some(moving_var), c, 1.0, "moving variance")?;
    let scale: Vec<f64> = gamma.iter().zip(inv_std(&var, epsilon)).map(|(g, i)| g * i).collect();
    let shift = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    x.contiguous()?.apply_op1_no_bwd(&Affine { center: vec![0.0; c], scale, shift })
}

/// The training-mode gradients from the output gradient `dy` and the forward pass's `saved`:
/// `(dx, dgamma, dbeta)` with `dgamma = sum(dy * x̂)`, `dbeta = sum(dy)` (per channel, `(c,)`)
/// and, when `input_grad`, `dx = gamma * inv_std / m * (m * dy - sum(dy) - x̂ * sum(dy * x̂))`,
/// which carries the gradient through the batch statistics. `gamma` is the one the forward pass
/// used (absent is 1). One pass for the sums, one more for `dx`.
pub fn batch_norm_backward(dy: &Tensor, saved: &BnTrain, gamma: Option<&Tensor>, input_grad: bool) -> Result<(Option<Tensor>, Tensor, Tensor)> {
    let x = &saved.x;
    if dy.dims() != x.dims() {
        candle_core::bail!("batch-norm backward: gradient {:?} for an input {:?}", dy.dims(), x.dims());
    }
    let (m, c) = rows_and_channels(x, "batch-norm backward")?;
    let gamma = per_channel(gamma, c, 1.0, "gamma")?;
    let mean = per_channel(Some(&saved.mean), c, 0.0, "mean")?;
    let inv = per_channel(Some(&saved.inv_std), c, 1.0, "inverse deviation")?;
    let dy = dy.contiguous()?;
    let sums = dy.apply_op2_no_bwd(x, &GradSums { mean: mean.clone() })?.to_dtype(DType::F64)?.to_vec2::<f64>()?;
    let [sum_dy_xc, sum_dy]: [Vec<f64>; 2] = sums.try_into().expect("gradient sums are two rows");
    // sum(dy * x̂) = inv_std * sum(dy * (x - mean)).
    let dgamma: Vec<f64> = sum_dy_xc.iter().zip(&inv).map(|(s, i)| s * i).collect();
    let dx = if input_grad {
        let mf = m as f64;
        let p: Vec<f64> = gamma.iter().zip(&inv).map(|(g, i)| g * i).collect();
        let q = p.iter().zip(&inv).zip(&dgamma).map(|((p, i), dg)| -p * i * dg / mf).collect();
        let r = p.iter().zip(&sum_dy).map(|(p, s)| -p * s / mf).collect();
        Some(dy.apply_op2_no_bwd(x, &InputGrad { mean, p, q, r })?)
    } else {
        None
    };
    Ok((dx, channel_tensor(dgamma, x)?, channel_tensor(sum_dy, x)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_data::{flat, numbers, tensor};
    use candle_core::Device;

    fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (k, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what} at {k}: {a} vs {b}");
        }
    }

    /// The textbook batch norm on `(m, c)` rows in f64: two-pass statistics, then `y`, and the
    /// gradients `(dx, dgamma, dbeta)` for output gradient `dy`.
    struct Reference {
        y: Vec<f64>,
        mean: Vec<f64>,
        var: Vec<f64>,
        dx: Vec<f64>,
        dgamma: Vec<f64>,
        dbeta: Vec<f64>,
    }

    fn reference(x: &[f64], dy: &[f64], c: usize, gamma: &[f64], beta: &[f64], eps: f64) -> Reference {
        let m = x.len() / c;
        let (mut mean, mut var) = (vec![0.0; c], vec![0.0; c]);
        for i in 0..m {
            for k in 0..c {
                mean[k] += x[i * c + k] / m as f64;
            }
        }
        for i in 0..m {
            for k in 0..c {
                var[k] += (x[i * c + k] - mean[k]).powi(2) / m as f64;
            }
        }
        let xh = |i: usize, k: usize| (x[i * c + k] - mean[k]) / (var[k] + eps).sqrt();
        let (mut y, mut dx) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
        for i in 0..m {
            for k in 0..c {
                y[i * c + k] = gamma[k] * xh(i, k) + beta[k];
                dgamma[k] += dy[i * c + k] * xh(i, k);
                dbeta[k] += dy[i * c + k];
            }
        }
        for i in 0..m {
            for k in 0..c {
                let scale = gamma[k] / (var[k] + eps).sqrt() / m as f64;
                dx[i * c + k] = scale * (m as f64 * dy[i * c + k] - dbeta[k] - xh(i, k) * dgamma[k]);
            }
        }
        Reference { y, mean, var, dx, dgamma, dbeta }
    }

    /// Ragged shapes, a single row, a 2-D batch, and one that spans several parallel blocks.
    const SHAPES: [&[usize]; 5] = [&[2, 3, 5], &[7, 3], &[1, 4], &[2, 3, 1, 1], &[3, 50, 50, 7]];

    #[test]
    fn training_pass_and_gradients_match_the_definition() {
        for (s, dims) in SHAPES.iter().enumerate() {
            let c = *dims.last().unwrap();
            let len = dims.iter().product();
            // Offset channels, so the mean matters.
            let x: Vec<f64> = numbers(len, s).iter().enumerate().map(|(i, v)| v * 2.0 + (i % c) as f64 - 1.5).collect();
            let dy = numbers(len, s + 17);
            let (gamma, beta) = (numbers(c, 3).iter().map(|g| g + 1.5).collect::<Vec<_>>(), numbers(c, 8));
            let eps = 1e-3;
            let want = reference(&x, &dy, c, &gamma, &beta, eps);
            for (dtype, tol) in [(DType::F64, 1e-11), (DType::F32, 2e-5)] {
                let what = format!("{dims:?} {dtype:?}");
                let t = |v: &[f64], d: &[usize]| tensor(v, d).to_dtype(dtype).unwrap();
                let (g, b) = (t(&gamma, &[c]), t(&beta, &[c]));
                let out = batch_norm_train(&t(&x, dims), Some(&g), Some(&b), eps).unwrap();
                assert_eq!((out.y.dims(), out.y.dtype(), out.mean.dims(), out.mean.dtype()), (*dims, dtype, &[c][..], dtype));
                assert_close(&flat(&out.y), &want.y, tol, &format!("y, {what}"));
                assert_close(&flat(&out.mean), &want.mean, tol, &format!("mean, {what}"));
                assert_close(&flat(&out.var), &want.var, tol, &format!("var, {what}"));
                let inv: Vec<f64> = want.var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
                assert_close(&flat(&out.inv_std), &inv, tol, &format!("inv_std, {what}"));
                let (dx, dgamma, dbeta) = batch_norm_backward(&t(&dy, dims), &out, Some(&g), true).unwrap();
                assert_close(&flat(&dx.unwrap()), &want.dx, tol * 10.0, &format!("dx, {what}"));
                assert_close(&flat(&dgamma), &want.dgamma, tol * 10.0, &format!("dgamma, {what}"));
                assert_close(&flat(&dbeta), &want.dbeta, tol * 10.0, &format!("dbeta, {what}"));
                let (none, dgamma2, _) = batch_norm_backward(&t(&dy, dims), &out, Some(&g), false).unwrap();
                assert!(none.is_none());
                assert_eq!(flat(&dgamma2), flat(&dgamma), "{what}");
                // Inference from the batch's own statistics is the training output again.
                let infer = batch_norm_infer(&t(&x, dims), Some(&g), Some(&b), &out.mean, &out.var, eps).unwrap();
                assert_close(&flat(&infer), &flat(&out.y), tol, &format!("inference, {what}"));
            }
        }
    }

    #[test]
    fn inference_is_the_per_channel_affine_map() {
        let (dims, c, eps) = ([2, 3, 5], 5, 1e-3);
        let x = numbers(30, 1);
        let (gamma, beta, mean, var) = (numbers(c, 2), numbers(c, 3), numbers(c, 4), numbers(c, 5).iter().map(|v| v + 1.5).collect::<Vec<_>>());
        let want: Vec<f64> = x.iter().enumerate().map(|(i, v)| (v - mean[i % c]) * gamma[i % c] / (var[i % c] + eps).sqrt() + beta[i % c]).collect();
        let got = batch_norm_infer(&tensor(&x, &dims), Some(&tensor(&gamma, &[c])), Some(&tensor(&beta, &[c])), &tensor(&mean, &[c]), &tensor(&var, &[c]), eps).unwrap();
        assert_close(&flat(&got), &want, 1e-14, "with gamma and beta");
        let want: Vec<f64> = x.iter().enumerate().map(|(i, v)| (v - mean[i % c]) / (var[i % c] + eps).sqrt()).collect();
        let got = batch_norm_infer(&tensor(&x, &dims), None, None, &tensor(&mean, &[c]), &tensor(&var, &[c]), eps).unwrap();
        assert_close(&flat(&got), &want, 1e-14, "without");
    }

    #[test]
    fn f32_statistics_stay_accurate_when_the_mean_dwarfs_the_spread() {
        // 32*32*32 rows of mean 10 and spread 0.06: a one-pass f32 sum of squares would lose the
        // variance entirely (10^2 against 0.003).
        let (m, c) = (32 * 32 * 32, 3);
        let x32: Vec<f32> = numbers(m * c, 7).iter().enumerate().map(|(i, v)| (10.0 + (i % c) as f64 + 0.1 * v) as f32).collect();
        let x: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
        let want = reference(&x, &x, c, &[1.0; 3], &[0.0; 3], 1e-3);
        let out = batch_norm_train(&Tensor::from_slice(&x32, (m, c), &Device::Cpu).unwrap(), None, None, 1e-3).unwrap();
        assert_close(&flat(&out.mean), &want.mean, 1e-7, "mean");
        let var = flat(&out.var);
        for (k, (got, want)) in var.iter().zip(&want.var).enumerate() {
            assert!((got - want).abs() <= 1e-6 * want, "var of channel {k}: {got} vs {want}");
        }
        assert_close(&flat(&out.y), &want.y, 1e-4, "y");
    }

    #[test]
    fn gradients_match_central_differences() {
        for dims in [&[2, 3, 5][..], &[7, 3], &[1, 4], &[4, 1, 2]] {
            let c = *dims.last().unwrap();
            let len: usize = dims.iter().product();
            let x: Vec<f64> = numbers(len, 2).iter().map(|v| v * 3.0 + 0.5).collect();
            let r = numbers(len, 5);
            let (gamma, beta) = (numbers(c, 7).iter().map(|g| g + 1.2).collect::<Vec<_>>(), numbers(c, 9));
            let eps = 1e-3;
            // s(x, gamma, beta) = sum(y * r) through the batch statistics.
            let s = |x: &[f64], g: &[f64], b: &[f64]| -> f64 {
                let y = batch_norm_train(&tensor(x, dims), Some(&tensor(g, &[c])), Some(&tensor(b, &[c])), eps).unwrap().y;
                flat(&y).iter().zip(&r).map(|(y, r)| y * r).sum()
            };
            let h = 1e-5;
            let numeric = |v: &[f64], at: &dyn Fn(&[f64]) -> f64| -> Vec<f64> {
                (0..v.len())
                    .map(|i| {
                        let (mut up, mut down) = (v.to_vec(), v.to_vec());
                        up[i] += h;
                        down[i] -= h;
                        (at(&up) - at(&down)) / (2.0 * h)
                    })
                    .collect()
            };
            let out = batch_norm_train(&tensor(&x, dims), Some(&tensor(&gamma, &[c])), Some(&tensor(&beta, &[c])), eps).unwrap();
            let (dx, dgamma, dbeta) = batch_norm_backward(&tensor(&r, dims), &out, Some(&tensor(&gamma, &[c])), true).unwrap();
            let what = format!("{dims:?}");
            assert_close(&flat(&dx.unwrap()), &numeric(&x, &|v| s(v, &gamma, &beta)), 1e-7, &format!("dx, {what}"));
            assert_close(&flat(&dgamma), &numeric(&gamma, &|v| s(&x, v, &beta)), 1e-7, &format!("dgamma, {what}"));
            assert_close(&flat(&dbeta), &numeric(&beta, &|v| s(&x, &gamma, v)), 1e-7, &format!("dbeta, {what}"));
            // Without gamma and beta (scale=False, center=False) gamma is 1.
            let out = batch_norm_train(&tensor(&x, dims), None, None, eps).unwrap();
            let (dx, _, _) = batch_norm_backward(&tensor(&r, dims), &out, None, true).unwrap();
            let plain = |v: &[f64]| flat(&batch_norm_train(&tensor(v, dims), None, None, eps).unwrap().y).iter().zip(&r).map(|(y, r)| y * r).sum();
            assert_close(&flat(&dx.unwrap()), &numeric(&x, &plain), 1e-7, &format!("dx without gamma, {what}"));
        }
    }

    #[test]
    fn refuses_mismatched_shapes_and_empty_batches() {
        let x = Tensor::zeros((4, 3), DType::F32, &Device::Cpu).unwrap();
        let wrong = Tensor::ones(4, DType::F32, &Device::Cpu).unwrap();
        assert!(batch_norm_train(&x, Some(&wrong), None, 1e-3).is_err());
        assert!(batch_norm_infer(&x, None, None, &wrong, &wrong, 1e-3).is_err());
        assert!(batch_norm_train(&Tensor::zeros((0, 3), DType::F32, &Device::Cpu).unwrap(), None, None, 1e-3).is_err());
        let out = batch_norm_train(&x, None, None, 1e-3).unwrap();
        assert!(batch_norm_backward(&Tensor::zeros((3, 4), DType::F32, &Device::Cpu).unwrap(), &out, None, true).is_err());
        // A constant batch normalises to 0 (variance 0, no NaN).
        assert_eq!(flat(&out.y), [0.0; 12]);
    }

    #[test]
    fn a_nan_input_makes_its_own_channel_statistics_nan() {
        let mut x = numbers(12, 3);
        x[4] = f64::NAN; // row 1, channel 1 of (4, 3)
        let out = batch_norm_train(&tensor(&x, &[4, 3]), None, None, 1e-3).unwrap();
        let (mean, var) = (flat(&out.mean), flat(&out.var));
        assert!(mean[1].is_nan() && var[1].is_nan(), "{mean:?} {var:?}");
        assert!([0, 2].iter().all(|&k| mean[k].is_finite() && var[k].is_finite()), "{mean:?} {var:?}");
    }
}
