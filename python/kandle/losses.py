"""``kandle.losses``: loss identifiers by their Keras names (functions and classes), computed in Rust.

``compile(loss=categorical_crossentropy)`` and ``compile(loss=CategoricalCrossentropy())`` both work;
calling a function returns per-sample losses, calling a class instance their mean, as in Keras.
"""

import json

import numpy as np

from kandle import _kandle, backend


def _values(spec, y_true, y_pred):
    return _kandle.loss_values(spec, np.ascontiguousarray(y_true, dtype=np.float32),
                               np.ascontiguousarray(y_pred, dtype=np.float32))


def _spec(class_name, **config):
    """The core's identifier of a loss with options: Keras's ``{"class_name", "config"}`` as JSON."""
    return json.dumps({"class_name": class_name, "config": config})


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    _axis(axis)
    return _values(_spec("CategoricalCrossentropy", from_logits=from_logits, label_smoothing=label_smoothing),
                   y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    _axis(axis)
    if ignore_class is not None:
        raise ValueError("kandle does not implement sparse_categorical_crossentropy(ignore_class=...) yet")
    return _values(_spec("SparseCategoricalCrossentropy", from_logits=from_logits), y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    _axis(axis)
    return _values(_spec("BinaryCrossentropy", from_logits=from_logits, label_smoothing=label_smoothing),
                   y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    return _values("mean_squared_error", y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    return _values("mean_absolute_error", y_true, y_pred)


def _axis(axis):
    if axis != -1:
        raise ValueError(f"kandle does not implement losses over axis={axis} yet (only the last axis)")


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error

_FUNCTIONS = {f.__name__: f for f in (categorical_crossentropy, sparse_categorical_crossentropy,
                                      binary_crossentropy, mean_squared_error, mean_absolute_error)}
_NAMES = set(_FUNCTIONS) | {"mse", "mae"}


class Loss:
    """Keras 3's loss objects: ``__call__(y_true, y_pred)`` gives the reduced loss; ``compile(loss=obj)``
    trains with the same options, computed in Rust."""

    name = None
    _options = {}  # option -> Keras's default

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None, **options):
        if type(self).call is not Loss.call:  # a user's subclass, written with kandle.ops
            if reduction not in ("sum_over_batch_size", "auto", "mean", "sum"):
                raise ValueError(f"kandle does not implement the loss reduction {reduction!r} yet")
            self.reduction, self._config = reduction, {}
            self.__name__ = self.name = name or backend.snake_case(type(self).__name__)
            return
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unexpected keyword argument(s): {sorted(unknown)}")
        if dtype not in (None, "float32") and not (isinstance(dtype, dict) and "float32" in str(dtype)):
            raise ValueError(f"kandle does not implement {type(self).__name__}(dtype={dtype!r}) yet")
        self.reduction = reduction
        self._config = {k: options.get(k, default) for k, default in self._options.items()}
        self.__dict__.update(self._config)
        self.__name__ = name or self.name
        # Check now, as Keras's constructors do.
        y_probe = np.zeros((1,) if isinstance(self, SparseCategoricalCrossentropy) else (1, 2), np.float32)
        _kandle.loss_values(self._core_spec(), y_probe, np.full((1, 2), 0.5, np.float32))

    def _core_spec(self):
        if self.reduction in ("sum_over_batch_size", "auto", "mean") and not any(self._config.values()):
            return self.name
        return _spec(type(self).__name__, reduction=self.reduction, **self._config)

    def call(self, y_true, y_pred):
        """A custom loss's per-sample values, in ``kandle.ops`` (subclasses override it)."""
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("kandle does not implement sample_weight yet")
        if type(self).call is not Loss.call:
            values = np.asarray(self.call(np.asarray(y_true, np.float32), np.asarray(y_pred, np.float32)))
            return float(np.sum(values) if self.reduction == "sum" else np.mean(values))
        values = _values(self._core_spec(), y_true, y_pred)
        return float(np.sum(values) if self.reduction == "sum" else np.mean(values))

    def get_config(self):
        return dict(self._config, name=self.__name__, reduction=self.reduction)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"
    _options = {"from_logits": False, "label_smoothing": 0.0}

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="categorical_crossentropy", dtype=None):
        _axis(axis)
        super().__init__(reduction, name, dtype, from_logits=from_logits, label_smoothing=label_smoothing)


class SparseCategoricalCrossentropy(Loss):
    name = "sparse_categorical_crossentropy"
    _options = {"from_logits": False}

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 name="sparse_categorical_crossentropy", dtype=None):
        if ignore_class is not None:
            raise ValueError("kandle does not implement SparseCategoricalCrossentropy(ignore_class=...) yet")
        super().__init__(reduction, name, dtype, from_logits=from_logits)


class BinaryCrossentropy(Loss):
    name = "binary_crossentropy"
    _options = {"from_logits": False, "label_smoothing": 0.0}

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1, reduction="sum_over_batch_size",
                 name="binary_crossentropy", dtype=None):
        _axis(axis)
        super().__init__(reduction, name, dtype, from_logits=from_logits, label_smoothing=label_smoothing)


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(reduction, name, dtype)


