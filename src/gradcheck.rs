//! Finite-difference gradient checks for every layer, activation and loss, and for whole models, in
//! f64: the training backward pass against central differences of a fixed random projection.
//!
//! Each check takes a function `f` of some variables (the input and the layer's weights), forms
//! the scalar `s = sum(f() * r)` with a fixed standard normal `r`, and compares `ds/dv` from the
//! backward pass under test (a layer's `backward` given `r` as its output gradient, the loss
//! gradient the model starts from, or `Model::gradients`) with `(s(v + h) - s(v - h)) / 2h`
//! for every element of every variable. Inputs are placed away from kinks (ReLU/ELU/SELU at 0, |x| at 0,
//! max-pool ties) so that the finite difference is the derivative; the behaviour exactly at the
//! kinks, where TensorFlow picks a subgradient, is pinned by separate tests.

use crate::activations::Activation;
use crate::layers::{build, Layer, Saved};
use crate::losses::{loss_and_gradient, Loss};
use crate::model::Model;
use crate::ops::conv::{with_path, Path};
use crate::ops::im2col::{col2im, im2col};
use crate::ops::unary::{unary_backward, Unary};
use crate::optimizers::Optimizer;
use crate::ops::Window;
use crate::{rng, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use serde_json::{json, Value};
use std::sync::Mutex;

/// Finite-difference step.
const EPS: f64 = 1e-6;
/// Allowed relative difference between analytic and numeric gradients...
const RTOL: f64 = 1e-5;
/// ...plus this absolute floor (round-off of `s` divided by `2 * EPS` is ~1e-9 here; a wrong
/// gradient is off by far more).
const ATOL: f64 = 1e-7;

// ---------------------------------------------------------------------------------------------
// Data and layers
// ---------------------------------------------------------------------------------------------

fn seeded(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub(crate) fn normal(n: usize, seed: u64) -> Vec<f64> {
    let mut r = seeded(seed);
    (0..n).map(|_| r.sample(StandardNormal)).collect()
}

/// Standard normal values pushed at least `margin` away from 0 (the kink of relu/elu/selu/abs).
pub(crate) fn away_from_zero(n: usize, seed: u64, margin: f64) -> Vec<f64> {
    normal(n, seed).into_iter().map(|v| v.signum() * (margin + v.abs())).collect()
}

pub(crate) fn uniform(n: usize, lo: f64, hi: f64, seed: u64) -> Vec<f64> {
    let mut r = seeded(seed);
    (0..n).map(|_| r.random_range(lo..hi)).collect()
}

/// A shuffled arithmetic progression centred on 0: all values distinct and at least 0.1 apart
/// (far more than `EPS`), so no finite-difference step changes which input a max-pool window picks.
pub(crate) fn distinct(n: usize, seed: u64) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n).map(|i| (i as f64 - n as f64 / 2.0) * 0.1).collect();
    v.shuffle(&mut seeded(seed));
    v
}

pub(crate) fn tensor(data: Vec<f64>, shape: &[usize]) -> Tensor {
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

pub(crate) fn var(data: Vec<f64>, shape: &[usize]) -> Var {
    Var::from_tensor(&tensor(data, shape)).unwrap()
}

pub(crate) fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

/// `(batch, *per_sample)`.
pub(crate) fn batched(batch: usize, per_sample: &[usize]) -> Vec<usize> {
    std::iter::once(batch).chain(per_sample.iter().copied()).collect()
}

/// Serialises `set_seed` + weight draws: tests run in parallel and share the global generator.
pub(crate) static SEED_LOCK: Mutex<()> = Mutex::new(());

/// Builds a layer in f64 with its weights drawn right after `rng::set_seed(seed)`.
pub(crate) fn layer_with(class: &str, config: Value, input_shape: &[usize], seed: u64, dtype: DType) -> Box<dyn Layer> {
    let _guard = SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    rng::set_seed(seed);
    build(class, &config, &[input_shape.to_vec()], dtype).unwrap_or_else(|e| panic!("building {class} {config}: {e}"))
}

pub(crate) fn layer(class: &str, config: Value, input_shape: &[usize], seed: u64) -> Box<dyn Layer> {
    layer_with(class, config, input_shape, seed, DType::F64)
}

/// Keras's default bias is zeros; a random one makes the check see the bias's effect on activations.
pub(crate) fn random_bias() -> Value {
    json!({"class_name": "RandomNormal", "config": {"mean": 0.0, "stddev": 0.5}})
}

/// The variables of a layer check: the inputs, then the layer's trainable weights in Keras order.
fn with_weights<'a>(xs: &[&'a Var], l: &'a dyn Layer) -> Vec<(&'static str, &'a Var)> {
    const INPUTS: [&str; 4] = ["input 0", "input 1", "input 2", "input 3"];
    let names = l.weight_names();
    let inputs = xs.iter().enumerate().map(|(i, x)| (INPUTS[i], *x));
    inputs.chain(l.weights().into_iter().enumerate().map(|(i, w)| (names[i], w))).collect()
}

/// A layer's training backward pass given the output gradient `r`: the inputs' gradients, then
/// the weights'.
pub(crate) fn layer_backward(l: &dyn Layer, xs: &[Tensor], r: &Tensor) -> Result<Vec<Option<Tensor>>> {
    let (output, extra) = l.forward_train(xs, true)?;
    let saved = Saved { inputs: xs.to_vec(), output, activated: true, extra };
    let g = l.backward(&saved, r, &vec![true; xs.len()])?;
    let weights = g.weights.iter().zip(l.weights()).map(|(g, w)| Ok(Some(g.value(w.as_tensor())?)));
    g.inputs.into_iter().map(Ok).chain(weights).collect()
}

