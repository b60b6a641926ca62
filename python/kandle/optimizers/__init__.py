"""``kandle.optimizers``: Keras optimizers (defaults and update rules of Keras 3, computed in Rust).

An optimizer object holds its config until ``compile``; afterwards ``learning_rate`` reads and writes
the live value in the model, so callbacks such as ReduceLROnPlateau take effect at once.
"""

import json

from kandle import _kandle
from kandle.optimizers import schedules


class Optimizer:
    _keras_class_name = None

    def __init__(self, learning_rate, name=None, lr=None, decay=0.0, clipnorm=None, clipvalue=None,
                 global_clipnorm=None, weight_decay=None, **kwargs):
        if lr is not None:  # the 2018 spelling
            learning_rate = lr
        if decay:
            raise ValueError(f"kandle does not implement the Keras 2 argument `decay` of {self._keras_class_name} "
                             f"yet (got {decay!r}): use learning_rate=kandle.optimizers.schedules.InverseTimeDecay(...)")
        unknown = set(kwargs) - {"use_ema", "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor",
                                 "gradient_accumulation_steps"}
        if unknown:
            raise TypeError(f"{self._keras_class_name}: unexpected keyword argument(s): {sorted(unknown)}")
        for key in ("use_ema", "loss_scale_factor", "gradient_accumulation_steps"):
            if kwargs.get(key):
                raise ValueError(f"kandle does not implement {self._keras_class_name}({key}=...) yet")
        if isinstance(learning_rate, schedules.LearningRateSchedule):
            learning_rate = learning_rate._serialize()
        elif callable(learning_rate):
            raise ValueError("kandle does not implement a callable learning_rate yet: use one of "
                             "kandle.optimizers.schedules")
        self._extra.update(learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
                           clipvalue=clipvalue, global_clipnorm=global_clipnorm)
        full = json.loads(_kandle.validate_optimizer(json.dumps(
            {"class_name": self._keras_class_name, "config": self._extra})))
        self._config = full["config"]
        self._config["name"] = name or self._keras_class_name
        self._core = None
        for key in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm"):
            setattr(self, key, self._config[key])

    def _bind(self, core):
        self._core = core

    @property
    def _scheduled(self):
        return isinstance(self._config["learning_rate"], dict)

    @property
    def learning_rate(self):
        """The learning rate of the next step (a schedule's value at the step count)."""
        if self._core is not None and self._core.learning_rate is not None:
            return self._core.learning_rate
        if self._scheduled:
            return schedules.deserialize(self._config["learning_rate"])(0)
        return self._config["learning_rate"]

    @learning_rate.setter
    def learning_rate(self, value):
        if self._scheduled:
            raise TypeError("This optimizer was created with a `LearningRateSchedule` object as its `learning_rate` "
                            "constructor argument, hence its learning rate is not settable. If you need the learning "
                            "rate to be settable, you should instantiate the optimizer with a float "
                            "`learning_rate` argument.")
        value = float(value)
        if self._core is not None:
            self._core.learning_rate = value
        self._config["learning_rate"] = value

    lr = learning_rate

    @property
    def iterations(self):
        return 0 if self._core is None else self._core.iterations

    def get_config(self):
        config = dict(self._config)
        if not self._scheduled:
            config["learning_rate"] = self.learning_rate
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _serialize(self):
        return {"class_name": self._keras_class_name, "config": self.get_config()}

    def __repr__(self):
        return f"<{self._keras_class_name} learning_rate={self.learning_rate}>"


class SGD(Optimizer):
    _keras_class_name = "SGD"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        self._extra = {"momentum": momentum, "nesterov": bool(nesterov)}
        super().__init__(learning_rate, **kwargs)


class Adam(Optimizer):
    _keras_class_name = "Adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        self._extra = {"beta_1": beta_1, "beta_2": beta_2, "epsilon": 1e-7 if epsilon is None else epsilon,
                       "amsgrad": bool(amsgrad)}
        super().__init__(learning_rate, **kwargs)


class RMSprop(Optimizer):
    _keras_class_name = "RMSprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        self._extra = {"rho": rho, "momentum": momentum, "epsilon": 1e-7 if epsilon is None else epsilon,
                       "centered": bool(centered)}
        super().__init__(learning_rate, **kwargs)


class Adagrad(Optimizer):
    _keras_class_name = "Adagrad"

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        self._extra = {"initial_accumulator_value": initial_accumulator_value,
                       "epsilon": 1e-7 if epsilon is None else epsilon}
        super().__init__(learning_rate, **kwargs)


class AdamW(Optimizer):
    _keras_class_name = "AdamW"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        self._extra = {"beta_1": beta_1, "beta_2": beta_2, "epsilon": 1e-7 if epsilon is None else epsilon,
                       "amsgrad": bool(amsgrad)}
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class Nadam(Optimizer):
    _keras_class_name = "Nadam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        self._extra = {"beta_1": beta_1, "beta_2": beta_2, "epsilon": 1e-7 if epsilon is None else epsilon}
        super().__init__(learning_rate, **kwargs)


class Adadelta(Optimizer):
    _keras_class_name = "Adadelta"

    def __init__(self, learning_rate=0.001, rho=0.95, epsilon=1e-7, **kwargs):
        self._extra = {"rho": rho, "epsilon": 1e-7 if epsilon is None else epsilon}
        super().__init__(learning_rate, **kwargs)


class Adamax(Optimizer):
    _keras_class_name = "Adamax"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        self._extra = {"beta_1": beta_1, "beta_2": beta_2, "epsilon": 1e-7 if epsilon is None else epsilon}
        super().__init__(learning_rate, **kwargs)


class Lion(Optimizer):
    _keras_class_name = "Lion"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.99, **kwargs):
        self._extra = {"beta_1": beta_1, "beta_2": beta_2}
        super().__init__(learning_rate, **kwargs)


_BY_NAME = {c._keras_class_name.lower(): c for c in (SGD, Adam, RMSprop, Adagrad, AdamW, Nadam, Adadelta, Adamax,
                                                     Lion)}


def get(identifier):
    """An optimizer from a name ('sgd'), a config dict, or an optimizer (returned as is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Could not interpret optimizer identifier: '{identifier}'. "
                             f"Known: {', '.join(_BY_NAME)}")
        return cls()
    if isinstance(identifier, dict):
        cls = _BY_NAME.get(str(identifier.get("class_name", "")).lower())
        if cls is None:
            raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}")
        return cls.from_config(identifier.get("config", {}))
    raise ValueError(f"Could not interpret optimizer identifier: {identifier!r}")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(f"kandle does not implement keras.optimizers.{name} yet")
