"""``kandle.initializers``: Keras initializers by name; the values are drawn in Rust from kandle's
seeded generator (``kandle.utils.set_random_seed``)."""


class Initializer:
    _keras_class_name = None

    def __init__(self, **config):
        self._config = config

    def get_config(self):
        return dict(self._config)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{self._keras_class_name} {self._config}>"


def _make(class_name, **defaults):
    def __init__(self, **config):
        unknown = set(config) - set(defaults) - {"seed"}
        if unknown:
            raise TypeError(f"{class_name}: unexpected argument(s) {sorted(unknown)}")
        Initializer.__init__(self, **{**defaults, **config})

    return type(class_name, (Initializer,), {"_keras_class_name": class_name, "__init__": __init__})


Zeros = _make("Zeros")
Ones = _make("Ones")
Constant = _make("Constant", value=0.0)
RandomUniform = _make("RandomUniform", minval=-0.05, maxval=0.05)
RandomNormal = _make("RandomNormal", mean=0.0, stddev=0.05)
GlorotUniform = _make("GlorotUniform")
GlorotNormal = _make("GlorotNormal")
HeUniform = _make("HeUniform")
HeNormal = _make("HeNormal")
LecunUniform = _make("LecunUniform")
LecunNormal = _make("LecunNormal")

zeros, ones, constant = Zeros, Ones, Constant
random_uniform, random_normal = RandomUniform, RandomNormal
glorot_uniform, glorot_normal = GlorotUniform, GlorotNormal
he_uniform, he_normal = HeUniform, HeNormal
lecun_uniform, lecun_normal = LecunUniform, LecunNormal
