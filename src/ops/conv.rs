//! Conv2D as GEMMs (the `gemm` crate, AVX-512 where the CPU has it) + bias + activation.
//!
//! Three ways to run it ([`Path`]), chosen by kernel size, because on this kind of machine memory
//! traffic decides the early layers and arithmetic the late ones: a 29 MB im2col matrix costs ~5 ms
//! per pass from memory, while a group of images whose unfolded rows fit in a core's L2 cache costs
//! a fraction of that.
//! - Small kernels (the early layers, whose im2col matrices are the largest): image groups run in
//!   parallel, one thread each, unfolding a group into a cache-sized buffer and multiplying it at
//!   once; the backward pass unfolds the groups again instead of keeping a matrix for the batch.
//! - Large 3x3 stride-1 kernels over enough tiles: Winograd's F(2x2, 3x3) (`winograd.rs`), 2.25x
//!   fewer multiplications in the forward pass and in both gradients; training keeps the
//!   transformed input tiles for the kernel gradient.
//! - Other large kernels: one multi-threaded GEMM over the whole batch, whose im2col matrix
//!   training keeps for the weight gradient (per-group GEMMs would re-read the kernel for every
//!   group).

use super::im2col::{Col2Im, Im2Col};
use super::bf16::Precision;
use super::linear::{self, gemm_in, uninit, Order, Threads};
use super::bias_act::BiasAct;
use super::unary::Unary;
use super::{float_map, winograd, Elem, Window};
use super::grad::Grad;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Device, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// Kernels of at most this many entries (512 KB of f32) take the grouped path: above that, the
/// per-task partial kernel gradients and re-read kernels cost more than the grouping saves.
const GROUPED_MAX_KERNEL: usize = 1 << 17;
/// im2col entries per image group on the grouped path: 1.5 MB of f32, inside a core's L2.
const GROUP_COLS: usize = 384 << 10;
/// Elements of the im2col matrix unfolded at once during inference on the batch path (16 MB).
const INFERENCE_COLS: usize = 4 << 20;

/// The ways to run a convolution (see the module's documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// Image groups with cache-sized im2col buffers.
    Grouped,
    /// One GEMM over the whole batch.
    Batch,
    /// Winograd's F(2x2, 3x3) for the forward pass and both gradients, where the window allows
    /// it (else the batch path).
    Winograd,
}

impl Path {
    #[cfg(test)]
    pub(crate) const ALL: [Path; 3] = [Path::Grouped, Path::Batch, Path::Winograd];

    /// The path a convolution of `n` images with this window, `c` input channels and `f` filters
    /// takes (bfloat16 products too: on Winograd's path they round the transformed tiles, which
    /// keeps its 2.25x fewer products).
    fn of(win: &Window, c: usize, f: usize, n: usize) -> Path {
        #[cfg(test)]
        if let Some(forced) = FORCED_PATH.with(|f| f.get()) {
            return if forced == Path::Winograd && !winograd::fits(win) { Path::Batch } else { forced };
        }
        if win.kh * win.kw * c * f <= GROUPED_MAX_KERNEL {
            Path::Grouped
        } else if winograd::pays(win, c, f, n) {
            Path::Winograd
        } else {
            Path::Batch
        }
    }
}

