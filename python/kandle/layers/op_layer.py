"""A ``kandle.ops`` call on the ``KerasTensor``s of a functional (or subclassed) model: Keras 3 adds
the op to the graph; kandle wraps it in an ``OpLayer``, a custom layer whose ``call`` is that one op
(the other arguments kept as constants), so the core runs and differentiates it like any layer."""

import numpy as np

from kandle import backend
from kandle.layers.base import Layer


def _encode(value):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return {"value": value}
    a = np.asarray(value)
    return {"array": a.tolist(), "dtype": str(a.dtype)}


def _decode(spec):
    return spec["value"] if "value" in spec else np.asarray(spec["array"], dtype=spec["dtype"])


class OpLayer(Layer):
    """One op of ``kandle.ops`` applied to symbolic tensors of a model."""

    def __init__(self, op, attrs=None, template=None, **kwargs):
        super().__init__(**kwargs)
        self._class_name = "OpLayer"
        self.op, self.attrs = op, dict(attrs or {})
        # Per argument: {"tensor": i} (the i-th input of the call) or an encoded constant.
        self.template = list(template or [])

    def call(self, inputs):
        from kandle import ops

        xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        args = [xs[t["tensor"]] if "tensor" in t else _decode(t) for t in self.template]
        return ops._apply(self.op, args, self.attrs)

    def get_config(self):
        config = super().get_config()
        config.update({"op": self.op, "attrs": self.attrs, "template": self.template})
        return config


def apply_to_keras_tensors(op, args, attrs):
    from kandle.layers.input_layer import KerasTensor
    from kandle.ops._graph import SymbolicTensor

    if any(isinstance(a, SymbolicTensor) for a in args):
        raise ValueError(f"ops.{op}: a model's symbolic tensors and a layer's call() tensors cannot be mixed")
    tensors, template = [], []
    for a in args:
        if isinstance(a, KerasTensor):
            index = next((i for i, t in enumerate(tensors) if t is a), None)
            if index is None:
                tensors.append(a)
                index = len(tensors) - 1
            template.append({"tensor": index})
        else:
            template.append(_encode(a))
    layer = OpLayer(op, attrs, template, name=backend.unique_name(op))
    return layer(tensors if len(tensors) > 1 else tensors[0])


def replay(graph, inputs):
    """Runs a recorded graph (its config's ``_kandle_graph``) again through ``kandle.ops`` on new inputs:
    how a loaded ``Lambda`` computes without the Python function that recorded it."""
    from kandle import ops

    xs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    if graph.get("weights"):
        raise ValueError("a recorded graph with weights cannot be replayed as a Lambda")
    consts = [np.asarray(c["data"], dtype={"bool": np.bool_, "int64": np.int64}.get(c["dtype"], np.float32))
              .reshape(c["shape"]) for c in graph["consts"]]
    values = []

    def get(ref):
        kind, i = ref
        return {"input": xs, "const": consts, "node": values}[kind][i]

    for node in graph["nodes"]:
        values.append(ops._apply(node["op"], [get(r) for r in node["args"]], node["attrs"]))
    return get(graph["output"])


class Lambda(Layer):
    """``keras.layers.Lambda``: a function of kandle.ops as a layer. Saved as its recorded graph, so a
    loaded model computes the same without the function (Keras would unpickle its bytecode)."""

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        self._class_name = "Lambda"
        if mask is not None:
            raise ValueError("kandle does not implement Lambda(mask=...) yet")
        if not callable(function):
            raise TypeError(f"Lambda: `function` must be callable, got {function!r}")
        self.function, self.arguments = function, dict(arguments or {})

    def call(self, inputs):
        return self.function(inputs, **self.arguments)

    def get_config(self):
        config = super().get_config()
        config["function"] = getattr(self.function, "__name__", "lambda")
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        graph = config.get("_kandle_graph")
        if graph is None:
            raise ValueError("Lambda.from_config: the config holds no recorded graph to compute with")
        config.pop("function", None)
        config.pop("arguments", None)
        config.pop("output_shape", None)
        return cls(lambda x: replay(graph, x), **config)
