"""Deterministic weights and inputs for the graph fixtures (``tests/golden/graph/``).

Plain NumPy, no Keras: ``tests/golden/make_golden_graph.py`` (run under real Keras) and kandle's own
tests both import this module, so a model whose weights are too big to commit (ResNet50: 94 MB) can
be filled with the same values on both sides and only its outputs need to be stored.

The formula, for weight number ``i`` (its position in Keras ``model.get_weights()`` order) with
shape ``s`` and ``n`` elements, with ``t = sin(arange(n) * 0.731 + 1.3 * i)`` (float64, reshaped to
``s`` in C order) is:

* ``"kernel"`` (Conv2D ``(kh, kw, in, out)``, Dense ``(in, out)``): ``t * sqrt(3 / fan_in)``,
  ``fan_in = prod(s[:-1])``;
* ``"bias"``, ``"beta"``, ``"moving_mean"``: ``0.05 * t``;
* ``"gamma"``: ``1 + 0.1 * t``;
* ``"moving_variance"``: ``1 + 0.5 * t**2``;

computed in float64 and rounded once to float32.

That is ``scheme="sine"``, the default. CAUTION: with it every kernel, seen as the matrix
``(fan_in, out)``, has rank <= 2 (``sin(a*(r*out + o) + p)`` = ``sin(a*out*r + p) cos(a*o) +
cos(a*out*r + p) sin(a*o)``), so a deep network forgets its input: the assignment ResNet50's
inference output differs between two inputs by ~1e-6 only. ``scheme="hash"`` keeps the formulas
above but takes the phase from a hash instead of the index: ``t = sin(2*pi*u)`` with
``u = splitmix64((i << 40) + k) / 2**64`` for element ``k`` (C order) of weight ``i`` -- full-rank,
random-looking kernels, exactly reproducible (integer arithmetic, then one float64 ``sin``).

Usage::

    from deterministic import fill, inputs, kind_of
    weights = fill([(kind_of(v.name), v.shape) for v in model.weights])
    weights = fill([(kind_of(v.name), v.shape) for v in model.weights], scheme="hash")
    x = inputs((2, 64, 64, 3), seed=0)
"""

import math

import numpy as np

KINDS = ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")


def kind_of(name):
    """The kind of a weight from its Keras variable name or path (``"conv1/kernel"`` -> ``"kernel"``,
    ``"bn_conv1/moving_variance"`` -> ``"moving_variance"``). Raises ValueError for anything else."""
    leaf = str(name).rstrip("/").split("/")[-1]
    if leaf.endswith(":0"):  # TF-style names
        leaf = leaf[:-2]
    if leaf not in KINDS:
        raise ValueError(f"unknown weight kind for {name!r} (expected one of {KINDS})")
    return leaf


SCHEMES = ("sine", "hash")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(x):
    """The SplitMix64 output function of state ``x + golden`` (uint64 array in, uint64 array out):
    ``z = x + 0x9E3779B97F4A7C15; z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9;
    z = (z ^ z >> 27) * 0x94D049BB133111EB; z ^ z >> 31`` (all mod 2**64)."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def phases(i, n, scheme="sine"):
    """The float64 vector ``t`` (length ``n``) for weight number ``i``."""
    if scheme == "sine":
        return np.sin(np.arange(n, dtype=np.float64) * 0.731 + 1.3 * i)
    if scheme == "hash":
        if n >= 1 << 40:
            raise ValueError("weight too large for the hash scheme")
        k = np.arange(n, dtype=np.uint64) + (np.uint64(i) << np.uint64(40))
        u = (splitmix64(k) >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)
        return np.sin(2.0 * math.pi * u)
    raise ValueError(f"unknown scheme {scheme!r} (expected one of {SCHEMES})")


def weight(i, kind, shape, scheme="sine"):
    """Weight number ``i`` (0-based, ``get_weights()`` order) of the given kind and shape."""
    shape = tuple(int(d) for d in shape)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    t = phases(i, n, scheme).reshape(shape)
    if kind == "kernel":
        if len(shape) < 2:
            raise ValueError(f"kernel {i} must have ndim >= 2, got shape {shape}")
        fan_in = int(np.prod(shape[:-1], dtype=np.int64))
        v = t * math.sqrt(3.0 / fan_in)
    elif kind in ("bias", "beta", "moving_mean"):
        v = 0.05 * t
    elif kind == "gamma":
        v = 1.0 + 0.1 * t
    elif kind == "moving_variance":
        v = 1.0 + 0.5 * t * t
    else:
        raise ValueError(f"unknown weight kind {kind!r} (expected one of {KINDS})")
    return v.astype(np.float32)


def fill(weights_meta, scheme="sine"):
    """``weights_meta``: a list of ``(kind, shape)`` in ``model.get_weights()`` order, ``kind`` one
    of ``KINDS``. Returns the list of float32 arrays to pass to ``set_weights``. ``scheme``:
    ``"sine"`` (the default, the formula above) or ``"hash"`` (full-rank kernels)."""
    return [weight(i, kind, shape, scheme) for i, (kind, shape) in enumerate(weights_meta)]


def inputs(shape, seed):
    """A deterministic float32 array in [0, 1): ``default_rng(seed).random(shape)`` in float64,
    rounded to float32."""
    return np.random.default_rng(seed).random(tuple(shape), dtype=np.float64).astype(np.float32)
