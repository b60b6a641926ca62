"""``kandle.utils``: Keras's utilities (``to_categorical``, ``set_random_seed``, ``get_file``, ...)."""

from kandle.utils.data_utils import get_file
from kandle.utils.layer_utils import print_summary
from kandle.utils.np_utils import normalize, to_categorical
from kandle.utils.py_dataset import PyDataset, Sequence
from kandle.utils.image_dataset import image_dataset_from_directory
from kandle.preprocessing.image import array_to_img, img_to_array, load_img, save_img
from kandle.saving.object_registration import (CustomObjectScope, custom_object_scope, get_custom_objects,
                                               get_registered_name, get_registered_object,
                                               register_keras_serializable)


def set_random_seed(seed):
    """Seeds Python's, NumPy's and kandle's generators (initialisation, shuffling, dropout)."""
    import random

    import numpy as np

    from kandle import _kandle

    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Expected `seed` to be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    _kandle.set_random_seed(seed)


def plot_model(model, to_file="model.png", show_shapes=False, show_layer_names=True, rankdir="TB", dpi=96,
               **kwargs):
    from kandle.utils.vis_utils import plot_model as _plot

    return _plot(model, to_file=to_file, show_shapes=show_shapes, show_layer_names=show_layer_names,
                 rankdir=rankdir, dpi=dpi, **kwargs)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(f"kandle does not implement keras.utils.{name} yet")
