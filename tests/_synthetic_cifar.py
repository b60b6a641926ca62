"""A small CIFAR-100 archive in the official format (``cifar-100-python.tar.gz``: the ``train``, ``test``
and ``meta`` pickles of the Python version), for running the notebooks where the real 170 MB archive is
absent. Each class gets its own colour and stripe pattern plus noise, so a model can learn something
from it; kandle's loader takes it with its "not the official archive" warning.
"""

import io
import pickle
import tarfile

import numpy as np


def _images(labels, rng):
    n = len(labels)
    yy, xx = np.mgrid[0:32, 0:32]
    out = np.empty((n, 3, 32, 32), np.float32)
    for i, c in enumerate(labels):
        colour = np.array([(c * 37) % 256, (c * 91) % 256, (c * 53) % 256], np.float32)
        stripes = np.sin((xx * (1 + c % 5) + yy * (1 + c // 20)) / 3.0)
        out[i] = colour[:, None, None] * (0.6 + 0.4 * stripes) + rng.normal(0, 30, (3, 32, 32))
    return np.clip(out, 0, 255).astype(np.uint8).reshape(n, 3072)


def _batch(labels, rng, name):
    return {b"batch_label": name.encode(), b"fine_labels": [int(c) for c in labels],
            b"coarse_labels": [int(c) // 5 for c in labels],
            b"filenames": [f"synthetic_{i}.png".encode() for i in range(len(labels))],
            b"data": _images(labels, rng)}


def write_cifar100_archive(path, per_class_train=10, per_class_test=3, seed=0):
    """Writes the archive to `path`: ``per_class_*`` images of each of the 100 classes, shuffled."""
    rng = np.random.default_rng(seed)
    train = rng.permutation(np.repeat(np.arange(100), per_class_train))
    test = rng.permutation(np.repeat(np.arange(100), per_class_test))
    members = {
        "cifar-100-python/train": _batch(train, rng, "training batch 1 of 1"),
        "cifar-100-python/test": _batch(test, rng, "testing batch 1 of 1"),
        "cifar-100-python/meta": {b"fine_label_names": [f"class_{i}".encode() for i in range(100)],
                                  b"coarse_label_names": [f"superclass_{i}".encode() for i in range(20)]},
    }
    with tarfile.open(path, "w:gz") as archive:
        for name, value in members.items():
            data = pickle.dumps(value, protocol=4)  # bytes as bytes (protocol 2 would need _codecs)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path
