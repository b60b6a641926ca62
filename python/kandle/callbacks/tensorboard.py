"""Owns ``kandle.callbacks.TensorBoard``: Keras 3's scalars (``epoch_loss``, ``epoch_acc``, ...,
``epoch_learning_rate``; ``batch_*`` with ``update_freq``) and weight histograms, as event files in
``log_dir/train`` and ``log_dir/validation``, written with tensorboardX (``pip install tensorboardX``;
view them with ``tensorboard --logdir log_dir``)."""

import os
import time

from kandle.callbacks.callback import Callback, get_learning_rate
from kandle.distribution.distribution_lib import _is_chief


class TensorBoard(Callback):
    """Keras 3's ``TensorBoard(log_dir='logs', histogram_freq=0, write_graph=True, write_images=False,
    write_steps_per_second=False, update_freq='epoch', profile_batch=0, embeddings_freq=0,
    embeddings_metadata=None)``. kandle writes the scalars and (with ``histogram_freq``) the weight
    histograms; it writes no graph (``write_graph`` is accepted and does nothing: kandle's graph is not
    a TensorFlow graph), no weight images, no profile and no embeddings (asking for these says so)."""

    def __init__(self, log_dir="logs", histogram_freq=0, write_graph=True, write_images=False,
                 write_steps_per_second=False, update_freq="epoch", profile_batch=0, embeddings_freq=0,
                 embeddings_metadata=None):
        super().__init__()
        for key, value in (("write_images", write_images), ("profile_batch", profile_batch),
                           ("embeddings_freq", embeddings_freq), ("embeddings_metadata", embeddings_metadata)):
            if value:
                raise ValueError(f"kandle does not implement TensorBoard({key}=...) yet")
        if update_freq != "epoch" and update_freq != "batch" and not (isinstance(update_freq, int) and update_freq > 0):
            raise ValueError(f"`update_freq` must be 'epoch', 'batch' or a positive integer, got {update_freq!r}")
        if not isinstance(histogram_freq, int) or histogram_freq < 0:
            raise ValueError(f"`histogram_freq` must be a non-negative integer, got {histogram_freq!r}")
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            raise ImportError("The TensorBoard callback writes its event files with tensorboardX: "
                              "pip install tensorboardX") from None
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = histogram_freq
        self.write_graph = write_graph
        self.write_steps_per_second = write_steps_per_second
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self._writers = {}
        self._step = 0

    def _writer(self, which):
        if which not in self._writers:
            from tensorboardX import SummaryWriter

            self._writers[which] = SummaryWriter(os.path.join(self.log_dir, which))
        return self._writers[which]

    def on_train_begin(self, logs=None):
        self._step = 0
        self._enabled = _is_chief()  # a data-parallel run: process 0 writes

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.monotonic()
        self._epoch_steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        self._epoch_steps += 1
        if not self._enabled or self.update_freq == "epoch" or self._step % self.update_freq:
            return
        writer = self._writer("train")
        for key, value in _scalars(logs):
            writer.add_scalar(f"batch_{key}", value, self._step)

    def on_epoch_end(self, epoch, logs=None):
        if not self._enabled:
            return
        train, val = self._writer("train"), None
        for key, value in _scalars(logs):
            if key.startswith("val_"):
                val = val or self._writer("validation")
                val.add_scalar(f"epoch_{key[4:]}", value, epoch)
            else:
                train.add_scalar(f"epoch_{key}", value, epoch)
        try:
            train.add_scalar("epoch_learning_rate", get_learning_rate(self.model), epoch)
        except (ValueError, TypeError):
            pass
        if self.write_steps_per_second:
            seconds = time.monotonic() - self._epoch_start
            train.add_scalar("epoch_steps_per_second", self._epoch_steps / max(seconds, 1e-9), epoch)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            for layer in self.model.layers:
                for weight, name in zip(layer.get_weights(), self.model._core.layer_weight_names(layer.name)):
                    train.add_histogram(f"{layer.name}/{name}", weight, epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


def _scalars(logs):
    for key, value in (logs or {}).items():
        if key not in ("batch", "size"):
            try:
                yield key, float(value)
            except (TypeError, ValueError):
                continue
