//! candle custom ops that kandle needs beyond candle's own: channels-last im2col/col2im for
//! convolution, max-pooling with saved argmax, and activations whose gradients follow TensorFlow
//! (candle's `max_pool2d` backward is off by the pool area, `softmax_last_dim` has none, and its
//! ReLU passes gradient at exactly 0).

pub mod avg_pool;
pub mod bf16;
pub mod batchnorm;
pub mod bias_act;
pub mod conv;
pub mod grad;
pub mod im2col;
pub mod linear;
pub mod pad;
pub mod pool;
pub mod resample;
pub mod skinny;
pub mod unary;
pub mod update;
pub mod winograd;

use candle_core::{CpuStorage, DType, Layout, Result, WithDType};

/// The element types our kernels run on: f32 for models, f64 for gradient checks.
pub trait Elem: WithDType + num_traits::Float + std::ops::AddAssign + Send + Sync {}
impl Elem for f32 {}
impl Elem for f64 {}

/// The contiguous data behind a storage/layout pair; every op makes its inputs contiguous first.
pub(crate) fn contiguous<'a, T: Elem>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&s.as_slice::<T>()?[start..end]),
        None => candle_core::bail!("kandle op: input is not contiguous"),
    }
}

/// Runs `$body` with each name bound to the contiguous f32 or f64 data of its storage (all of the
/// first one's dtype) and wraps the result back into that dtype; any other dtype is an error naming
/// the op. `float_map!(op, s, l, |x| body)` for one input, `float_map!(op, [a = (s1, l1), b = (s2,
/// l2), ...], body)` for several.
macro_rules! float_map {
    ($op:expr, $s:expr, $l:expr, |$x:ident| $body:expr) => {
        $crate::ops::float_map!($op, [$x = ($s, $l)], $body)
    };
    ($op:expr, [$x0:ident = ($s0:expr, $l0:expr) $(, $x:ident = ($s:expr, $l:expr))* $(,)?], $body:expr) => {
        match $s0 {
            CpuStorage::F32(_) => {
                let $x0 = $crate::ops::contiguous::<f32>($s0, $l0)?;
                $(let $x = $crate::ops::contiguous::<f32>($s, $l)?;)*
                CpuStorage::F32($body)
            }
            CpuStorage::F64(_) => {
                let $x0 = $crate::ops::contiguous::<f64>($s0, $l0)?;
                $(let $x = $crate::ops::contiguous::<f64>($s, $l)?;)*
                CpuStorage::F64($body)
            }
            _ => return Err($crate::ops::unsupported($op, $s0.dtype())),
        }
    };
}
pub(crate) use float_map;

/// Where parallel tasks write one buffer, each at entries no other task writes (the tiles of a
/// GEMM's output, the transformed tiles of a convolution).
pub(crate) struct Disjoint<T>(pub(crate) *mut T);

// SAFETY: tasks only write through it, each at entries no other task touches (every user's
// SAFETY comment says why its entries are its own).
unsafe impl<T: Send> Send for Disjoint<T> {}
unsafe impl<T: Send> Sync for Disjoint<T> {}

impl<T> Disjoint<T> {
    /// Where entry `i` goes (through a method, so that closures capture the Sync wrapper, not its
    /// raw field).
    pub(crate) fn at(&self, i: usize) -> *mut T {
        self.0.wrapping_add(i)
    }
}

/// `a + b` element-wise, reusing `a`: the reduction step of per-task partial sums.
pub(crate) fn add_partials<T: Elem>(mut a: Vec<T>, b: Vec<T>) -> Vec<T> {
    a.iter_mut().zip(b).for_each(|(a, b)| *a += b);
    a
}

pub(crate) fn unsupported(op: &str, dtype: DType) -> candle_core::Error {
    candle_core::Error::Msg(format!("{op}: unsupported dtype {dtype:?} (f32 and f64 only)"))
}

/// Spatial geometry of a 2-D window op on NHWC data, with TensorFlow's padding: `pad_top`/`pad_left`
/// get the smaller half, the extra row/column goes bottom/right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub in_h: usize,
    pub in_w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Window {
    /// Output size and padding as TensorFlow computes them; `None` when the window does not fit
    /// ('valid' with a window larger than the input).
    pub fn new(in_hw: (usize, usize), k: (usize, usize), s: (usize, usize), same: bool) -> Option<Self> {
        let dim = |input: usize, k: usize, s: usize| -> Option<(usize, usize)> {
            if same {
                let out = input.div_ceil(s);
                let pad_total = ((out - 1) * s + k).saturating_sub(input);
                Some((out, pad_total / 2))
            } else if input >= k {
                Some(((input - k) / s + 1, 0))
            } else {
                None
            }
        };
        let (out_h, pad_top) = dim(in_hw.0, k.0, s.0)?;
        let (out_w, pad_left) = dim(in_hw.1, k.1, s.1)?;
        if out_h == 0 || out_w == 0 {
            return None;
        }
        Some(Window { in_h: in_hw.0, in_w: in_hw.1, kh: k.0, kw: k.1, sh: s.0, sw: s.1, pad_top, pad_left, out_h, out_w })
    }

    /// The input row/column read by output position `o` and window offset `k`, if inside the input.
    #[inline]
    pub fn src(o: usize, k: usize, stride: usize, pad: usize, size: usize) -> Option<usize> {
        let p = o * stride + k;
        if p < pad || p - pad >= size {
            None
        } else {
            Some(p - pad)
        }
    }
}

/// Deterministic data for the kernels' tests (shared by pad, avg_pool and batchnorm).
#[cfg(test)]
pub(crate) mod test_data {
    use candle_core::{DType, Device, Tensor};

    /// `len` values in [-1, 1), a different sequence per `seed`.
    pub(crate) fn numbers(len: usize, seed: usize) -> Vec<f64> {
        (0..len).map(|i| (((i + seed) * 7919) % 1009) as f64 / 504.5 - 1.0).collect()
    }

    pub(crate) fn tensor(v: &[f64], shape: &[usize]) -> Tensor {
        Tensor::from_slice(v, shape, &Device::Cpu).unwrap()
    }

    pub(crate) fn flat(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::Window;

    #[test]
    fn same_padding_puts_the_extra_row_bottom_right() {
        // 8 wide, kernel 3, stride 2: out 4, total pad 1 -> 0 on the left, 1 on the right (TF).
        let w = Window::new((8, 7), (3, 3), (2, 2), true).unwrap();
        assert_eq!((w.out_h, w.pad_top), (4, 0));
        // 7 wide, kernel 3, stride 2: out 4, total pad 2 -> 1 left, 1 right.
        assert_eq!((w.out_w, w.pad_left), (4, 1));
    }

    #[test]
    fn valid_floors_and_refuses_oversized_windows() {
        let w = Window::new((5, 5), (2, 2), (2, 2), false).unwrap();
        assert_eq!((w.out_h, w.out_w), (2, 2));
        assert!(Window::new((2, 5), (3, 3), (1, 1), false).is_none());
    }
}
