//! 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, 2016):
//! each 2x2 block of outputs comes from a 4x4 input tile with 16 multiplications per channel pair
//! instead of 36, as 16 independent GEMMs `V[ξ] (tiles x in) @ U[ξ] (in x out)` between transformed
//! input tiles `V = Bᵀ d B` and transformed kernels `U = G g Gᵀ`, followed by `Y = Aᵀ M A` per tile.
//! It serves the forward pass of the large convolutions, where the GEMMs are most of the work, and
//! both gradients as that computation's exact adjoint: the input gradient through the same 16
//! GEMMs against the transposed `U[ξ]` with the transforms run backwards, the kernel gradient as
//! `Gᵀ (V[ξ]ᵀ @ (A dY Aᵀ)[ξ]) G` from the input tiles kept by the training forward pass.

use super::bf16::Precision;
use super::linear::{gemm_in, uninit, Order, Threads};
use super::{Disjoint, Elem, Window};
use rayon::prelude::*;

/// Input and output channels from which the transforms' memory traffic pays for itself (measured
/// on the tutorial CNN's layers).
const MIN_CHANNELS: usize = 64;
/// Tiles over which the kernel's transform (16/9 of the kernel, made on every call) pays off
/// (measured: a single image's prediction ran 1.7x slower this way, a batch of 32 faster).
const MIN_TILES: usize = 128;
/// Transformed entries (input tiles plus GEMM outputs) per chunk of images: 16 MB of f32.
const CHUNK_ENTRIES: usize = 4 << 20;

/// Whether the window is one this method computes: a 3x3 kernel moved one pixel at a time.
pub(crate) fn fits(win: &Window) -> bool {
    (win.kh, win.kw, win.sh, win.sw) == (3, 3, 1, 1)
}

/// Whether a convolution of `n` images with `c` input channels and `f` filters runs faster this way.
pub(crate) fn pays(win: &Window, c: usize, f: usize, n: usize) -> bool {
    fits(win) && c >= MIN_CHANNELS && f >= MIN_CHANNELS && win.out_h >= 4 && win.out_w >= 4 && n * tiles_per_image(*win) >= MIN_TILES
}

/// Channels handled together by the transforms: one AVX-512 vector of f32 per lane-wise step.
const LANES: usize = 16;
type Lanes<T> = [T; LANES];

fn lanes<T>(f: impl FnMut(usize) -> T) -> Lanes<T> {
    std::array::from_fn(f)
}

/// `w` entries of `src` from `at` (fewer than `LANES` at the end; the rest zeros). Full lanes
/// take a fixed-size copy, which compiles to vector loads instead of a `memcpy` call.
#[inline(always)]
fn load<T: Elem>(src: &[T], at: usize, w: usize) -> Lanes<T> {
    if w == LANES {
        return src[at..at + LANES].try_into().expect("LANES entries");
    }
    let mut v = [T::zero(); LANES];
    v[..w].copy_from_slice(&src[at..at + w]);
    v
}

/// The first `w` lanes of `v` into the start of `dst`.
#[inline(always)]
fn put<T: Elem>(dst: &mut [T], v: &Lanes<T>, w: usize) {
    match w {
        LANES => dst[..LANES].copy_from_slice(v),
        _ => dst[..w].copy_from_slice(&v[..w]),
    }
}

/// # Safety
/// `dst..dst + w` must be valid for writes and written by no other task.
#[inline(always)]
unsafe fn store<T: Elem>(dst: *mut T, v: &Lanes<T>, w: usize) {
    if w == LANES {
        unsafe { dst.cast::<Lanes<T>>().write_unaligned(*v) };
    } else {
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), dst, w) };
    }
}

/// G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]] applied to three rows (or columns).
fn g_rows<T: Elem>(t0: &Lanes<T>, t1: &Lanes<T>, t2: &Lanes<T>) -> [Lanes<T>; 4] {
    let half = T::from(0.5).unwrap();
    [*t0, lanes(|l| half * (t0[l] + t1[l] + t2[l])), lanes(|l| half * (t0[l] - t1[l] + t2[l])), *t2]
}

/// Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] applied to four rows.
fn bt_rows<T: Elem>(d0: &Lanes<T>, d1: &Lanes<T>, d2: &Lanes<T>, d3: &Lanes<T>) -> [Lanes<T>; 4] {
    [lanes(|l| d0[l] - d2[l]), lanes(|l| d1[l] + d2[l]), lanes(|l| d2[l] - d1[l]), lanes(|l| d1[l] - d3[l])]
}

/// Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]] applied to four rows.
fn at_rows<T: Elem>(m0: &Lanes<T>, m1: &Lanes<T>, m2: &Lanes<T>, m3: &Lanes<T>) -> [Lanes<T>; 2] {
    [lanes(|l| m0[l] + m1[l] + m2[l]), lanes(|l| m1[l] - m2[l] - m3[l])]
}

/// The 16 transformed kernels `U[ξ] = G g Gᵀ` of a Keras kernel `(3, 3, c, f)`, each `(c x f)`.
pub(crate) fn kernel_transform<T: Elem>(g: &[T], c: usize, f: usize) -> Vec<T> {
    let cf = c * f;
    // SAFETY: every (ξ, entry) is written below.
    let mut u = uninit(16 * cf, |_: *mut T| ());
    let out = Disjoint(u.as_mut_ptr());
    for_each_lanes(cf, |e, w| {
        let tap: [Lanes<T>; 9] = std::array::from_fn(|ij| load(g, ij * cf + e, w));
        // G g column by column, then each row of that times Gᵀ.
        let columns: [[Lanes<T>; 4]; 3] = std::array::from_fn(|j| g_rows(&tap[j], &tap[3 + j], &tap[6 + j]));
        for a in 0..4 {
            for (b, v) in g_rows(&columns[0][a], &columns[1][a], &columns[2][a]).iter().enumerate() {
                // SAFETY: entries `e..e+w` of slice ξ = 4a + b are this call's alone.
                unsafe { store(out.at((a * 4 + b) * cf + e), v, w) };
            }
        }
    });
    u
}

/// Runs `f(e, w)` for every group of `w <= LANES` consecutive entries `e..e+w` of `0..len`, in
/// parallel blocks: the kernel transforms, which treat every (input, output) channel pair alike.
fn for_each_lanes(len: usize, f: impl Fn(usize, usize) + Sync) {
    const BLOCK: usize = 4096;
    (0..len.div_ceil(BLOCK)).into_par_iter().for_each(|block| {
        let end = len.min((block + 1) * BLOCK);
        for e in (block * BLOCK..end).step_by(LANES) {
            f(e, LANES.min(end - e));
        }
    });
}

/// The correlation `y[p, q] = Σ_ij x[p + i - pad_top, q + j - pad_left] · g[i, j]` of an NHWC batch
/// `x (n, in_h, in_w, c)` (zeros outside it) over the window's `out_h x out_w` outputs, `f` output
/// channels, from the kernel's transform `u` (see [`kernel_transform`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv<T: Elem>(x: &[T], n: usize, win: Window, c: usize, f: usize, u: &[T], p: Precision) -> Vec<T> {
    let (image_in, image_out) = (win.in_h * win.in_w * c, win.out_h * win.out_w * f);
    let images = chunk(win, n, c, f);
    // SAFETY: every chunk's output transform writes every output of its images.
    let mut y = uninit(n * image_out, |_: *mut T| ());
    for (x, y) in x.chunks(images * image_in).zip(y.chunks_mut(images * image_out)) {
        let tiles = (x.len() / image_in) * tiles_per_image(win);
        let m = products(&input_transform(x, win, c, tiles), u, (tiles, c, f), Order::Plain, p);
        output_transform(&m, win, f, tiles, y);
    }
    y
}

/// [`conv`] for training: the whole batch at once, also returning the transformed input tiles
/// `V (16 * tiles, c)` that the kernel gradient multiplies (smaller than the im2col matrix: 16/9
/// of a tile's 4 outputs' worth of inputs instead of 9 per output).
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_keeping_tiles<T: Elem>(x: &[T], n: usize, win: Window, c: usize, f: usize, u: &[T], p: Precision) -> (Vec<T>, Vec<T>) {
    let tiles = n * tiles_per_image(win);
    let v = input_transform(x, win, c, tiles);
    let m = products(&v, u, (tiles, c, f), Order::Plain, p);
    // SAFETY: the output transform writes every output.
    let mut y = uninit(n * win.out_h * win.out_w * f, |_: *mut T| ());
    output_transform(&m, win, f, tiles, &mut y);
    (y, v)
}

