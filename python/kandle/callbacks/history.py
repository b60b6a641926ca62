"""Owns `History` (the object fit returns) and `HistoryDict` (its alias-aware ``history`` dict)."""

from kandle.callbacks.callback import Callback, log_aliases

_BATCH_KEYS = ("batch", "size")


class HistoryDict(dict):
    """A plain dict of lists whose missing keys are looked up through old/new metric names.

    ``h['acc']`` finds ``h['accuracy']`` (and back), likewise 'mse' / 'mean_squared_error',
    'mae' / 'mean_absolute_error', 'lr' / 'learning_rate', ..., with or without the 'val_'
    prefix. ``in``, ``keys()``, iteration, ``len`` and ``dict(h)`` show only the real keys.
    It pickles as itself, so the aliases work after unpickling too.
    """

    def __missing__(self, key):
        for alias in log_aliases(key):
            if dict.__contains__(self, alias):
                return dict.__getitem__(self, alias)
        raise KeyError(key)

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def copy(self):
        return HistoryDict(self)

    def __reduce__(self):
        return (HistoryDict, (dict(self),))


# Pickles reference the public path, whatever file defines the class.
HistoryDict.__module__ = "kandle.callbacks"


def _to_float(value):
    """Python float for numbers (numpy scalars included); other values unchanged."""
    if isinstance(value, (bool, str)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


class History(Callback):
    """Records the epoch logs; fit returns it (and sets it as ``model.history``).

    Attributes:
        epoch: list of the (0-based) epoch indices seen.
        history: `HistoryDict` mapping each log name ('loss', 'acc', 'val_loss', ...) to the
            list of its per-epoch values, as Python floats.
        params, model: as set by the `CallbackList`.
    """

    def __init__(self):
        super().__init__()
        self.epoch = []
        self.history = HistoryDict()

    def _attach(self):
        if self.model is not None:
            try:
                self.model.history = self
            except AttributeError:
                pass

    def on_train_begin(self, logs=None):
        self.epoch = []
        self.history = HistoryDict()
        self._attach()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            if key in _BATCH_KEYS:
                continue
            self.history.setdefault(key, []).append(_to_float(value))
        self._attach()
