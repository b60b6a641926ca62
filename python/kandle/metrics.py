"""``kandle.metrics``: metric names for ``compile(metrics=[...])`` and Keras 3's metric objects, usable
in ``compile`` (logged under their ``name``) and on their own (``update_state`` / ``result`` /
``reset_state``). Both run the Rust core's metric code (``crate::metrics``), so a metric computes the
same in ``fit`` and by hand.
"""

import json

import numpy as np

from kandle import _kandle


class Metric:
    """Base class of the metric objects kandle implements. Subclasses with their own Python
    ``update_state`` cannot run inside the Rust training loop yet."""

    _class_name = None

    def __init__(self, name=None, dtype=None, **config):
        if self._class_name is None:  # a user's subclass: update_state/result in kandle.ops
            from kandle import backend
            if type(self).update_state is Metric.update_state or type(self).result is Metric.result:
                raise NotImplementedError(f"{type(self).__name__}: a Metric subclass must define update_state and "
                                          "result")
            if config:
                raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s) {sorted(config)}")
            self.name = name or backend.snake_case(type(self).__name__)
            self._variables, self._config = [], {"name": self.name}
            return
        if dtype not in (None, "float32"):
            raise ValueError(f"kandle does not implement {type(self).__name__}(dtype={dtype!r}) yet")
        self._config = dict(config, name=name or self._default_name)
        self._state = _kandle.MetricState(self._core_spec())
        self.name = self._state.name
        self.__dict__.update(config)

    _default_name = None

    def _core_spec(self):
        return json.dumps({"class_name": self._class_name, "config": self._config})

    def update_state(self, y_true, y_pred=None, sample_weight=None):
        pred = np.ascontiguousarray(y_pred, dtype=np.float32)
        true = np.ascontiguousarray(y_true, dtype=np.float32)
        weights = None if sample_weight is None else np.ascontiguousarray(np.ravel(sample_weight), dtype=np.float32)
        self._state.update(true, pred, weights)

    def result(self):
        return np.float32(self._state.result())

    def reset_state(self):
        if self._class_name is None:  # Keras's default: every variable to zeros
            for v in self._variables:
                v._value = np.zeros(v.shape, np.float32)
            return
        self._state.reset()

    def add_variable(self, shape=(), initializer="zeros", dtype=None, aggregation="sum", name=None):
        """A state variable of a custom metric (Keras 3's ``Metric.add_variable``)."""
        from kandle.metrics_custom import MetricVariable
        if aggregation not in ("sum", "mean", None):
            raise ValueError(f"kandle does not implement metric variables with aggregation={aggregation!r} yet")
        v = MetricVariable(self, shape, initializer, name or f"variable_{len(self._variables)}")
        self._variables.append(v)
        return v

    add_weight = add_variable

    @property
    def variables(self):
        return list(self._variables) if self._class_name is None else []

    reset_states = reset_state  # Keras 2 name

    def __call__(self, y_true, y_pred, sample_weight=None):
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def get_config(self):
        return dict(self._config)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def _metric(class_name, default_name, doc, **defaults):
    def __init__(self, name=default_name, dtype=None, **config):
        unknown = set(config) - set(defaults)
        if unknown:
            raise TypeError(f"{class_name}: unexpected keyword argument(s): {sorted(unknown)}")
        Metric.__init__(self, name=name, dtype=dtype, **dict(defaults, **config))

    return type(class_name, (Metric,), {"_class_name": class_name, "_default_name": default_name,
                                        "__init__": __init__, "__doc__": doc, "__module__": __name__})


Accuracy = _metric("Accuracy", "accuracy", "How often predictions equal the targets exactly.")
BinaryAccuracy = _metric("BinaryAccuracy", "binary_accuracy", "How often `y_pred > threshold` equals the targets.",
                         threshold=0.5)
CategoricalAccuracy = _metric("CategoricalAccuracy", "categorical_accuracy",
                              "How often the argmax of the predictions is that of the one-hot targets.")
SparseCategoricalAccuracy = _metric("SparseCategoricalAccuracy", "sparse_categorical_accuracy",
                                    "How often the argmax of the predictions is the integer target.")
TopKCategoricalAccuracy = _metric("TopKCategoricalAccuracy", "top_k_categorical_accuracy",
                                  "How often the target is in the top `k` predictions.", k=5)
