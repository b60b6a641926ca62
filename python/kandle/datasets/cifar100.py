"""Owns ``kandle.datasets.cifar100.load_data``: CIFAR-100 as ``keras.datasets.cifar100`` returns it,
read straight from the official tar.gz (cached, or downloaded and checksum-verified).
"""

import numpy as np

from kandle.datasets import _common

# Module-level so tests (and mirrors) can point it elsewhere. sha256 as in Keras's loader; md5 as
# listed on the dataset's home page.
SOURCE = _common.DatasetSource(
    fname="cifar-100-python.tar.gz",
    origin="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    # Keras 2 and early Keras 3 kept the archive as cifar-100-python.tar.gz; later Keras 3 releases
    # as <dirname>_archive.
    keras_names=("cifar-100-python.tar.gz", "cifar-100-python_archive", "cifar-100-python-target_archive"),
)

_MEMBERS = ("cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta")
_NUM_CLASSES = {"fine_labels": 100, "coarse_labels": 20}


def load_data(label_mode="fine", path=None):
    """Loads the CIFAR100 dataset.

    50,000 32x32 colour training images and 10,000 test images, labelled over 100 fine-grained
    classes grouped into 20 coarse-grained superclasses.

    Args:
        label_mode: ``"fine"`` (labels 0-99) or ``"coarse"`` (superclass labels 0-19).
        path: kandle extension: an explicit ``cifar-100-python.tar.gz`` to read. By default the file is
            looked up in kandle's cache (``$KANDLE_HOME/datasets``, default ``~/.kandle/datasets``),
            then in Keras's (``$KERAS_HOME/datasets``, default ``~/.keras/datasets``), and downloaded
            into kandle's cache if neither has it.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: ``x`` uint8 of shape (50000, 32, 32, 3) and
        (10000, 32, 32, 3), channels-last; ``y`` of shape (50000, 1) and (10000, 1). ``y`` is int64,
        which is what Keras 3 actually returns here (its docstring says uint8, but it reshapes the
        pickled Python list, which numpy makes int64).

    A file that is not byte-identical to the official archive but has its layout is loaded with a
    ``UserWarning``. Raises ``ValueError`` for a bad ``label_mode`` or a corrupt file (which includes
    a pickle that tries to run code), and ``kandle.utils.data_utils.DownloadError`` (an ``OSError``)
    when the file is neither cached nor downloadable; its message says where to put it.
    """
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f'`label_mode` must be one of "fine", "coarse". Received: label_mode={label_mode}.')
    located = _common.locate(SOURCE, path)
    members = _common.read_tar_members(located, _MEMBERS)
    located.data = b""  # the compressed bytes are no longer needed; let them go before decoding
    train_name, test_name, meta_name = _MEMBERS
    # Both label sets are validated even though one is returned: a stand-in file must be complete.
    x_train, train_labels = _common.cifar_batch(members.pop(train_name), f"{located.path}:{train_name}",
                                                _NUM_CLASSES, _NUM_CLASSES)
    x_test, test_labels = _common.cifar_batch(members.pop(test_name), f"{located.path}:{test_name}",
                                              _NUM_CLASSES, _NUM_CLASSES)
    _common.check_label_names(members.pop(meta_name), f"{located.path}:{meta_name}",
                              {"fine_label_names": 100, "coarse_label_names": 20})
    if not located.official:
        _common.warn_unofficial(located, SOURCE, f"{len(x_train)} train and {len(x_test)} test images, "
                                                 "fine and coarse labels in range, label names present")
    key = label_mode + "_labels"
    y_train = train_labels[key].reshape(-1, 1)
    y_test = test_labels[key].reshape(-1, 1)
    return (x_train, y_train), (x_test, y_test)
