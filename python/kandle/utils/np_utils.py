"""``kandle.utils.np_utils``: label encoding helpers that work on NumPy arrays (as in Keras)."""

import numpy as np


def to_categorical(y, num_classes=None, dtype="float32"):
    """One-hot encodes integer class labels; labels shaped ``(n, 1)`` give ``(n, num_classes)``."""
    y = np.asarray(y)
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(np.mod(y, 1) == 0)):
        raise TypeError(f"to_categorical expects integer class labels, got dtype {y.dtype}")
    input_shape = y.shape
    if input_shape and input_shape[-1] == 1 and len(input_shape) > 1:
        input_shape = input_shape[:-1]
    y = y.reshape(-1).astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"to_categorical: class labels must be non-negative, found {y.min()}")
    if num_classes is None:
        num_classes = int(y.max()) + 1 if y.size else 0
    elif y.size and y.max() >= num_classes:
        raise ValueError(f"to_categorical: label {int(y.max())} is out of range for num_classes={num_classes}")
    out = np.zeros((y.shape[0], num_classes), dtype=dtype)
    out[np.arange(y.shape[0]), y] = 1
    return out.reshape(input_shape + (num_classes,))


def normalize(x, axis=-1, order=2):
    x = np.asarray(x, dtype=np.float32)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis)