#[cfg(test)]
thread_local! {
    static FORCED_PATH: std::cell::Cell<Option<Path>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with every convolution started on this thread on `path` (Winograd where the window
/// allows it, else the batch path), so that tests cover every path whatever the layer's size.
#[cfg(test)]
pub(crate) fn with_path<R>(path: Path, f: impl FnOnce() -> R) -> R {
    FORCED_PATH.with(|c| c.set(Some(path)));
    let r = f();
    FORCED_PATH.with(|c| c.set(None));
    r
}

/// Images per group on the grouped path: about `GROUP_COLS` entries, but at least two groups per
/// thread when the batch allows, so both cores get work.
fn images_per_group(n: usize, entries_per_image: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_cache = (GROUP_COLS / entries_per_image.max(1)).max(1);
    by_cache.min(n.div_ceil(2 * threads)).max(1)
}

struct Conv2dOp {
    win: Window,
    act: Option<Unary>,
    precision: Precision,
    /// Keep the im2col matrix for the backward pass (training on the batch path).
    save: bool,
    cols: Mutex<Option<Tensor>>,
}

impl Conv2dOp {
    fn run<T: Elem>(&self, x: &[T], w: &[T], b: &[T], n: usize, c: usize) -> Result<Vec<T>> {
        let f = b.len();
        let Plan { unfold, rows, k, image, group: g } = Plan::new(self.win, c, n);
        let (path, p) = (Path::of(&self.win, c, f, n), self.precision);
        if path == Path::Grouped {
            // SAFETY: the groups partition the output and each GEMM writes its whole group.
            let mut out = uninit(n * rows * f, |_: *mut T| ());
            out.par_chunks_mut(g * rows * f).zip(x.par_chunks(g * image)).for_each(|(out, imgs)| {
                let nb = imgs.len() / image;
                let mut cols = unfold.buffer(nb * unfold.entries_per_image());
                unfold.images(imgs, &mut cols);
                // SAFETY: cols is (nb*rows x k), w (k x f), out (nb*rows x f), all distinct.
                unsafe { gemm_in(p, out.as_mut_ptr(), (&cols, Order::Plain), (w, Order::Plain), (nb * rows, k, f), None, Threads::One) };
                BiasAct(self.act).apply_rows(out, b);
            });
            return Ok(out);
        }
        if path == Path::Winograd {
            let u = winograd::kernel_transform(w, c, f);
            let mut out = if self.save {
                let (out, tiles) = winograd::conv_keeping_tiles(x, n, self.win, c, f, &u, p);
                let tile_rows = tiles.len() / c;
                *self.cols.lock().unwrap_or_else(|e| e.into_inner()) = Some(Tensor::from_vec(tiles, (tile_rows, c), &Device::Cpu)?);
                out
            } else {
                winograd::conv(x, n, self.win, c, f, &u, p)
            };
            BiasAct(self.act).apply_in_place(&mut out, b);
            return Ok(out);
        }
        if self.save {
            let cols = unfold.run(x, n);
            let out = linear::forward(p, &cols, w, b, n * rows, k, self.act)?;
            *self.cols.lock().unwrap_or_else(|e| e.into_inner()) = Some(Tensor::from_vec(cols, (n * rows, k), &Device::Cpu)?);
            return Ok(out);
        }
        // Inference keeps nothing for a backward pass, so it unfolds a few images at a time: a
        // predict batch of 256 would otherwise build a huge matrix.
        let per_chunk = (INFERENCE_COLS / (rows * k).max(1)).clamp(1, n.max(1));
        // SAFETY: the chunks partition the output and each GEMM writes its whole chunk (on an
        // error the buffer is dropped unread).
        let mut out = uninit(n * rows * f, |_: *mut T| ());
        for (imgs, dst) in x.chunks(per_chunk * image).zip(out.chunks_mut(per_chunk * rows * f)) {
            let nb = imgs.len() / image;
            linear::forward_into(p, &unfold.run(imgs, nb), w, b, nb * rows, k, self.act, dst)?;
        }
        Ok(out)
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "kandle-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let &[n, h, w, c] = l1.dims() else { candle_core::bail!("conv2d expects NHWC input") };
        let f = l3.shape().elem_count();
        if (h, w) != (self.win.in_h, self.win.in_w) || l2.dims() != [self.win.kh, self.win.kw, c, f] {
            candle_core::bail!("conv2d: input {:?} / kernel {:?} do not match the layer", l1.dims(), l2.dims());
        }
        let out = float_map!(self.name(), [x = (s1, l1), k = (s2, l2), b = (s3, l3)], self.run(x, k, b, n, c)?);
        Ok((out, Shape::from((n, self.win.out_h, self.win.out_w, f))))
    }
}

/// Sizes of the grouped path for a batch of `n` images.
struct Plan {
    unfold: Im2Col,
    /// Output positions per image (rows of its im2col matrix) and the matrix's width.
    rows: usize,
    k: usize,
    /// Input entries per image, and images per group.
    image: usize,
    group: usize,
}

impl Plan {
    fn new(win: Window, c: usize, n: usize) -> Self {
        let unfold = Im2Col { win, c };
        let group = images_per_group(n, unfold.entries_per_image());
        Plan { unfold, rows: win.out_h * win.out_w, k: win.kh * win.kw * c, image: win.in_h * win.in_w * c, group }
    }
}

/// The input gradient on the grouped path: per image group, `dcols = dpre @ kernelᵀ` into a
/// cache-sized buffer, folded straight back into the group's images.
struct InputGrad {
    win: Window,
    c: usize,
    precision: Precision,
}

impl InputGrad {
    fn run<T: Elem>(&self, dpre: &[T], w: &[T], n: usize, f: usize) -> Vec<T> {
        let Plan { rows, k, image, group: g, .. } = Plan::new(self.win, self.c, n);
        let fold = Col2Im { win: self.win, c: self.c };
        let mut dx = vec![T::zero(); n * image];
        dx.par_chunks_mut(g * image).zip(dpre.par_chunks(g * rows * f)).for_each(|(dx, dpre)| {
            let nb = dx.len() / image;
            // SAFETY: dpre is (nb*rows x f), w stored (k x f) read transposed, dcols (nb*rows x k).
            let dcols = uninit(nb * rows * k, |dst| unsafe {
                gemm_in(self.precision, dst, (dpre, Order::Plain), (w, Order::Transposed), (nb * rows, f, k), None, Threads::One)
            });
            for (cols, img) in dcols.chunks_exact(rows * k).zip(dx.chunks_exact_mut(image)) {
                fold.image(cols, img);
            }
        });
        dx
    }
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "kandle-conv2d-input-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[n, _, _, f] = l1.dims() else { candle_core::bail!("conv2d input grad expects NHWC") };
        let out = float_map!(self.name(), [a = (s1, l1), b = (s2, l2)], self.run(a, b, n, f));
        Ok((out, Shape::from((n, self.win.in_h, self.win.in_w, self.c))))
    }
}

/// The kernel gradient on the grouped path: `Σ colsᵀ @ dpre` over image groups, each group unfolded
/// again into a cache-sized buffer; one partial sum per task, added up at the end (the kernel is
/// small on this path).
struct KernelGrad {
    win: Window,
    c: usize,
    precision: Precision,
}

impl KernelGrad {
    fn run<T: Elem>(&self, x: &[T], dpre: &[T], n: usize, f: usize) -> Vec<T> {
        let Plan { unfold, rows, k, image, group: g } = Plan::new(self.win, self.c, n);
        x.par_chunks(g * image)
            .zip(dpre.par_chunks(g * rows * f))
            .fold(
                || vec![T::zero(); k * f],
                |mut acc, (imgs, dpre)| {
                    let nb = imgs.len() / image;
                    let mut cols = unfold.buffer(nb * unfold.entries_per_image());
                    unfold.images(imgs, &mut cols);
                    // SAFETY: cols (nb*rows x k) read transposed, dpre (nb*rows x f), acc (k x f).
                    unsafe {
                        gemm_in(self.precision, acc.as_mut_ptr(), (&cols, Order::Transposed), (dpre, Order::Plain), (k, nb * rows, f), Some((T::one(), T::one())), Threads::One)
                    };
                    acc
                },
            )
            .reduce(|| vec![T::zero(); k * f], super::add_partials)
    }
}

impl CustomOp2 for KernelGrad {
    fn name(&self) -> &'static str {
        "kandle-conv2d-kernel-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = l1.dims()[0];
        let f = *l2.dims().last().unwrap_or(&1);
        let out = float_map!(self.name(), [a = (s1, l1), b = (s2, l2)], self.run(a, b, n, f));
        Ok((out, Shape::from((self.win.kh, self.win.kw, self.c, f))))
    }
}