/// Checks a layer's training pass (`forward_train`, `backward`) on input `x`.
pub(crate) fn check_layer(what: &str, l: &dyn Layer, x: &Var) {
    check_layer_inputs(what, l, &[x]);
}

/// Checks a layer's training pass on several inputs (the merging layers).
pub(crate) fn check_layer_inputs(what: &str, l: &dyn Layer, xs: &[&Var]) {
    let vars = with_weights(xs, l);
    let tensors = || xs.iter().map(|x| x.as_tensor().clone()).collect::<Vec<_>>();
    let f = || Ok(l.forward_train(&tensors(), true)?.0);
    assert_gradients_match(what, &vars, f, |r| layer_backward(l, &tensors(), r));
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

/// Asserts that, for every variable in `vars`, the gradient of `s = sum(f() * r)` that
/// `backward(r)` returns (one entry per variable, in order; `None` means zero) matches central
/// differences of `s`, element by element. `f` must be a deterministic function of the variables'
/// current values. Also refuses a vacuous pass: every variable must receive some non-zero gradient.
pub(crate) fn assert_gradients_match(
    what: &str,
    vars: &[(&str, &Var)],
    f: impl Fn() -> Result<Tensor>,
    backward: impl FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>>,
) {
    let out = f().unwrap_or_else(|e| panic!("{what}: forward failed: {e}"));
    let r = normal(out.elem_count(), 0x5eed);
    let project = |out: &Tensor| -> f64 { values(out).iter().zip(&r).map(|(a, b)| a * b).sum() };
    let grads = backward(&tensor(r.clone(), out.dims())).unwrap_or_else(|e| panic!("{what}: backward failed: {e}"));
    assert_eq!(grads.len(), vars.len(), "{what}: one gradient per variable");

    for ((name, v), g) in vars.iter().zip(grads) {
        let n = v.elem_count();
        let analytic = match g {
            Some(g) => {
                assert_eq!(g.dims(), v.dims(), "{what}: gradient of {name} has the wrong shape");
                values(&g)
            }
            None => vec![0.0; n],
        };
        let base = values(v.as_tensor());
        let at = |x: Vec<f64>| -> f64 {
            v.set(&tensor(x, v.dims())).unwrap();
            project(&f().unwrap())
        };
        let mut bad = Vec::new();
        let mut worst = 0.0f64;
        for i in 0..n {
            let (up, down) = (base[i] + EPS, base[i] - EPS);
            let mut x = base.clone();
            x[i] = up;
            let s_up = at(x.clone());
            x[i] = down;
            let s_down = at(x);
            let numeric = (s_up - s_down) / (up - down);
            let err = (analytic[i] - numeric).abs();
            let scale = analytic[i].abs().max(numeric.abs());
            worst = worst.max(err / (ATOL + RTOL * scale));
            if err > ATOL + RTOL * scale {
                bad.push(format!("  [{i}] backward {:+.10e}  finite difference {numeric:+.10e}", analytic[i]));
            }
        }
        v.set(&tensor(base, v.dims())).unwrap();
        assert!(
            bad.is_empty(),
            "{what}: d/d{name}: {} of {n} entries differ from central differences:\n{}",
            bad.len(),
            bad.iter().take(12).cloned().collect::<Vec<_>>().join("\n")
        );
        assert!(
            analytic.iter().any(|g| g.abs() > 1e-6),
            "{what}: d/d{name} is identically zero, so the check proves nothing"
        );
        eprintln!("{what}: d/d{name} ok ({n} entries, worst error {worst:.3} of tolerance)");
    }
}

// ---------------------------------------------------------------------------------------------
// Conv2D
// ---------------------------------------------------------------------------------------------

struct Conv {
    batch: usize,
    input: [usize; 3],
    filters: usize,
    kernel: (usize, usize),
    strides: (usize, usize),
    padding: &'static str,
    use_bias: bool,
    activation: &'static str,
}

/// Two samples, two input channels, three filters, a linear activation, with bias.
const CONV: Conv = Conv {
    batch: 2,
    input: [6, 6, 2],
    filters: 3,
    kernel: (3, 3),
    strides: (1, 1),
    padding: "valid",
    use_bias: true,
    activation: "linear",
};

fn check_conv2d(c: Conv, out_hw: (usize, usize)) {
    let cfg = json!({
        "filters": c.filters, "kernel_size": [c.kernel.0, c.kernel.1], "strides": [c.strides.0, c.strides.1],
        "padding": c.padding, "use_bias": c.use_bias, "activation": c.activation,
        "bias_initializer": random_bias(),
    });
    let l = layer("Conv2D", cfg.clone(), &c.input, 11);
    assert_eq!(l.output_shape(), [out_hw.0, out_hw.1, c.filters], "Conv2D {cfg} on {:?}", c.input);
    assert_eq!(l.weights().len(), if c.use_bias { 2 } else { 1 });
    let shape = batched(c.batch, &c.input);
    let x = var(normal(shape.iter().product(), 1), &shape);
    // Every way of running a convolution: image groups (small kernels), the whole batch, and
    // Winograd's transforms (3x3 stride-1 windows; the batch path again for any other).
    for path in Path::ALL {
        let what = format!("Conv2D {cfg} on {shape:?}, {path:?} path");
        with_path(path, || check_layer(&what, l.as_ref(), &x));
    }
}

#[test]
fn conv2d_valid_stride1_even_input_gradients_match_finite_differences() {
    check_conv2d(Conv { input: [6, 6, 2], ..CONV }, (4, 4));
}

#[test]
fn conv2d_valid_stride1_odd_input_gradients_match_finite_differences() {
    check_conv2d(Conv { input: [7, 5, 2], ..CONV }, (5, 3));
}

#[test]
fn conv2d_valid_stride2_even_input_gradients_match_finite_differences() {
    // (8-3)/2+1 = 3 rows, (6-3)/2+1 = 2 columns: the last row and column are never read.
    check_conv2d(Conv { input: [8, 6, 2], strides: (2, 2), ..CONV }, (3, 2));
}

#[test]
fn conv2d_valid_stride2_odd_input_gradients_match_finite_differences() {
    check_conv2d(Conv { input: [7, 7, 2], strides: (2, 2), ..CONV }, (3, 3));
}

#[test]
fn conv2d_same_stride1_even_input_gradients_match_finite_differences() {
    check_conv2d(Conv { input: [6, 6, 2], padding: "same", ..CONV }, (6, 6));
}

#[test]
fn conv2d_same_stride1_odd_input_gradients_match_finite_differences() {
    check_conv2d(Conv { input: [5, 7, 2], padding: "same", ..CONV }, (5, 7));
}

#[test]
fn conv2d_same_stride2_even_input_gradients_match_finite_differences() {
    // Total padding 1 per axis: none on top/left, one row/column bottom/right (TensorFlow).
    check_conv2d(Conv { input: [6, 8, 2], strides: (2, 2), padding: "same", ..CONV }, (3, 4));
}

#[test]
fn conv2d_same_stride2_odd_input_gradients_match_finite_differences() {
    check_conv2d(Conv { input: [7, 5, 2], strides: (2, 2), padding: "same", ..CONV }, (4, 3));
}

#[test]
fn conv2d_nonsquare_kernel_3x2_stride_2x1_valid_gradients_match_finite_differences() {
    check_conv2d(Conv { input: [7, 6, 2], kernel: (3, 2), strides: (2, 1), ..CONV }, (3, 5));
}

#[test]
fn conv2d_nonsquare_kernel_3x2_stride_2x1_same_gradients_match_finite_differences() {
    // Width: even kernel, stride 1 -> one padding column, on the right.
    check_conv2d(Conv { input: [7, 6, 2], kernel: (3, 2), strides: (2, 1), padding: "same", ..CONV }, (4, 6));
}

#[test]
fn conv2d_stride_larger_than_kernel_gradients_match_finite_differences() {
    // Kernel 2, stride 3: some pixels are never read and must get exactly zero gradient.
    check_conv2d(Conv { input: [7, 8, 2], kernel: (2, 2), strides: (3, 3), ..CONV }, (2, 3));
}

#[test]
fn conv2d_kernel_larger_than_input_with_same_padding_gradients_match_finite_differences() {
    check_conv2d(Conv { input: [3, 4, 2], kernel: (5, 5), strides: (2, 2), padding: "same", ..CONV }, (2, 2));
}

#[test]
fn conv2d_without_bias_gradients_match_finite_differences() {
    check_conv2d(Conv { input: [5, 5, 2], padding: "same", use_bias: false, ..CONV }, (5, 5));
}

#[test]
fn conv2d_multichannel_batch3_gradients_match_finite_differences() {
    check_conv2d(Conv { batch: 3, input: [5, 4, 3], filters: 4, padding: "same", strides: (2, 2), ..CONV }, (3, 2));
}

#[test]
fn conv2d_batch5_in_uneven_image_groups_gradients_match_finite_differences() {
    // Groups of 2, 2 and 1 images on the grouped path.
    check_conv2d(Conv { batch: 5, input: [4, 4, 2], filters: 2, activation: "relu", ..CONV }, (2, 2));
}

#[test]
fn conv2d_paths_agree_in_f32_on_a_tutorial_sized_layer() {
    let cfg = json!({"filters": 32, "kernel_size": 3, "activation": "relu", "bias_initializer": random_bias()});
    let l = layer_with("Conv2D", cfg, &[14, 14, 16], 41, DType::F32);
    let x = tensor(normal(9 * 14 * 14 * 16, 42), &[9, 14, 14, 16]).to_dtype(DType::F32).unwrap();
    let r = tensor(normal(9 * 12 * 12 * 32, 43), &[9, 12, 12, 32]).to_dtype(DType::F32).unwrap();
    let run = |path: Path| -> Vec<Vec<f64>> {
        with_path(path, || {
            let y = l.forward(std::slice::from_ref(&x)).unwrap();
            let mut all = vec![values(&y)];
            all.extend(layer_backward(l.as_ref(), std::slice::from_ref(&x), &r).unwrap().iter().map(|g| values(g.as_ref().unwrap())));
            all
        })
    };
    let batch = run(Path::Batch);
    for path in [Path::Grouped, Path::Winograd] {
        for (k, (a, b)) in run(path).iter().zip(&batch).enumerate() {
            assert_eq!(a.len(), b.len());
            for (i, (a, b)) in a.iter().zip(b).enumerate() {
                assert!((a - b).abs() <= 1e-4 + 1e-5 * b.abs(), "output/gradient {k}[{i}]: {path:?} {a} vs batch {b}");
            }
        }
    }
}

#[test]
fn conv2d_single_channel_single_filter_single_sample_gradients_match_finite_differences() {
    check_conv2d(Conv { batch: 1, input: [5, 5, 1], filters: 1, ..CONV }, (3, 3));
}

#[test]
fn conv2d_with_tanh_activation_gradients_match_finite_differences() {
    check_conv2d(Conv { input: [5, 6, 2], activation: "tanh", padding: "same", ..CONV }, (5, 6));
}

// ---------------------------------------------------------------------------------------------
// MaxPooling2D
// ---------------------------------------------------------------------------------------------

/// Max-pools distinct values (no ties) of shape `(2, h, w, 2)`; `strides: None` is Keras's default
/// (the pool size).
fn check_max_pool(
    input: [usize; 3],
    pool: (usize, usize),
    strides: Option<(usize, usize)>,
    padding: &str,
    out_hw: (usize, usize),
) {
    let mut cfg = json!({"pool_size": [pool.0, pool.1], "padding": padding});
    if let Some(s) = strides {
        cfg["strides"] = json!([s.0, s.1]);
    }
    let l = layer("MaxPooling2D", cfg.clone(), &input, 0);
    assert_eq!(l.output_shape(), [out_hw.0, out_hw.1, input[2]], "MaxPooling2D {cfg} on {input:?}");
    let shape = batched(2, &input);
    let x = var(distinct(shape.iter().product(), 2), &shape);
    check_layer(&format!("MaxPooling2D {cfg} on {shape:?}"), l.as_ref(), &x);
}

#[test]
fn max_pooling2d_pool2_default_strides_valid_odd_input_gradients_match_finite_differences() {
    // The last row and column fall outside every window: their gradient is 0.
    check_max_pool([5, 5, 2], (2, 2), None, "valid", (2, 2));
}

#[test]
fn max_pooling2d_pool2_stride2_same_odd_input_gradients_match_finite_differences() {
    check_max_pool([5, 5, 2], (2, 2), Some((2, 2)), "same", (3, 3));
}

#[test]
fn max_pooling2d_pool2_stride1_valid_overlapping_windows_gradients_match_finite_differences() {
    // Overlapping windows: one input can be the maximum of several windows and sums their gradients.
    check_max_pool([5, 4, 2], (2, 2), Some((1, 1)), "valid", (4, 3));
}

#[test]
fn max_pooling2d_pool2_stride1_same_odd_input_gradients_match_finite_differences() {
    check_max_pool([5, 5, 2], (2, 2), Some((1, 1)), "same", (5, 5));
}

#[test]
fn max_pooling2d_pool3_default_strides_valid_odd_input_gradients_match_finite_differences() {
    check_max_pool([7, 7, 2], (3, 3), None, "valid", (2, 2));
}

#[test]
fn max_pooling2d_pool3_default_strides_same_odd_input_gradients_match_finite_differences() {
    check_max_pool([7, 5, 2], (3, 3), None, "same", (3, 2));
}

#[test]
fn max_pooling2d_pool3_stride1_same_odd_input_gradients_match_finite_differences() {
    check_max_pool([5, 5, 2], (3, 3), Some((1, 1)), "same", (5, 5));
}

#[test]
fn max_pooling2d_pool3_stride2_valid_odd_input_gradients_match_finite_differences() {
    check_max_pool([7, 7, 2], (3, 3), Some((2, 2)), "valid", (3, 3));
}

#[test]
fn max_pooling2d_pool3_stride2_same_odd_input_gradients_match_finite_differences() {
    check_max_pool([7, 5, 2], (3, 3), Some((2, 2)), "same", (4, 3));
}

#[test]
fn max_pooling2d_nonsquare_pool_2x3_stride_1x2_gradients_match_finite_differences() {
    check_max_pool([5, 7, 2], (2, 3), Some((1, 2)), "same", (5, 4));
}

#[test]
fn max_pooling2d_same_padding_never_wins_over_negative_inputs() {
    // All inputs negative: if padding were read as 0, border windows would output 0 and route
    // their gradient nowhere.
    let l = layer("MaxPooling2D", json!({"pool_size": 3, "strides": 2, "padding": "same"}), &[5, 5, 1], 0);
    let data: Vec<f64> = distinct(25, 3).into_iter().map(|v| v - 10.0).collect();
    let x = var(data, &[1, 5, 5, 1]);
    let y = l.forward(&[x.as_tensor().clone()]).unwrap();
    assert!(values(&y).iter().all(|v| *v < -5.0), "padding leaked into the maximum: {:?}", values(&y));
    check_layer("MaxPooling2D same on negative inputs", l.as_ref(), &x);
}

#[test]
fn max_pooling2d_with_ties_sends_the_whole_gradient_to_the_first_maximum_as_tensorflow() {
    // One sample, 2x4, two channels, pool 2: windows are columns 0-1 and 2-3.
    // Channel 0: window 0 all equal (5) -> (0,0); window 1 [[1,7],[7,2]] -> (0,3), the first 7 in
    // row-major order. Channel 1: window 0 [[3,9],[9,9]] -> (0,1); window 1 [[4,4],[6,6]] -> (1,2).
    #[rustfmt::skip]
    let ch0 = [5.0, 5.0, 1.0, 7.0,
               5.0, 5.0, 7.0, 2.0];
    #[rustfmt::skip]
    let ch1 = [3.0, 9.0, 4.0, 4.0,
               9.0, 9.0, 6.0, 6.0];
    let data: Vec<f64> = ch0.iter().zip(&ch1).flat_map(|(a, b)| [*a, *b]).collect();
    let x = var(data, &[1, 2, 4, 2]);
    let l = layer("MaxPooling2D", json!({"pool_size": 2}), &[2, 4, 2], 0);
    let y = l.forward(&[x.as_tensor().clone()]).unwrap();
    assert_eq!(values(&y), [5.0, 9.0, 7.0, 6.0]);
    // Output gradient g = [g(w0,c0), g(w0,c1), g(w1,c0), g(w1,c1)].
    let g = [0.5, -1.5, 2.0, 3.0];
    let grads = layer_backward(l.as_ref(), &[x.as_tensor().clone()], &tensor(g.to_vec(), &[1, 1, 2, 2])).unwrap();
    let dx = values(grads[0].as_ref().unwrap());
    let mut expected = vec![0.0; 16];
    let idx = |row: usize, col: usize, ch: usize| (row * 4 + col) * 2 + ch;
    expected[idx(0, 0, 0)] = g[0];
    expected[idx(0, 1, 1)] = g[1];
    expected[idx(0, 3, 0)] = g[2];
    expected[idx(1, 2, 1)] = g[3];
    // Exactly g, not g/4 (candle's max_pool2d) nor split between the tied inputs.
    assert_eq!(dx, expected);
}

// ---------------------------------------------------------------------------------------------
// Dense, Flatten, Dropout
// ---------------------------------------------------------------------------------------------

fn check_dense(per_sample: &[usize], units: usize, activation: &str, use_bias: bool) {
    let cfg = json!({
        "units": units, "activation": activation, "use_bias": use_bias, "bias_initializer": random_bias(),
    });
    let l = layer("Dense", cfg.clone(), per_sample, 21);
    let shape = batched(3, per_sample);
    let x = var(normal(shape.iter().product(), 4), &shape);
    check_layer(&format!("Dense {cfg} on {shape:?}"), l.as_ref(), &x);
}

#[test]
fn dense_rank2_input_gradients_match_finite_differences() {
    check_dense(&[4], 5, "linear", true);
}

#[test]
fn dense_rank3_input_acts_on_the_last_axis_and_gradients_match_finite_differences() {
    check_dense(&[3, 4], 5, "linear", true);
}

#[test]
fn dense_without_bias_with_sigmoid_gradients_match_finite_differences() {
    check_dense(&[4], 3, "sigmoid", false);
}

#[test]
fn flatten_gradients_match_finite_differences() {
    let l = layer("Flatten", json!({}), &[3, 2, 2], 0);
    assert_eq!(l.output_shape(), [12]);
    let x = var(normal(24, 5), &[2, 3, 2, 2]);
    check_layer("Flatten", l.as_ref(), &x);
}

const DROPOUT_SHAPE: [usize; 3] = [2, 3, 4];

/// A seeded Dropout owns its generator: a fresh layer per call gives the same mask every time.
fn fresh_dropout() -> Box<dyn Layer> {
    layer("Dropout", json!({"rate": 0.5, "seed": 1234}), &DROPOUT_SHAPE[1..], 0)
}

#[test]
fn dropout_training_with_a_fixed_seed_gradients_match_finite_differences() {
    let x = var(away_from_zero(24, 6, 0.1), &DROPOUT_SHAPE);
    let train = || fresh_dropout().forward_train(&[x.as_tensor().clone()], true).map(|(y, _)| y);
    assert_eq!(values(&train().unwrap()), values(&train().unwrap()), "a seeded Dropout must draw the same mask when rebuilt");
    let what = "Dropout(0.5, seed) training";
    assert_gradients_match(what, &[("input", &x)], train, |r| layer_backward(fresh_dropout().as_ref(), &[x.as_tensor().clone()], r));
}

#[test]
fn dropout_training_gradient_is_the_mask_times_one_over_keep_probability() {
    let x = var(away_from_zero(24, 6, 0.1), &DROPOUT_SHAPE);
    let r = normal(24, 7);
    let y = fresh_dropout().forward_train(&[x.as_tensor().clone()], true).unwrap().0;
    let grads = layer_backward(fresh_dropout().as_ref(), &[x.as_tensor().clone()], &tensor(r.clone(), &DROPOUT_SHAPE)).unwrap();
    let dx = values(grads[0].as_ref().unwrap());
    let mask: Vec<f64> = values(&y).iter().zip(values(x.as_tensor())).map(|(y, x)| y / x).collect();
    assert!(mask.iter().all(|m| *m == 0.0 || *m == 2.0), "rate 0.5 keeps with scale 2: {mask:?}");
    assert!(mask.contains(&0.0) && mask.contains(&2.0), "the mask should both drop and keep: {mask:?}");
    let expected: Vec<f64> = mask.iter().zip(&r).map(|(m, r)| m * r).collect();
    assert_eq!(dx, expected);
}

#[test]
fn dropout_at_inference_is_the_identity() {
    let x = var(normal(24, 8), &DROPOUT_SHAPE);
    assert_eq!(values(&fresh_dropout().forward(&[x.as_tensor().clone()]).unwrap()), values(x.as_tensor()));
}

// ---------------------------------------------------------------------------------------------
// Activations
// ---------------------------------------------------------------------------------------------

/// `Activation(name)` on a `(2, 3, 5)` input at least 0.05 away from 0, scaled by `scale`.
fn check_activation(name: &str, scale: f64) {
    let l = layer("Activation", json!({"activation": name}), &[3, 5], 0);
    let data = away_from_zero(30, 10, 0.05).into_iter().map(|v| v * scale).collect();
    let x = var(data, &[2, 3, 5]);
    check_layer(&format!("Activation({name}) x{scale}"), l.as_ref(), &x);
}

#[test]
fn activation_relu_gradients_match_finite_differences_away_from_zero() {
    check_activation("relu", 1.0);
}

#[test]
fn activation_sigmoid_gradients_match_finite_differences() {
    check_activation("sigmoid", 2.0);
}

#[test]
fn activation_tanh_gradients_match_finite_differences() {
    check_activation("tanh", 1.0);
}

#[test]
fn activation_elu_gradients_match_finite_differences_away_from_zero() {
    check_activation("elu", 1.0);
}

#[test]
fn activation_selu_gradients_match_finite_differences_away_from_zero() {
    check_activation("selu", 1.0);
}

#[test]
fn activation_softplus_gradients_match_finite_differences() {
    check_activation("softplus", 2.0);
}

#[test]
fn activation_softmax_over_the_last_axis_gradients_match_finite_differences() {
    check_activation("softmax", 1.0);
}

#[test]
fn activation_softmax_with_large_logits_gradients_match_finite_differences() {
    // Logits up to ~100: exp would overflow without the max shift.
    check_activation("softmax", 40.0);
}

#[test]
fn activation_linear_gradients_match_finite_differences() {
    check_activation("linear", 1.0);
}

/// `f'(x)` at the given points, from the output as the backward pass computes it.
fn elementwise_gradient(op: Unary, points: &[f64]) -> Vec<f64> {
    let x = tensor(points.to_vec(), &[points.len()]);
    let y = Activation::Elementwise(op).apply(&x).unwrap();
    values(&unary_backward(&y, &x.ones_like().unwrap(), op).unwrap())
}

#[test]
fn relu_gradient_at_exactly_zero_is_zero_as_in_tensorflow() {
    // candle's own relu gives 1 at 0 (and at -0.0); TensorFlow's ReluGrad gives 0.
    let g = elementwise_gradient(Unary::Relu, &[-1.0, -0.0, 0.0, 1e-300, 2.0]);
    assert_eq!(g, [0.0, 0.0, 0.0, 1.0, 1.0]);
}

#[test]
fn elementwise_gradients_at_exactly_zero_follow_tensorflow() {
    // TensorFlow's EluGrad/SeluGrad select on the output being < 0, so at 0 they take the
    // positive branch: 1 for ELU, `scale` for SELU. The smooth ones have their usual values.
    const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
    let at0 = |op| elementwise_gradient(op, &[0.0, -0.0]);
    assert_eq!(at0(Unary::Elu), [1.0, 1.0]);
    assert_eq!(at0(Unary::Selu), [SELU_SCALE, SELU_SCALE]);
    assert_eq!(at0(Unary::Sigmoid), [0.25, 0.25]);
    assert_eq!(at0(Unary::Tanh), [1.0, 1.0]);
    assert_eq!(at0(Unary::Softplus), [0.5, 0.5]);
}

// ---------------------------------------------------------------------------------------------
// Losses
// ---------------------------------------------------------------------------------------------

/// The batch-mean loss of the final activation applied to `pre` (the variable), and the gradient
/// with respect to `pre` that the model's backward pass starts from.
pub(crate) fn check_loss(what: &str, loss: Loss, act: Activation, y: Tensor, pre: Var) {
    check_weighted_loss(what, loss, act, y, pre, None);
}

/// `check_loss` with per-sample weights (Keras's `sample_weight`).
pub(crate) fn check_weighted_loss(what: &str, loss: Loss, act: Activation, y: Tensor, pre: Var, w: Option<Tensor>) {
    let f = || Ok(loss_and_gradient(loss, &y, pre.as_tensor(), act, w.as_ref())?.0);
    assert_gradients_match(what, &[("prediction", &pre)], f, |r| {
        let dpre = loss_and_gradient(loss, &y, pre.as_tensor(), act, w.as_ref())?.2;
        Ok(vec![Some(dpre.broadcast_mul(r)?)])
    });
}

/// `(n, k)` soft labels: positive rows summing to 1.
pub(crate) fn soft_labels(n: usize, k: usize, seed: u64) -> Tensor {
    let mut v = uniform(n * k, 0.1, 1.0, seed);
    for row in v.chunks_mut(k) {
        let s: f64 = row.iter().sum();
        row.iter_mut().for_each(|x| *x /= s);
    }
    tensor(v, &[n, k])
}

pub(crate) fn one_hot(labels: &[usize], k: usize) -> Tensor {
    let mut v = vec![0.0; labels.len() * k];
    for (i, &l) in labels.iter().enumerate() {
        v[i * k + l] = 1.0;
    }
    tensor(v, &[labels.len(), k])
}

const SOFTMAX: Activation = Activation::Softmax;
const SIGMOID: Activation = Activation::Elementwise(Unary::Sigmoid);

#[test]
fn categorical_crossentropy_after_softmax_from_logits_gradients_match_finite_differences() {
    let logits = var(normal(20, 11).into_iter().map(|v| 3.0 * v).collect(), &[4, 5]);
    check_loss("CE from logits, soft labels", Loss::CategoricalCrossentropy, SOFTMAX, soft_labels(4, 5, 12), logits);
    let logits = var(normal(20, 13).into_iter().map(|v| 3.0 * v).collect(), &[4, 5]);
    check_loss("CE from logits, one-hot", Loss::CategoricalCrossentropy, SOFTMAX, one_hot(&[0, 3, 4, 1], 5), logits);
}

#[test]
fn categorical_crossentropy_on_probabilities_gradients_match_finite_differences_away_from_the_clip() {
    // Unnormalised positive outputs: the loss renormalises each row, then clips (not reached here).
    let probs = var(uniform(20, 0.05, 1.0, 14), &[4, 5]);
    check_loss("CE on probabilities", Loss::CategoricalCrossentropy, Activation::Linear, soft_labels(4, 5, 15), probs);
}

#[test]
fn sparse_categorical_crossentropy_after_softmax_from_logits_gradients_match_finite_differences() {
    let logits = var(normal(20, 16).into_iter().map(|v| 3.0 * v).collect(), &[4, 5]);
    let y = tensor(vec![0.0, 3.0, 4.0, 3.0], &[4]);
    check_loss("sparse CE from logits", Loss::SparseCategoricalCrossentropy, SOFTMAX, y, logits);
}

#[test]
fn sparse_categorical_crossentropy_on_probabilities_gradients_match_finite_differences() {
    let probs = var(uniform(20, 0.05, 1.0, 17), &[4, 5]);
    let y = tensor(vec![2.0, 0.0, 4.0, 1.0], &[4]);
    check_loss("sparse CE on probabilities", Loss::SparseCategoricalCrossentropy, Activation::Linear, y, probs);
}

#[test]
fn binary_crossentropy_after_sigmoid_from_logits_gradients_match_finite_differences() {
    // Includes large logits (|z| ~ 30), where the probability path would have saturated.
    let mut z: Vec<f64> = normal(12, 18).into_iter().map(|v| 3.0 * v).collect();
    z[0] = 30.0;
    z[1] = -30.0;
    let y = tensor(vec![1.0, 1.0, 0.0, 0.0, 1.0, 0.3, 0.0, 1.0, 0.7, 1.0, 0.0, 0.5], &[4, 3]);
    check_loss("BCE from logits", Loss::BinaryCrossentropy, SIGMOID, y, var(z, &[4, 3]));
}

#[test]
fn binary_crossentropy_from_logits_gradient_at_a_zero_logit_is_sigmoid_minus_target() {
    // max(z,0) - z*y + log(1 + exp(-|z|)) is smooth at z = 0 although relu and abs are not: the
    // gradient there must be sigmoid(0) - y = 0.5 - y (per sample, divided by the 2 outputs).
    let z = var(vec![0.0, 0.0, 0.0, -0.0], &[2, 2]);
    let y = tensor(vec![1.0, 0.0, 0.25, 1.0], &[2, 2]);
    check_loss("BCE from logits at z = 0", Loss::BinaryCrossentropy, SIGMOID, y.clone(), z.clone());
    // The batch mean divides the per-sample gradients by the 2 samples.
    let dz = loss_and_gradient(Loss::BinaryCrossentropy, &y, z.as_tensor(), SIGMOID, None).unwrap().2;
    assert_eq!(values(&dz), [-0.125, 0.125, 0.0625, -0.125]);
}

#[test]
fn binary_crossentropy_on_probabilities_gradients_match_finite_differences_away_from_the_clip() {
    let probs = var(uniform(12, 0.05, 0.95, 19), &[4, 3]);
    let y = tensor(vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.3, 0.0, 1.0, 0.7, 1.0, 0.0, 0.5], &[4, 3]);
    check_loss("BCE on probabilities", Loss::BinaryCrossentropy, Activation::Linear, y, probs);
}

