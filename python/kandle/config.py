"""``kandle.config`` (Keras 3's ``keras.config``): the global settings Keras code reads and sets. kandle
computes in float32, channels-last; the setters accept those values and say so for others."""

from kandle.backend import backend, epsilon, floatx, image_data_format, set_floatx, set_image_data_format
from kandle.mixed_precision import dtype_policy, set_dtype_policy

__all__ = ["backend", "epsilon", "floatx", "image_data_format", "set_floatx", "set_image_data_format",
           "set_epsilon", "dtype_policy", "set_dtype_policy", "enable_interactive_logging", "disable_interactive_logging", "is_interactive_logging_enabled"]

_interactive = {"on": True}


def set_epsilon(value):
    if float(value) != epsilon():
        raise ValueError(f"kandle does not implement set_epsilon({value!r}) yet: its losses use {epsilon()}")


def enable_interactive_logging():
    _interactive["on"] = True


def disable_interactive_logging():
    _interactive["on"] = False


def is_interactive_logging_enabled():
    return _interactive["on"]


def __getattr__(name):
    raise AttributeError(f"kandle does not implement keras.config.{name} yet")
