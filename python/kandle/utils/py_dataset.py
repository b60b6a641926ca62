"""Owns ``kandle.utils.PyDataset`` (Keras 3; ``Sequence`` is its Keras 2 name): a dataset of batches
written in Python, read by `fit`/`evaluate`/`predict` through `kandle.models.data_adapter`."""


class PyDataset:
    """Base class for datasets of batches: subclass it and define ``__len__`` (batches per epoch) and
    ``__getitem__(index)`` (one batch: ``(x, y)``, or ``x`` for predict); ``on_epoch_end`` is called
    between epochs.

    Arguments:
        workers: batches loaded ahead in parallel by this many threads (or processes).
        use_multiprocessing: load in processes rather than threads (the dataset must pickle).
        max_queue_size: batches loaded ahead at most.

    Subclasses must call ``super().__init__(**kwargs)`` to accept these, as in Keras.
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self._workers = int(workers)
        self._use_multiprocessing = bool(use_multiprocessing)
        self._max_queue_size = int(max_queue_size)

    # Subclasses that forget super().__init__() still work, with Keras's defaults.
    @property
    def workers(self):
        return getattr(self, "_workers", 1)

    @workers.setter
    def workers(self, value):
        self._workers = int(value)

    @property
    def use_multiprocessing(self):
        return getattr(self, "_use_multiprocessing", False)

    @use_multiprocessing.setter
    def use_multiprocessing(self, value):
        self._use_multiprocessing = bool(value)

    @property
    def max_queue_size(self):
        return getattr(self, "_max_queue_size", 10)

    @max_queue_size.setter
    def max_queue_size(self, value):
        self._max_queue_size = int(value)

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index) returning one batch")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__() (batches per epoch)")

    @property
    def num_batches(self):
        return len(self)

    def on_epoch_end(self):
        """Called between epochs (e.g. to reshuffle)."""


Sequence = PyDataset
