"""``kandle.optimizers.schedules``: Keras 3's learning-rate schedules. Pass one as an optimizer's
``learning_rate``; the Rust core evaluates it at each step (``crate::schedules``), and so does calling it
here (``schedule(step)``), so the formulas live once.
"""

import json

from kandle import _kandle


class LearningRateSchedule:
    """Base class of the schedules. kandle evaluates its own schedules in Rust; a subclass with a
    Python ``__call__`` cannot drive the core's training loop yet."""

    _class_name = None

    def __init__(self, **config):
        if self._class_name is None:
            raise NotImplementedError("kandle does not implement custom LearningRateSchedule subclasses yet: "
                                      "use ExponentialDecay, InverseTimeDecay, PiecewiseConstantDecay, "
                                      "CosineDecay or PolynomialDecay")
        serialized, _ = _kandle.schedule_value(json.dumps({"class_name": self._class_name, "config": config}), 0)
        self._serialized = json.loads(serialized)
        self._serialized["config"]["name"] = config.get("name") or self._serialized["config"]["name"]
        self.__dict__.update(self._serialized["config"])

    def __call__(self, step):
        return _kandle.schedule_value(json.dumps(self._serialized), int(step))[1]

    def get_config(self):
        return dict(self._serialized["config"])

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def _serialize(self):
        return json.loads(json.dumps(self._serialized))

    def __repr__(self):
        return f"<{self._class_name} {self.get_config()}>"


class ExponentialDecay(LearningRateSchedule):
    _class_name = "ExponentialDecay"

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="ExponentialDecay"):
        super().__init__(initial_learning_rate=initial_learning_rate, decay_steps=decay_steps,
                         decay_rate=decay_rate, staircase=staircase, name=name)


class InverseTimeDecay(LearningRateSchedule):
    _class_name = "InverseTimeDecay"

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name="InverseTimeDecay"):
        super().__init__(initial_learning_rate=initial_learning_rate, decay_steps=decay_steps,
                         decay_rate=decay_rate, staircase=staircase, name=name)


class PiecewiseConstantDecay(LearningRateSchedule):
    _class_name = "PiecewiseConstantDecay"

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        super().__init__(boundaries=list(boundaries), values=list(values), name=name)


class CosineDecay(LearningRateSchedule):
    _class_name = "CosineDecay"

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        super().__init__(initial_learning_rate=initial_learning_rate, decay_steps=decay_steps, alpha=alpha,
                         name=name, warmup_target=warmup_target, warmup_steps=warmup_steps)


class PolynomialDecay(LearningRateSchedule):
    _class_name = "PolynomialDecay"

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0, cycle=False,
                 name="PolynomialDecay"):
        super().__init__(initial_learning_rate=initial_learning_rate, decay_steps=decay_steps,
                         end_learning_rate=end_learning_rate, power=power, cycle=cycle, name=name)


_CLASSES = {c._class_name: c for c in (ExponentialDecay, InverseTimeDecay, PiecewiseConstantDecay, CosineDecay,
                                        PolynomialDecay)}


def serialize(schedule):
    return schedule._serialize()


def deserialize(config, custom_objects=None):
    """A schedule from Keras's serialized form (``{"class_name": ..., "config": ...}``)."""
    cls = _CLASSES.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"kandle does not implement the learning-rate schedule {config.get('class_name')!r} yet")
    return cls.from_config(config["config"])


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(f"kandle does not implement keras.optimizers.schedules.{name} yet")
