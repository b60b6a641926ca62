"""Owns the data `fit`/`evaluate`/`predict` take besides arrays: Python generators, any iterable of
``(x, y)`` batches (so tf.data datasets and torch DataLoaders work without importing either) and
`kandle.utils.PyDataset`. An adapter hands the Rust loops one batch at a time (``begin(epoch)``,
``next()``), each converted with ``np.asarray`` to float32; the loops check and train on it.
"""

import collections
import concurrent.futures
import random
import warnings

import numpy as np

from kandle.utils.py_dataset import PyDataset


def is_feed(x):
    """Data that is not an array (or a list/dict of arrays) but yields batches: a PyDataset, a
    generator or iterator, any other iterable, or a list of ``(x, y)`` tuples."""
    if isinstance(x, PyDataset):
        return True
    if isinstance(x, list) and x and isinstance(x[0], tuple):  # a list of (x, y) batches
        return True
    if x is None or isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)) or hasattr(x, "__array__"):
        return False
    return hasattr(x, "__next__") or hasattr(x, "__iter__")


def _float32(a, what):
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what} has dtype {a.dtype}; kandle needs numbers (float, int or bool arrays)")
    if a.ndim == 0:
        raise ValueError(f"{what} must have a batch axis, got a scalar")
    return np.ascontiguousarray(a, dtype=np.float32)