class MeanAbsoluteError(Loss):
    name = "mean_absolute_error"

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(reduction, name, dtype)


_CLASSES = {c.__name__: c for c in (CategoricalCrossentropy, SparseCategoricalCrossentropy, BinaryCrossentropy,
                                    MeanSquaredError, MeanAbsoluteError)}


def get(identifier):
    if isinstance(identifier, str):
        return globals()[identifier] if identifier in _NAMES else _bad(identifier)
    if isinstance(identifier, dict):
        return deserialize(identifier)
    return identifier


def deserialize(config, custom_objects=None):
    """A loss from a name or Keras's ``{"class_name", "config"}``."""
    if isinstance(config, str):
        return get(config)
    cls = _CLASSES.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"kandle does not implement the loss {config.get('class_name')!r} yet")
    return cls.from_config({k: v for k, v in config.get("config", {}).items() if k != "fn"})


def _bad(identifier):
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}")


def name_of(identifier):
    """The loss as the Rust core takes it, for compile(): a name, or a loss object's options as JSON."""
    if isinstance(identifier, str):
        return identifier
    if isinstance(identifier, dict):
        return json.dumps(identifier)
    if isinstance(identifier, Loss):
        return identifier._core_spec()
    if callable(identifier) and _FUNCTIONS.get(getattr(identifier, "__name__", None)) is identifier:
        return identifier.__name__
    raise ValueError(f"Could not interpret loss identifier: {identifier!r}")


def is_sparse(identifier):
    """Whether a loss takes class indices as targets (sparse categorical cross-entropy)."""
    if isinstance(identifier, SparseCategoricalCrossentropy):
        return True
    name = identifier if isinstance(identifier, str) else getattr(identifier, "__name__", None)
    return name in ("sparse_categorical_crossentropy", "SparseCategoricalCrossentropy")


def is_python_loss(identifier):
    """A loss written in Python (a function of ``(y_true, y_pred)`` or a ``Loss`` subclass with ``call``)."""
    if isinstance(identifier, Loss):
        return type(identifier).call is not Loss.call
    return (callable(identifier) and not isinstance(identifier, (str, dict, type))
            and _FUNCTIONS.get(getattr(identifier, "__name__", None)) is not identifier)


def record(identifier, output_shape):
    """A Python loss recorded on symbolic ``(y_true, y_pred)`` shaped like the model's output: the
    spec the core trains with (its graph, run and differentiated in Rust)."""
    from kandle.ops._graph import SymbolicTensor, _Graph

    name = getattr(identifier, "__name__", None) or getattr(identifier, "name", None) or "custom_loss"
    graph = _Graph(f"Loss \"{name}\"")
    y_true, y_pred = graph.input((None, *output_shape)), graph.input((None, *output_shape))
    out = (identifier.call if isinstance(identifier, Loss) else identifier)(y_true, y_pred)
    if not isinstance(out, SymbolicTensor) or out._graph is not graph:
        raise TypeError(f"Loss \"{name}\" must compute its result from y_true and y_pred with kandle.ops, got "
                        f"{type(out).__name__}")
    reduction = getattr(identifier, "reduction", "sum_over_batch_size")
    return json.dumps({"class_name": "kandle>GraphLoss", "config": {"name": name, "reduction": reduction,
                                                                     "graph": graph.to_json(out)}})


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(f"kandle does not implement keras.losses.{name} yet")
