"""kandle.ops: eager results against NumPy, symbolic shape/dtype recording, errors and namespaces."""

import math

import numpy as np
import pytest

import kandle
from kandle import ops
from kandle.ops._graph import _Graph

F32 = np.float32


def rnd(shape, seed=0, lo=-2.0, hi=2.0):
    return np.random.default_rng(seed).uniform(lo, hi, shape).astype(F32)


def check(got, want, dtype="float32", rtol=1e-5, atol=1e-6):
    got = np.asarray(got)
    assert got.dtype == np.dtype(dtype), (got.dtype, dtype)
    assert got.shape == np.shape(want), (got.shape, np.shape(want))
    np.testing.assert_allclose(got.astype(np.float64), np.asarray(want, dtype=np.float64), rtol=rtol, atol=atol)


# -- element-wise ---------------------------------------------------------------------------------
SHAPES = [((3, 1, 4), (5, 1)), ((2, 3, 4), (2, 3, 4)), ((7,), (3, 1)), ((5,), ()), ((1, 5), (3, 1))]
BINARY = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
          "maximum": np.maximum, "minimum": np.minimum, "power": np.power}
COMPARE = {n: getattr(np, n) for n in ["greater", "greater_equal", "less", "less_equal", "equal", "not_equal"]}


@pytest.mark.parametrize("sa,sb", SHAPES)
@pytest.mark.parametrize("name", list(BINARY))
def test_binary(name, sa, sb):
    a, b = rnd(sa, 1), rnd(sb, 2)
    if name == "divide":
        b = np.where(b < 0, b - 0.5, b + 0.5).astype(F32)
    if name == "power":
        a = np.abs(a) + F32(0.1)
    check(getattr(ops, name)(a, b), BINARY[name](a, b), rtol=1e-5 if name != "power" else 1e-4)


@pytest.mark.parametrize("sa,sb", SHAPES)
@pytest.mark.parametrize("name", list(COMPARE))
def test_compare(name, sa, sb):
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 3, sa).astype(F32), rng.integers(0, 3, sb).astype(F32)
    check(getattr(ops, name)(a, b), COMPARE[name](a, b), dtype="bool")


@pytest.mark.parametrize("exponent", [2, 3, 0.5, 2.5, -1.0])
def test_power_scalar(exponent):
    a = np.abs(rnd((3, 5), 4)) + F32(0.1)
    check(ops.power(a, exponent), np.power(a, F32(exponent)), rtol=1e-5)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


UNARY = {"negative": (np.negative, None), "abs": (np.abs, None), "square": (np.square, None),
         "sqrt": (np.sqrt, "pos"), "exp": (np.exp, None), "log": (np.log, "pos"), "reciprocal": (np.reciprocal, "pos"),
         "sin": (np.sin, None), "cos": (np.cos, None), "tanh": (np.tanh, None), "floor": (np.floor, None),
         "sign": (np.sign, None), "relu": (lambda x: np.maximum(x, 0), None),
         "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), None), "silu": (lambda x: x / (1 + np.exp(-x)), None),
         "softplus": (lambda x: np.log1p(np.exp(x)), None)}


@pytest.mark.parametrize("name", list(UNARY))
@pytest.mark.parametrize("shape", [(7,), (3, 1, 5), (2, 3, 4)])
def test_unary(name, shape):
    fn, domain = UNARY[name]
    x = rnd(shape, 5, 0.05, 3.0) if domain == "pos" else rnd(shape, 5, -3.0, 3.0)
    if name == "sign":
        x[..., 0] = 0.0
    check(getattr(ops, name)(x), fn(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_round_half_to_even():
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, 1.51, -0.7], F32)
    check(ops.round(x), np.round(x))


@pytest.mark.parametrize("approximate", [True, False])
def test_gelu(approximate):
    x = rnd((4, 6), 6, -4, 4).astype(np.float64)
    want = _gelu_tanh(x) if approximate else 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    check(ops.gelu(x.astype(F32), approximate=approximate), want, rtol=1e-5, atol=1e-5)