/// The kernel gradient (the op's output) and input gradient (left in `dx` when `input_grad`) on
/// the Winograd path, from the output gradient, the transformed input tiles and the kernel.
struct WinogradBackward {
    win: Window,
    c: usize,
    input_grad: bool,
    precision: Precision,
    dx: Mutex<Option<Tensor>>,
}

impl CustomOp3 for WinogradBackward {
    fn name(&self) -> &'static str {
        "kandle-conv2d-winograd-backward"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[n, _, _, f] = l1.dims() else { candle_core::bail!("conv2d gradient expects NHWC") };
        let (win, c) = (self.win, self.c);
        if l2.dims() != [16 * n * winograd::tiles_per_image(win), c] || l3.dims() != [3, 3, c, f] {
            candle_core::bail!("conv2d gradient: tiles {:?} / kernel {:?} do not match the layer", l2.dims(), l3.dims());
        }
        let dx;
        let dw = float_map!(self.name(), [dpre = (s1, l1), tiles = (s2, l2), w = (s3, l3)], {
            let (dw, d) = winograd::backward(dpre, tiles, n, win, c, f, &winograd::kernel_transform(w, c, f), self.input_grad, self.precision);
            dx = d.map(|d| Tensor::from_vec(d, (n, win.in_h, win.in_w, c), &Device::Cpu)).transpose()?;
            dw
        });
        *self.dx.lock().unwrap_or_else(|e| e.into_inner()) = dx;
        Ok((dw, Shape::from((3, 3, c, f))))
    }
}

