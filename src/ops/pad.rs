//! ZeroPadding2D on channels-last data: the zero-padded copy and its adjoint, the crop. Each image
//! row is `w * c` contiguous values in both layouts, so both directions are one copy per row.

use super::{float_map, Elem};
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Rows added above and below and columns added left and right of every image; `crop` undoes it
/// (the backward pass), taking the padded batch back to the unpadded one.
#[derive(Clone, Copy, Debug)]
struct ZeroPad2d {
    top: usize,
    bottom: usize,
    left: usize,
    right: usize,
    crop: bool,
}

impl ZeroPad2d {
    /// `(h, w)` of the unpadded and of the padded image, from the input's.
    fn sizes(&self, h: usize, w: usize) -> Result<((usize, usize), (usize, usize))> {
        let (dh, dw) = (self.top + self.bottom, self.left + self.right);
        if !self.crop {
            return Ok(((h, w), (h + dh, w + dw)));
        }
        if h < dh || w < dw {
            candle_core::bail!("zero-pad2d backward: a {h}x{w} gradient is smaller than the padding {dh}x{dw}");
        }
        Ok(((h - dh, w - dw), (h, w)))
    }

    /// Copies every unpadded row to or from its place in the padded image, image by image in
    /// parallel. Every output element is written once (the padding as zeros), so the output is not
    /// zeroed first.
    fn run<T: Elem>(&self, x: &[T], n: usize, small: (usize, usize), big: (usize, usize), c: usize) -> Vec<T> {
        let (row, small_image, big_image) = (small.1 * c, small.0 * small.1 * c, big.0 * big.1 * c);
        let len = n * if self.crop { small_image } else { big_image };
        let zero = MaybeUninit::new(T::zero());
        let (left, big_row) = (self.left * c, big.1 * c);
        super::linear::uninit(len, |p: *mut T| {
            // SAFETY: `uninit` hands over room for `len` elements, which as `MaybeUninit` may hold
            // anything; each branch below writes every one of them.
            let out = unsafe { std::slice::from_raw_parts_mut(p.cast::<MaybeUninit<T>>(), len) };
            if small_image == 0 {
                // Nothing to copy: an empty crop, or padding around empty images.
                out.fill(zero);
            } else if self.crop {
                out.par_chunks_mut(small_image).zip(x.par_chunks(big_image)).for_each(|(out, img)| {
                    for (y, dst) in out.chunks_exact_mut(row).enumerate() {
                        dst.write_copy_of_slice(&img[(y + self.top) * big_row + left..][..row]);
                    }
                });
            } else {
                out.par_chunks_mut(big_image).zip(x.par_chunks(small_image)).for_each(|(out, img)| {
                    let (above, rest) = out.split_at_mut(self.top * big_row);
                    let (rows, below) = rest.split_at_mut(small.0 * big_row);
                    above.fill(zero);
                    below.fill(zero);
                    for (dst, src) in rows.chunks_exact_mut(big_row).zip(img.chunks_exact(row)) {
                        let (l, rest) = dst.split_at_mut(left);
                        let (mid, r) = rest.split_at_mut(row);
                        l.fill(zero);
                        mid.write_copy_of_slice(src);
                        r.fill(zero);
                    }
                });
            }
        })
    }
}

impl CustomOp1 for ZeroPad2d {
    fn name(&self) -> &'static str {
        if self.crop {
            "kandle-zero-pad2d-backward"
        } else {
            "kandle-zero-pad2d"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[n, h, w, c] = l.dims() else { candle_core::bail!("{} expects NHWC, got {:?}", self.name(), l.dims()) };
        let (small, big) = self.sizes(h, w)?;
        let (oh, ow) = if self.crop { small } else { big };
        let out = float_map!(self.name(), s, l, |x| self.run(x, n, small, big, c));
        Ok((out, Shape::from((n, oh, ow, c))))
    }
}

/// `(n, h, w, c)` -> `(n, top + h + bottom, left + w + right, c)`, zeros around each image.
pub fn zero_pad2d(x: &Tensor, top: usize, bottom: usize, left: usize, right: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&ZeroPad2d { top, bottom, left, right, crop: false })
}

