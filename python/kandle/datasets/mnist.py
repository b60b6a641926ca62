"""Owns ``kandle.datasets.mnist.load_data``: MNIST as ``keras.datasets.mnist`` returns it, from the
same ``mnist.npz`` Keras uses (cached, or downloaded and checksum-verified).
"""

import dataclasses
import io
import os
import zipfile

import numpy as np

from kandle.datasets import _common

# Module-level so tests (and mirrors) can point it elsewhere. URL and sha256 as in Keras's loader.
SOURCE = _common.DatasetSource(
    fname="mnist.npz",
    origin="https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
    sha256="731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
    keras_names=("mnist.npz",),
)

_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _arrays(located):
    """The four arrays, read with pickling disabled (the official file is purely numeric)."""
    try:
        with np.load(io.BytesIO(located.data), allow_pickle=False) as npz:
            missing = [k for k in _KEYS if k not in npz.files]
            if missing:
                raise _common.DatasetFormatError(f"{located.path} lacks arrays {missing}.")
            return [npz[k] for k in _KEYS]
    except _common.DatasetFormatError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise _common.DatasetFormatError(f"{located.path} is not a readable MNIST .npz "
                                         f"({type(e).__name__}: {e}).") from e


def load_data(path="mnist.npz"):
    """Loads the MNIST dataset: 60,000 28x28 grayscale training images of digits and 10,000 tests.

    Args:
        path: as in Keras, the file's name in the cache (``$KANDLE_HOME/datasets``, default
            ``~/.kandle/datasets``, then Keras's ``$KERAS_HOME/datasets``, default
            ``~/.keras/datasets``), where it is downloaded to if missing. kandle extension: a path to an
            existing file (absolute, or containing a folder) is read directly.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: ``x`` uint8 of shape (60000, 28, 28) and
        (10000, 28, 28); ``y`` uint8 of shape (60000,) and (10000,), digits 0-9.

    A file that is not byte-identical to the official one but has its layout is loaded with a
    ``UserWarning``. Raises ``ValueError`` for a corrupt file and
    ``kandle.utils.data_utils.DownloadError`` (an ``OSError``) when the file is neither cached nor
    downloadable; its message says where to put it.
    """
    path = os.fspath(path)
    if os.path.isabs(path) or os.path.dirname(path):
        located = _common.locate(SOURCE, path)
    else:
        names = (path,) + tuple(n for n in SOURCE.keras_names if n != path)
        located = _common.locate(dataclasses.replace(SOURCE, fname=path, keras_names=names))
    x_train, y_train, x_test, y_test = _arrays(located)
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            raise _common.DatasetFormatError(f"{located.path}: x_{name} must be uint8 (N, 28, 28), "
                                             f"got {x.dtype} {x.shape}.")
        if y.dtype != np.uint8 or y.shape != (len(x),) or (len(y) and y.max() > 9):
            raise _common.DatasetFormatError(f"{located.path}: y_{name} must be uint8 ({len(x)},) "
                                             f"digits 0-9, got {y.dtype} {y.shape}.")
    if not located.official:
        _common.warn_unofficial(located, SOURCE, f"{len(x_train)} train and {len(x_test)} test images "
                                                 "of 28x28 uint8, labels 0-9")
    return (x_train, y_train), (x_test, y_test)
