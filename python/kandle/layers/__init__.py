"""``kandle.layers``: the Keras layers kandle implements, by their Keras names.

The list of layer families is the Rust core's registry (``_kandle.layer_class_names()``); every class
here answers to one entry of it, and an import-time check keeps the two sides from drifting apart.
"""

from kandle import _kandle
from kandle.layers.augmentation import RandomCrop, RandomRotation, RandomTranslation, RandomZoom
from kandle.layers.base import Layer
from kandle.layers.convolutional import Conv2D, Convolution2D
from kandle.layers.core import Activation, Dense
from kandle.layers.input_layer import Input, InputLayer, KerasTensor
from kandle.layers.merging import (Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract, add, average,
                                   concatenate, maximum, minimum, multiply, subtract)
from kandle.layers.normalization import BatchNormalization
from kandle.layers.pooling import (AveragePooling2D, AvgPool2D, GlobalAveragePooling2D, GlobalAvgPool2D,
                                   GlobalMaxPool2D, GlobalMaxPooling2D, MaxPool2D, MaxPooling2D)
from kandle.layers.preprocessing import (CenterCrop, Normalization, RandomContrast, RandomFlip, Rescaling,
                                         Resizing)
from kandle.layers.regularization import Dropout
from kandle.layers.reshaping import Flatten, ZeroPadding2D
from kandle.layers.op_layer import Lambda  # noqa: E402 - a custom layer: needs Layer and the ops

# Keras 2 called the first element of a Sequential an InputSpec; kept for old code.
InputSpec = KerasTensor


def _classes(base):
    for cls in base.__subclasses__():
        if cls._class_name is not None:
            yield cls
        yield from _classes(cls)


_BY_NAME = {cls._class_name: cls for cls in _classes(Layer)}
_missing = set(_kandle.layer_class_names()) ^ set(_BY_NAME)
if _missing:  # a registry entry without its Python class, or the other way round
    raise ImportError(f"kandle.layers and the core's layer registry disagree on: {sorted(_missing)}")


_PYTHON_LAYERS = {"Lambda": Lambda, "Normalization": Normalization, "Resizing": Resizing}


def deserialize(config, custom_objects=None):
    """Builds a layer from ``{"class_name": ..., "config": {...}}``: a kandle layer, an op of a model
    (``OpLayer``), or a user's class found through ``custom_objects``, a ``custom_object_scope`` or
    ``register_keras_serializable``; anything else is an error."""
    from kandle.layers.op_layer import OpLayer
    from kandle.saving.object_registration import get_registered_object

    name = config.get("class_name")
    if name == "InputLayer":
        return InputLayer.from_config(config.get("config", {}))
    if name == "OpLayer":
        return OpLayer.from_config(config.get("config", {}))
    if name in _PYTHON_LAYERS:  # kandle's layers written with kandle.ops (custom layers of kandle's own)
        return _PYTHON_LAYERS[name].from_config(config.get("config", {}))
    if name not in _BY_NAME:
        cls = get_registered_object(name, custom_objects, config.get("registered_name"))
        if cls is not None:
            return cls.from_config(config.get("config", {}))
        if "_kandle_graph" in (config.get("config") or {}):
            raise TypeError(
                f"Could not locate class '{name}'. Make sure custom classes are decorated with "
                "`@kandle.saving.register_keras_serializable()` or passed in `custom_objects=` (load_model) or a "
                "`kandle.saving.custom_object_scope`.")
        raise ValueError(f"Unknown layer: '{name}'. kandle does not implement it yet; kandle supports: "
                         f"{', '.join(sorted(_BY_NAME))}")
    return _BY_NAME[name].from_config(config.get("config", {}))


def serialize(layer):
    return {"class_name": layer._class_name, "config": layer.get_config()}


def __getattr__(name):
    if name[:1].isupper():
        raise AttributeError(f"kandle does not implement the Keras layer '{name}' yet; kandle.layers has: "
                             f"{', '.join(sorted(_BY_NAME))}")
    raise AttributeError(f"module 'kandle.layers' has no attribute {name!r}")