MeanSquaredError = _metric("MeanSquaredError", "mean_squared_error", "The mean squared error.")
MeanAbsoluteError = _metric("MeanAbsoluteError", "mean_absolute_error", "The mean absolute error.")
Precision = _metric("Precision", "precision", "TP / (TP + FP) at `thresholds` (one value, default 0.5); `top_k`: "
                    "only each sample's k highest scores count as predicted; `class_id`: one column only.",
                    thresholds=None, top_k=None, class_id=None)
Recall = _metric("Recall", "recall", "TP / (TP + FN) at `thresholds` (one value, default 0.5); `top_k` and "
                 "`class_id` as Precision's.",
                 thresholds=None, top_k=None, class_id=None)
AUC = _metric("AUC", "auc", "Area under the ROC or PR `curve` over `num_thresholds` evenly spaced `thresholds` "
              "(or those given), summed by 'interpolation', 'minoring' or 'majoring'.",
              num_thresholds=200, curve="ROC", summation_method="interpolation", thresholds=None, multi_label=False,
              num_labels=None, label_weights=None, from_logits=False)


class Mean(Metric):
    """The (weighted) mean of the values given to ``update_state(values)``."""

    _class_name = "Mean"
    _default_name = "mean"

    def __init__(self, name="mean", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, values, sample_weight=None):
        values = np.ascontiguousarray(np.atleast_1d(np.asarray(values, dtype=np.float32)))
        weights = None if sample_weight is None else np.ascontiguousarray(
            np.broadcast_to(np.asarray(sample_weight, dtype=np.float32), values.shape).ravel())
        self._state.update(values, values, weights)


def identifier(metric):
    """What ``compile`` hands the core for one entry of ``metrics=[...]``."""
    if isinstance(metric, str):
        return metric
    if isinstance(metric, Metric):
        if isinstance(metric, Mean):
            raise ValueError("keras.metrics.Mean() takes values, not (y_true, y_pred): it cannot be a compile metric")
        return metric._core_spec()
    if isinstance(metric, type) and issubclass(metric, Metric):
        return metric()._core_spec()
    name = getattr(metric, "__name__", None)
    if callable(metric) and _FUNCTIONS.get(name) is metric:
        return name
    raise ValueError(f"Could not interpret metric identifier: {metric!r}")


def weighted_identifier(metric):
    """What ``compile`` hands the core for one entry of ``weighted_metrics=[...]``: the metric's
    identifier marked as weighted by the sample and class weights."""
    inner = identifier(metric)
    inner = json.loads(inner) if inner.startswith("{") else inner
    return json.dumps({"class_name": WEIGHTED, "config": {"metric": inner}})


WEIGHTED = "kandle>Weighted"


def split_weighted(specs):
    """A compile config's metric entries as Keras keeps them: (metrics, weighted_metrics)."""
    def value(spec):
        return json.loads(spec) if isinstance(spec, str) and spec.startswith("{") else spec

    plain, weighted = [], []
    for spec in specs:
        v = value(spec)
        if isinstance(v, dict) and v.get("class_name") == WEIGHTED:
            weighted.append(v["config"]["metric"])
        else:
            plain.append(spec)
    return plain, weighted


def _function(name, spec):
    def metric(y_true, y_pred):
        """Per-sample values, as Keras 3's metric functions return."""
        y_true, y_pred = np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32)
        out = []
        for t, p in zip(y_true, y_pred):
            state = _kandle.MetricState(spec)
            state.update(np.ascontiguousarray(t[None]), np.ascontiguousarray(p[None]))
            out.append(state.result())
        return np.asarray(out, dtype=np.float32)

    metric.__name__ = name
    return metric


categorical_accuracy = _function("categorical_accuracy", "categorical_accuracy")
sparse_categorical_accuracy = _function("sparse_categorical_accuracy", "sparse_categorical_accuracy")
binary_accuracy = _function("binary_accuracy", "binary_accuracy")
top_k_categorical_accuracy = _function("top_k_categorical_accuracy", "top_k_categorical_accuracy")
mean_squared_error = mse = _function("mean_squared_error", "mean_squared_error")
mean_absolute_error = mae = _function("mean_absolute_error", "mean_absolute_error")
accuracy = _function("accuracy", json.dumps({"class_name": "Accuracy", "config": {}}))
_FUNCTIONS = {f.__name__: f for f in (categorical_accuracy, sparse_categorical_accuracy, binary_accuracy,
                                      top_k_categorical_accuracy, mean_squared_error, mean_absolute_error, accuracy)}


def get(identifier_):
    if isinstance(identifier_, str):
        return _FUNCTIONS.get(identifier_) or identifier_
    return identifier_


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(f"kandle does not implement keras.metrics.{name} yet")
