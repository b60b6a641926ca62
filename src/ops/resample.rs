//! Resampling of channels-last images through tap tables: every output pixel is a weighted sum of
//! at most four input pixels (bilinear or nearest interpolation), or takes a fill value where it
//! falls outside the image. One table serves the forward pass and its adjoint (the backward pass),
//! so the gradient is exactly the transpose of what was computed. The tables follow TensorFlow's
//! `ImageProjectiveTransformV3` (what Keras 3's `affine_transform` calls on its TensorFlow backend)
//! and `tf.image.resize` (half-pixel centres, no antialiasing).

use super::Elem;
use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

/// How a sampling position between pixels is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    Nearest,
    Bilinear,
}

/// How positions outside the image are mapped back into it (Keras's `fill_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FillMode {
    /// `(d c b a | a b c d | d c b a)`
    Reflect,
    /// `(a b c d | a b c d | a b c d)`
    Wrap,
    /// `(k k k k | a b c d | k k k k)`, k the fill value
    Constant,
    /// `(a a a a | a b c d | d d d d)`
    Nearest,
}

/// A tap that reads the fill value instead of a pixel.
const FILL: u32 = u32::MAX;

/// For each output pixel of one image, four (input pixel, weight) taps.
#[derive(Clone, Debug)]
pub struct Taps {
    pub input: (usize, usize),
    pub output: (usize, usize),
    index: Vec<u32>,
    weight: Vec<f32>,
}

impl Taps {
    fn new(input: (usize, usize), output: (usize, usize)) -> Self {
        let n = output.0 * output.1 * 4;
        Taps { input, output, index: Vec::with_capacity(n), weight: Vec::with_capacity(n) }
    }

    /// Reads `(y, x)` (integer pixel coordinates, possibly outside) with TensorFlow's
    /// `read_with_fill_value`: outside the image it is the fill value.
    fn push(&mut self, y: f32, x: f32, weight: f32) {
        let (h, w) = self.input;
        let inside = y >= 0.0 && x >= 0.0 && (y as usize) < h && (x as usize) < w;
        self.index.push(if inside { (y as usize * w + x as usize) as u32 } else { FILL });
        self.weight.push(weight);
    }

    /// One output pixel sampled at `(y, x)` of the input (already mapped by the fill mode).
    fn sample(&mut self, y: f32, x: f32, interpolation: Interpolation) {
        match interpolation {
            Interpolation::Nearest => {
                self.push(y.round(), x.round(), 1.0);
                for _ in 0..3 {
                    self.push(-1.0, -1.0, 0.0);
                }
            }
            Interpolation::Bilinear => {
                let (y0, x0) = (y.floor(), x.floor());
                let (y1, x1) = (y0 + 1.0, x0 + 1.0);
                self.push(y0, x0, (y1 - y) * (x1 - x));
                self.push(y0, x1, (y1 - y) * (x - x0));
                self.push(y1, x0, (y - y0) * (x1 - x));
                self.push(y1, x1, (y - y0) * (x - x0));
            }
        }
    }
}

/// TensorFlow's `MapCoordinate`: a coordinate outside `[0, len - 1]` brought back by the fill mode
/// (then clamped, so that rounding stays inside; Constant leaves it for the fill value).
fn map_coordinate(c: f32, len: usize, mode: FillMode) -> f32 {
    let top = len as f32 - 1.0;
    let clamp = |c: f32| c.clamp(0.0, top);
    match mode {
        FillMode::Constant => c,
        FillMode::Nearest => clamp(c),
        _ if (0.0..=top).contains(&c) => c,
        _ if len <= 1 => 0.0,
        FillMode::Reflect => {
            let sz2 = 2.0 * len as f32;
            let mut c = c;
            if c < 0.0 {
                if c < sz2 {
                    c += sz2 * (-c / sz2).trunc();
                }
                c = if c < -(len as f32) { c + sz2 } else { -c - 1.0 };
            } else {
                c -= sz2 * (c / sz2).trunc();
                if c >= len as f32 {
                    c = sz2 - c - 1.0;
                }
            }
            clamp(c)
        }
        FillMode::Wrap => {
            let sz = top;
            let c = if c < 0.0 { c + len as f32 * ((-c / sz).trunc() + 1.0) } else { c - len as f32 * (c / sz).trunc() };
            clamp(c)
        }
    }
}