/// The kernel gradient `(3, 3, c, f)` and, with `input_grad`, the input gradient of [`conv`], from
/// the output gradient `dy` and the tiles `v` kept by [`conv_keeping_tiles`]: both share the
/// transformed output gradient; the kernel's is `Gᵀ dU G` with `dU[ξ] = V[ξ]ᵀ @ (A dY Aᵀ)[ξ]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<T: Elem>(dy: &[T], v: &[T], n: usize, win: Window, c: usize, f: usize, u: &[T], input_grad: bool, p: Precision) -> (Vec<T>, Option<Vec<T>>) {
    let tiles = n * tiles_per_image(win);
    let dm = gradient_transform(dy, win, f, tiles);
    let dx = input_grad.then(|| {
        let mut dx = vec![T::zero(); n * win.in_h * win.in_w * c];
        scatter_transform(&products(&dm, u, (tiles, f, c), Order::Transposed, p), win, c, tiles, &mut dx);
        dx
    });
    // SAFETY: the GEMMs write disjoint (c x f) slices of `du`, each completely.
    let mut du = uninit(16 * c * f, |_: *mut T| ());
    du.par_chunks_mut(c * f).enumerate().for_each(|(xi, du)| {
        let (v, dm) = (&v[xi * tiles * c..(xi + 1) * tiles * c], &dm[xi * tiles * f..(xi + 1) * tiles * f]);
        // SAFETY: v stored (tiles x c) read transposed, dm (tiles x f), du (c x f), all distinct.
        unsafe { gemm_in(p, du.as_mut_ptr(), (v, Order::Transposed), (dm, Order::Plain), (c, tiles, f), None, Threads::One) };
    });
    (kernel_transform_adjoint(&du, c, f), dx)
}

/// `dg = Gᵀ dU G` for the 16 `(c x f)` slices of `du`: the gradient of [`kernel_transform`]'s input.
fn kernel_transform_adjoint<T: Elem>(du: &[T], c: usize, f: usize) -> Vec<T> {
    let cf = c * f;
    let half = T::from(0.5).unwrap();
    // Gᵀ = [[1, ½, ½, 0], [0, ½, -½, 0], [0, ½, ½, 1]] applied to four rows.
    let gt_rows = |u0: &Lanes<T>, u1: &Lanes<T>, u2: &Lanes<T>, u3: &Lanes<T>| -> [Lanes<T>; 3] {
        [lanes(|l| u0[l] + half * (u1[l] + u2[l])), lanes(|l| half * (u1[l] - u2[l])), lanes(|l| half * (u1[l] + u2[l]) + u3[l])]
    };
    // SAFETY: every (tap, entry) is written below.
    let mut g = uninit(9 * cf, |_: *mut T| ());
    let out = Disjoint(g.as_mut_ptr());
    for_each_lanes(cf, |e, w| {
        let du: [Lanes<T>; 16] = std::array::from_fn(|ab| load(du, ab * cf + e, w));
        let columns: [[Lanes<T>; 3]; 4] = std::array::from_fn(|b| gt_rows(&du[b], &du[4 + b], &du[8 + b], &du[12 + b]));
        for i in 0..3 {
            for (j, v) in gt_rows(&columns[0][i], &columns[1][i], &columns[2][i], &columns[3][i]).iter().enumerate() {
                // SAFETY: entries `e..e+w` of tap (i, j) are this call's alone.
                unsafe { store(out.at((i * 3 + j) * cf + e), v, w) };
            }
        }
    });
    g
}

/// Rows and columns of 2x2 output tiles per image (the last one partial at an odd edge).
fn tile_grid(win: Window) -> (usize, usize) {
    (win.out_h.div_ceil(2), win.out_w.div_ceil(2))
}

pub(crate) fn tiles_per_image(win: Window) -> usize {
    let (tiles_h, tiles_w) = tile_grid(win);
    tiles_h * tiles_w
}

