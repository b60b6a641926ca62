"""MaxPooling2D (channels last)."""

from kandle.layers.base import Layer


class MaxPooling2D(Layer):
    _class_name = "MaxPooling2D"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size=pool_size, strides=strides, padding=padding, data_format=data_format,
                         **kwargs)


MaxPool2D = MaxPooling2D