/// The taps of a projective transform `[a0, a1, a2, b0, b1, b2, c0, c1]` mapping each output pixel
/// `(x, y)` to the input position `((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k)`, `k = c0 x +
/// c1 y + 1`, on an image of `(h, w)` (the output has the input's size), as TensorFlow computes it
/// in float32.
pub fn affine_taps(t: [f32; 8], hw: (usize, usize), interpolation: Interpolation, fill: FillMode) -> Taps {
    let mut taps = Taps::new(hw, hw);
    for oy in 0..hw.0 {
        for ox in 0..hw.1 {
            let (x, y) = (ox as f32, oy as f32);
            let k = t[6] * x + t[7] * y + 1.0;
            if k == 0.0 {
                taps.sample(-2.0, -2.0, Interpolation::Nearest); // the fill value, as TensorFlow
                continue;
            }
            let ix = (t[0] * x + t[1] * y + t[2]) / k;
            let iy = (t[3] * x + t[4] * y + t[5]) / k;
            taps.sample(map_coordinate(iy, hw.0, fill), map_coordinate(ix, hw.1, fill), interpolation);
        }
    }
    taps
}

/// TensorFlow's bilinear resize (half-pixel centres, no antialiasing) of a `(from.0, from.1)` image
/// to `to`: source position `(o + 0.5) * in / out - 0.5`, neighbours clamped to the image.
pub fn resize_taps(from: (usize, usize), to: (usize, usize)) -> Taps {
    let axis = |n_in: usize, n_out: usize| -> Vec<(f32, f32, f32)> {
        let scale = n_in as f32 / n_out as f32;
        (0..n_out)
            .map(|o| {
                let src = (o as f32 + 0.5) * scale - 0.5;
                let f = src.floor();
                let top = n_in as f32 - 1.0;
                (f.clamp(0.0, top), (f + 1.0).clamp(0.0, top), src - f)
            })
            .collect()
    };
    let (rows, cols) = (axis(from.0, to.0), axis(from.1, to.1));
    let mut taps = Taps::new(from, to);
    for &(y0, y1, fy) in &rows {
        for &(x0, x1, fx) in &cols {
            taps.push(y0, x0, (1.0 - fy) * (1.0 - fx));
            taps.push(y0, x1, (1.0 - fy) * fx);
            taps.push(y1, x0, fy * (1.0 - fx));
            taps.push(y1, x1, fy * fx);
        }
    }
    taps
}

/// The taps of image `i`: one table for every image, or one each.
fn table(taps: &[Taps], i: usize) -> &Taps {
    &taps[if taps.len() == 1 { 0 } else { i }]
}

fn forward<T: Elem>(x: &[T], n: usize, c: usize, taps: &[Taps], fill_value: f64) -> Vec<T> {
    let (input, output) = (taps[0].input, taps[0].output);
    let (in_image, out_image) = (input.0 * input.1 * c, output.0 * output.1 * c);
    let fill = <T as candle_core::WithDType>::from_f64(fill_value);
    let mut out = vec![T::zero(); n * out_image];
    out.par_chunks_mut(out_image.max(1)).enumerate().take(n).for_each(|(i, out)| {
        let (img, t) = (&x[i * in_image..][..in_image], table(taps, i));
        for (p, px) in out.chunks_exact_mut(c).enumerate() {
            for k in 4 * p..4 * p + 4 {
                let w = <T as candle_core::WithDType>::from_f64(t.weight[k] as f64);
                if w == T::zero() {
                    continue;
                }
                match t.index[k] {
                    FILL => px.iter_mut().for_each(|o| *o += w * fill),
                    j => px.iter_mut().zip(&img[j as usize * c..][..c]).for_each(|(o, &v)| *o += w * v),
                }
            }
        }
    });
    out
}

fn adjoint<T: Elem>(g: &[T], n: usize, c: usize, taps: &[Taps]) -> Vec<T> {
    let (input, output) = (taps[0].input, taps[0].output);
    let (in_image, out_image) = (input.0 * input.1 * c, output.0 * output.1 * c);
    let mut out = vec![T::zero(); n * in_image];
    out.par_chunks_mut(in_image.max(1)).enumerate().take(n).for_each(|(i, dx)| {
        let (grad, t) = (&g[i * out_image..][..out_image], table(taps, i));
        for (p, gp) in grad.chunks_exact(c).enumerate() {
            for k in 4 * p..4 * p + 4 {
                let j = t.index[k];
                if j == FILL || t.weight[k] == 0.0 {
                    continue;
                }
                let w = <T as candle_core::WithDType>::from_f64(t.weight[k] as f64);
                dx[j as usize * c..][..c].iter_mut().zip(gp).for_each(|(d, &v)| *d += w * v);
            }
        }
    });
    out
}

