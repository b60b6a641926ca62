"""Keras 3's ``keras.distribution`` names: data-parallel ``fit``/``evaluate``/``predict`` over the
processes that ``mpiexec -n N python train.py`` starts (``pip install "kandle[distributed]"``)."""

from kandle.distribution.distribution_lib import (
    DataParallel,
    DeviceMesh,
    distribution,
    initialize,
    list_devices,
    set_distribution,
)

__all__ = ["DataParallel", "DeviceMesh", "distribution", "initialize", "list_devices", "set_distribution"]


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(f"kandle does not implement keras.distribution.{name} yet")
