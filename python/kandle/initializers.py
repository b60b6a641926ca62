"""``kandle.initializers``: Keras 3's initializers by class and name. Layers draw their weights in Rust;
calling an initializer (``GlorotNormal(seed=42)(shape=(2, 2))``) draws through the same code and returns
a float32 array. Unseeded ones draw from kandle's generator (``kandle.utils.set_random_seed``); a seeded
one gives the same values at every call, as in Keras 3 (kandle's values, not TensorFlow's).
"""

import json

import numpy as np

from kandle import _kandle


class Initializer:
    _keras_class_name = None
    _defaults = {}

    def __init__(self, **config):
        unknown = set(config) - set(self._defaults) - {"seed"}
        if unknown:
            raise TypeError(f"{self._keras_class_name}: unexpected argument(s) {sorted(unknown)}")
        self._config = {**self._defaults, **config}
        for key in ("input_axes", "output_axes"):
            if self._config.get(key) is not None:
                raise ValueError(f"kandle does not implement {self._keras_class_name}({key}=...) yet")
        # Checked by the core now, as Keras's constructors check.
        _kandle.initializer_sample(json.dumps(self._serialize()), [1, 1] if self._keras_class_name in
                                   ("Orthogonal", "Identity") else [1])
        self.__dict__.update(self._config)

    def __call__(self, shape, dtype=None):
        if dtype not in (None, "float32", np.float32):
            raise ValueError(f"kandle does not implement initializers of dtype {dtype!r} yet (float32 only)")
        shape = [int(d) for d in (shape if isinstance(shape, (tuple, list)) else (shape,))]
        return _kandle.initializer_sample(json.dumps(self._serialize()), shape)[1]

    def _serialize(self):
        return {"class_name": self._keras_class_name, "config": dict(self._config)}

    def get_config(self):
        return dict(self._config)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{self._keras_class_name} {self._config}>"


def _make(class_name, seeded=True, **defaults):
    init_defaults = dict(defaults, **({"seed": None} if seeded else {}))
    if class_name.startswith(("Glorot", "He", "Lecun", "VarianceScaling")):
        init_defaults.update(input_axes=None, output_axes=None)  # Keras 3.12+; kandle: None only
    return type(class_name, (Initializer,), {"_keras_class_name": class_name, "_defaults": init_defaults,
                                             "__module__": __name__})


Zeros = _make("Zeros", seeded=False)
Ones = _make("Ones", seeded=False)
Constant = _make("Constant", seeded=False, value=0.0)
Identity = _make("Identity", seeded=False, gain=1.0)
RandomUniform = _make("RandomUniform", minval=-0.05, maxval=0.05)
RandomNormal = _make("RandomNormal", mean=0.0, stddev=0.05)
TruncatedNormal = _make("TruncatedNormal", mean=0.0, stddev=0.05)
VarianceScaling = _make("VarianceScaling", scale=1.0, mode="fan_in", distribution="truncated_normal")
Orthogonal = _make("Orthogonal", gain=1.0)
GlorotUniform = _make("GlorotUniform")
GlorotNormal = _make("GlorotNormal")
HeUniform = _make("HeUniform")
HeNormal = _make("HeNormal")
LecunUniform = _make("LecunUniform")
LecunNormal = _make("LecunNormal")

zeros, ones, constant, identity = Zeros, Ones, Constant, Identity
random_uniform, random_normal, truncated_normal = RandomUniform, RandomNormal, TruncatedNormal
variance_scaling, orthogonal = VarianceScaling, Orthogonal
glorot_uniform, glorot_normal = GlorotUniform, GlorotNormal
he_uniform, he_normal = HeUniform, HeNormal
lecun_uniform, lecun_normal = LecunUniform, LecunNormal
IdentityInitializer, OrthogonalInitializer = Identity, Orthogonal  # Keras 3 aliases

_CLASSES = {c._keras_class_name: c for c in (Zeros, Ones, Constant, Identity, RandomUniform, RandomNormal,
                                             TruncatedNormal, VarianceScaling, Orthogonal, GlorotUniform,
                                             GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal)}
_BY_NAME = {"".join(ch for ch in name.lower() if ch != "_"): cls for name, cls in _CLASSES.items()}


def serialize(initializer):
    return initializer._serialize()


def deserialize(config, custom_objects=None):
    cls = _CLASSES.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"kandle does not implement the initializer {config.get('class_name')!r} yet")
    return cls.from_config(config.get("config", {}))


def get(identifier):
    """An initializer from a name ('he_normal'), a config dict, or an initializer (returned as is)."""
    if identifier is None or isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier.lower().replace("_", ""))
        if cls is None:
            raise ValueError(f"Could not interpret initializer identifier: {identifier!r}")
        return cls()
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    raise ValueError(f"Could not interpret initializer identifier: {identifier!r}")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(f"kandle does not implement keras.initializers.{name} yet")