#[test]
fn mean_squared_error_gradients_match_finite_differences() {
    let pred = var(normal(12, 20), &[4, 3]);
    check_loss("MSE", Loss::MeanSquaredError, Activation::Linear, tensor(normal(12, 21), &[4, 3]), pred);
}

#[test]
fn mean_absolute_error_gradients_match_finite_differences_away_from_zero_error() {
    let y = normal(12, 22);
    let pred: Vec<f64> = away_from_zero(12, 23, 0.05).iter().zip(&y).map(|(d, y)| y + d).collect();
    check_loss("MAE", Loss::MeanAbsoluteError, Activation::Linear, tensor(y, &[4, 3]), var(pred, &[4, 3]));
}

#[test]
fn mean_absolute_error_gradient_at_zero_error_is_zero_as_in_tensorflow() {
    // TF's Abs gradient is sign(x): 0 where prediction equals target; ±1/(k n) elsewhere (k = 2
    // outputs, n = 2 samples here).
    let y = tensor(vec![0.5, -1.0, 2.0, 0.0], &[2, 2]);
    let pred = tensor(vec![0.5, -2.0, 3.0, 0.0], &[2, 2]);
    let (loss, _, grad) = loss_and_gradient(Loss::MeanAbsoluteError, &y, &pred, Activation::Linear, None).unwrap();
    assert_eq!(loss.to_scalar::<f64>().unwrap(), 0.5);
    assert_eq!(values(&grad), [0.0, -0.25, 0.25, 0.0]);
    let nan = tensor(vec![f64::NAN, 0.0, 0.0, 0.0], &[2, 2]);
    let loss = loss_and_gradient(Loss::MeanAbsoluteError, &y, &nan, Activation::Linear, None).unwrap().0;
    assert!(loss.to_scalar::<f64>().unwrap().is_nan(), "a NaN prediction must show in the loss");
}

