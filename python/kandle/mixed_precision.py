"""``kandle.mixed_precision`` (Keras 3's ``keras.mixed_precision``, tf.keras's too): dtype policies.

Under ``mixed_bfloat16`` variables stay float32 and Conv2D and Dense multiply in bfloat16 (their
inputs, kernels and output gradients rounded to bfloat16, products summed in float32) on the CPU's
AMX or AVX512-BF16 units; everything else (BatchNormalization, pooling, activations, softmax, the
losses and metrics) computes in float32, and ``predict`` returns float32. Which policies exist is
the Rust core's list (``_kandle.dtype_policy`` says, or raises naming them).
"""

import warnings

from kandle import _kandle

__all__ = ["DTypePolicy", "Policy", "dtype_policy", "global_policy", "set_dtype_policy", "set_global_policy"]


class DTypePolicy:
    """A layer's dtype policy: ``DTypePolicy('mixed_bfloat16')``."""

    def __init__(self, name="float32"):
        if isinstance(name, DTypePolicy):
            name = name.name
        if not isinstance(name, str):
            raise TypeError(f"'name' must be a string, such as 'mixed_bfloat16'. Received: name={name!r}")
        self._compute_dtype, self._variable_dtype = _kandle.dtype_policy(name)
        self._name = name
        if self._compute_dtype == "bfloat16":
            _say_kernel_once()

    @property
    def name(self):
        return self._name

    @property
    def compute_dtype(self):
        return self._compute_dtype

    @property
    def variable_dtype(self):
        return self._variable_dtype

    def get_config(self):
        return {"name": self._name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, DTypePolicy) and other.name == self.name

    def __hash__(self):
        return hash(self._name)

    def __repr__(self):
        return f'<DTypePolicy "{self._name}">'


Policy = DTypePolicy  # tf.keras.mixed_precision.Policy

_GLOBAL = {"policy": None}
_SAID = {"kernel": False}


def _say_kernel_once():
    if _SAID["kernel"]:
        return
    _SAID["kernel"] = True
    name, native = _kandle.bf16_kernel()
    if not native:
        warnings.warn(f"kandle: this CPU has neither AMX-BF16 nor AVX512-BF16 (or the OS refuses AMX); "
                      f"mixed_bfloat16 runs as {name}: the same numbers, without the speed-up", stacklevel=3)


def set_global_policy(policy):
    """Sets the policy of layers created from now on without a ``dtype=`` of their own; ``None``
    restores float32."""
    _GLOBAL["policy"] = None if policy is None else resolve(policy)


def global_policy():
    return _GLOBAL["policy"] or DTypePolicy("float32")


set_dtype_policy = set_global_policy  # keras.config.set_dtype_policy
dtype_policy = global_policy  # keras.config.dtype_policy


def resolve(dtype):
    """A layer's ``dtype=`` argument as a policy: ``None`` (the global policy), a name, a policy, or
    a serialized one (Keras 3's ``{"class_name": "DTypePolicy", "config": {"name": ...}}``, Keras
    2's ``Policy``)."""
    if dtype is None:
        return global_policy()
    if isinstance(dtype, DTypePolicy):
        return dtype
    if isinstance(dtype, dict):
        if dtype.get("class_name") not in ("DTypePolicy", "Policy", None):
            raise ValueError(f"kandle does not implement the dtype policy class {dtype.get('class_name')!r} yet "
                             "(it has DTypePolicy)")
        return DTypePolicy((dtype.get("config") or {}).get("name", "float32"))
    if isinstance(dtype, str):
        return DTypePolicy(dtype)
    name = getattr(dtype, "name", None)  # a numpy dtype such as np.float32
    if isinstance(name, str):
        return DTypePolicy(name)
    raise TypeError(f"Invalid dtype policy: {dtype!r} (expected a name such as 'mixed_bfloat16' or a DTypePolicy)")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(f"kandle does not implement keras.mixed_precision.{name} yet")
