"""The pooling layers (channels last): MaxPooling2D, AveragePooling2D and the global poolings."""

from kandle.layers.base import Layer


class MaxPooling2D(Layer):
    _class_name = "MaxPooling2D"

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(pool_size=pool_size, strides=strides, padding=padding, data_format=data_format,
                         **kwargs)


class AveragePooling2D(MaxPooling2D):
    _class_name = "AveragePooling2D"


class GlobalMaxPooling2D(Layer):
    _class_name = "GlobalMaxPooling2D"

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(data_format=data_format, keepdims=keepdims, **kwargs)


class GlobalAveragePooling2D(GlobalMaxPooling2D):
    _class_name = "GlobalAveragePooling2D"


MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