// ---------------------------------------------------------------------------------------------
// Whole models: `Model::gradients`, the pass `fit` trains with
// ---------------------------------------------------------------------------------------------

/// A compiled `Model` in `dtype` with weights drawn right after `rng::set_seed(seed)`.
pub(crate) fn model(input: &[usize], layers: &[(&str, Value)], loss: Loss, seed: u64, dtype: DType) -> Model {
    let _guard = SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    rng::set_seed(seed);
    let mut m = Model::with_dtype("check", input, dtype).unwrap();
    for (class, cfg) in layers {
        m.add(class, cfg).unwrap_or_else(|e| panic!("adding {class} {cfg}: {e}"));
    }
    m.compile(Optimizer::from_json(&json!("sgd")).unwrap(), loss, &[]).unwrap();
    m
}

/// Conv2D(relu) -> MaxPooling2D -> Flatten -> Dense(softmax), trained with cross-entropy.
fn small_cnn(dtype: DType) -> Model {
    let conv = json!({"filters": 3, "kernel_size": 3, "activation": "relu",
                      "bias_initializer": {"class_name": "RandomNormal", "config": {"stddev": 0.1}}});
    let dense = json!({"units": 4, "activation": "softmax", "bias_initializer": random_bias()});
    let layers = [("Conv2D", conv), ("MaxPooling2D", json!({"pool_size": 2})), ("Flatten", json!({})), ("Dense", dense)];
    model(&[6, 6, 2], &layers, Loss::CategoricalCrossentropy, 31, dtype)
}