/// Images per chunk, so that a chunk's transformed tiles and products stay near `CHUNK_ENTRIES`.
fn chunk(win: Window, n: usize, c: usize, f: usize) -> usize {
    (CHUNK_ENTRIES / (16 * tiles_per_image(win) * (c + f)).max(1)).clamp(1, n.max(1))
}

/// The 16 GEMMs `M[ξ] = V[ξ] (tiles x k) @ op(U[ξ]) (k x width)`, one task each; `U[ξ]` is stored
/// `(k x width)` when `Plain`, `(width x k)` when `Transposed`.
fn products<T: Elem>(v: &[T], u: &[T], (tiles, k, width): (usize, usize, usize), order: Order, p: Precision) -> Vec<T> {
    // SAFETY: the GEMMs write disjoint (tiles x width) slices of `m`, each completely.
    let mut m = uninit(16 * tiles * width, |_: *mut T| ());
    m.par_chunks_mut(tiles * width).enumerate().for_each(|(xi, m)| {
        let v = &v[xi * tiles * k..(xi + 1) * tiles * k];
        let u = &u[xi * k * width..(xi + 1) * k * width];
        // SAFETY: v is (tiles x k), u holds k * width entries, m (tiles x width), all distinct.
        unsafe { gemm_in(p, m.as_mut_ptr(), (v, Order::Plain), (u, order), (tiles, k, width), None, Threads::One) };
    });
    m
}

/// `V[ξ] (tiles x c)` for every 4x4 input tile of the images in `x`, ξ-major: each of the 16
/// slices is one GEMM's left operand.
fn input_transform<T: Elem>(x: &[T], win: Window, c: usize, tiles: usize) -> Vec<T> {
    let (tiles_h, tiles_w) = tile_grid(win);
    let image = win.in_h * win.in_w * c;
    let zeros = vec![T::zero(); c];
    // SAFETY: every (ξ, tile, channel) entry is written below.
    let mut v = uninit(16 * tiles * c, |_: *mut T| ());
    let out = Disjoint(v.as_mut_ptr());
    (0..tiles).into_par_iter().for_each(|t| {
        let (img, th, tw) = (t / (tiles_h * tiles_w), t / tiles_w % tiles_h, t % tiles_w);
        let img = &x[img * image..(img + 1) * image];
        // The tile's 16 pixels (all channels), zeros where it leaves the input.
        let d: [&[T]; 16] = std::array::from_fn(|rs| {
            let (p, q) = ((2 * th + rs / 4).checked_sub(win.pad_top), (2 * tw + rs % 4).checked_sub(win.pad_left));
            match (p, q) {
                (Some(p), Some(q)) if p < win.in_h && q < win.in_w => &img[(p * win.in_w + q) * c..][..c],
                _ => &zeros[..],
            }
        });
        for e in (0..c).step_by(LANES) {
            let w = LANES.min(c - e);
            let d: [Lanes<T>; 16] = std::array::from_fn(|rs| load(d[rs], e, w));
            // Bᵀ d column by column, then each row of that times B.
            let columns: [[Lanes<T>; 4]; 4] = std::array::from_fn(|s| bt_rows(&d[s], &d[4 + s], &d[8 + s], &d[12 + s]));
            for r in 0..4 {
                for (s, v) in bt_rows(&columns[0][r], &columns[1][r], &columns[2][r], &columns[3][r]).iter().enumerate() {
                    // SAFETY: (ξ, t, e..e+w) belongs to this task's tile `t` alone.
                    unsafe { store(out.at(((r * 4 + s) * tiles + t) * c + e), v, w) };
                }
            }
        }
    });
    v
}

