//! Reading training data batch by batch. Arrays of any real dtype and memory layout are converted
//! to f32 one batch at a time, so a float64 CIFAR array is never copied whole.

use candle_core::{DType, Device, Tensor};
use ndarray::{ArrayViewD, Axis};
use num_traits::AsPrimitive;

/// Rows of samples, gathered by index into a contiguous f32 buffer.
pub trait BatchSource: Sync {
    fn len(&self) -> usize;
    /// Shape of one sample (without the batch axis).
    fn sample_shape(&self) -> &[usize];
    /// Appends the samples at `idx`, in order, row-major.
    fn gather(&self, idx: &[usize], out: &mut Vec<f32>);

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A borrowed n-d array (from NumPy or Rust) whose first axis is the sample axis.
pub struct ArraySource<'a, T> {
    view: ArrayViewD<'a, T>,
    sample_shape: Vec<usize>,
}

impl<'a, T> ArraySource<'a, T> {
    pub fn new(view: ArrayViewD<'a, T>) -> Self {
        let sample_shape = view.shape().get(1..).unwrap_or(&[]).to_vec();
        ArraySource { view, sample_shape }
    }
}

impl<T: Copy + AsPrimitive<f32> + Sync> BatchSource for ArraySource<'_, T> {
    fn len(&self) -> usize {
        self.view.shape().first().copied().unwrap_or(0)
    }

    fn sample_shape(&self) -> &[usize] {
        &self.sample_shape
    }

    fn gather(&self, idx: &[usize], out: &mut Vec<f32>) {
        out.reserve(idx.len() * self.sample_shape.iter().product::<usize>());
        for &i in idx {
            let row = self.view.index_axis(Axis(0), i);
            match row.as_slice() {
                Some(s) => out.extend(s.iter().map(|v| v.as_())),
                None => out.extend(row.iter().map(|v| v.as_())),
            }
        }
    }
}

/// The samples at `idx` as one `(len, ...)` tensor.
pub fn batch_tensor(src: &dyn BatchSource, idx: &[usize], dtype: DType) -> crate::Result<Tensor> {
    let mut buf = Vec::new();
    src.gather(idx, &mut buf);
    let mut shape = vec![idx.len()];
    shape.extend_from_slice(src.sample_shape());
    Ok(Tensor::from_vec(buf, shape, &Device::Cpu)?.to_dtype(dtype)?)
}
