"""Owns `BackupAndRestore` (Keras 3's fault-tolerance callback) and the runner's automatic backups
(``KANDLE_FIT_BACKUP_DIR``).

The backup is one kandle model file (weights, optimizer state, the shuffle stream and every layer's
random stream) that also carries the fit's progress: the epochs done, each with its logs and seconds.
The core writes it atomically and restores it into the model being trained, refusing a file written by
another architecture or compile configuration. A fit resumed from an epoch-end backup therefore runs
the remaining epochs exactly as the uninterrupted fit would have, and its History holds every epoch,
the restored ones included (Keras returns only those it ran).
"""

import json
import os
import shutil
import time

from kandle import _kandle
from kandle.callbacks.callback import Callback
from kandle.distribution.distribution_lib import _is_chief

_FILE = "backup.kandle"
_FORMAT = 1


class BackupAndRestore(Callback):
    """Backs up the training state at each epoch end (or every `save_freq` batches) into `backup_dir`;
    a later `fit` with the same callback resumes after the last epoch backed up.

    Arguments:
        backup_dir: folder of the backup (created when needed). Give each training run its own: a
            backup written by a different model, or one compiled differently, is refused with a
            ``ValueError`` rather than loaded.
        save_freq: ``'epoch'``, or an integer: also back up every `save_freq` batches. As in Keras,
            a fit resumed from a mid-epoch backup restarts that epoch from its first batch with the
            weights of the backup (only epoch-end backups resume bit for bit).
        double_checkpoint: keep the previous backup too (``backup.kandle.bkp``) and fall back to it
            when the latest cannot be read.
        delete_checkpoint: delete the backup when `fit` ends normally (not when it is interrupted).
    """

    def __init__(self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"Invalid value for argument `save_freq`. Received: save_freq={save_freq}. "
                             "Expected either 'epoch' or a positive integer value.")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint = bool(double_checkpoint)
        self.delete_checkpoint = bool(delete_checkpoint)
        self._path = os.path.join(self.backup_dir, _FILE)
        self._prev_path = self._path + ".bkp"
        self._records = []
        self._current_epoch = 0
        self._epoch_started = None
        self._batches_since_save = 0

    # -- restoring --------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self._records, self._current_epoch, self._batches_since_save = [], 0, 0
        core = getattr(self.model, "_core", None)
        if core is None:
            raise ValueError("To use the BackupAndRestore callback, your model must be built before you call "
                             f"`fit()`. Model {self.model.name} is unbuilt.")
        if not os.path.exists(self._path) and not os.path.exists(self._prev_path):
            return
        try:
            progress = _kandle.restore_backup(core, self._path)
        except (ValueError, OSError) as exc:
            if not (self.double_checkpoint and os.path.exists(self._prev_path)) or "different model" in str(exc):
                raise
            progress = _kandle.restore_backup(core, self._prev_path)
        state = json.loads(progress)
        if state.get("format") != _FORMAT:
            raise ValueError(f"Could not load '{self._path}': its backup progress has format "
                             f"{state.get('format')!r}, this kandle reads {_FORMAT}")
        self._records = list(state["epochs"])
        self._current_epoch = int(state["epoch"])
        self.model._initial_epoch = self._current_epoch
        self.model._restored_epochs = [(r["epoch"], r["logs"], r.get("seconds")) for r in self._records]

    # -- backing up -------------------------------------------------------------------------------

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch
        self._epoch_started = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_since_save += 1
        if self._batches_since_save >= self.save_freq:
            self._batches_since_save = 0
            self._save(self._current_epoch, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        seconds = None if self._epoch_started is None else round(time.monotonic() - self._epoch_started, 3)
        values = {k: float(v) for k, v in (logs or {}).items() if k not in ("batch", "size")}
        self._records.append({"epoch": epoch, "logs": values, "seconds": seconds})
        self._current_epoch = epoch + 1
        if self.save_freq == "epoch":
            self._save(epoch + 1, 0)

    def _save(self, epoch, batch):
        if not _is_chief():  # a data-parallel run: process 0 writes the backup every process restores
            return
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self._path):
            shutil.copyfile(self._path, self._prev_path)
        progress = {"format": _FORMAT, "epoch": epoch, "batch": batch, "epochs": self._records}
        _kandle.save_backup(self.model._core, self._path, json.dumps(progress))

    def on_train_end(self, logs=None):
        if not self.delete_checkpoint or not getattr(self.model, "_fit_completed", False) or not _is_chief():
            return
        for path in (self._path, self._prev_path):
            if os.path.exists(path):
                os.remove(path)
        try:
            os.rmdir(self.backup_dir)  # only when nothing else is in it
        except OSError:
            pass


# How many fits this process has started: the runner's automatic backups are numbered by it.
_fits_started = 0


def automatic_backup(callbacks):
    """With ``KANDLE_FIT_BACKUP_DIR`` set (``notebooks/run.py`` sets it per notebook), every `fit`
    without a `BackupAndRestore` of its own gets one in ``$KANDLE_FIT_BACKUP_DIR/fit-<n>`` (n counts
    the fits of this process) that is kept when the fit completes. Running the same notebook again
    then restores each finished fit at once (weights, History) and resumes the interrupted one."""
    global _fits_started
    _fits_started += 1
    root = os.environ.get("KANDLE_FIT_BACKUP_DIR")
    if not root:
        return callbacks
    from kandle.callbacks.callback_list import CallbackList

    if callbacks is None:
        callbacks = []
    elif isinstance(callbacks, CallbackList):
        callbacks = list(callbacks.callbacks)
    elif not isinstance(callbacks, (list, tuple)):
        callbacks = [callbacks]
    if any(isinstance(c, BackupAndRestore) for c in callbacks):
        return callbacks
    folder = os.path.join(root, "fit-%02d" % _fits_started)
    return list(callbacks) + [BackupAndRestore(folder, delete_checkpoint=False)]
