"""Owns the small callbacks: `CSVLogger`, `LearningRateScheduler`, `TerminateOnNaN`,
`LambdaCallback`."""

import csv
import inspect
import math
import numbers
import os

from kandle.distribution.distribution_lib import _is_chief
from kandle.callbacks.callback import Callback, get_learning_rate, print_msg, set_learning_rate


class CSVLogger(Callback):
    """Streams the epoch results to a CSV file: a header, then one row per epoch.

    Columns: 'epoch' (0-based, as Keras) and the sorted log names of the first epoch (plus the
    'val_' names when ``params['do_validation']`` and they are not there yet). Appending to a
    file that has a header reuses its columns. The file is flushed after each row and closed
    by `on_train_end`, which fit calls even when training is interrupted.
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.sep = separator
        self.filename = os.fspath(filename)
        self.append = append
        self.writer = None
        self.keys = None
        self.append_header = True
        self.csv_file = None

    def on_train_begin(self, logs=None):
        self.keys = None
        self.append_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename, "r", newline="") as f:
                header = f.readline().rstrip("\r\n")
            if header:
                self.append_header = False
                columns = header.split(self.sep)
                if columns and columns[0] == "epoch":
                    self.keys = columns[1:]
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        if not _is_chief():  # a data-parallel run: process 0 writes the log
            self.csv_file = None
            return
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="")
        self.writer = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.csv_file is None:
            return
        if self.keys is None:
            self.keys = sorted(k for k in logs if k not in ("batch", "size"))
            if (self.params or {}).get("do_validation") and not any(
                    k.startswith("val_") for k in self.keys):
                self.keys += ["val_" + k for k in self.keys]
        if self.writer is None:
            self.writer = csv.writer(self.csv_file, delimiter=self.sep, lineterminator="\n")
            if self.append_header:
                self.writer.writerow(["epoch"] + self.keys)
        self.writer.writerow([epoch] + [_csv_value(logs.get(k, "NA")) for k in self.keys])
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


def _csv_value(value):
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "[%s]" % ", ".join(map(str, value))
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def _takes_lr(schedule):
    """Whether `schedule` accepts (epoch, lr); None when its signature can't be read."""
    try:
        parameters = inspect.signature(schedule).parameters.values()
    except (TypeError, ValueError):
        return None
    positional = 0
    for p in parameters:
        if p.kind == p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional += 1
    return positional >= 2


class LearningRateScheduler(Callback):
    """Sets the learning rate at the beginning of each epoch.

    Arguments:
        schedule: ``schedule(epoch)`` or ``schedule(epoch, lr)`` (epoch 0-based, lr the
            current rate as a float) returning the new rate.
        verbose: 1 prints the new rate each epoch.

    The rate is also logged as ``logs['lr']`` at each epoch end (Keras 2.2's name).
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        lr = get_learning_rate(self.model)
        takes_lr = _takes_lr(self.schedule)
        if takes_lr is None:
            try:
                lr = self.schedule(epoch, lr)
            except TypeError:  # old API, as Keras
                lr = self.schedule(epoch)
        else:
            lr = self.schedule(epoch, lr) if takes_lr else self.schedule(epoch)
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            raise ValueError('The output of the "schedule" function should be float. Got: %r'
                             % (lr,))
        set_learning_rate(self.model, float(lr))
        if self.verbose > 0:
            print_msg("\nEpoch %05d: LearningRateScheduler setting learning rate to %s."
                      % (epoch + 1, float(lr)))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = get_learning_rate(self.model)


class TerminateOnNaN(Callback):
    """Stops training (``model.stop_training = True``) when a batch's loss is NaN or inf."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        loss = float(loss)
        if math.isnan(loss) or math.isinf(loss):
            print_msg("Batch %d: Invalid loss, terminating training" % batch)
            self.model.stop_training = True


class LambdaCallback(Callback):
    """Callback built from plain functions.

    ``on_epoch_begin``/``on_epoch_end``: ``f(epoch, logs)``; ``on_train_begin``/``on_train_end``:
    ``f(logs)``; ``on_train_batch_*`` and the Keras 2 ``on_batch_*``: ``f(batch, logs)``.
    Other hooks (``on_test_begin``, ...) may be given as keyword arguments too.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None,
                 on_train_end=None, on_train_batch_begin=None, on_train_batch_end=None,
                 on_batch_begin=None, on_batch_end=None, **kwargs):
        super().__init__()
        hooks = dict(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin,
                     on_train_batch_end=on_train_batch_end,
                     on_batch_begin=on_batch_begin, on_batch_end=on_batch_end)
        hooks.update(kwargs)
        for name, function in hooks.items():
            if function is not None:
                setattr(self, name, function)
