"""Dense, Activation, Input and InputLayer."""

from kandle.layers.base import Layer, _identifier, _shape, _unsupported


class Dense(Layer):
    _class_name = "Dense"

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, **kwargs):
        _unsupported("Dense", kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                     activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                     bias_constraint=bias_constraint)
        super().__init__(units=units, activation=_identifier(activation, "activation"), use_bias=use_bias,
                         kernel_initializer=_identifier(kernel_initializer, "initializer"),
                         bias_initializer=_identifier(bias_initializer, "initializer"), **kwargs)


class Activation(Layer):
    _class_name = "Activation"

    def __init__(self, activation, **kwargs):
        super().__init__(activation=_identifier(activation, "activation"), **kwargs)


class InputSpec:
    """What ``Input(shape)`` returns: the per-sample shape a Sequential model starts from."""

    def __init__(self, shape, name=None):
        self.shape = (None, *shape)
        self.name = name

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, name={self.name}>"


def Input(shape=None, batch_size=None, name=None, dtype=None, batch_shape=None, **kwargs):
    if batch_shape is not None:
        shape = tuple(batch_shape)[1:]
    if shape is None:
        raise ValueError("Input: please provide `shape` (the shape of one sample, without the batch axis)")
    return InputSpec(_shape(shape, "Input"), name)


def InputLayer(input_shape=None, batch_size=None, name=None, dtype=None, shape=None, **kwargs):
    return Input(shape=shape if shape is not None else input_shape, name=name)
