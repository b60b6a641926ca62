"""Conv2D (channels last)."""

from kandle.layers.base import Layer, _identifier, _unsupported


class Conv2D(Layer):
    _class_name = "Conv2D"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        _unsupported("Conv2D", kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                     activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                     bias_constraint=bias_constraint)
        if groups != 1:
            raise ValueError(f"Conv2D: groups other than 1 are not supported yet (got {groups})")
        super().__init__(filters=filters, kernel_size=kernel_size, strides=strides, padding=padding,
                         data_format=data_format, dilation_rate=dilation_rate,
                         activation=_identifier(activation, "activation"), use_bias=use_bias,
                         kernel_initializer=_identifier(kernel_initializer, "initializer"),
                         bias_initializer=_identifier(bias_initializer, "initializer"), **kwargs)


Convolution2D = Conv2D
