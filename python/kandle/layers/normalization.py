"""BatchNormalization (over the channels axis; its maths and checks are the Rust core's)."""

from kandle.layers.base import Layer, _identifier, _unsupported


class BatchNormalization(Layer):
    _class_name = "BatchNormalization"

    def __init__(self, axis=-1, momentum=0.99, epsilon=0.001, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                 beta_constraint=None, gamma_constraint=None, synchronized=False, **kwargs):
        _unsupported("BatchNormalization", beta_regularizer=beta_regularizer, gamma_regularizer=gamma_regularizer,
                     beta_constraint=beta_constraint, gamma_constraint=gamma_constraint)
        # Keras 3 writes renorm=False, renorm_clipping=None, renorm_momentum=0.99 into every config;
        # only turning renormalisation (or the Keras 2 options) on is refused.
        if kwargs.pop("renorm", False):
            raise ValueError("BatchNormalization: `renorm=True` is not supported by kandle yet")
        kwargs.pop("renorm_clipping", None)
        kwargs.pop("renorm_momentum", None)
        for key in ("fused", "virtual_batch_size", "adjustment"):
            if kwargs.pop(key, None) not in (None, False):
                raise ValueError(f"BatchNormalization: `{key}` is not supported by kandle yet")
        super().__init__(axis=axis, momentum=momentum, epsilon=epsilon, center=center, scale=scale,
                         beta_initializer=_identifier(beta_initializer, "initializer"),
                         gamma_initializer=_identifier(gamma_initializer, "initializer"),
                         moving_mean_initializer=_identifier(moving_mean_initializer, "initializer"),
                         moving_variance_initializer=_identifier(moving_variance_initializer, "initializer"),
                         synchronized=synchronized, **kwargs)
