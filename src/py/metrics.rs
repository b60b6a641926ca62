//! `kandle.metrics` objects used on their own (`update_state` / `result` / `reset_state`): the running
//! totals of a `crate::metrics::Metric`, kept here so that the formulas are the training loop's.

use super::arrays;
use crate::metrics::{Metric, MetricKind};
use numpy::PyReadonlyArrayDyn;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

#[pyclass(module = "kandle._kandle")]
pub struct MetricState {
    metric: Metric,
    sums: Vec<f64>,
    count: usize,
}

#[pymethods]
impl MetricState {
    /// `spec`: a metric name or a metric object's `{"class_name", "config"}` as JSON.
    #[new]
    fn new(spec: &str) -> PyResult<Self> {
        let metric = Metric::standalone(spec)?;
        let sums = vec![0.0; metric.width()];
        Ok(MetricState { metric, sums, count: 0 })
    }

    #[getter]
    fn name(&self) -> String {
        self.metric.name.clone()
    }

    /// Adds a batch: `y_pred` (n, ...) and `y_true` shaped like it (class indices (n,) or (n, 1) for
    /// the sparse metric; ignored by Mean, whose values are `y_pred`).
    #[pyo3(signature = (y_true, y_pred, sample_weight=None))]
    fn update(&mut self, y_true: PyReadonlyArrayDyn<'_, f32>, y_pred: PyReadonlyArrayDyn<'_, f32>, sample_weight: Option<PyReadonlyArrayDyn<'_, f32>>) -> PyResult<()> {
        let (y, p) = (arrays::tensor(&y_true)?, arrays::tensor(&y_pred)?);
        let w = sample_weight.map(|w| arrays::tensor(&w)).transpose()?;
        let n = p.dims().first().copied().unwrap_or(1);
        let sparse = self.metric.kind == MetricKind::SparseCategoricalAccuracy;
        let ok = match self.metric.kind {
            MetricKind::Mean => true,
            MetricKind::SparseCategoricalAccuracy => p.rank() == 2 && y.elem_count() == n && y.dims().first() == Some(&n),
            MetricKind::CategoricalAccuracy | MetricKind::TopKCategoricalAccuracy(_) => p.rank() == 2 && y.dims() == p.dims(),
            _ => p.rank() >= 1 && (y.dims() == p.dims() || y.elem_count() == p.elem_count()),
        };
        if !ok {
            return Err(PyValueError::new_err(format!(
                "{}: y_true of shape {:?} does not fit y_pred of shape {:?}",
                self.metric.name,
                y.dims(),
                p.dims()
            )));
        }
        let y = if y.dims() != p.dims() && !sparse && self.metric.kind != MetricKind::Mean { y.reshape(p.shape()).map_err(crate::Error::from)? } else { y };
        if let Some(w) = &w {
            let n_weights = w.elem_count();
            let per_element = self.metric.kind == MetricKind::Mean && n_weights == p.elem_count();
            if n_weights != n && !per_element {
                return Err(PyValueError::new_err(format!(
                    "{}: sample_weight of shape {:?} does not fit y_pred of shape {:?} (one weight per sample)",
                    self.metric.name,
                    w.dims(),
                    p.dims()
                )));
            }
        }
        let stats = self.metric.batch_stats(&y, &p, sparse, w.as_ref())?;
        self.sums.iter_mut().zip(&stats).for_each(|(a, b)| *a += b);
        self.count += if self.metric.kind == MetricKind::Mean { p.elem_count() } else { n };
        Ok(())
    }

    fn result(&self) -> f64 {
        self.metric.value(&self.sums, self.count as f64)
    }

    fn reset(&mut self) {
        self.sums.iter_mut().for_each(|s| *s = 0.0);
        self.count = 0;
    }
}
