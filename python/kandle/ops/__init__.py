"""``kandle.ops``: Keras 3's ``keras.ops`` for custom layers, models and losses.

Every function takes NumPy arrays, Python numbers, symbolic tensors or a layer's weights. On arrays it
computes at once in Rust and returns a NumPy array; inside a custom layer's ``call`` (symbolic tensors)
it records one op of the layer's graph, which the Rust core checks, runs and differentiates; on the
``KerasTensor``s of a functional model it adds the op to the model as a layer of its own. The op list
is the core's (``_kandle.op_names()``); the functions here only bind Keras's argument names.
"""

import json

import numpy as np

from kandle import _kandle, backend
from kandle.ops._graph import SymbolicTensor, Variable, _install_operators, active

_OPS = set(_kandle.op_names())


def _is_symbolic(a):
    from kandle.layers.input_layer import KerasTensor
    return isinstance(a, (SymbolicTensor, KerasTensor))


def _array(a):
    """An eager argument as the float32 / int64 / bool array the core takes."""
    if isinstance(a, Variable):
        return np.require(a.numpy(), dtype=np.float32, requirements="C")
    arr = np.asarray(a)
    if arr.dtype.kind == "b":
        return np.require(arr, dtype=np.bool_, requirements="C")
    if arr.dtype.kind in "iu":
        return np.require(arr, dtype=np.int64, requirements="C")
    if arr.dtype.kind == "f":
        return np.require(arr, dtype=np.float32, requirements="C")
    raise TypeError(f"kandle.ops cannot compute on {type(a).__name__} of dtype {arr.dtype}")


def _apply(op, args, attrs=None):
    """Records ``op`` (symbolic arguments), adds it to a functional model (KerasTensors) or
    computes it (arrays)."""
    from kandle.layers.input_layer import KerasTensor

    attrs = dict(attrs or {})
    if any(isinstance(a, KerasTensor) for a in args):
        from kandle.layers.op_layer import apply_to_keras_tensors
        return apply_to_keras_tensors(op, args, attrs)
    graphs = {id(a._graph): a._graph for a in args if isinstance(a, SymbolicTensor)}
    graph = next(iter(graphs.values()), None)
    if len(graphs) > 1:
        raise ValueError(f"ops.{op}: its arguments come from two different recordings (tensors of one layer's "
                         "call used in another's)")
    from kandle.metrics_custom import MetricVariable, as_op_argument
    if graph is None and any(isinstance(a, (Variable, MetricVariable)) for a in args):
        graph = active()
    args = [as_op_argument(a, graph) if isinstance(a, MetricVariable) else a for a in args]
    if graph is not None:
        sym = []
        for a in args:
            if isinstance(a, SymbolicTensor):
                sym.append(a)
            elif isinstance(a, Variable):
                sym.append(graph.weight(a))
            else:
                sym.append(graph.const(_array(a)))
        return graph.node(op, attrs, sym)
    return _kandle.op_eval(op, json.dumps(attrs), [_array(a) for a in args])


