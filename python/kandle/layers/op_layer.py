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
