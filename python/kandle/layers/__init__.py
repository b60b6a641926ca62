"""``kandle.layers``: the Keras layers kandle implements, by their Keras names."""

from kandle.layers.base import Layer
from kandle.layers.convolutional import Conv2D, Convolution2D
from kandle.layers.core import Activation, Dense, Input, InputLayer, InputSpec
from kandle.layers.pooling import MaxPool2D, MaxPooling2D
from kandle.layers.regularization import Dropout
from kandle.layers.reshaping import Flatten

_BY_NAME = {c._class_name: c for c in (Conv2D, Dense, Activation, MaxPooling2D, Dropout, Flatten)}


def deserialize(config):
    """Builds a layer from ``{"class_name": ..., "config": {...}}``; an unknown name is an error."""
    name = config.get("class_name")
    if name not in _BY_NAME:
        raise ValueError(f"Unknown layer: '{name}'. kandle supports: {', '.join(sorted(_BY_NAME))}")
    return _BY_NAME[name].from_config(config.get("config", {}))


def serialize(layer):
    return {"class_name": layer._class_name, "config": layer.get_config()}
