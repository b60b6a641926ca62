"""Keras 3's sub-namespaces of ``keras.ops`` (``ops.nn``, ``ops.numpy``, ``ops.linalg``, ``ops.core``,
``ops.math``): the same functions as ``kandle.ops``, grouped as Keras groups them."""

import sys
import types

from kandle import ops as _ops

_GROUPS = {
    "nn": ["relu", "relu6", "sigmoid", "silu", "swish", "softplus", "gelu", "softmax", "log_softmax", "leaky_relu",
           "elu", "softsign", "hard_sigmoid", "normalize", "moments", "one_hot", "conv", "max_pool", "average_pool",
           "categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy"],
    "linalg": [],
    "core": ["cast", "convert_to_tensor", "convert_to_numpy", "is_tensor", "shape", "slice", "stop_gradient"],
    "math": ["logsumexp"],
}
_NUMPY = ["add", "subtract", "multiply", "divide", "true_divide", "power", "maximum", "minimum", "greater",
          "greater_equal", "less", "less_equal", "equal", "not_equal", "negative", "abs", "absolute", "square", "sqrt",
          "exp", "log", "reciprocal", "sin", "cos", "tanh", "floor", "round", "sign", "clip", "where", "full_like",
          "zeros_like", "ones_like", "zeros", "ones", "full", "arange", "eye", "sum", "mean", "var", "std", "max",
          "min", "amax", "amin", "argmax", "argmin", "reshape", "transpose", "expand_dims", "squeeze", "concatenate",
          "stack", "split", "take", "tile", "pad", "matmul", "einsum", "dot", "ndim", "tensordot"]
_GROUPS["numpy"] = _NUMPY


def _module(name, names):
    m = types.ModuleType(f"kandle.ops.{name}", f"keras.ops.{name}: kandle's functions of that group.")
    for n in names:
        setattr(m, n, getattr(_ops, n))

    def missing(attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise AttributeError(f"kandle does not implement keras.ops.{name}.{attr} yet")

    m.__getattr__ = missing
    sys.modules[m.__name__] = m
    return m


nn = _module("nn", _GROUPS["nn"])
numpy = _module("numpy", _GROUPS["numpy"])
linalg = _module("linalg", _GROUPS["linalg"])
core = _module("core", _GROUPS["core"])
math = _module("math", _GROUPS["math"])