/// Dispatches on f32/f64 (models and gradient checks) and rebuilds an NHWC tensor.
fn run(x: &Tensor, hw: (usize, usize), f32s: impl Fn(&[f32], usize, usize) -> Vec<f32>, f64s: impl Fn(&[f64], usize, usize) -> Vec<f64>) -> Result<Tensor> {
    let (n, _, _, c) = x.dims4()?;
    let flat = x.flatten_all()?;
    match x.dtype() {
        DType::F32 => Tensor::from_vec(f32s(&flat.to_vec1::<f32>()?, n, c), (n, hw.0, hw.1, c), x.device()),
        DType::F64 => Tensor::from_vec(f64s(&flat.to_vec1::<f64>()?, n, c), (n, hw.0, hw.1, c), x.device()),
        other => candle_core::bail!("kandle resample: unsupported dtype {other:?}"),
    }
}

/// Image `i` of `x` (`(n, h, w, c)`) resampled through `taps` (one table, or one per image).
pub fn resample(x: &Tensor, taps: &[Taps], fill_value: f64) -> Result<Tensor> {
    check(x, taps, |t| t.input)?;
    run(x, taps[0].output, |x, n, c| forward(x, n, c, taps, fill_value), |x, n, c| forward(x, n, c, taps, fill_value))
}

/// The adjoint of [`resample`] (the fill value is a constant, so it takes no gradient).
pub fn resample_backward(grad: &Tensor, taps: &[Taps]) -> Result<Tensor> {
    check(grad, taps, |t| t.output)?;
    run(grad, taps[0].input, |g, n, c| adjoint(g, n, c, taps), |g, n, c| adjoint(g, n, c, taps))
}

