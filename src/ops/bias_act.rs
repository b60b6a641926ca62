//! `act(y + bias)` in one in-place pass over a `(rows, units)` matrix: the tail of every Dense and
//! Conv2D after its GEMM, so the output is written once and the backward pass needs only the output.

use super::unary::{Unary, PAR_CHUNK};
use super::Elem;
use rayon::prelude::*;

/// `None` is the identity (a linear layer, or the pre-activation of a final softmax).
#[derive(Clone, Copy, Debug)]
pub struct BiasAct(pub Option<Unary>);

impl BiasAct {
    /// `y <- act(y + b)` row by row, split across threads.
    pub(crate) fn apply_in_place<T: Elem>(&self, y: &mut [T], b: &[T]) {
        let n = b.len().max(1);
        let rows_per_task = (PAR_CHUNK / n).max(1);
        y.par_chunks_mut(rows_per_task * n).for_each(|chunk| self.apply_rows(chunk, b));
    }

    /// The same on the calling thread.
    pub(crate) fn apply_rows<T: Elem>(&self, y: &mut [T], b: &[T]) {
        // One loop per activation, so that the common ones compile to straight vector code
        // instead of a per-element branch on the activation.
        fn rows<T: Elem>(y: &mut [T], b: &[T], act: impl Fn(T) -> T) {
            for row in y.chunks_exact_mut(b.len().max(1)) {
                for (v, &b) in row.iter_mut().zip(b) {
                    *v = act(*v + b);
                }
            }
        }
        match self.0 {
            None => rows(y, b, |v| v),
            Some(Unary::Relu) => rows(y, b, |v| Unary::Relu.f(v)),
            Some(u) => rows(y, b, |v| u.f(v)),
        }
    }
}
