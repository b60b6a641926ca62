"""``kandle.activations``: activation identifiers by their Keras names, for ``activation=relu``.

Calling one computes it in Rust: ``relu(np.array([-1., 2.]))``.
"""

import numpy as np

from kandle import _kandle


def _make(name):
    def activation(x, *args, **kwargs):
        return _kandle.activation(name, np.ascontiguousarray(x, dtype=np.float32))

    activation.__name__ = name
    activation.__qualname__ = name
    activation.__doc__ = f"The '{name}' activation, element-wise (softmax: over the last axis)."
    return activation


relu = _make("relu")
softmax = _make("softmax")
sigmoid = _make("sigmoid")
tanh = _make("tanh")
linear = _make("linear")
elu = _make("elu")
selu = _make("selu")
softplus = _make("softplus")


def get(identifier):
    if identifier is None:
        return linear
    if callable(identifier):
        return identifier
    value = globals().get(identifier)
    if value is None or identifier.startswith("_") or identifier == "get":
        raise ValueError(f"Could not interpret activation function identifier: {identifier!r}")
    return value


def serialize(activation):
    return activation.__name__