class Adapter:
    """Batches from `data` for the core's feed loops.

    Arguments:
        data: a `PyDataset`, a generator/iterator, or a re-iterable (a fresh pass each epoch).
        model: resolves a batch's ``x`` (one array, a list, or a dict by input name).
        steps: batches per pass (``steps_per_epoch`` / ``validation_steps`` / ``steps``); with it an
            iterable's pass continues where the previous one stopped, as Keras does.
        targets: whether batches must carry ``y`` (fit, evaluate) or are inputs alone (predict).
        shuffle: a `PyDataset`'s batch order is shuffled each epoch (Python's `random`, as Keras).
    """

    def __init__(self, data, model, steps=None, targets=True, shuffle=False, what="x", class_weight=None):
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1):
            raise ValueError(f"`steps` must be a positive integer or None, got {steps!r}")
        self.data, self.model, self.steps, self.targets = data, model, steps, targets
        self.shuffle, self.what, self.class_weight = shuffle, what, class_weight
        self._iterator, self._step, self._warned, self._ended = None, 0, False, False
        self._pending = collections.deque()
        self._executor = None
        if isinstance(data, PyDataset):
            if data.use_multiprocessing:
                self._executor = concurrent.futures.ProcessPoolExecutor(max(data.workers, 1))
            elif data.workers > 1:
                self._executor = concurrent.futures.ThreadPoolExecutor(data.workers)

    def num_batches(self):
        """Batches per pass, when known (the progress bar's target), else None."""
        if self.steps is not None:
            return int(self.steps)
        try:
            return len(self.data)
        except TypeError:
            return None

    # -- the core's interface -------------------------------------------------------------------
    def begin(self, epoch):
        self._step, self._ended = 0, False
        if isinstance(self.data, PyDataset):
            order = list(range(len(self.data)))
            if self.shuffle:
                random.shuffle(order)
            self._order = collections.deque(order)
            self._pending.clear()
        elif self._iterator is None or (self.steps is None and hasattr(self.data, "__iter__")
                                        and not hasattr(self.data, "__next__")):
            self._iterator = iter(self.data)

    def next(self):
        item = None if self.steps is not None and self._step >= self.steps else self._pull()
        if item is None and isinstance(self.data, PyDataset) and not self._ended:
            self._ended = True  # the pass is over: Keras calls on_epoch_end after every epoch, the last too
            self.data.on_epoch_end()
        if self.steps is not None and self._step >= self.steps:
            return None
        if item is None:
            if self.steps is not None and self.targets and not self._warned:
                self._warned = True
                warnings.warn("Your input ran out of data; interrupting training. Make sure that your dataset "
                              "or generator can generate at least `steps_per_epoch * epochs` batches.",
                              UserWarning, stacklevel=2)
            return None
        self._step += 1
        return self.convert(item)

    # -- reading ----------------------------------------------------------------------------------
    def _pull(self):
        if isinstance(self.data, PyDataset):
            if self._executor is None:
                return self.data[self._order.popleft()] if self._order else None
            while self._order and len(self._pending) < max(self.data.max_queue_size, 1):
                self._pending.append(self._executor.submit(self.data.__getitem__, self._order.popleft()))
            return self._pending.popleft().result() if self._pending else None
        try:
            return next(self._iterator)
        except StopIteration:
            self._iterator = None if self.steps is not None else self._iterator
            return None

    def convert(self, item):
        """``(list of float32 arrays, float32 targets or None, float32 sample weights or None)`` from one
        batch as the user's data gave it."""
        if isinstance(item, (tuple, list)) and not (self.targets is False and _is_inputs(item)):
            if not 1 <= len(item) <= 3:
                raise ValueError(f"A batch of `{self.what}` must be `(x,)`, `(x, y)` or `(x, y, sample_weight)`, "
                                 f"got a {type(item).__name__} of {len(item)} elements")
            x, y = item[0], item[1] if len(item) > 1 else None
            w = item[2] if len(item) == 3 else None
        else:
            x, y, w = item, None, None
        if self.targets and y is None:
            raise ValueError(f"The batches of `{self.what}` carry no targets: they must be `(x, y)` tuples")
        xs = self.model._inputs(x, f"a batch of {self.what}")
        xs = [_float32(a, f"a batch of {self.what}") for a in xs]
        self.model._ensure_core([a.shape[1:] for a in xs])
        if y is None or not self.targets:
            return xs, None, None
        y = _float32(y, f"the targets of a batch of {self.what}")
        return xs, y, sample_weights(y, w, self.class_weight, len(y))

    def first_batch_shapes(self):
        """Builds an unbuilt model from the first batch without losing it (it is read again)."""
        if self.model._core is not None:
            return
        if isinstance(self.data, PyDataset):
            self.convert(self.data[0])
            return
        self.begin(0)
        item = next(self._iterator, None)
        if item is None:
            raise ValueError(f"`{self.what}` yielded no batch: kandle cannot build the model from it")
        self.convert(item)
        first, rest = item, self._iterator
        self._iterator = _chain(first, rest)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def sample_weights(y, sample_weight, class_weight, n):
    """Keras's per-sample loss weights: `sample_weight` ((n,) or (n, 1)), or from `class_weight`
    ({class index: weight} for every class 0..K-1) the weight of each sample's class (its one-hot
    argmax, or its integer label); not both, as in Keras. None when neither is given."""
    if sample_weight is not None and class_weight is not None:
        raise ValueError("You cannot `class_weight` and `sample_weight` at the same time.")
    w = None
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float32)
        if w.shape not in ((n,), (n, 1)):
            raise ValueError(f"`sample_weight` must hold one weight per sample, shape ({n},) or ({n}, 1); "
                             f"received shape {w.shape}")
        w = w.reshape(n)
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise ValueError(f"`class_weight` must be a dict {{class index: weight}}, got {type(class_weight).__name__}")
        keys = sorted(class_weight)
        if keys != list(range(len(keys))):
            raise ValueError("Expected `class_weight` to be a dict with keys from 0 to one less than the number of "
                             f"classes, found {class_weight}")
        table = np.asarray([class_weight[k] for k in keys], dtype=np.float32)
        y = np.asarray(y)
        labels = y.argmax(axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(n).round().astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= len(table)):
            raise ValueError(f"`class_weight` has weights for classes 0..{len(table) - 1}, but the targets hold "
                             f"class {int(labels.max()) if labels.max() >= len(table) else int(labels.min())}")
        w = table[labels]
    return w


def _is_inputs(item):
    """A predict batch given as a list of input arrays (a multi-input model), not an (x, y) tuple."""
    return isinstance(item, list) and all(isinstance(a, np.ndarray) for a in item)


def _chain(first, rest):
    yield first
    yield from rest
