"""Flatten (channels-last order, so Keras Dense weights after it load unchanged)."""

from kandle.layers.base import Layer


class Flatten(Layer):
    _class_name = "Flatten"

    def __init__(self, data_format=None, **kwargs):
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Flatten: data_format={data_format!r} is not supported; kandle is channels_last")
        super().__init__(**kwargs)
