"""Owns the plateau callbacks: `EarlyStopping` and `ReduceLROnPlateau`."""

import warnings

import numpy as np

from kandle.callbacks.callback import (Callback, get_learning_rate, get_monitor_value, print_msg,
                                       resolve_mode, set_learning_rate)


class EarlyStopping(Callback):
    """Stops training when a monitored quantity has stopped improving (Keras 3 semantics).

    Arguments:
        monitor: log name to watch.
        min_delta: smallest change counted as an improvement.
        patience: epochs without improvement after which training stops.
        verbose: 1 prints when it stops and when it restores weights.
        mode: 'auto', 'min' or 'max' ('auto': max for accuracy-like names, else min).
        baseline: the wait counter is reset only by values better than `baseline`.
        restore_best_weights: at the end of training (also after an early stop or an
            interruption), set the weights of the best epoch back into the model.
        start_from_epoch: epochs of warm-up during which nothing is watched.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor = monitor
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.mode = resolve_mode(mode, monitor, "EarlyStopping")
        self.monitor_op = np.less if self.mode == "min" else np.greater
        self.min_delta = abs(min_delta) * (-1 if self.mode == "min" else 1)
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_train_begin(self, logs=None):
        # Allow instances to be re-used.
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        return bool(self.monitor_op(value - self.min_delta, reference))

    def on_epoch_end(self, epoch, logs=None):
        current = get_monitor_value(logs, self.monitor, "Early stopping conditioned on metric")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # If best weights were never set, the current weights are the best.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # Only restart waiting if we beat both the baseline and our previous best.
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print_msg("Epoch %05d: early stopping" % (self.stopped_epoch + 1))
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print_msg("Restoring model weights from the end of the best epoch: %d."
                          % (self.best_epoch + 1))
            self.model.set_weights(self.best_weights)


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by `factor` when a metric has stopped improving.

    Sets ``model.optimizer.learning_rate`` and logs the current rate as ``logs['lr']`` at
    each epoch end (Keras 2.2's name; `History` answers 'learning_rate' too).

    Arguments:
        monitor: log name to watch.
        factor: new_lr = lr * factor (must be < 1).
        patience: epochs without improvement before reducing.
        verbose: 1 prints a line at each reduction.
        mode: 'auto', 'min' or 'max'.
        min_delta: threshold for a new optimum (Keras 2's `epsilon` is accepted too).
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: lower bound of the learning rate.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, **kwargs):
        super().__init__()
        if "epsilon" in kwargs:
            min_delta = kwargs.pop("epsilon")
            warnings.warn("`epsilon` argument is deprecated, use `min_delta` instead.",
                          DeprecationWarning, stacklevel=2)
        if kwargs:
            raise TypeError("Unexpected keyword arguments: %s" % sorted(kwargs))
        if factor >= 1.0:
            raise ValueError("ReduceLROnPlateau does not support a factor >= 1.0. "
                             "Received factor=%s" % factor)
        self.monitor = monitor
        self.factor = factor
        self.min_lr = min_lr
        self.min_delta = min_delta
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.mode = resolve_mode(mode, monitor, "Learning rate reduction")
        self._reset()

    def _reset(self):
        if self.mode == "min":
            self.monitor_op = lambda a, b: a < b - self.min_delta
            self.best = np.inf
        else:
            self.monitor_op = lambda a, b: a > b + self.min_delta
            self.best = -np.inf
        self.cooldown_counter = 0
        self.wait = 0

    def on_train_begin(self, logs=None):
        self._reset()

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        logs = {} if logs is None else logs
        logs["lr"] = get_learning_rate(self.model)
        current = get_monitor_value(logs, self.monitor,
                                    "Learning rate reduction is conditioned on metric")
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self.monitor_op(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = get_learning_rate(self.model)
                if old_lr > float(np.float32(self.min_lr)):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    set_learning_rate(self.model, new_lr)
                    if self.verbose > 0:
                        print_msg("\nEpoch %05d: ReduceLROnPlateau reducing learning rate to %s."
                                  % (epoch + 1, new_lr))
                    self.cooldown_counter = self.cooldown
                    self.wait = 0