def _scalar(v):
    """A Python or NumPy scalar as a float, else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)) or (isinstance(v, np.ndarray) and v.ndim == 0):
        return float(v)
    return None


def _axis(axis):
    if axis is None:
        return None
    if isinstance(axis, (list, tuple)):
        return [int(a) for a in axis]
    return int(axis)


# -- element-wise -------------------------------------------------------------------------------
def add(x1, x2): return _apply("add", [x1, x2])
def subtract(x1, x2): return _apply("subtract", [x1, x2])
def multiply(x1, x2): return _apply("multiply", [x1, x2])
def divide(x1, x2): return _apply("divide", [x1, x2])
true_divide = divide


def power(x1, x2):
    e = _scalar(x2)
    return _apply("power", [x1, x2], {} if e is None else {"exponent": e})


def maximum(x1, x2): return _apply("maximum", [x1, x2])
def minimum(x1, x2): return _apply("minimum", [x1, x2])
def greater(x1, x2): return _apply("greater", [x1, x2])
def greater_equal(x1, x2): return _apply("greater_equal", [x1, x2])
def less(x1, x2): return _apply("less", [x1, x2])
def less_equal(x1, x2): return _apply("less_equal", [x1, x2])
def equal(x1, x2): return _apply("equal", [x1, x2])
def not_equal(x1, x2): return _apply("not_equal", [x1, x2])
def negative(x): return _apply("negative", [x])
def abs(x): return _apply("abs", [x])  # noqa: A001 - Keras's name
absolute = abs
def square(x): return _apply("square", [x])
def sqrt(x): return _apply("sqrt", [x])
def exp(x): return _apply("exp", [x])
def log(x): return _apply("log", [x])
def reciprocal(x): return _apply("reciprocal", [x])
def sin(x): return _apply("sin", [x])
def cos(x): return _apply("cos", [x])
def tanh(x): return _apply("tanh", [x])
def floor(x): return _apply("floor", [x])
def round(x, decimals=0):  # noqa: A001
    if decimals:
        raise ValueError("kandle does not implement ops.round with decimals != 0 yet")
    return _apply("round", [x])
def sign(x): return _apply("sign", [x])
def stop_gradient(variable): return _apply("stop_gradient", [variable])


def clip(x, x_min, x_max):
    return _apply("clip", [x], {"x_min": float(x_min), "x_max": float(x_max)})


def where(condition, x1=None, x2=None):
    if x1 is None or x2 is None:
        raise ValueError("kandle does not implement ops.where(condition) without x1 and x2 (the indices form) yet")
    return _apply("where", [condition, x1, x2])


def cast(x, dtype):
    return _apply("cast", [x], {"dtype": np.dtype(dtype).name if not isinstance(dtype, str) else dtype})


def full_like(x, fill_value, dtype=None):
    y = _apply("full_like", [x], {"fill_value": float(fill_value)})
    return y if dtype is None else cast(y, dtype)


def zeros_like(x, dtype=None): return full_like(x, 0.0, dtype)
def ones_like(x, dtype=None): return full_like(x, 1.0, dtype)
def zeros(shape, dtype="float32"): return np.zeros(shape, dtype=dtype)
def ones(shape, dtype="float32"): return np.ones(shape, dtype=dtype)
def full(shape, fill_value, dtype="float32"): return np.full(shape, fill_value, dtype=dtype)
def arange(start, stop=None, step=1, dtype=None): return np.arange(start, stop, step, dtype=dtype)
def eye(N, M=None, k=0, dtype="float32"): return np.eye(N, M, k, dtype=dtype)


# -- reductions ---------------------------------------------------------------------------------
def _reduce(op, x, axis, keepdims):
    return _apply(op, [x], {"axis": _axis(axis), "keepdims": bool(keepdims)})


def sum(x, axis=None, keepdims=False): return _reduce("sum", x, axis, keepdims)  # noqa: A001
def mean(x, axis=None, keepdims=False): return _reduce("mean", x, axis, keepdims)
def var(x, axis=None, keepdims=False): return _reduce("var", x, axis, keepdims)
def std(x, axis=None, keepdims=False): return _reduce("std", x, axis, keepdims)
def logsumexp(x, axis=None, keepdims=False): return _reduce("logsumexp", x, axis, keepdims)


def max(x, axis=None, keepdims=False, initial=None):  # noqa: A001
    y = _reduce("max", x, axis, keepdims)
    return y if initial is None else maximum(y, initial)


def min(x, axis=None, keepdims=False, initial=None):  # noqa: A001
    y = _reduce("min", x, axis, keepdims)
    return y if initial is None else minimum(y, initial)


amax, amin = max, min


def argmax(x, axis=None, keepdims=False):
    return _apply("argmax", [x], {"axis": None if axis is None else int(axis), "keepdims": bool(keepdims)})


def argmin(x, axis=None, keepdims=False):
    return _apply("argmin", [x], {"axis": None if axis is None else int(axis), "keepdims": bool(keepdims)})


# -- shapes -------------------------------------------------------------------------------------
def shape(x):
    """The static shape (``None`` for the batch axis of a symbolic tensor)."""
    return tuple(x.shape) if (_is_symbolic(x) or isinstance(x, Variable)) else tuple(np.shape(x))


def ndim(x): return len(shape(x))


def reshape(x, newshape):
    newshape = [newshape] if isinstance(newshape, int) else list(newshape)
    return _apply("reshape", [x], {"newshape": [-1 if d is None else int(d) for d in newshape]})


def transpose(x, axes=None):
    return _apply("transpose", [x], {"axes": None if axes is None else [int(a) for a in axes]})


def expand_dims(x, axis): return _apply("expand_dims", [x], {"axis": int(axis)})
def squeeze(x, axis=None): return _apply("squeeze", [x], {"axis": _axis(axis)})


def concatenate(xs, axis=0):
    return _apply("concatenate", list(xs), {"axis": int(axis)})


def stack(x, axis=0):
    return _apply("stack", list(x), {"axis": int(axis)})


def slice(inputs, start_indices, shape):  # noqa: A001
    return _apply("slice", [inputs], {"start_indices": [int(s) for s in start_indices],
                                      "shape": [-1 if d is None else int(d) for d in shape]})


def split(x, indices_or_sections, axis=0):
    dims = list(shape(x))
    axis = int(axis) % len(dims)
    n = dims[axis]
    if n is None:
        raise ValueError("ops.split: the split axis must have a known size (not the batch axis)")
    if isinstance(indices_or_sections, int):
        if n % indices_or_sections:
            raise ValueError(f"ops.split: array split does not result in an equal division ({n} into "
                             f"{indices_or_sections})")
        bounds = list(range(0, n + 1, n // indices_or_sections))
    else:
        bounds = [0, *[int(i) for i in indices_or_sections], n]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        start = [0] * len(dims)
        start[axis] = lo
        size = [-1 if d is None else d for d in dims]
        size[axis] = hi - lo
        out.append(slice(x, start, size))
    return out


def take(x, indices, axis=None):
    return _apply("take", [x, indices], {"axis": None if axis is None else int(axis)})


def tile(x, repeats):
    repeats = [repeats] if isinstance(repeats, int) else list(repeats)
    return _apply("tile", [x], {"repeats": [int(r) for r in repeats]})


def pad(x, pad_width, mode="constant", constant_values=None):
    if mode != "constant":
        raise ValueError(f"kandle does not implement ops.pad with mode={mode!r} yet (only 'constant')")
    rank = ndim(x)
    pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64).reshape(-1, 2) if np.ndim(pad_width) else
                         np.full((1, 2), int(pad_width)), (rank, 2))
    return _apply("pad", [x], {"pad_width": pw.tolist(), "constant_values": float(constant_values or 0.0)})


def _getitem(x, key):
    """``x[...]`` with ints, slices of step 1, ``None`` and ``...``: a slice, then a reshape."""
    key = key if isinstance(key, tuple) else (key,)
    dims = list(x.shape)
    if builtins_sum(k is Ellipsis for k in key) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    n_axes = builtins_sum(k is not None and k is not Ellipsis for k in key)
    if Ellipsis in key:
        i = key.index(Ellipsis)
        key = key[:i] + (builtins_slice(None),) * (len(dims) - n_axes) + key[i + 1:]
    else:
        key = key + (builtins_slice(None),) * (len(dims) - n_axes)
    start, size, out_shape, axis = [], [], [], 0
    reshaped = False
    for k in key:
        if k is None:
            out_shape.append(1)
            reshaped = True
            continue
        d = dims[axis]
        if isinstance(k, (int, np.integer)):
            k = int(k)
            if d is None and k < 0:
                raise IndexError("a negative index on an axis of unknown size (the batch axis) cannot be recorded")
            if d is not None and not -d <= k < d:
                raise IndexError(f"index {k} is out of bounds for axis {axis} with size {d}")
            start.append(k % d if d else k)
            size.append(1)
            reshaped = True
        elif isinstance(k, builtins_slice):
            if k.step not in (None, 1):
                raise IndexError("kandle does not implement strided slices (step != 1) of tensors yet")
            if d is None:
                if k.start not in (None, 0) or k.stop is not None:
                    raise IndexError("slicing the batch axis cannot be recorded; slice other axes only")
                start.append(0)
                size.append(-1)
                out_shape.append(-1)
            else:
                lo, hi, _ = k.indices(d)
                hi = builtins_max(hi, lo)
                start.append(lo)
                size.append(hi - lo)
                out_shape.append(hi - lo)
        else:
            raise IndexError(f"kandle does not implement indexing a tensor with {type(k).__name__} yet; use ops.take")
        axis += 1
    y = slice(x, start, size)
    return reshape(y, out_shape) if reshaped else y


import builtins as _builtins  # noqa: E402 - the names above shadow these

builtins_sum, builtins_max, builtins_slice = _builtins.sum, _builtins.max, _builtins.slice


# -- linear algebra -----------------------------------------------------------------------------
def matmul(x1, x2): return _apply("matmul", [x1, x2])


def einsum(subscripts, *operands):
    return _apply("einsum", list(operands), {"subscripts": str(subscripts)})


def dot(x1, x2):
    """NumPy's ``dot``: a product of scalars, a matrix product, or a sum over the last axis of ``x1``
    and the second-to-last of ``x2``."""
    r1, r2 = ndim(x1), ndim(x2)
    if r1 == 0 or r2 == 0:
        return multiply(x1, x2)
    if r1 <= 2 and r2 <= 2:
        return matmul(x1, x2)
    letters = "abcdefghijklmnopqrstuvwxy"
    a = letters[:r1 - 1]
    b = letters[r1 - 1:r1 - 1 + r2 - 1]
    k = "z"
    lhs = a + k
    rhs = (b[:-1] + k + b[-1]) if r2 > 1 else k
    return einsum(f"{lhs},{rhs}->{a}{b}", x1, x2)


def tensordot(x1, x2, axes=2):
    """NumPy's ``tensordot``: the last ``axes`` axes of ``x1`` against the first of ``x2``, or the
    pairs of axes given as two lists, as one ``einsum``."""
    r1, r2 = ndim(x1), ndim(x2)
    if isinstance(axes, int):
        a1, a2 = list(range(r1 - axes, r1)), list(range(axes))
    else:
        a1, a2 = ([axes[0]] if isinstance(axes[0], int) else list(axes[0]),
                  [axes[1]] if isinstance(axes[1], int) else list(axes[1]))
    a1, a2 = [a % r1 for a in a1], [a % r2 for a in a2]
    if len(a1) != len(a2):
        raise ValueError(f"ops.tensordot: axes {axes} pair {len(a1)} axes of x1 with {len(a2)} of x2")
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    s1 = [next(letters) for _ in range(r1)]
    s2 = [next(letters) for _ in range(r2)]
    for i, j in zip(a1, a2):
        s2[j] = s1[i]
    out = [c for k, c in enumerate(s1) if k not in a1] + [c for k, c in enumerate(s2) if k not in a2]
    return einsum(f"{''.join(s1)},{''.join(s2)}->{''.join(out)}", x1, x2)


# -- neural-network ops -------------------------------------------------------------------------
def relu(x): return _apply("relu", [x])
def sigmoid(x): return _apply("sigmoid", [x])
def silu(x): return _apply("silu", [x])
swish = silu
def softplus(x): return _apply("softplus", [x])
def gelu(x, approximate=True): return _apply("gelu", [x], {"approximate": bool(approximate)})
def softmax(x, axis=-1): return _apply("softmax", [x], {"axis": int(axis)})
def log_softmax(x, axis=-1): return _apply("log_softmax", [x], {"axis": int(axis)})
def relu6(x): return clip(x, 0.0, 6.0)
def leaky_relu(x, negative_slope=0.2): return maximum(x, multiply(x, float(negative_slope)))
def elu(x, alpha=1.0): return where(greater(x, 0.0), x, multiply(subtract(exp(minimum(x, 0.0)), 1.0), float(alpha)))
def softsign(x): return divide(x, add(abs(x), 1.0))
def hard_sigmoid(x): return clip(add(multiply(x, 1.0 / 6.0), 0.5), 0.0, 1.0)


def normalize(x, axis=-1, order=2, epsilon=None):
    if order != 2:
        raise ValueError("kandle does not implement ops.normalize with order != 2 yet")
    norm = sqrt(maximum(sum(square(x), axis=axis, keepdims=True), 1e-12 if epsilon is None else epsilon ** 2))
    return divide(x, norm)


def moments(x, axes, keepdims=False, synchronized=False):
    return mean(x, axis=axes, keepdims=keepdims), var(x, axis=axes, keepdims=keepdims)


def one_hot(x, num_classes, axis=-1, dtype=None, sparse=False):
    if axis != -1 or sparse:
        raise ValueError("kandle does not implement ops.one_hot with axis != -1 or sparse=True yet")
    y = _apply("one_hot", [x], {"num_classes": int(num_classes)})
    return y if dtype in (None, "float32") else cast(y, dtype)


def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
    return _apply("conv", [inputs, kernel], {"strides": strides, "padding": padding, "data_format": data_format
                                             or "channels_last", "dilation_rate": dilation_rate})


def max_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    return _apply("max_pool", [inputs], {"pool_size": pool_size, "strides": strides, "padding": padding,
                                         "data_format": data_format or "channels_last"})


def average_pool(inputs, pool_size, strides=None, padding="valid", data_format=None):
    return _apply("average_pool", [inputs], {"pool_size": pool_size, "strides": strides, "padding": padding,
                                             "data_format": data_format or "channels_last"})


def categorical_crossentropy(target, output, from_logits=False, axis=-1):
    return _apply("categorical_crossentropy", [target, output], {"from_logits": bool(from_logits), "axis": int(axis)})


def sparse_categorical_crossentropy(target, output, from_logits=False, axis=-1):
    classes = shape(output)[axis]
    return categorical_crossentropy(one_hot(cast(target, "int64"), classes), output, from_logits, axis)


def binary_crossentropy(target, output, from_logits=False):
    return _apply("binary_crossentropy", [target, output], {"from_logits": bool(from_logits)})


# -- conversion ---------------------------------------------------------------------------------
def convert_to_tensor(x, dtype=None, sparse=None):
    if _is_symbolic(x) or isinstance(x, Variable):
        return x if dtype is None else cast(x, dtype)
    a = np.asarray(x)
    if dtype is not None:
        return a.astype(dtype)
    return a.astype(np.float32) if a.dtype == np.float64 else a


def convert_to_numpy(x):
    if _is_symbolic(x):
        x.numpy()  # raises with the explanation
    return np.asarray(x)


def is_tensor(x):
    return isinstance(x, np.ndarray) or _is_symbolic(x) or isinstance(x, Variable)


_missing = {name for name in _OPS if name not in globals()}
if _missing:  # an op of the core without its Python function
    raise ImportError(f"kandle.ops lacks functions for the core's ops: {sorted(_missing)}")

_install_operators(SymbolicTensor)
_install_operators(Variable, equality=False)  # Variables compare by identity, as lists of them need
from kandle.layers.input_layer import KerasTensor as _KerasTensor  # noqa: E402

_install_operators(_KerasTensor, equality=False)
from kandle.metrics_custom import MetricVariable as _MetricVariable  # noqa: E402

_install_operators(_MetricVariable, equality=False)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise AttributeError(f"kandle does not implement keras.ops.{name} yet")


nn = numpy = linalg = image = core = math = None  # replaced below by namespace modules
from kandle.ops import _namespaces  # noqa: E402

nn, numpy, linalg, core, math = _namespaces.nn, _namespaces.numpy, _namespaces.linalg, _namespaces.core, _namespaces.math