/// Convolves an NHWC batch with a Keras kernel `(kh, kw, in, out)`, adds the bias and applies the
/// element-wise activation. With `train` on the batch path it also returns the im2col matrix
/// `(n*oh*ow, kh*kw*in)` for [`conv2d_backward`].
pub fn conv2d(x: &Tensor, kernel: &Tensor, bias: &Tensor, win: Window, act: Option<Unary>, train: bool, precision: Precision) -> Result<(Tensor, Option<Tensor>)> {
    let op = Conv2dOp { win, act, precision, save: train, cols: Mutex::new(None) };
    let y = x.contiguous()?.apply_op3_no_bwd(&kernel.contiguous()?, &bias.contiguous()?, &op)?;
    Ok((y, op.cols.into_inner().unwrap_or_else(|e| e.into_inner())))
}

/// `(dx, dkernel, dbias)` from the input `x`, the im2col matrix `cols` when the forward pass kept
/// one, and the gradient `dpre` with respect to the pre-activation output `(n, oh, ow, f)`; `dx`
/// only when `input_grad`. On the batch path `dkernel = colsᵀ @ dpre` stays a product.
pub fn conv2d_backward(
    x: &Tensor,
    cols: Option<&Tensor>,
    kernel: &Tensor,
    dpre: &Tensor,
    win: Window,
    input_grad: bool,
    precision: Precision,
) -> Result<(Option<Tensor>, Grad, Tensor)> {
    let &[kh, kw, c, f] = kernel.dims() else { candle_core::bail!("conv2d: kernel must be 4-D") };
    let Some(cols) = cols else {
        let dpre = dpre.contiguous()?;
        let db = dpre.reshape((dpre.elem_count() / f, f))?.apply_op1_no_bwd(&linear::ColumnSum)?;
        let dx = if input_grad { Some(dpre.apply_op2_no_bwd(&kernel.contiguous()?, &InputGrad { win, c, precision })?) } else { None };
        let dw = x.contiguous()?.apply_op2_no_bwd(&dpre, &KernelGrad { win, c, precision })?;
        return Ok((dx, Grad::Value(dw), db));
    };
    if Path::of(&win, c, f, dpre.dim(0)?) == Path::Winograd {
        let dpre = dpre.contiguous()?;
        let db = dpre.reshape((dpre.elem_count() / f, f))?.apply_op1_no_bwd(&linear::ColumnSum)?;
        let op = WinogradBackward { win, c, input_grad, precision, dx: Mutex::new(None) };
        let dw = dpre.apply_op3_no_bwd(cols, &kernel.contiguous()?, &op)?;
        return Ok((op.dx.into_inner().unwrap_or_else(|e| e.into_inner()), Grad::Value(dw), db));
    }
    let m = dpre.elem_count() / f;
    let (dcols, (lhs, rhs), db) = linear::backward(cols, &kernel.reshape((kh * kw * c, f))?, &dpre.reshape((m, f))?, input_grad, precision)?;
    let dx = dcols.map(|d| d.apply_op1_no_bwd(&Col2Im { win, c })).transpose()?;
    Ok((dx, Grad::Product { lhs, rhs, precision }, db))
}
