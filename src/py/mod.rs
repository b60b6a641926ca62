//! The Python binding (`kandle._kandle`): the only corner of the crate that knows Python. Methods
//! convert arguments, release the GIL and delegate to the core; no logic lives here.

mod arrays;
mod error;
mod feed;
mod metrics;
mod hooks;
mod model;
mod ops;
mod saving;
mod world;

use numpy::{PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::prelude::*;

/// Checks a layer config and returns it normalised (Keras's `get_config()` with defaults filled).
#[pyfunction]
fn validate_layer(class_name: &str, config_json: &str) -> PyResult<String> {
    let config = error::parse_json(config_json)?;
    Ok(crate::layers::validate(class_name, &config)?.to_string())
}

/// The layer class names the core implements (the registry `kandle.layers` is checked against).
#[pyfunction]
fn layer_class_names() -> Vec<&'static str> {
    crate::layers::class_names()
}

/// The per-sample output shape of a layer called on inputs of these shapes (what a symbolic call
/// records), with the errors building would raise.
#[pyfunction]
fn layer_output_shape(class_name: &str, config_json: &str, input_shapes: Vec<Vec<usize>>) -> PyResult<Vec<usize>> {
    Ok(crate::layers::output_shape(class_name, &error::parse_json(config_json)?, &input_shapes)?)
}

/// Checks an optimizer config (`{"class_name":..., "config":...}`) and returns its full config.
#[pyfunction]
fn validate_optimizer(config_json: &str) -> PyResult<String> {
    let opt = crate::optimizers::Optimizer::from_json(&error::parse_json(config_json)?)?;
    Ok(serde_json::json!({"class_name": opt.class_name(), "config": opt.config()}).to_string())
}

/// A schedule's canonical serialized form (checked) and its learning rate at `step`.
#[pyfunction]
fn schedule_value(config_json: &str, step: u64) -> PyResult<(String, f64)> {
    let s = crate::schedules::Schedule::from_json(&error::parse_json(config_json)?)?;
    Ok((s.to_json().to_string(), s.at(step)))
}

/// An initializer's canonical config (checked) and, for `shape`, its values (Keras's fans).
#[pyfunction]
fn initializer_sample<'py>(py: Python<'py>, config_json: &str, shape: Vec<usize>) -> PyResult<(String, Bound<'py, PyArrayDyn<f32>>)> {
    use numpy::{IntoPyArray, PyArrayMethods};
    let init = crate::initializers::Initializer::from_json(&error::parse_json(config_json)?)?;
    crate::layers::checked_size("initializer", "tensor", &shape)?;
    let (fan_in, fan_out) = crate::initializers::fans(&shape);
    let values = init.sample(&shape, fan_in, fan_out)?;
    Ok((init.to_json().to_string(), values.into_pyarray(py).reshape(shape)?))
}

/// The number of threads kandle's kernels run on (the process-wide pool, sized once: by
/// `RAYON_NUM_THREADS` or, when unset, the CPU count, at the first computation).
/// `(compute_dtype, variable_dtype)` of a dtype policy kandle implements, else ValueError.
#[pyfunction]
fn dtype_policy(name: &str) -> PyResult<(&'static str, &'static str)> {
    let p = crate::layers::config::dtype_policy(name)?;
    Ok((p.compute_dtype, p.variable_dtype))
}

/// The bfloat16 kernel this process runs `mixed_bfloat16` products on, and whether it is one of
/// the CPU's bfloat16 units (else float32 GEMMs on rounded operands).
#[pyfunction]
fn bf16_kernel() -> (&'static str, bool) {
    let k = crate::ops::bf16::kernel();
    (k.name(), k != crate::ops::bf16::Kernel::Plain)
}

#[pyfunction]
fn num_threads() -> usize {
    rayon::current_num_threads()
}

/// `keras.utils.set_random_seed`.
#[pyfunction]
fn set_random_seed(seed: u64) {
    crate::rng::set_seed(seed)
}

/// `kandle.activations.<name>(x)`, computed by the same code the layers use.
#[pyfunction]
fn activation<'py>(py: Python<'py>, name: &str, x: PyReadonlyArrayDyn<'py, f32>) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let act = crate::activations::Activation::parse(Some(name))?;
    let t = arrays::tensor(&x)?;
    let y = act.apply(&t).map_err(PyErr::from)?;
    arrays::to_numpy(py, &y)
}

