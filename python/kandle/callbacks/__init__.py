"""Owns the public ``kandle.callbacks`` namespace (Keras names) and the fit/callbacks contract.

Contract between the model's training loops and the callbacks
================================================================

fit::

    callbacks = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0,
                             model=model, verbose=verbose, epochs=epochs,
                             steps=steps_per_epoch, samples=num_samples, batch_size=batch_size,
                             do_validation=bool(validation), val_samples=num_val_samples,
                             metrics=['loss', 'acc', ..., 'val_loss', 'val_acc', ...])
    model.stop_training = False
    callbacks.on_train_begin(logs)                 # logs: {} (a dict, may be empty)
    try:
        for epoch in range(initial_epoch, epochs):
            callbacks.on_epoch_begin(epoch, {})
            for batch in range(steps):
                callbacks.on_train_batch_begin(batch, {'batch': batch, 'size': n})
                ...                                # train on the batch
                callbacks.on_train_batch_end(batch, {'batch': batch, 'size': n,
                                                     'loss': running_mean, 'acc': ..., ...})
                if model.stop_training: break
            ...                                    # validation (may call on_test_* hooks;
                                                   # the progress bar ignores them inside fit)
            callbacks.on_epoch_end(epoch, {'loss': ..., 'acc': ..., 'val_loss': ..., ...})
            if model.stop_training: break
    finally:
        callbacks.on_train_end(logs)               # ALWAYS, also on KeyboardInterrupt
    return callbacks.history                       # the History (also set as model.history)

- Log values are Python floats; batch logs hold running means over the epoch so far, epoch
  logs the epoch means plus the 'val_'-prefixed validation results. `ProgbarLogger` reads
  ``logs['size']`` (samples in the batch) and the batch index; it shows every other key.
- ``params`` (the keyword arguments after `model`): 'epochs', 'steps' (batches per epoch),
  'samples' (None when unknown: the bar then counts steps), 'batch_size', 'verbose',
  'do_validation', 'metrics' (log names incl. 'loss' and the 'val_' names: the bar shows them
  in this order), optionally 'val_samples' / 'val_steps' (for "validate on N samples").
- on_batch_begin / on_batch_end on a CallbackList are aliases of on_train_batch_*: call one
  pair only. Callbacks overriding the Keras 2 names are reached through the train-batch hooks.
- evaluate: ``CallbackList(callbacks, add_progbar=verbose != 0, model=model, verbose=...,
  steps=..., samples=..., batch_size=...)``, then ``on_test_begin(logs)``,
  ``on_test_batch_begin(batch, {'batch': i, 'size': n})``,
  ``on_test_batch_end(batch, {'batch': i, 'size': n, 'loss': ..., ...})``,
  ``on_test_end(logs)``. predict: the same with the ``on_predict_*`` hooks. The bar (only with
  verbose=1, as Keras 2.2) shows no values: the caller prints or returns the results.
- The model offers ``stop_training`` (settable; checked after each batch and epoch),
  ``get_weights()`` / ``set_weights(list)``, ``save(filepath, overwrite=True)``,
  ``save_weights(filepath, overwrite=True)``, ``optimizer.learning_rate`` (float, settable;
  ``optimizer.lr`` alias) and a settable ``history`` attribute.
"""

from kandle.callbacks.backup_and_restore import BackupAndRestore
from kandle.callbacks.callback import BaseLogger, Callback
from kandle.callbacks.callback_list import CallbackList
from kandle.callbacks.early_stopping import EarlyStopping, ReduceLROnPlateau
from kandle.callbacks.history import History, HistoryDict
from kandle.callbacks.misc import CSVLogger, LambdaCallback, LearningRateScheduler, TerminateOnNaN
from kandle.callbacks.model_checkpoint import ModelCheckpoint
from kandle.callbacks.progbar_logger import ProgbarLogger
from kandle.callbacks.tensorboard import TensorBoard

__all__ = [
    "BackupAndRestore",
    "BaseLogger",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "HistoryDict",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgbarLogger",
    "ReduceLROnPlateau",
    "TensorBoard",
    "TerminateOnNaN",
]


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(f"kandle does not implement keras.callbacks.{name} yet")