def test_clip_where_cast_fill():
    x, y = rnd((3, 1, 4), 7), rnd((5, 1), 8)
    check(ops.clip(x, -0.5, 0.7), np.clip(x, -0.5, 0.7))
    check(ops.where(x > 0, x, y), np.where(x > 0, x, y))
    check(ops.where(np.array([True, False, True, False]), 1.0, y), np.where([True, False, True, False], 1.0, y))
    check(ops.cast(x * 3, "int64"), (x * 3).astype(np.int64), dtype="int64")
    check(ops.cast(x > 0, "float32"), (x > 0).astype(F32))
    check(ops.cast(np.array([0, 2, -1]), "bool"), np.array([False, True, True]), dtype="bool")
    check(ops.cast(np.array([1, 2, -3]), "float32"), np.array([1, 2, -3], F32))
    check(ops.full_like(x, 3.5), np.full_like(x, 3.5))
    check(ops.zeros_like(x), np.zeros_like(x))
    check(ops.ones_like(x), np.ones_like(x))
    check(ops.ones_like(x, dtype="int64"), np.ones(x.shape, np.int64), dtype="int64")


# -- reductions -----------------------------------------------------------------------------------
def _logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    y = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return y if keepdims else np.squeeze(y, axis=axis) if axis is not None else y.reshape(())


REDUCE = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "var": np.var, "std": np.std,
          "logsumexp": _logsumexp}


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 1, -1, (0, 2), (-1, 0)])
@pytest.mark.parametrize("name", list(REDUCE))
def test_reduce(name, axis, keepdims):
    x = rnd((3, 4, 5), 9)
    want = REDUCE[name](x.astype(np.float64), axis=axis, keepdims=keepdims)
    check(getattr(ops, name)(x, axis=axis, keepdims=keepdims), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_arg_extreme(name, axis, keepdims):
    x = rnd((3, 5, 4), 10)
    check(getattr(ops, name)(x, axis=axis, keepdims=keepdims), getattr(np, name)(x, axis=axis, keepdims=keepdims),
          dtype="int64")


def test_moments_normalize():
    x = rnd((4, 3, 5), 11)
    m, v = ops.moments(x, axes=(0, 1), keepdims=True)
    check(m, x.mean((0, 1), keepdims=True), rtol=1e-4, atol=1e-5)
    check(v, x.var((0, 1), keepdims=True), rtol=1e-4, atol=1e-5)
    m, v = ops.moments(x, axes=[-1])
    check(m, x.mean(-1), rtol=1e-4, atol=1e-5)
    check(v, x.var(-1), rtol=1e-4, atol=1e-5)
    for axis in (-1, 1):
        check(ops.normalize(x, axis=axis), x / np.linalg.norm(x, axis=axis, keepdims=True), rtol=1e-4, atol=1e-5)


# -- shapes ---------------------------------------------------------------------------------------
def test_shape_ops():
    x, ix = rnd((2, 3, 4), 12), np.arange(24).reshape(2, 3, 4)
    check(ops.reshape(x, (4, -1)), x.reshape(4, -1))
    check(ops.reshape(ix, (-1,)), ix.reshape(-1), dtype="int64")
    check(ops.transpose(x, (2, 0, 1)), x.transpose(2, 0, 1))
    check(ops.transpose(x), x.T)
    check(ops.expand_dims(x, 1), x[:, None])
    check(ops.expand_dims(x, -1), x[..., None])
    y = rnd((1, 3, 1, 2), 13)
    check(ops.squeeze(y), np.squeeze(y))
    check(ops.squeeze(y, axis=2), np.squeeze(y, axis=2))
    check(ops.squeeze(y, axis=(0, 2)), np.squeeze(y, axis=(0, 2)))
    z = rnd((2, 5, 4), 14)
    check(ops.concatenate([x, z], axis=1), np.concatenate([x, z], axis=1))
    check(ops.concatenate([x, x[..., :1]], axis=-1), np.concatenate([x, x[..., :1]], axis=-1))
    check(ops.stack([x, x + 1, x * 2], axis=0), np.stack([x, x + 1, x * 2], axis=0))
    check(ops.stack([x, x + 1], axis=-1), np.stack([x, x + 1], axis=-1))
    check(ops.slice(x, (1, 0, 2), (1, 2, 2)), x[1:2, 0:2, 2:4])
    w = rnd((6, 5), 15)
    for got, want in zip(ops.split(w, 3), np.split(w, 3)):
        check(got, want)
    for got, want in zip(ops.split(w, [1, 4], axis=1), np.split(w, [1, 4], axis=1)):
        check(got, want)
    check(ops.take(x, np.array([[5, -1], [0, 23]])), np.take(x, [[5, -1], [0, 23]]))
    check(ops.take(x, np.array([2, -1, 0, 2]), axis=-1), np.take(x, [2, -1, 0, 2], axis=-1))
    check(ops.take(x, np.array([[1], [-3]]), axis=1), np.take(x, [[1], [-3]], axis=1))
    check(ops.tile(x, (2, 1, 3)), np.tile(x, (2, 1, 3)))
    check(ops.tile(x, (2, 1, 1, 2)), np.tile(x, (2, 1, 1, 2)))
    pw = [(1, 2), (0, 1), (2, 0)]
    check(ops.pad(x, pw, constant_values=1.5), np.pad(x, pw, constant_values=1.5))
    check(ops.pad(x, 1), np.pad(x, 1))


# -- linear algebra -------------------------------------------------------------------------------
@pytest.mark.parametrize("sa,sb", [((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 5)), ((3, 4), (4, 5)),
                                   ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 6)), ((3, 4), (2, 4, 5))])