fn check(x: &Tensor, taps: &[Taps], size: impl Fn(&Taps) -> (usize, usize)) -> Result<()> {
    let (n, h, w, _) = x.dims4()?;
    if taps.is_empty() || (taps.len() != 1 && taps.len() != n) || taps.iter().any(|t| size(t) != (h, w)) {
        candle_core::bail!("kandle resample: {} tap tables do not fit a batch of {n} images of {h}x{w}", taps.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn image(n: usize, h: usize, w: usize, c: usize) -> Tensor {
        let v: Vec<f64> = (0..n * h * w * c).map(|i| ((i * 37 % 101) as f64) / 7.0 - 5.0).collect();
        Tensor::from_vec(v, (n, h, w, c), &Device::Cpu).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.flatten_all().unwrap().to_vec1::<f64>().unwrap()
    }

    const MODES: [FillMode; 4] = [FillMode::Reflect, FillMode::Wrap, FillMode::Constant, FillMode::Nearest];

    /// The plain definition, written out: reflect / wrap / nearest as the Keras docstring draws them.
    #[test]
    fn fill_modes_extend_the_image_as_keras_documents() {
        // abcd = 0 1 2 3; positions -4..=7
        let got = |mode| (-4..8).map(|c| map_coordinate(c as f32, 4, mode)).collect::<Vec<_>>();
        assert_eq!(got(FillMode::Reflect), [3., 2., 1., 0., 0., 1., 2., 3., 3., 2., 1., 0.]);
        assert_eq!(got(FillMode::Nearest), [0., 0., 0., 0., 0., 1., 2., 3., 3., 3., 3., 3.]);
        assert_eq!(got(FillMode::Constant), (-4..8).map(|c| c as f32).collect::<Vec<_>>());
        // Wrap within one image's length of the edge (TensorFlow's quotient by len - 1 folds farther
        // positions differently; the golden tests compare those with Keras).
        assert_eq!(got(FillMode::Wrap)[2..10], [2., 3., 0., 1., 2., 3., 0., 1.]);
    }

    #[test]
    fn the_identity_transform_and_an_integer_shift_on_ragged_shapes() {
        let x = image(3, 5, 7, 2);
        for mode in MODES {
            for interp in [Interpolation::Nearest, Interpolation::Bilinear] {
                let id = affine_taps([1., 0., 0., 0., 1., 0., 0., 0.], (5, 7), interp, mode);
                assert_eq!(values(&resample(&x, &[id], 9.0).unwrap()), values(&x), "{mode:?} {interp:?}");
            }
        }
        // Output (x, y) reads input (x - 2, y + 1): a shift right by 2 and up by 1, zeros where it left.
        let shift = affine_taps([1., 0., -2., 0., 1., 1., 0., 0.], (5, 7), Interpolation::Bilinear, FillMode::Constant);
        let yv = resample(&x, &[shift], 0.5).unwrap();
        let at = |t: &Tensor, i: usize, r: usize, c: usize, ch: usize| t.get(i).unwrap().get(r).unwrap().get(c).unwrap().get(ch).unwrap().to_scalar::<f64>().unwrap();
        for i in 0..3 {
            for r in 0..5 {
                for col in 0..7 {
                    for ch in 0..2 {
                        let want = if r + 1 < 5 && col >= 2 { at(&x, i, r + 1, col - 2, ch) } else { 0.5 };
                        assert_eq!(at(&yv, i, r, col, ch), want, "image {i} at ({r}, {col}, {ch})");
                    }
                }
            }
        }
    }

    /// <resample(x), g> = <x, resample_backward(g)> for every mode, one table per image, f32 too.
    #[test]
    fn the_backward_pass_is_the_adjoint() {
        let x = image(2, 6, 5, 3);
        let g = image(2, 6, 5, 3).affine(-0.3, 1.0).unwrap();
        let dot = |a: &Tensor, b: &Tensor| a.mul(b).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        for mode in MODES {
            for interp in [Interpolation::Nearest, Interpolation::Bilinear] {
                let (c, s) = (0.3f32.cos(), 0.3f32.sin());
                let taps = vec![
                    affine_taps([c, -s, 1.2, s, c, -0.7, 0.0, 0.0], (6, 5), interp, mode),
                    affine_taps([1.3, 0.0, -0.6, 0.0, 0.8, 0.5, 0.0, 0.0], (6, 5), interp, mode),
                ];
                let y = resample(&x, &taps, 0.0).unwrap();
                let back = resample_backward(&g, &taps).unwrap();
                assert!((dot(&y, &g) - dot(&x, &back)).abs() < 1e-9, "{mode:?} {interp:?}");
                let y32 = resample(&x.to_dtype(DType::F32).unwrap(), &taps, 0.0).unwrap().to_dtype(DType::F64).unwrap();
                assert!(values(&(y32 - &y).unwrap()).iter().all(|d| d.abs() < 1e-4));
            }
        }
        let resize = [resize_taps((6, 5), (4, 9))];
        let (y, g) = (resample(&x, &resize, 0.0).unwrap(), image(2, 4, 9, 3));
        assert!((dot(&y, &g) - dot(&x, &resample_backward(&g, &resize).unwrap())).abs() < 1e-9);
    }

    #[test]
    fn resize_weights_are_tensorflows() {
        // 4 -> 2: half-pixel centres sample at 0.5 and 2.5, the means of pixel pairs.
        let x = Tensor::from_vec((0..16).map(f64::from).collect::<Vec<_>>(), (1, 4, 4, 1), &Device::Cpu).unwrap();
        let y = resample(&x, &[resize_taps((4, 4), (2, 2))], 0.0).unwrap();
        assert_eq!(values(&y), [2.5, 4.5, 10.5, 12.5]);
        // 2 -> 4 upsampling clamps at the borders: 0, 0.25, 0.75, 1 of the way.
        let x = Tensor::from_vec(vec![0.0, 4.0], (1, 1, 2, 1), &Device::Cpu).unwrap();
        assert_eq!(values(&resample(&x, &[resize_taps((1, 2), (1, 4))], 0.0).unwrap()), [0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn tables_that_do_not_fit_the_batch_are_an_error() {
        let x = image(3, 4, 4, 1);
        let t = affine_taps([1., 0., 0., 0., 1., 0., 0., 0.], (4, 4), Interpolation::Nearest, FillMode::Reflect);
        assert!(resample(&x, &[t.clone(), t.clone()], 0.0).is_err());
        assert!(resample(&image(1, 5, 4, 1), &[t], 0.0).is_err());
    }
}
