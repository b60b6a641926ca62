"""Owns `ModelCheckpoint`: saving the model (or its weights) during fit."""

import math
import os
import warnings

from kandle.distribution.distribution_lib import _is_chief
from kandle.callbacks.callback import Callback, lookup_log, log_aliases, print_msg, resolve_mode


class _AliasLogs(dict):
    """Logs for ``str.format_map``: '{val_acc:.2f}' also finds 'val_accuracy' and back."""

    def __missing__(self, key):
        for alias in log_aliases(key):
            if dict.__contains__(self, alias):
                return dict.__getitem__(self, alias)
        raise KeyError(key)


class ModelCheckpoint(Callback):
    """Saves the model or its weights at some frequency.

    `filepath` may hold named formatting options filled with `epoch` (1-based, as Keras) and
    the log values, e.g. ``'weights.{epoch:02d}-{val_loss:.2f}.hdf5'``; with ``save_freq`` an
    integer, `batch` (1-based) too.

    Arguments:
        filepath: where to save (str or path-like); its folder is created if missing.
        monitor: log name compared by `save_best_only`.
        verbose: 1 prints a line at each save decision.
        save_best_only: save only when `monitor` improved on the best value so far.
        save_weights_only: ``model.save_weights(filepath, overwrite=True)`` instead of
            ``model.save(filepath, overwrite=True)``.
        mode: 'auto', 'min' or 'max' ('auto': max for accuracy-like names, else min).
        save_freq: 'epoch', or an integer number of batches between saves.
        initial_value_threshold: starting "best" value for `save_best_only`.
        period: Keras 2 argument: save every `period` epochs (with ``save_freq='epoch'``).
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch",
                 initial_value_threshold=None, period=1):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise ValueError("Unrecognized save_freq: %r. Expected save_freq are 'epoch' or a "
                             "positive integer" % (save_freq,))
        self.save_freq = save_freq
        self.period = int(period)
        self.mode = resolve_mode(mode, monitor, "ModelCheckpoint")
        if initial_value_threshold is not None:
            self.best = float(initial_value_threshold)
        else:
            self.best = math.inf if self.mode == "min" else -math.inf
        self.epochs_since_last_save = 0
        self._current_epoch = 0
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = -1

    def _is_improvement(self, current, reference):
        return current < reference if self.mode == "min" else current > reference

    def on_train_begin(self, logs=None):
        self.epochs_since_last_save = 0
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = -1

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch):
            self._save_model(self._current_epoch, batch, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq != "epoch":
            return
        self.epochs_since_last_save += 1
        if self.epochs_since_last_save >= self.period:
            self.epochs_since_last_save = 0
            self._save_model(epoch, None, logs or {})

    def _should_save_on_batch(self, batch):
        if self.save_freq == "epoch":
            return False
        if batch <= self._last_batch_seen:  # a new epoch began
            added = batch + 1
        else:
            added = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += added
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def _get_file_path(self, epoch, batch, logs):
        values = _AliasLogs(logs)
        values["epoch"] = epoch + 1
        if batch is not None and "batch" not in logs:
            values["batch"] = batch + 1
        try:
            return self.filepath.format_map(values)
        except KeyError as exc:
            raise KeyError('Failed to format this callback filepath: "%s". Reason: %s'
                           % (self.filepath, exc)) from None

    def _write(self, filepath):
        if not _is_chief():  # a data-parallel run: process 0 writes, the others hold the same weights
            return
        if self.save_weights_only:
            self.model.save_weights(filepath, overwrite=True)
        else:
            self.model.save(filepath, overwrite=True)

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        dirname = os.path.dirname(filepath)
        if dirname and not os.path.exists(dirname):
            os.makedirs(dirname, exist_ok=True)
        if os.path.isdir(filepath):
            raise IOError("Please specify a non-directory filepath for ModelCheckpoint. "
                          "Filepath used is an existing directory: %s" % filepath)
        if not self.save_best_only:
            if self.verbose > 0:
                print_msg("\nEpoch %05d: saving model to %s" % (epoch + 1, filepath))
            self._write(filepath)
            return
        current = lookup_log(logs, self.monitor)
        if current is None:
            warnings.warn("Can save best model only with %s available, skipping." % self.monitor,
                          RuntimeWarning, stacklevel=2)
            return
        current = float(current)
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                print_msg("\nEpoch %05d: %s improved from %0.5f to %0.5f, saving model to %s"
                          % (epoch + 1, self.monitor, self.best, current, filepath))
            self.best = current
            self._write(filepath)
        elif self.verbose > 0:
            print_msg("\nEpoch %05d: %s did not improve from %0.5f"
                      % (epoch + 1, self.monitor, self.best))
