"""Flatten (channels-last order, so Keras Dense weights after it load unchanged) and ZeroPadding2D."""

from kandle.layers.base import Layer


class Flatten(Layer):
    _class_name = "Flatten"

    def __init__(self, data_format=None, **kwargs):
        if data_format not in (None, "channels_last"):
            raise ValueError(f"Flatten: data_format={data_format!r} is not supported; kandle is channels_last")
        super().__init__(**kwargs)


class ZeroPadding2D(Layer):
    _class_name = "ZeroPadding2D"

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(padding=padding, data_format=data_format, **kwargs)
