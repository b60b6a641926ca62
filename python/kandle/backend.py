"""``kandle.backend`` (imported as ``K`` in Keras tutorials): data format, learning phase, session
state (layer name counters)."""

import collections
import re

_name_counts = collections.Counter()
_state = {"image_data_format": "channels_last", "learning_phase": 0}


def image_data_format():
    return _state["image_data_format"]


def set_image_data_format(data_format):
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"Unknown data_format: {data_format!r}. Expected 'channels_last' or 'channels_first'")
    if data_format == "channels_first":
        raise ValueError("kandle supports only data_format='channels_last' (NHWC)")
    _state["image_data_format"] = data_format


def set_learning_phase(value):
    """Accepted for compatibility: fit trains and predict infers regardless, as in Keras 3."""
    if value not in (0, 1):
        raise ValueError(f"Expected learning phase to be 0 or 1, got {value!r}")
    _state["learning_phase"] = value


def learning_phase():
    return _state["learning_phase"]


def clear_session():
    """Resets layer and model name counters, as Keras does."""
    _name_counts.clear()


def floatx():
    return "float32"


def set_floatx(value):
    if value != "float32":
        raise ValueError(f"kandle computes in float32 only, got floatx={value!r}")


def epsilon():
    return 1e-7


def backend():
    return "kandle"


def snake_case(name):
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def unique_name(prefix):
    """Keras 3 naming: 'dense', then 'dense_1', 'dense_2', ..."""
    n = _name_counts[prefix]
    _name_counts[prefix] += 1
    return prefix if n == 0 else f"{prefix}_{n}"