def test_matmul(sa, sb):
    a, b = rnd(sa, 16), rnd(sb, 17)
    check(ops.matmul(a, b), np.matmul(a, b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sa,sb", [((4,), (4,)), ((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 3, 4), (5, 4, 6)),
                                   ((2, 3, 4), (4,)), ((), (3, 2))])
def test_dot(sa, sb):
    a, b = rnd(sa, 18), rnd(sb, 19)
    check(ops.dot(a, b), np.dot(a, b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("spec,shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ij->ji", [(3, 4)]),
    ("...ij,...jk->...ik", [(2, 3, 4), (4, 5)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]),
    ("ij,jk", [(3, 4), (4, 5)]), ("ba", [(3, 4)]), ("i,i->", [(5,)] * 2), ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("ij->i", [(3, 4)]), ("i,j->ij", [(3,), (4,)]), ("b...d,d->b...", [(2, 3, 4, 5), (5,)])])
def test_einsum(spec, shapes):
    arrays = [rnd(s, 20 + i) for i, s in enumerate(shapes)]
    check(ops.einsum(spec, *arrays), np.einsum(spec, *arrays), rtol=1e-4, atol=1e-5)


# -- neural-network ops ---------------------------------------------------------------------------
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax(axis):
    x = rnd((3, 4, 5), 30, -5, 5).astype(np.float64)
    e = np.exp(x - x.max(axis, keepdims=True))
    sm = e / e.sum(axis, keepdims=True)
    check(ops.softmax(x.astype(F32), axis=axis), sm, rtol=1e-5, atol=1e-6)
    check(ops.log_softmax(x.astype(F32), axis=axis), np.log(sm), rtol=1e-5, atol=1e-5)


def test_one_hot():
    idx = np.array([[0, 4, 2], [1, 1, 3]])
    check(ops.one_hot(idx, 5), np.eye(5, dtype=F32)[idx])


def _log_softmax(x, axis):
    x = x.astype(np.float64)
    return x - x.max(axis, keepdims=True) - np.log(np.exp(x - x.max(axis, keepdims=True)).sum(axis, keepdims=True))


