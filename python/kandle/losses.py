"""``kandle.losses``: loss identifiers by their Keras names (functions and classes), computed in Rust.

``compile(loss=categorical_crossentropy)`` and ``compile(loss=CategoricalCrossentropy())`` both work;
calling a function returns per-sample losses, calling a class instance their mean, as in Keras.
"""

import numpy as np

from kandle import _kandle


def _function(name):
    def loss(y_true, y_pred):
        return _kandle.loss_values(name, np.ascontiguousarray(y_true, dtype=np.float32),
                                   np.ascontiguousarray(y_pred, dtype=np.float32))

    loss.__name__ = name
    loss.__qualname__ = name
    return loss


categorical_crossentropy = _function("categorical_crossentropy")
sparse_categorical_crossentropy = _function("sparse_categorical_crossentropy")
binary_crossentropy = _function("binary_crossentropy")
mean_squared_error = _function("mean_squared_error")
mean_absolute_error = _function("mean_absolute_error")
mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error


class Loss:
    name = None

    def __init__(self, from_logits=False, name=None, reduction="sum_over_batch_size", **kwargs):
        if from_logits:
            raise ValueError(f"{type(self).__name__}: from_logits=True is not supported yet; use a softmax/"
                             "sigmoid output layer (kandle then computes the loss from its logits, as Keras does)")
        if reduction not in ("sum_over_batch_size", "auto"):
            raise ValueError(f"{type(self).__name__}: reduction={reduction!r} is not supported yet")
        self.__name__ = self.name

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported yet")
        return float(np.mean(_function(self.name)(y_true, y_pred)))

    def get_config(self):
        return {"name": self.name, "reduction": "sum_over_batch_size"}


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"


class MeanSquaredError(Loss):
    name = "mean_squared_error"


class MeanAbsoluteError(Loss):
    name = "mean_absolute_error"


def get(identifier):
    if isinstance(identifier, str):
        return globals()[identifier] if identifier in _NAMES else _bad(identifier)
    return identifier


def _bad(identifier):
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}")


_NAMES = {"categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy",
          "mean_squared_error", "mean_absolute_error", "mse", "mae"}


def name_of(identifier):
    """The loss name the Rust core understands, for compile()."""
    if isinstance(identifier, str):
        return identifier
    name = getattr(identifier, "name", None) if isinstance(identifier, Loss) else getattr(identifier, "__name__", None)
    if not isinstance(name, str):
        raise ValueError(f"Could not interpret loss identifier: {identifier!r}")
    return name
