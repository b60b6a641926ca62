"""Metrics written in Python with ``kandle.ops``: a function of ``(y_true, y_pred)`` (Keras averages its
per-sample values) or a ``kandle.metrics.Metric`` subclass with ``add_variable``/``update_state``/
``result``. In ``fit`` they run in Rust: ``update_state`` is recorded once as the additions it makes to
its variables (``assign_add``; the epoch's state is their sum), ``result`` as a graph of the variables.
Used by hand, the same methods run eagerly on NumPy arrays.
"""

import json

import numpy as np

from kandle import _kandle


class MetricVariable:
    """A metric's state variable (``add_variable``): a NumPy value by hand; inside a recording of
    ``update_state`` an accumulator of additions, inside ``result`` one of the graph's inputs."""

    def __init__(self, metric, shape, initializer, name):
        from kandle import initializers

        self.shape, self.name, self.dtype = tuple(int(d) for d in shape), name, "float32"
        init = initializers.get(initializer or "zeros")
        spec = json.dumps(initializers.serialize(init))
        sample = _kandle.initializer_sample(spec, list(self.shape) or [1])[1]
        self._init = np.asarray(sample, dtype=np.float32).reshape(self.shape)
        self._value = self._init.copy()
        self._metric = metric

    def numpy(self):
        return self._value.copy()

    def _recorder(self):
        from kandle.ops._graph import active
        graph = active()
        return graph if graph is not None and hasattr(graph, "metric_updates") else None

    def assign_add(self, value):
        graph = self._recorder()
        if graph is not None:
            graph.metric_updates.append((self, value))
            return self
        self._value = (self._value + np.asarray(value, dtype=np.float32)).reshape(self.shape).astype(np.float32)
        return self

    def assign_sub(self, value):
        from kandle import ops
        return self.assign_add(ops.negative(value) if self._recorder() is not None else -np.asarray(value))

    def assign(self, value):
        if self._recorder() is not None:
            raise ValueError(f"Metric \"{self._metric.name}\": kandle runs metrics whose update_state only adds to "
                             f"their variables (assign_add/assign_sub); `{self.name}.assign(...)` cannot be recorded")
        self._value = np.asarray(value, dtype=np.float32).reshape(self.shape).copy()
        return self

    def __array__(self, dtype=None, copy=None):
        return self._value if dtype is None else self._value.astype(dtype)

    def __float__(self):
        return float(self._value)

    def __repr__(self):
        return f"<MetricVariable {self._metric.name}/{self.name} shape={self.shape}>"


def as_op_argument(variable, graph):
    """A metric variable used in an op: the result graph's input, or an error inside update_state."""
    if graph is None:
        return variable._value
    if hasattr(graph, "metric_updates"):
        raise ValueError(f"Metric \"{variable._metric.name}\": update_state reads `{variable.name}`; kandle runs metrics "
                         "whose update_state only adds to their variables (assign_add), from y_true and y_pred")
    return graph.weight(variable)


def is_python_metric(metric):
    from kandle.metrics import _FUNCTIONS, Metric
    if isinstance(metric, Metric):
        return metric._class_name is None
    return (callable(metric) and not isinstance(metric, (str, dict, type))
            and _FUNCTIONS.get(getattr(metric, "__name__", None)) is not metric)


def record(metric, output_shape, target_shape=None):
    """The core's spec of a Python metric for a model output of ``output_shape``."""
    from kandle import ops
    from kandle.metrics import Metric
    from kandle.ops._graph import SymbolicTensor, _Graph, recording

    name = metric.name if isinstance(metric, Metric) else getattr(metric, "__name__", "custom_metric")
    who = f"Metric \"{name}\""
    graph = _Graph(who)
    y_true = graph.input((None, *(target_shape or output_shape)))
    y_pred = graph.input((None, *output_shape))
    if not isinstance(metric, Metric):
        with recording(graph):
            out = metric(y_true, y_pred)
        _check(out, graph, who)
        config = {"name": name, "update": graph.to_json(out), "state": [], "init": []}
    else:
        graph.metric_updates = []
        with recording(graph):
            metric.update_state(y_true, y_pred)
        flat = []
        for v in metric._variables:
            adds = [u for var, u in graph.metric_updates if var is v]
            total = ops.zeros_like(graph.const(np.zeros(v.shape, np.float32)))
            for u in adds:
                total = ops.add(total, u)
            if not isinstance(total, SymbolicTensor) or tuple(total.shape) != v.shape:
                raise ValueError(f"{who}: what update_state adds to `{v.name}` must have its shape {v.shape}, got "
                                 f"{getattr(total, 'shape', None)} (reduce over the batch with ops.sum)")
            flat.append(ops.reshape(total, (-1,)))
        if not flat:
            raise ValueError(f"{who}: the metric has no variables (add_variable in __init__)")
        out = flat[0] if len(flat) == 1 else ops.concatenate(flat, axis=0)
        result_graph = _Graph(who)
        for v in metric._variables:
            result_graph.weight(v)
        with recording(result_graph):
            result = metric.result()
        if isinstance(result, MetricVariable):
            result = result_graph.weight(result)
        _check(result, result_graph, who)
        config = {"name": name, "update": graph.to_json(out), "result": result_graph.to_json(result),
                  "state": [list(v.shape) for v in metric._variables],
                  # Each epoch and evaluate() starts from zeros: Keras's reset_state (Keras itself keeps a
                  # non-zero initializer's values until the first reset, i.e. for a first fit's first epoch).
                  "init": [0.0] * int(sum(np.prod(v.shape, dtype=int) for v in metric._variables))}
    return json.dumps({"class_name": "kandle>GraphMetric", "config": config})


def _check(out, graph, who):
    from kandle.ops._graph import SymbolicTensor
    if not isinstance(out, SymbolicTensor) or out._graph is not graph:
        raise TypeError(f"{who} must compute its values with kandle.ops from its inputs, got {type(out).__name__}")
