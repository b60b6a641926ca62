"""Owns `ProgbarLogger`: the Keras 2.2 console output of fit, evaluate and predict."""

from kandle.callbacks.callback import Callback
from kandle.utils import generic_utils

_BATCH_KEYS = ("batch", "size")


class ProgbarLogger(Callback):
    """Prints the Keras 2.2 progress output.

    fit (params 'verbose' 1 or 2)::

        Train on 50000 samples, validate on 10000 samples
        Epoch 1/10
        50000/50000 [==============================] - 58s 1ms/step - loss: 3.9989 - acc: 0.0889

    evaluate / predict (only with verbose=1, as Keras 2.2): the bar alone, no values.

    Arguments:
        count_mode: 'samples' (the bar counts ``logs['size']`` of each batch, target
            ``params['samples']``) or 'steps' (counts batches, target ``params['steps']``).
            'samples' falls back to steps when ``params['samples']`` is None.
        stateful_metrics: accepted for Keras 2 compatibility; every value is shown as logged
            (the model logs running means already).
    """

    def __init__(self, count_mode="samples", stateful_metrics=None):
        super().__init__()
        if count_mode not in ("samples", "steps"):
            raise ValueError("Unknown `count_mode`: " + str(count_mode))
        self.count_mode = count_mode
        self.stateful_metrics = set(stateful_metrics or ())
        self.progbar = None
        self.verbose = 1
        self.epochs = 1
        self.target = None
        self.seen = 0
        self._use_steps = False
        self._show_values = True
        self._in_fit = False

    def _param(self, name, default=None):
        value = (self.params or {}).get(name)
        return default if value is None else value

    def _read_verbose(self):
        verbose = self._param("verbose", 1)
        self.verbose = 1 if verbose == "auto" else int(verbose)

    def _start_progbar(self, verbose, show_values):
        samples = self._param("samples")
        self._use_steps = self.count_mode == "steps" or samples is None
        self.target = self._param("steps") if self._use_steps else samples
        self.seen = 0
        self._show_values = show_values
        self.progbar = generic_utils.Progbar(target=self.target, verbose=verbose)

    def _values(self, logs):
        names = self._param("metrics") or ()
        keys = [k for k in names if k in logs]
        keys += [k for k in logs if k not in _BATCH_KEYS and k not in keys]
        return [(k, logs[k]) for k in keys]

    def _batch_update(self, batch, logs):
        if self.progbar is None:
            return
        logs = logs or {}
        if self._use_steps:
            self.seen = batch + 1
        else:
            size = logs.get("size")
            if size is None:
                size = self._param("batch_size", 0)
            self.seen += int(size)
        # The last batch is drawn by on_epoch_end / on_*_end, with the epoch's values.
        if self.target is None or self.seen < self.target:
            self._update(logs, finalize=False)

    def _update(self, logs, finalize):
        values = self._values(logs or {}) if self._show_values else []
        self.progbar.stateful_metrics.update(name for name, _ in values)
        self.progbar.update(self.seen, values, finalize=finalize)

    def _finish(self, logs):
        if self.progbar is not None:
            self._update(logs, finalize=True)
            self.progbar = None

    # -- fit --------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._in_fit = True
        self._read_verbose()
        self.epochs = self._param("epochs", 1)
        if not self.verbose:
            return
        samples, steps = self._param("samples"), self._param("steps")
        validating = bool(self._param("do_validation", False))
        if samples is not None:
            message = "Train on %d samples" % samples
            if validating and self._param("val_samples") is not None:
                message += ", validate on %d samples" % self._param("val_samples")
        elif steps is not None:
            message = "Train for %d steps" % steps
            if validating and self._param("val_steps") is not None:
                message += ", validate for %d steps" % self._param("val_steps")
        else:
            return
        generic_utils.print_msg(message)

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose:
            generic_utils.print_msg("Epoch %d/%d" % (epoch + 1, self.epochs))
        self._start_progbar(self.verbose, show_values=True)

    def on_train_batch_end(self, batch, logs=None):
        self._batch_update(batch, logs)

    def show_restored_epoch(self, epoch, logs, seconds):
        """An epoch that `BackupAndRestore` brought back, drawn as it ended (its logs, its seconds),
        its header marked so that nobody takes it for one that ran now."""
        if not self.verbose:
            return
        generic_utils.print_msg("Epoch %d/%d (restored from backup)" % (epoch + 1, self.epochs))
        self._start_progbar(self.verbose, show_values=True)
        if seconds is not None:
            self.progbar.restart_clock(seconds)
        self.seen = self.target or 0
        self._finish(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._finish(logs)

    def on_train_end(self, logs=None):
        self._in_fit = False
        self.progbar = None
        generic_utils.end_line()  # fit interrupted mid-epoch: end the bar's line

    # -- evaluate / predict (validation inside fit draws nothing) --------------------------------

    def _begin_loop(self):
        if self._in_fit:
            return
        self._read_verbose()
        if self.verbose == 1:
            self._start_progbar(1, show_values=False)
        else:
            self.progbar = None

    def _end_loop(self):
        if not self._in_fit:
            self._finish(None)

    def on_test_begin(self, logs=None):
        self._begin_loop()

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._batch_update(batch, logs)

    def on_test_end(self, logs=None):
        self._end_loop()

    def on_predict_begin(self, logs=None):
        self._begin_loop()

    def on_predict_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._batch_update(batch, logs)

    def on_predict_end(self, logs=None):
        self._end_loop()
