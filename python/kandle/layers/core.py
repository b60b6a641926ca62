"""Dense and Activation."""

from kandle.layers.base import Layer, _identifier, _unsupported


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
