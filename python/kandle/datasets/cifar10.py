"""Owns ``kandle.datasets.cifar10.load_data``: CIFAR-10 as ``keras.datasets.cifar10`` returns it,
read straight from the official tar.gz (cached, or downloaded and checksum-verified).
"""

import numpy as np

from kandle.datasets import _common

# Module-level so tests (and mirrors) can point it elsewhere. sha256 as in Keras's loader; md5 as
# listed on the dataset's home page.
SOURCE = _common.DatasetSource(
    fname="cifar-10-python.tar.gz",
    origin="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    md5="c58f30108f718f92721af3b95e74349a",
    # Keras 2 and early Keras 3 named the archive after its folder plus .tar.gz; later Keras 3
    # releases as <folder>_archive.
    keras_names=("cifar-10-batches-py.tar.gz", "cifar-10-batches-py_archive", "cifar-10-python.tar.gz"),
)

_DIR = "cifar-10-batches-py"
_TRAIN = tuple(f"{_DIR}/data_batch_{i}" for i in range(1, 6))
_TEST = f"{_DIR}/test_batch"
_META = f"{_DIR}/batches.meta"
_NUM_CLASSES = {"labels": 10}


def load_data(path=None):
    """Loads the CIFAR10 dataset.

    50,000 32x32 colour training images (five batches of 10,000) and 10,000 test images, labelled
    over 10 classes (airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck).

    Args:
        path: kandle extension: an explicit ``cifar-10-python.tar.gz`` to read. By default the file is
            looked up in kandle's cache (``$KANDLE_HOME/datasets``, default ``~/.kandle/datasets``),
            then in Keras's (``$KERAS_HOME/datasets``, default ``~/.keras/datasets``), and downloaded
            into kandle's cache if neither has it.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: ``x`` uint8 of shape (50000, 32, 32, 3) and
        (10000, 32, 32, 3), channels-last; ``y`` uint8 of shape (50000, 1) and (10000, 1), as Keras.

    A file that is not byte-identical to the official archive but has its layout is loaded with a
    ``UserWarning``. Raises ``ValueError`` for a corrupt file (which includes a pickle that tries to
    run code) and ``kandle.utils.data_utils.DownloadError`` (an ``OSError``) when the file is neither
    cached nor downloadable; its message says where to put it.
    """
    located = _common.locate(SOURCE, path)
    members = _common.read_tar_members(located, _TRAIN + (_TEST, _META))
    located.data = b""  # the compressed bytes are no longer needed; let them go before decoding
    xs, ys = [], []
    for name in _TRAIN:
        x, labels = _common.cifar_batch(members.pop(name), f"{located.path}:{name}",
                                        _NUM_CLASSES, _NUM_CLASSES)
        xs.append(x)
        ys.append(labels["labels"])
    x_test, test_labels = _common.cifar_batch(members.pop(_TEST), f"{located.path}:{_TEST}",
                                              _NUM_CLASSES, _NUM_CLASSES)
    _common.check_label_names(members.pop(_META), f"{located.path}:{_META}", {"label_names": 10})
    x_train = np.concatenate(xs)
    del xs
    if not located.official:
        _common.warn_unofficial(located, SOURCE, f"{len(x_train)} train and {len(x_test)} test images, "
                                                 "labels in range, label names present")
    y_train = np.concatenate(ys).astype(np.uint8).reshape(-1, 1)
    y_test = test_labels["labels"].astype(np.uint8).reshape(-1, 1)
    return (x_train, y_train), (x_test, y_test)
