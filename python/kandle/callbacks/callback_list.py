"""Owns `CallbackList`: the container through which fit/evaluate/predict call every callback."""

from kandle.callbacks.callback import Callback
from kandle.callbacks.history import History
from kandle.callbacks.progbar_logger import ProgbarLogger
from kandle.distribution.distribution_lib import _is_chief


class CallbackList(Callback):
    """Calls each hook on every callback, in order, passing the same `logs` dict along.

    Arguments:
        callbacks: a callback, a list of callbacks, or None.
        add_history: append a `History` unless one is already in `callbacks`.
        add_progbar: put a `ProgbarLogger` first unless one is already in `callbacks`.
        model: passed to every callback's `set_model` (when not None).
        **params: the dict passed to every callback's `set_params` (when any is given):
            'epochs', 'steps', 'samples', 'batch_size', 'verbose', 'do_validation',
            'metrics', and optionally 'val_samples' / 'val_steps'.

    The order is Keras 2.2's: progress bar first (so that messages printed by other callbacks
    at the end of an epoch come after the epoch's line), user callbacks, then `History`.
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None,
                 **params):
        super().__init__()
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, (list, tuple)):
            callbacks = list(callbacks)
        elif isinstance(callbacks, CallbackList):
            callbacks = list(callbacks.callbacks)
        else:
            callbacks = [callbacks]
        self.callbacks = callbacks
        if not _is_chief():  # a data-parallel run: only process 0 draws progress
            callbacks = [c for c in callbacks if not isinstance(c, ProgbarLogger)]
            add_progbar = False
        self.callbacks = callbacks
        self._history = next((c for c in callbacks if isinstance(c, History)), None)
        self._progbar = next((c for c in callbacks if isinstance(c, ProgbarLogger)), None)
        if add_progbar and self._progbar is None:
            self._progbar = ProgbarLogger()
            self.callbacks.insert(0, self._progbar)
        if add_history and self._history is None:
            self._history = History()
            self.callbacks.append(self._history)
        if model is not None:
            self.set_model(model)
        if params:
            self.set_params(params)

    @property
    def history(self):
        """The `History` callback of this list (None if it has none); what fit returns."""
        return self._history

    @property
    def progbar(self):
        """The `ProgbarLogger` of this list (None if it has none)."""
        return self._progbar

    def append(self, callback):
        self.callbacks.append(callback)
        if self.model is not None:
            callback.set_model(self.model)
        if self.params is not None:
            callback.set_params(self.params)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)

    def set_params(self, params):
        self.params = params
        for callback in self.callbacks:
            callback.set_params(params)

    def set_model(self, model):
        self.model = model
        for callback in self.callbacks:
            callback.set_model(model)

    def _call_batch(self, hook, batch, logs):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            getattr(callback, hook)(batch, logs)

    def _call(self, hook, logs):
        logs = {} if logs is None else logs
        for callback in self.callbacks:
            getattr(callback, hook)(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._call_batch("on_epoch_begin", epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._call_batch("on_epoch_end", epoch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call_batch("on_train_batch_begin", batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._call_batch("on_train_batch_end", batch, logs)

    # Keras 2 names: on a CallbackList they are the train-batch hooks (call one or the other).
    on_batch_begin = on_train_batch_begin
    on_batch_end = on_train_batch_end

    def on_test_batch_begin(self, batch, logs=None):
        self._call_batch("on_test_batch_begin", batch, logs)

    def on_test_batch_end(self, batch, logs=None):
        self._call_batch("on_test_batch_end", batch, logs)

    def on_predict_batch_begin(self, batch, logs=None):
        self._call_batch("on_predict_batch_begin", batch, logs)

    def on_predict_batch_end(self, batch, logs=None):
        self._call_batch("on_predict_batch_end", batch, logs)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs)

    def on_train_end(self, logs=None):
        # fit calls this also when training ends with an error (KeyboardInterrupt, ...): every
        # callback gets its chance to clean up (close files, end lines); the first error wins.
        logs = {} if logs is None else logs
        error = None
        for callback in self.callbacks:
            try:
                callback.on_train_end(logs)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                if error is None:
                    error = exc
        if error is not None:
            raise error

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs)

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs)

    def on_predict_begin(self, logs=None):
        self._call("on_predict_begin", logs)

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs)