/// Checks the gradient of the batch-mean training loss for every weight of `m`.
pub(crate) fn check_model(what: &str, m: &Model, x: &Tensor, y: &Tensor) {
    check_model_inputs(what, m, std::slice::from_ref(x), y)
}

/// `check_model` for a model of several inputs.
pub(crate) fn check_model_inputs(what: &str, m: &Model, xs: &[Tensor], y: &Tensor) {
    let weights = m.weights();
    let names: Vec<String> = (0..weights.len()).map(|i| format!("weight {i}")).collect();
    let vars: Vec<(&str, &Var)> = names.iter().map(String::as_str).zip(weights).collect();
    let f = || Ok(m.gradients(xs, y)?.0);
    assert_gradients_match(what, &vars, f, |r| {
        Ok(m.gradients(xs, y)?.2.into_iter().map(|g| g.broadcast_mul(r).map(Some)).collect::<candle_core::Result<_>>()?)
    });
}

#[test]
fn conv_relu_maxpool_flatten_dense_softmax_crossentropy_gradients_match_finite_differences() {
    let m = small_cnn(DType::F64);
    assert_eq!(m.weights().len(), 4);
    let x = tensor(normal(144, 33), &[2, 6, 6, 2]);
    for path in Path::ALL {
        let what = format!("Conv2D(relu)-MaxPooling2D-Flatten-Dense(softmax)-CE, {path:?} path");
        with_path(path, || check_model(&what, &m, &x, &one_hot(&[2, 0], 4)));
    }
}