/// `Y = Aᵀ M A` for every tile, into the NHWC outputs `y` of the chunk's images; Aᵀ = [[1, 1, 1, 0],
/// [0, 1, -1, -1]]. A tile's second row or column is dropped where it falls outside an odd output.
fn output_transform<T: Elem>(m: &[T], win: Window, f: usize, tiles: usize, y: &mut [T]) {
    let (tiles_h, tiles_w) = tile_grid(win);
    let image = win.out_h * win.out_w * f;
    y.par_chunks_mut(image).enumerate().for_each(|(img, y)| {
        for th in 0..tiles_h {
            for tw in 0..tiles_w {
                let t = (img * tiles_h + th) * tiles_w + tw;
                let m: [&[T]; 16] = std::array::from_fn(|rs| &m[(rs * tiles + t) * f..][..f]);
                let (p, q) = (2 * th, 2 * tw);
                let (two_rows, two_cols) = (p + 1 < win.out_h, q + 1 < win.out_w);
                for e in (0..f).step_by(LANES) {
                    let w = LANES.min(f - e);
                    let m: [Lanes<T>; 16] = std::array::from_fn(|rs| load(m[rs], e, w));
                    let columns: [[Lanes<T>; 2]; 4] = std::array::from_fn(|s| at_rows(&m[s], &m[4 + s], &m[8 + s], &m[12 + s]));
                    for a in 0..1 + two_rows as usize {
                        let [y0, y1] = at_rows(&columns[0][a], &columns[1][a], &columns[2][a], &columns[3][a]);
                        let at = ((p + a) * win.out_w + q) * f + e;
                        put(&mut y[at..], &y0, w);
                        if two_cols {
                            put(&mut y[at + f..], &y1, w);
                        }
                    }
                }
            }
        }
    });
}

/// `A dY Aᵀ` (A = [[1, 0], [1, 1], [1, -1], [0, -1]]) for every 2x2 block of the output gradient
/// (zeros past an odd edge), ξ-major like [`input_transform`]'s tiles.
fn gradient_transform<T: Elem>(dy: &[T], win: Window, f: usize, tiles: usize) -> Vec<T> {
    let (tiles_h, tiles_w) = tile_grid(win);
    let image = win.out_h * win.out_w * f;
    let zeros = vec![T::zero(); f];
    let a_rows = |y0: &Lanes<T>, y1: &Lanes<T>| -> [Lanes<T>; 4] { [*y0, lanes(|l| y0[l] + y1[l]), lanes(|l| y0[l] - y1[l]), lanes(|l| -y1[l])] };
    // SAFETY: every (ξ, tile, channel) entry is written below.
    let mut v = uninit(16 * tiles * f, |_: *mut T| ());
    let out = Disjoint(v.as_mut_ptr());
    (0..tiles).into_par_iter().for_each(|t| {
        let (img, th, tw) = (t / (tiles_h * tiles_w), t / tiles_w % tiles_h, t % tiles_w);
        let img = &dy[img * image..(img + 1) * image];
        let block: [&[T]; 4] = std::array::from_fn(|ab| {
            let (p, q) = (2 * th + ab / 2, 2 * tw + ab % 2);
            if p < win.out_h && q < win.out_w { &img[(p * win.out_w + q) * f..][..f] } else { &zeros[..] }
        });
        for e in (0..f).step_by(LANES) {
            let w = LANES.min(f - e);
            let y: [Lanes<T>; 4] = std::array::from_fn(|ab| load(block[ab], e, w));
            // dY Aᵀ row by row, then A times each column of that.
            let rows = [a_rows(&y[0], &y[1]), a_rows(&y[2], &y[3])];
            for s in 0..4 {
                for (r, v) in a_rows(&rows[0][s], &rows[1][s]).iter().enumerate() {
                    // SAFETY: (ξ, t, e..e+w) belongs to this task's tile `t` alone.
                    unsafe { store(out.at(((r * 4 + s) * tiles + t) * f + e), v, w) };
                }
            }
        }
    });
    v
}