@pytest.mark.parametrize("axis", [-1, 0])
@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_crossentropy(from_logits, axis):
    rng = np.random.default_rng(31)
    t = rng.uniform(0, 1, (4, 5)).astype(F32)
    t /= t.sum(axis, keepdims=True)
    out = rnd((4, 5), 32, -3, 3) if from_logits else rnd((4, 5), 32, 0.0, 2.0)
    if not from_logits:
        out[0, 0] = 0.0
        logp = np.log(np.clip(out / out.sum(axis, keepdims=True, dtype=np.float64), 1e-7, 1 - 1e-7))
    else:
        logp = _log_softmax(out, axis)
    want = -(t * logp).sum(axis)
    check(ops.categorical_crossentropy(t, out, from_logits=from_logits, axis=axis), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse_and_binary_crossentropy(from_logits):
    labels = np.array([0, 4, 2, 1])
    out = rnd((4, 5), 33, -3, 3) if from_logits else rnd((4, 5), 33, 0.01, 1.0)
    logp = _log_softmax(out, -1) if from_logits else np.log(np.clip(out / out.sum(-1, keepdims=True), 1e-7, 1 - 1e-7))
    check(ops.sparse_categorical_crossentropy(labels, out, from_logits=from_logits), -logp[np.arange(4), labels],
          rtol=1e-4, atol=1e-5)
    t = np.random.default_rng(34).uniform(0, 1, (3, 4)).astype(F32)
    if from_logits:
        o = rnd((3, 4), 35, -4, 4).astype(np.float64)
        p = 1 / (1 + np.exp(-o))
        want = -(t * np.log(p) + (1 - t) * np.log(1 - p))
    else:
        o = rnd((3, 4), 35, 0, 1)
        o[0, :2] = [0.0, 1.0]
        p = np.clip(o, F32(1e-7), F32(1 - 1e-7))  # Keras clips in float32: 1 - p >= 1.19e-7
        want = -(t * np.log(p.astype(np.float64)) + (1 - t) * np.log((F32(1) - p).astype(np.float64)))
    check(ops.binary_crossentropy(t, o.astype(F32), from_logits=from_logits), want, rtol=1e-4, atol=1e-5)


def _same(n, k, s):
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def conv_ref(x, k, s, padding):
    kh, kw = k.shape[:2]
    if padding == "same":
        x = np.pad(x, [(0, 0), _same(x.shape[1], kh, s), _same(x.shape[2], kw, s), (0, 0)])
    oh, ow = (x.shape[1] - kh) // s + 1, (x.shape[2] - kw) // s + 1
    y = np.zeros((x.shape[0], oh, ow, k.shape[3]))
    for i in range(oh):
        for j in range(ow):
            y[:, i, j] = np.tensordot(x[:, i * s:i * s + kh, j * s:j * s + kw], k, axes=([1, 2, 3], [0, 1, 2]))
    return y


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("xs,ks", [((2, 7, 6, 3), (3, 2, 3, 4)), ((1, 8, 8, 2), (3, 3, 2, 5)), ((2, 5, 9, 1), (4, 4, 1, 2))])
def test_conv(xs, ks, strides, padding):
    x, k = rnd(xs, 40), rnd(ks, 41)
    check(ops.conv(x, k, strides=strides, padding=padding), conv_ref(x.astype(np.float64), k, strides, padding),
          rtol=1e-4, atol=1e-4)


def pool_ref(x, k, padding, reduce):
    if padding == "same":
        x = np.pad(x.astype(np.float64), [(0, 0), _same(x.shape[1], k[0], k[0]), _same(x.shape[2], k[1], k[1]), (0, 0)],
                   constant_values=np.nan)
    oh, ow = x.shape[1] // k[0], x.shape[2] // k[1]
    w = x[:, :oh * k[0], :ow * k[1]].reshape(x.shape[0], oh, k[0], ow, k[1], x.shape[3])
    return reduce(w, axis=(2, 4))


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("pool_size", [2, (2, 3)])
@pytest.mark.parametrize("name,reduce", [("max_pool", np.nanmax), ("average_pool", np.nanmean)])
def test_pool(name, reduce, pool_size, padding):
    x = rnd((2, 7, 7, 3), 42)
    k = (pool_size, pool_size) if isinstance(pool_size, int) else pool_size
    check(getattr(ops, name)(x, pool_size, padding=padding), pool_ref(x, k, padding, reduce), rtol=1e-5, atol=1e-6)


# -- symbolic recording ---------------------------------------------------------------------------
W = np.ones((4, 5), F32)
SYMBOLIC = [
    (lambda x: ops.sum(x, axis=1), (None, 4), "float32"), (lambda x: ops.mean(x, 1, keepdims=True), (None, 1, 4), "float32"),
    (lambda x: ops.max(x, axis=-1), (None, 3), "float32"), (lambda x: ops.reshape(x, (-1, 12)), (None, 12), "float32"),
    (lambda x: ops.matmul(x, W), (None, 3, 5), "float32"), (lambda x: x @ W, (None, 3, 5), "float32"),
    (lambda x: np.ones((2, 3), F32) @ x, (None, 2, 4), "float32"),
    (lambda x: ops.concatenate([x, x[..., :1]], axis=-1), (None, 3, 5), "float32"),
    (lambda x: x[:, 0], (None, 4), "float32"), (lambda x: x[..., 1:3], (None, 3, 2), "float32"),
    (lambda x: x[:, None], (None, 1, 3, 4), "float32"), (lambda x: ops.greater(x, 0.0), (None, 3, 4), "bool"),
    (lambda x: x <= 1.0, (None, 3, 4), "bool"), (lambda x: x == x, (None, 3, 4), "bool"),
    (lambda x: ops.argmax(x, axis=-1), (None, 3), "int64"), (lambda x: ops.argmin(x, axis=1), (None, 4), "int64"),
    (lambda x: x + 1, (None, 3, 4), "float32"), (lambda x: 2 - x, (None, 3, 4), "float32"),
    (lambda x: x * np.ones((3, 1), F32), (None, 3, 4), "float32"), (lambda x: x / 2, (None, 3, 4), "float32"),
    (lambda x: x ** 2, (None, 3, 4), "float32"), (lambda x: -x, (None, 3, 4), "float32"),
    (lambda x: abs(x), (None, 3, 4), "float32"), (lambda x: ops.transpose(x, (0, 2, 1)), (None, 4, 3), "float32"),
    (lambda x: ops.expand_dims(x, 1), (None, 1, 3, 4), "float32"), (lambda x: ops.cast(x, "int64"), (None, 3, 4), "int64"),
    (lambda x: ops.softmax(x, axis=1), (None, 3, 4), "float32"), (lambda x: ops.sum(x), (), "float32"),
    (lambda x: ops.einsum("bij,jk->bik", x, W), (None, 3, 5), "float32"),
    (lambda x: ops.conv(ops.reshape(x, (-1, 3, 4, 1)), np.ones((2, 2, 1, 6), F32), 2, "same"), (None, 2, 2, 6), "float32"),
]


@pytest.mark.parametrize("i", range(len(SYMBOLIC)))
def test_symbolic(i):
    fn, shape, dtype = SYMBOLIC[i]
    x = _Graph('Layer "t"').input((None, 3, 4))
    y = fn(x)
    assert (tuple(y.shape), y.dtype) == (shape, dtype)
    assert ops.shape(y) == shape


# -- errors ---------------------------------------------------------------------------------------
def test_symbolic_errors():
    g = _Graph('Layer "t"')
    x2 = g.input((None, 3))
    with pytest.raises(ValueError) as e:
        ops.add(x2, np.ones(4, F32))
    for part in ["ops.add", 'Layer "t"', "(None, 3)", "(4,)"]:
        assert part in str(e.value)
    x = g.input((None, 3, 4))
    with pytest.raises(ValueError) as e:
        ops.matmul(x, np.ones((5, 2), F32))
    assert "(None, 3, 4)" in str(e.value) and "(5, 2)" in str(e.value)
    with pytest.raises(ValueError):
        ops.reshape(x, (5, 7))
    with pytest.raises(TypeError, match="ops.where"):
        bool(x)
    with pytest.raises(TypeError, match="ops.where"):
        if x > 0:
            pass
    with pytest.raises(TypeError):
        np.asarray(x)
    with pytest.raises(TypeError):
        np.mean(x)


def test_eager_errors():
    with pytest.raises(AttributeError, match="kandle does not implement keras.ops.fft yet"):
        kandle.ops.fft
    with pytest.raises(TypeError):
        ops.add(np.array(["a", "b"]), np.array(["c", "d"]))
    with pytest.raises(ValueError):
        ops.take(np.arange(5, dtype=F32), np.array([5]))
    with pytest.raises(ValueError):
        ops.take(rnd((2, 3)), np.array([-4]), axis=1)
    with pytest.raises(ValueError, match="kandle does not implement"):
        ops.conv(rnd((1, 6, 6, 2)), rnd((3, 3, 2, 4)), strides=(1, 2))


def test_namespaces():
    assert kandle.ops.nn.relu is kandle.ops.relu
    assert kandle.ops.numpy.matmul is kandle.ops.matmul
    assert kandle.ops.nn.softmax is kandle.ops.softmax and kandle.ops.numpy.sum is kandle.ops.sum
