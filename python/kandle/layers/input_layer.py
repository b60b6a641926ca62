"""Symbolic tensors and model inputs: ``Input(shape)`` returns a ``KerasTensor``; calling a layer on
KerasTensors records a ``Node`` (the layer, its input tensors) and returns the output's KerasTensor,
whose ``_keras_history`` ``(layer, node_index, tensor_index)`` leads back through the graph, as in
Keras 3 (``keras/src/ops/node.py``). Shapes are inferred by the Rust core; nothing is computed here.
"""

from kandle import backend


class KerasTensor:
    """A symbolic tensor: a batch shape ``(None, ...)``, a dtype and the call that made it."""

    def __init__(self, shape, dtype="float32", history=None, name=None):
        self.shape = tuple(shape)
        self.dtype = dtype
        self._keras_history = history
        self.name = name

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"

    def __array__(self, *args, **kwargs):
        raise TypeError("A KerasTensor is symbolic: it has no values. Build a Model from it and call "
                        "model.predict(...) to compute outputs.")

    def __iter__(self):
        raise TypeError("A KerasTensor is symbolic and cannot be iterated")


class Node:
    """One call of a layer: its input tensors (as passed: one tensor or a list) and its output."""

    def __init__(self, layer, args, output):
        self.layer = layer
        self.args = args
        self.output = output

    @property
    def input_tensors(self):
        return list(self.args) if isinstance(self.args, (list, tuple)) else [self.args]


class InputLayer:
    """The layer behind ``Input``: it has no weights and appears first in a functional model's
    ``layers``, as in Keras 3."""

    _class_name = "InputLayer"

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None, sparse=None,
                 input_tensor=None, **kwargs):
        from kandle.layers.base import _shape

        if kwargs.get("input_shape") is not None and shape is None:
            shape = kwargs.pop("input_shape")
        if batch_shape is not None:
            shape = tuple(batch_shape)[1:]
        if shape is None:
            raise ValueError("Input: please provide `shape` (the shape of one sample, without the batch axis)")
        if dtype not in (None, "float32"):
            raise ValueError(f"Input: kandle computes in float32 only, got dtype={dtype!r}")
        if sparse:
            raise ValueError("Input: kandle does not implement sparse inputs yet")
        self.name = name or backend.unique_name("input_layer")
        self.shape = _shape(shape, "Input")
        self.trainable = False
        self._inbound_nodes = []
        self.output = KerasTensor((None, *self.shape), history=(self, 0, 0), name=self.name)
        self._inbound_nodes.append(Node(self, [], self.output))

    @property
    def built(self):
        return True

    @property
    def dtype_policy(self):
        """An input's data is float32 under any policy (the first layer casts, as in Keras)."""
        from kandle.mixed_precision import DTypePolicy

        return DTypePolicy("float32")

    compute_dtype = variable_dtype = dtype = property(lambda self: "float32")

    @property
    def output_shape(self):
        return (None, *self.shape)

    @property
    def input_shape(self):
        return self.output_shape

    def count_params(self):
        return 0

    def get_weights(self):
        return []

    def set_weights(self, weights):
        if list(weights):
            raise ValueError(f"Layer \"{self.name}\" (InputLayer) has no weights")

    weights = trainable_weights = non_trainable_weights = property(lambda self: [])

    def get_config(self):
        return {"batch_shape": [None, *self.shape], "dtype": "float32", "sparse": False, "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(batch_shape=config.get("batch_shape") or config.get("batch_input_shape"), name=config.get("name"))

    def __repr__(self):
        return f"<InputLayer name={self.name}, shape={self.output_shape}>"


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None, tensor=None,
          **kwargs):
    """``keras.Input``: a symbolic tensor to build a functional ``Model`` from (or to start a
    ``Sequential``)."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse, batch_shape=batch_shape,
                      name=name, **kwargs).output