#[test]
fn dense_elu_activation_tanh_dense_sigmoid_mse_gradients_match_finite_differences() {
    // MSE reads the sigmoid's output (no logits shortcut); an Activation layer sits in the middle.
    let layers = [
        ("Flatten", json!({})),
        ("Dense", json!({"units": 5, "activation": "elu", "bias_initializer": random_bias()})),
        ("Activation", json!({"activation": "tanh"})),
        ("Dense", json!({"units": 3, "activation": "sigmoid", "bias_initializer": random_bias()})),
    ];
    let m = model(&[2, 3], &layers, Loss::MeanSquaredError, 35, DType::F64);
    let x = tensor(normal(24, 36), &[4, 2, 3]);
    let y = tensor(uniform(12, 0.0, 1.0, 37), &[4, 3]);
    check_model("Flatten-Dense(elu)-Activation(tanh)-Dense(sigmoid)-MSE", &m, &x, &y);
}

#[test]
fn f32_kernels_give_the_gradients_of_the_f64_ones() {
    // Same weights (the initialisers draw f32), same input: the f32 path through our kernels must
    // agree with the f64 one to f32 precision.
    let grads = |dtype: DType| -> Vec<Vec<f64>> {
        let m = small_cnn(dtype);
        let x = tensor(normal(144, 34), &[2, 6, 6, 2]).to_dtype(DType::F32).unwrap().to_dtype(dtype).unwrap();
        let y = one_hot(&[1, 3], 4).to_dtype(dtype).unwrap();
        m.gradients(std::slice::from_ref(&x), &y).unwrap().2.iter().map(values).collect()
    };
    let (g32, g64) = (grads(DType::F32), grads(DType::F64));
    for (k, (a, b)) in g32.iter().zip(&g64).enumerate() {
        for (i, (a, b)) in a.iter().zip(b).enumerate() {
            assert!((a - b).abs() <= 1e-5 + 1e-4 * b.abs(), "variable {k}[{i}]: f32 {a} vs f64 {b}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// im2col / col2im
// ---------------------------------------------------------------------------------------------

#[test]
fn col2im_is_the_adjoint_of_im2col_for_every_window_shape() {
    // <im2col(x), c> == <x, col2im(c)>: col2im is what Conv2D's input gradient uses.
    let cases = [
        ((5, 5), (3, 3), (1, 1), false),
        ((5, 5), (3, 3), (1, 1), true),
        ((6, 7), (3, 3), (2, 2), true),
        ((7, 6), (3, 2), (2, 1), true),
        ((7, 6), (3, 2), (2, 1), false),
        ((7, 7), (2, 2), (3, 3), false),
        ((4, 4), (4, 4), (1, 1), false),
        ((3, 5), (5, 5), (2, 2), true),
        ((1, 1), (3, 3), (1, 1), true),
    ];
    for (seed, &(hw, k, s, same)) in cases.iter().enumerate() {
        let win = Window::new(hw, k, s, same).unwrap();
        let (n, c) = (2, 3);
        let x = var(normal(n * hw.0 * hw.1 * c, 40 + seed as u64), &[n, hw.0, hw.1, c]);
        let cols = im2col(x.as_tensor(), win).unwrap();
        assert_eq!(cols.dims(), [n * win.out_h * win.out_w, k.0 * k.1 * c], "{win:?}");
        let cm = tensor(normal(cols.elem_count(), 60 + seed as u64), cols.dims());
        let lhs = cols.mul(&cm).unwrap().sum_all().unwrap();
        let col2im_c = values(&col2im(&cm, win, c).unwrap());
        let rhs: f64 = values(x.as_tensor()).iter().zip(&col2im_c).map(|(a, b)| a * b).sum();
        let lhs = lhs.to_scalar::<f64>().unwrap();
        let ok = (lhs - rhs).abs() <= 1e-12 * (1.0 + lhs.abs());
        assert!(ok, "{win:?}: <im2col(x), c> = {lhs}, <x, col2im(c)> = {rhs}");
    }
}