/// The input gradient of [`zero_pad2d`] with the same padding: the interior of each padded image,
/// `(n, H, W, c)` -> `(n, H - top - bottom, W - left - right, c)`.
pub fn zero_pad2d_backward(dy: &Tensor, top: usize, bottom: usize, left: usize, right: usize) -> Result<Tensor> {
    dy.contiguous()?.apply_op1_no_bwd(&ZeroPad2d { top, bottom, left, right, crop: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_data::{flat, numbers, tensor};
    use candle_core::{DType, Device};

    /// The padded batch by its definition: entry (b, y, x, ch) is the input's (b, y - top, x -
    /// left, ch) where that lies inside the input, else 0.
    fn reference(x: &[f64], (n, h, w, c): (usize, usize, usize, usize), [t, b, l, r]: [usize; 4]) -> Vec<f64> {
        let (ph, pw) = (h + t + b, w + l + r);
        let mut out = vec![0.0; n * ph * pw * c];
        for img in 0..n {
            for y in 0..ph {
                for xx in 0..pw {
                    for ch in 0..c {
                        if (t..t + h).contains(&y) && (l..l + w).contains(&xx) {
                            out[((img * ph + y) * pw + xx) * c + ch] = x[((img * h + y - t) * w + xx - l) * c + ch];
                        }
                    }
                }
            }
        }
        out
    }

    /// `((n, h, w, c), [top, bottom, left, right])`.
    type Case = ((usize, usize, usize, usize), [usize; 4]);

    /// Padding on some sides only, none at all, a single image, one-pixel-wide images.
    const CASES: [Case; 5] = [
        ((2, 3, 5, 3), [1, 2, 0, 3]),
        ((1, 4, 1, 1), [0, 0, 2, 1]),
        ((3, 1, 2, 5), [2, 0, 1, 0]),
        ((2, 2, 3, 2), [0, 0, 0, 0]),
        ((1, 5, 4, 7), [3, 3, 3, 3]),
    ];

    #[test]
    fn pads_and_crops_as_defined_in_f32_and_f64() {
        for (shape, pad @ [t, b, l, r]) in CASES {
            let dims = [shape.0, shape.1, shape.2, shape.3];
            let x = numbers(dims.iter().product(), 3);
            let want = reference(&x, shape, pad);
            for dtype in [DType::F64, DType::F32] {
                let xt = tensor(&x, &dims).to_dtype(dtype).unwrap();
                let y = zero_pad2d(&xt, t, b, l, r).unwrap();
                assert_eq!(y.dims(), [shape.0, shape.1 + t + b, shape.2 + l + r, shape.3]);
                assert_eq!(y.dtype(), dtype);
                let got = flat(&y);
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() <= 1e-7 * w.abs(), "{shape:?} {pad:?} {dtype:?} at {k}: {g} vs {w}");
                }
                // The crop of the padded batch is the input again, bit for bit.
                let back = zero_pad2d_backward(&y, t, b, l, r).unwrap();
                assert_eq!(back.dims(), dims);
                assert_eq!(flat(&back), flat(&xt), "{shape:?} {pad:?} {dtype:?}");
            }
        }
    }

    #[test]
    fn backward_matches_central_differences() {
        for (shape, [t, b, l, r]) in CASES {
            let dims = [shape.0, shape.1, shape.2, shape.3];
            let x = numbers(dims.iter().product(), 5);
            let pdims = [shape.0, shape.1 + t + b, shape.2 + l + r, shape.3];
            let rr = numbers(pdims.iter().product(), 11);
            // s(x) = sum(pad(x) * r); ds/dx by central differences.
            let s = |x: &[f64]| flat(&zero_pad2d(&tensor(x, &dims), t, b, l, r).unwrap()).iter().zip(&rr).map(|(y, r)| y * r).sum::<f64>();
            let h = 1e-3;
            let numeric: Vec<f64> = (0..x.len())
                .map(|i| {
                    let (mut up, mut down) = (x.clone(), x.clone());
                    up[i] += h;
                    down[i] -= h;
                    (s(&up) - s(&down)) / (2.0 * h)
                })
                .collect();
            let analytic = flat(&zero_pad2d_backward(&tensor(&rr, &pdims), t, b, l, r).unwrap());
            for (k, (a, n)) in analytic.iter().zip(&numeric).enumerate() {
                assert!((a - n).abs() <= 1e-9, "{shape:?} at {k}: {a} vs {n}");
            }
        }
    }

    #[test]
    fn refuses_other_ranks_and_a_crop_larger_than_the_gradient() {
        let x = Tensor::zeros((2, 3, 4), DType::F32, &Device::Cpu).unwrap();
        assert!(zero_pad2d(&x, 1, 1, 1, 1).is_err());
        let dy = Tensor::zeros((1, 3, 4, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(zero_pad2d_backward(&dy, 2, 2, 0, 0).is_err());
        assert_eq!(zero_pad2d_backward(&dy, 2, 1, 0, 4).unwrap().dims(), [1, 0, 0, 2]);
    }
}