/// `kandle.losses.<name>(y_true, y_pred)`: per-sample losses on probabilities, as Keras's functions.
#[pyfunction]
fn loss_values<'py>(
    py: Python<'py>,
    name: &str,
    y_true: PyReadonlyArrayDyn<'py, f32>,
    y_pred: PyReadonlyArrayDyn<'py, f32>,
) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
    let loss = crate::losses::Loss::parse(name)?;
    let (y, p) = (arrays::tensor(&y_true)?, arrays::tensor(&y_pred)?);
    let n = p.dims().first().copied().unwrap_or(0);
    let sparse_ok = y.dims().first() == Some(&n) && y.elem_count() == n && p.rank() == 2;
    if (loss.sparse() && !sparse_ok) || (!loss.sparse() && y.dims() != p.dims()) || p.rank() == 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{}: y_true shape {:?} does not match y_pred shape {:?}{}",
            loss.name(),
            y.dims(),
            p.dims(),
            if loss.sparse() { " (sparse targets are one class index per sample)" } else { "" }
        )));
    }
    let out = loss.per_sample(&y, &p, &p, crate::activations::Activation::Linear).map_err(PyErr::from)?;
    arrays::to_numpy(py, &out)
}

/// glibc hands buffers above its (dynamic) mmap threshold back to the OS when they are freed, and a
/// training step frees and re-allocates tens of MB of them: measured on the tutorial CNN, 500k page
/// faults in 20 steps by default, 80k with these settings. Buffers up to 32 MiB now come from the heap
/// and up to 512 MiB of free heap is kept for reuse. Skipped when the user tuned malloc already.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() && std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
        // SAFETY: mallopt only changes allocator tunables; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
    }
}

/// candle 0.11 splits element-wise ops of 64K elements or more over a pool of its own, whose workers
/// spin at a barrier beside kandle's rayon kernels: measured on the antirectifier MLP's training step
/// (whose custom layers run on candle's ops), medians of alternating fresh processes 29-31 ms with it,
/// 16-22 ms without; the tutorial CNN and the dense net unchanged (three alternating pairs each, with
/// the tutorial run beside them). So that pool gets one thread unless the user set `CANDLE_NUM_THREADS`.
fn tune_candle_pool() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // At import, before any computation has started candle's pool.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

#[pymodule]
fn _kandle(m: &Bound<'_, PyModule>) -> PyResult<()> {
    tune_malloc();
    tune_candle_pool();
    m.add_class::<model::ModelCore>()?;
    m.add_function(wrap_pyfunction!(validate_layer, m)?)?;
    m.add_function(wrap_pyfunction!(validate_optimizer, m)?)?;
    m.add_function(wrap_pyfunction!(schedule_value, m)?)?;
    m.add_function(wrap_pyfunction!(initializer_sample, m)?)?;
    m.add_class::<metrics::MetricState>()?;
    m.add_function(wrap_pyfunction!(layer_class_names, m)?)?;
    m.add_function(wrap_pyfunction!(layer_output_shape, m)?)?;
    m.add_function(wrap_pyfunction!(set_random_seed, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(dtype_policy, m)?)?;
    m.add_function(wrap_pyfunction!(bf16_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(activation, m)?)?;
    m.add_function(wrap_pyfunction!(loss_values, m)?)?;
    m.add_function(wrap_pyfunction!(ops::op_names, m)?)?;
    m.add_function(wrap_pyfunction!(ops::op_infer, m)?)?;
    m.add_function(wrap_pyfunction!(ops::op_eval, m)?)?;
    m.add_function(wrap_pyfunction!(saving::save_model, m)?)?;
    m.add_function(wrap_pyfunction!(saving::save_weights, m)?)?;
    m.add_function(wrap_pyfunction!(saving::load_weights, m)?)?;
    m.add_function(wrap_pyfunction!(saving::load_model, m)?)?;
    m.add_function(wrap_pyfunction!(saving::save_backup, m)?)?;
    m.add_function(wrap_pyfunction!(saving::restore_backup, m)?)?;
    Ok(())
}

