"""kandle: Keras-style deep learning, implemented in Rust on candle.

Submodules mirror Keras's module paths (``kandle.layers``, ``kandle.models``, ...) and are imported on
first use, so ``import kandle`` stays cheap.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = {
    "activations", "applications", "backend", "callbacks", "config", "datasets", "distribution", "initializers", "layers",
    "losses", "metrics", "mixed_precision", "models", "ops", "optimizers", "preprocessing", "saving", "utils",
}


# Keras 3's top-level names: ``keras.Input``, ``keras.Model``, ``keras.Sequential``.
_TOP_LEVEL = {"Input": "kandle.layers", "Model": "kandle.models", "Sequential": "kandle.models",
              "DTypePolicy": "kandle.mixed_precision"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _TOP_LEVEL:
        return getattr(importlib.import_module(_TOP_LEVEL[name]), name)
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(f"kandle does not implement keras.{name} yet")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES) + list(_TOP_LEVEL))