/// `B M Bᵀ` (B = [[1, 0, 0, 0], [0, 1, -1, 1], [-1, 1, 1, 0], [0, 0, 0, -1]]) for every tile, added
/// into the 4x4 input patch it came from (patches overlap; padding positions are dropped). One task
/// per image, so overlapping patches never race.
fn scatter_transform<T: Elem>(m: &[T], win: Window, c: usize, tiles: usize, dx: &mut [T]) {
    let (tiles_h, tiles_w) = tile_grid(win);
    let b_rows = |m0: &Lanes<T>, m1: &Lanes<T>, m2: &Lanes<T>, m3: &Lanes<T>| -> [Lanes<T>; 4] {
        [*m0, lanes(|l| m1[l] - m2[l] + m3[l]), lanes(|l| m1[l] + m2[l] - m0[l]), lanes(|l| -m3[l])]
    };
    dx.par_chunks_mut(win.in_h * win.in_w * c).enumerate().for_each(|(img, dx)| {
        for th in 0..tiles_h {
            for tw in 0..tiles_w {
                let t = (img * tiles_h + th) * tiles_w + tw;
                let m: [&[T]; 16] = std::array::from_fn(|rs| &m[(rs * tiles + t) * c..][..c]);
                for e in (0..c).step_by(LANES) {
                    let w = LANES.min(c - e);
                    let m: [Lanes<T>; 16] = std::array::from_fn(|rs| load(m[rs], e, w));
                    // M Bᵀ row by row, then B times each column of that.
                    let rows: [[Lanes<T>; 4]; 4] = std::array::from_fn(|i| b_rows(&m[4 * i], &m[4 * i + 1], &m[4 * i + 2], &m[4 * i + 3]));
                    for s in 0..4 {
                        let Some(q) = (2 * tw + s).checked_sub(win.pad_left).filter(|&q| q < win.in_w) else { continue };
                        for (r, d) in b_rows(&rows[0][s], &rows[1][s], &rows[2][s], &rows[3][s]).iter().enumerate() {
                            let Some(p) = (2 * th + r).checked_sub(win.pad_top).filter(|&p| p < win.in_h) else { continue };
                            let at = (p * win.in_w + q) * c + e;
                            match w {
                                LANES => dx[at..at + LANES].iter_mut().zip(d).for_each(|(x, d)| *x += *d),
                                _ => dx[at..at + w].iter_mut().zip(d).for_each(|(x, d)| *x += *d),
                            }
                        }
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(len: usize, seed: usize) -> Vec<f64> {
        (0..len).map(|i| (((i + seed) * 7919) % 1009) as f64 / 504.5 - 1.0).collect()
    }

    fn window(in_hw: (usize, usize), pad: usize) -> Window {
        let out = |size: usize| size + 2 * pad - 2;
        Window { in_h: in_hw.0, in_w: in_hw.1, kh: 3, kw: 3, sh: 1, sw: 1, pad_top: pad, pad_left: pad, out_h: out(in_hw.0), out_w: out(in_hw.1) }
    }

    /// Every product of the convolution by its definition, as indices `(x, y, g)`: input entry `x`
    /// times kernel entry `g` adds to output entry `y`. The forward pass and both gradients follow.
    fn products(n: usize, win: Window, c: usize, f: usize, mut visit: impl FnMut(usize, usize, usize)) {
        for img in 0..n {
            for p in 0..win.out_h {
                for q in 0..win.out_w {
                    for (i, j) in (0..3).flat_map(|i| (0..3).map(move |j| (i, j))) {
                        let (Some(r), Some(s)) = ((p + i).checked_sub(win.pad_top), (q + j).checked_sub(win.pad_left)) else { continue };
                        if r >= win.in_h || s >= win.in_w {
                            continue;
                        }
                        for ci in 0..c {
                            for o in 0..f {
                                visit(((img * win.in_h + r) * win.in_w + s) * c + ci, ((img * win.out_h + p) * win.out_w + q) * f + o, ((i * 3 + j) * c + ci) * f + o);
                            }
                        }
                    }
                }
            }
        }
    }

    fn direct(x: &[f64], g: &[f64], n: usize, win: Window, c: usize, f: usize) -> Vec<f64> {
        let mut y = vec![0.0; n * win.out_h * win.out_w * f];
        products(n, win, c, f, |xi, yi, gi| y[yi] += x[xi] * g[gi]);
        y
    }

    fn direct_input_grad(dy: &[f64], g: &[f64], n: usize, win: Window, c: usize, f: usize) -> Vec<f64> {
        let mut dx = vec![0.0; n * win.in_h * win.in_w * c];
        products(n, win, c, f, |xi, yi, gi| dx[xi] += dy[yi] * g[gi]);
        dx
    }

    fn assert_close(got: &[f64], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (k, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= 1e-9 * (1.0 + b.abs()), "{what} at {k}: {a} vs {b}");
        }
    }

    #[test]
    fn forward_and_input_gradient_match_the_definitions_on_even_odd_and_padded_windows() {
        // Odd outputs (a tile's second row/column dropped), 'same' padding, a single tile, 3 images.
        for (in_hw, pad) in [((6, 6), 0), ((7, 5), 0), ((5, 6), 1), ((3, 3), 0), ((4, 3), 1)] {
            let (n, c, f) = (3, 3, 4);
            let win = window(in_hw, pad);
            let x = numbers(n * in_hw.0 * in_hw.1 * c, 1);
            let g = numbers(9 * c * f, 2);
            let u = kernel_transform(&g, c, f);
            let what = format!("input {in_hw:?} pad {pad}");
            assert_close(&conv(&x, n, win, c, f, &u, Precision::Full), &direct(&x, &g, n, win, c, f), &format!("forward, {what}"));
            let dy = numbers(n * win.out_h * win.out_w * f, 3);
            let (_, tiles) = conv_keeping_tiles(&x, n, win, c, f, &u, Precision::Full);
            let dx = backward(&dy, &tiles, n, win, c, f, &u, true, Precision::Full).1.unwrap();
            assert_close(&dx, &direct_input_grad(&dy, &g, n, win, c, f), &format!("input gradient, {what}"));
        }
    }

    fn direct_kernel_grad(x: &[f64], dy: &[f64], n: usize, win: Window, c: usize, f: usize) -> Vec<f64> {
        let mut dg = vec![0.0; 9 * c * f];
        products(n, win, c, f, |xi, yi, gi| dg[gi] += x[xi] * dy[yi]);
        dg
    }

    #[test]
    fn training_pass_matches_the_definitions() {
        for (in_hw, pad) in [((6, 6), 0), ((7, 5), 0), ((5, 6), 1), ((4, 3), 1)] {
            let (n, c, f) = (2, 3, 17);
            let win = window(in_hw, pad);
            let x = numbers(n * in_hw.0 * in_hw.1 * c, 6);
            let g = numbers(9 * c * f, 7);
            let dy = numbers(n * win.out_h * win.out_w * f, 8);
            let u = kernel_transform(&g, c, f);
            let what = format!("input {in_hw:?} pad {pad}");
            let (y, tiles) = conv_keeping_tiles(&x, n, win, c, f, &u, Precision::Full);
            assert_close(&y, &direct(&x, &g, n, win, c, f), &format!("forward, {what}"));
            let (dg, dx) = backward(&dy, &tiles, n, win, c, f, &u, true, Precision::Full);
            assert_close(&dg, &direct_kernel_grad(&x, &dy, n, win, c, f), &format!("kernel gradient, {what}"));
            assert_close(&dx.unwrap(), &direct_input_grad(&dy, &g, n, win, c, f), &format!("input gradient, {what}"));
            assert!(backward(&dy, &tiles, n, win, c, f, &u, false, Precision::Full).1.is_none());
        }
    }

    #[test]
    fn images_split_into_chunks_give_the_same_result() {
        // 40 images of 18x18x64 -> 64 filters exceed one chunk's entries, so `conv` runs several.
        let (n, c, f) = (40, 64, 64);
        let win = window((18, 18), 0);
        let (image_in, image_out) = (18 * 18 * c, 16 * 16 * f);
        assert!(n * 16 * 64 * (c + f) > CHUNK_ENTRIES, "the test must span several chunks");
        let x = numbers(n * image_in, 4);
        let g: Vec<f64> = numbers(9 * c * f, 5).into_iter().map(|v| v * 0.1).collect();
        let u = kernel_transform(&g, c, f);
        let all = conv(&x, n, win, c, f, &u, Precision::Full);
        let last = conv(&x[(n - 1) * image_in..], 1, win, c, f, &u, Precision::Full);
        assert_close(&all[(n - 1) * image_out..], &last, "the last image alone and within the batch");
        assert_close(&last, &direct(&x[(n - 1) * image_in..], &g, 1, win, c, f), "the last image");
    }
}
