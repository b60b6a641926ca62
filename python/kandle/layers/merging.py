"""The merging layers (``Add()([x, y])``) and their functional forms (``add([x, y])``)."""

from kandle.layers.base import Layer


class _Merge(Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)


class Add(_Merge):
    _class_name = "Add"


class Subtract(_Merge):
    _class_name = "Subtract"


class Multiply(_Merge):
    _class_name = "Multiply"


class Average(_Merge):
    _class_name = "Average"


class Maximum(_Merge):
    _class_name = "Maximum"


class Minimum(_Merge):
    _class_name = "Minimum"


class Concatenate(Layer):
    _class_name = "Concatenate"

    def __init__(self, axis=-1, **kwargs):
        super().__init__(axis=axis, **kwargs)


def add(inputs, **kwargs):
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    return Average(**kwargs)(inputs)


def maximum(inputs, **kwargs):
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    return Minimum(**kwargs)(inputs)


def concatenate(inputs, axis=-1, **kwargs):
    return Concatenate(axis=axis, **kwargs)(inputs)
