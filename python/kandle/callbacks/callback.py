"""Owns the `Callback` base class, the no-op `BaseLogger`, and the helpers shared by callbacks
(log-name aliases, monitor lookup, mode='auto' resolution, learning-rate access)."""

import warnings

from kandle.utils.generic_utils import print_msg  # noqa: F401  (re-exported for callbacks)

# Old (Keras 2.2) and new (Keras 3) names of the same log entry; 'val_' prefixes are handled too.
_ALIAS_GROUPS = (
    ("acc", "accuracy"),
    ("mse", "mean_squared_error"),
    ("mae", "mean_absolute_error"),
    ("mape", "mean_absolute_percentage_error"),
    ("msle", "mean_squared_logarithmic_error"),
    ("lr", "learning_rate"),
)
LOG_ALIASES = {name: tuple(n for n in group if n != name)
               for group in _ALIAS_GROUPS for name in group}


def log_aliases(key):
    """Other names under which the log entry `key` may appear ('val_acc' -> ('val_accuracy',))."""
    if not isinstance(key, str):
        return ()
    prefix, base = ("val_", key[4:]) if key.startswith("val_") else ("", key)
    return tuple(prefix + alias for alias in LOG_ALIASES.get(base, ()))


def lookup_log(logs, key, default=None):
    """``logs[key]``, else the value under one of its aliases, else `default`."""
    if not logs:
        return default
    if key in logs:
        return logs[key]
    for alias in log_aliases(key):
        if alias in logs:
            return logs[alias]
    return default


def get_monitor_value(logs, monitor, what):
    """The monitored value as a float, or None (with a warning, as Keras) when it is missing.

    `what` starts the warning, e.g. "Early stopping conditioned on metric".
    """
    value = lookup_log(logs, monitor)
    if value is None:
        warnings.warn("%s `%s` which is not available. Available metrics are: %s"
                      % (what, monitor, ",".join(list((logs or {}).keys()))),
                      RuntimeWarning, stacklevel=3)
        return None
    return float(value)


def higher_is_better(monitor):
    """mode='auto': accuracy-like names (acc, accuracy, auc, precision, recall, ...) -> max."""
    name = monitor[4:] if monitor.startswith("val_") else monitor
    if name.endswith("loss") or name.endswith("error"):
        return False
    return any(s in name for s in ("acc", "auc", "precision", "recall", "fmeasure", "f1", "iou"))


def resolve_mode(mode, monitor, owner):
    """'min' or 'max' for `mode` in ('auto', 'min', 'max'); unknown modes warn and mean 'auto'."""
    if mode not in ("auto", "min", "max"):
        warnings.warn("%s mode %s is unknown, fallback to auto mode." % (owner, mode),
                      RuntimeWarning, stacklevel=3)
        mode = "auto"
    if mode == "auto":
        mode = "max" if higher_is_better(monitor) else "min"
    return mode


def get_learning_rate(model):
    """``model.optimizer.learning_rate`` (or the old ``lr`` alias) as a Python float."""
    optimizer = getattr(model, "optimizer", None)
    for name in ("learning_rate", "lr"):
        if hasattr(optimizer, name):
            return float(getattr(optimizer, name))
    raise ValueError('Optimizer must have a "learning_rate" attribute.')


def set_learning_rate(model, value):
    optimizer = getattr(model, "optimizer", None)
    name = "learning_rate" if hasattr(optimizer, "learning_rate") else "lr"
    if not hasattr(optimizer, name):
        raise ValueError('Optimizer must have a "learning_rate" attribute.')
    setattr(optimizer, name, float(value))


class Callback:
    """Base class of the callbacks: every hook is a no-op.

    Attributes:
        params: dict of training parameters (verbose, epochs, steps, samples, ...).
        model: the model being trained, evaluated or used for prediction.

    The ``on_train_batch_*`` hooks call the Keras 2 ``on_batch_*`` hooks, so a subclass may
    override either.
    """

    model = None
    params = None
    validation_data = None  # Keras 2 attribute, kept for old subclasses

    def __init__(self):
        self.model = None
        self.params = None

    def set_params(self, params):
        self.params = params

    def set_model(self, model):
        self.model = model

    def on_batch_begin(self, batch, logs=None):
        """Keras 2 name of `on_train_batch_begin`."""

    def on_batch_end(self, batch, logs=None):
        """Keras 2 name of `on_train_batch_end`."""

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass


class BaseLogger(Callback):
    """Keras 2 callback that averaged metrics over an epoch.

    kandle's models already log running means, so this is a no-op kept for old code that
    names it.
    """

    def __init__(self, stateful_metrics=None):
        super().__init__()
        self.stateful_metrics = set(stateful_metrics or ())
