"""Recording ``kandle.ops`` calls: a ``_Graph`` collects the nodes that a custom layer's ``call`` (or a
loss function) makes on ``SymbolicTensor`` placeholders; the Rust core checks each op's shapes as it
is recorded and later evaluates the whole graph, with its backward pass, without Python.

``Variable`` is what ``Layer.add_weight`` returns: inside a recording it stands for one of the
graph's weights; outside, it reads and writes the value held by the model the layer is built in.
"""

import json

import numpy as np

from kandle import _kandle

_DTYPES = {"float32": np.float32, "int64": np.int64, "bool": np.bool_}


def _sym(shape, dtype):
    return {"shape": [None if d is None else int(d) for d in shape], "dtype": dtype}


class _Graph:
    """One recording: inputs, weights (by Variable), constants and op nodes, in call order."""

    def __init__(self, who):
        self.who = who
        self.inputs, self.weights, self.consts, self.nodes = [], [], [], []
        self._weight_index = {}

    def input(self, shape, dtype="float32"):
        self.inputs.append(_sym(shape, dtype))
        return SymbolicTensor(self, ["input", len(self.inputs) - 1], tuple(shape), dtype)

    def weight(self, variable):
        key = id(variable)
        if key not in self._weight_index:
            self._weight_index[key] = len(self.weights)
            self.weights.append((variable, _sym(variable.shape, "float32")))
        return SymbolicTensor(self, ["weight", self._weight_index[key]], tuple(variable.shape), "float32")

    def const(self, value):
        a = np.asarray(value)
        if a.dtype.kind == "b":
            dtype, data = "bool", [bool(v) for v in a.ravel()]
        elif a.dtype.kind in "iu":
            dtype, data = "int64", [int(v) for v in a.ravel()]
        elif a.dtype.kind == "f":
            dtype, data = "float32", [float(v) for v in a.astype(np.float32).ravel()]
        else:
            raise TypeError(f"{self.who}: kandle.ops cannot use a constant of dtype {a.dtype} ({value!r})")
        self.consts.append({"dtype": dtype, "shape": list(a.shape), "data": data})
        return SymbolicTensor(self, ["const", len(self.consts) - 1], a.shape, dtype)

    def node(self, op, attrs, args):
        syms = [{"shape": list(a.shape), "dtype": a.dtype} for a in args]
        out = json.loads(_kandle.op_infer(op, json.dumps(attrs), json.dumps(syms), self.who))
        self.nodes.append({"op": op, "attrs": attrs, "args": [a._ref for a in args]})
        return SymbolicTensor(self, ["node", len(self.nodes) - 1], tuple(out["shape"]), out["dtype"])

    def to_json(self, output):
        return {"inputs": self.inputs, "weights": [s for _, s in self.weights], "consts": self.consts,
                "nodes": self.nodes, "output": output._ref}


_NOT_A_VALUE = ("{what} on a symbolic tensor ({tensor}) cannot be recorded: inside a layer's call() tensors have no "
                "values yet. {instead}")


class SymbolicTensor:
    """A tensor inside a recording: its shape (``None`` for the batch axis), dtype and place in the
    graph. Python operators on it record ops; anything that needs its value raises."""

    __array_priority__ = 1000  # NumPy defers to our reflected operators

    def __init__(self, graph, ref, shape, dtype):
        self._graph, self._ref, self.shape, self.dtype = graph, ref, tuple(shape), dtype

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<SymbolicTensor shape={self.shape}, dtype={self.dtype}>"

    def _refuse(self, what, instead):
        raise TypeError(_NOT_A_VALUE.format(what=what, tensor=self, instead=instead))

    def __bool__(self):
        self._refuse("A Python `if`/`and`/`or`/`not`", "Use kandle.ops.where(condition, x, y) to choose values.")

    def __array__(self, *args, **kwargs):
        self._refuse("A NumPy call", "Use the kandle.ops function of the same name (kandle.ops.mean, ...).")

    def __float__(self):
        self._refuse("float()", "Keep it a tensor and use kandle.ops.")

    __int__ = __index__ = __float__

    def __iter__(self):
        self._refuse("Iterating", "Use kandle.ops.split or indexing with a constant.")

    def __len__(self):
        if self.shape and self.shape[0] is not None:
            return self.shape[0]
        self._refuse("len()", "Use kandle.ops.shape(x) for the static shape.")

    def numpy(self):
        self._refuse(".numpy()", "Values exist only when the model runs (model.predict).")

    def __getitem__(self, key):
        from kandle import ops
        return ops._getitem(self, key)

    __hash__ = object.__hash__


_UFUNC_OPS = {"add": "add", "subtract": "subtract", "multiply": "multiply", "true_divide": "divide",
              "divide": "divide", "power": "power", "matmul": "matmul", "maximum": "maximum", "minimum": "minimum",
              "greater": "greater", "greater_equal": "greater_equal", "less": "less", "less_equal": "less_equal",
              "equal": "equal", "not_equal": "not_equal"}


def _array_ufunc(self, ufunc, method, *inputs, **kwargs):
    """NumPy's operators on a symbolic tensor (``array * x``) record the op; any other NumPy
    function on one raises, naming the kandle.ops function to use."""
    from kandle import ops

    if method == "__call__" and not kwargs and ufunc.__name__ in _UFUNC_OPS and len(inputs) == 2:
        return getattr(ops, _UFUNC_OPS[ufunc.__name__])(*inputs)
    symbolic = next(a for a in inputs if isinstance(a, (SymbolicTensor, Variable)) or hasattr(a, "_keras_history"))
    if isinstance(symbolic, Variable) and not any(isinstance(a, SymbolicTensor) for a in inputs) and active() is None:
        return getattr(ufunc, method)(*[np.asarray(a) if isinstance(a, Variable) else a for a in inputs], **kwargs)
    raise TypeError(_NOT_A_VALUE.format(what=f"A NumPy call (np.{ufunc.__name__})", tensor=symbolic,
                                        instead=f"Use kandle.ops.{ufunc.__name__} (or the kandle.ops function of "
                                                "that name) instead."))


def _install_operators(cls, equality=True):
    """``+ - * / ** @``, comparisons, ``-x``, ``abs`` on symbolic tensors, as ops (``==``/``!=`` too
    unless ``equality`` is off: a model's KerasTensors keep identity comparison)."""
    from kandle import ops

    binary = {"add": ops.add, "sub": ops.subtract, "mul": ops.multiply, "truediv": ops.divide, "pow": ops.power,
              "matmul": ops.matmul}
    for name, fn in binary.items():
        setattr(cls, f"__{name}__", lambda self, other, fn=fn: fn(self, other))
        setattr(cls, f"__r{name}__", lambda self, other, fn=fn: fn(other, self))
    compare = {"lt": ops.less, "le": ops.less_equal, "gt": ops.greater, "ge": ops.greater_equal}
    if equality:
        compare.update(eq=ops.equal, ne=ops.not_equal)
    for name, fn in compare.items():
        setattr(cls, f"__{name}__", lambda self, other, fn=fn: fn(self, other))
    cls.__neg__ = lambda self: ops.negative(self)
    cls.__abs__ = lambda self: ops.abs(self)
    cls.__pos__ = lambda self: self
    cls.__hash__ = object.__hash__
    cls.__array_ufunc__ = _array_ufunc


class Variable:
    """``keras.Variable`` as ``add_weight`` returns it: shape, name, trainable, initializer; its value
    lives in the model the layer is built in."""

    __array_priority__ = 1000

    def __init__(self, layer, index, shape, name, trainable, initializer):
        self._layer, self._index = layer, index
        self.shape, self.name, self.trainable, self.initializer = tuple(shape), name, trainable, initializer
        self.dtype = "float32"
        self.path = f"{layer.name}/{name}"
        # The layer whose recorded graph holds this weight (an outer layer for a nested one).
        self._owner = None
        # Its value while the layer is in no model (drawn from the initializer when first read).
        self._standalone = None

    @property
    def ndim(self):
        return len(self.shape)

    def _holder(self):
        return self._owner if self._owner is not None else self._layer

    def _position(self):
        """Its index in the holding layer's ``get_weights()`` (Keras's order)."""
        from kandle.layers.custom import all_variables

        return next(i for i, v in enumerate(all_variables(self._holder())) if v is self)

    def numpy(self):
        if self._holder()._model is None:
            if self._standalone is None:
                spec = json.dumps(self.initializer)
                sample = _kandle.initializer_sample(spec, list(self.shape) or [1])[1]
                self._standalone = np.asarray(sample, dtype=np.float32).reshape(self.shape)
            return self._standalone.copy()
        return np.array(self._holder().get_weights()[self._position()])

    def value(self):
        return self.numpy()

    def _refuse_in_call(self, what, value):
        if active() is not None or isinstance(value, SymbolicTensor):
            raise NotImplementedError(f"Variable \"{self.path}\": kandle does not implement {what} inside a layer's "
                                      "call() yet (a layer's state updated by its forward pass); return the value "
                                      "instead, or keep such state in a Metric")

    def assign(self, value):
        self._refuse_in_call("assign()", value)
        holder = self._holder()
        if holder._model is None:
            self._standalone = np.asarray(value, dtype=np.float32).reshape(self.shape).copy()
            return self
        weights = holder.get_weights()
        weights[self._position()] = np.asarray(value, dtype=np.float32).reshape(self.shape)
        holder.set_weights(weights)
        return self

    def assign_add(self, value):
        self._refuse_in_call("assign_add()", value)
        return self.assign(self.numpy() + np.asarray(value, dtype=np.float32))

    def assign_sub(self, value):
        self._refuse_in_call("assign_sub()", value)
        return self.assign(self.numpy() - np.asarray(value, dtype=np.float32))

    def __array__(self, dtype=None, copy=None):
        a = self.numpy()
        return a if dtype is None else a.astype(dtype)

    def __repr__(self):
        return f"<Variable path={self.path}, shape={self.shape}, dtype=float32>"

    __hash__ = object.__hash__


_active = []


def active():
    """The graph being recorded right now (innermost), or None."""
    return _active[-1] if _active else None


class recording:
    """``with recording(graph):`` makes Variables in ops refer to ``graph``'s weights."""

    def __init__(self, graph):
        self.graph = graph

    def __enter__(self):
        _active.append(self.graph)
        return self.graph

    def __exit__(self, *exc):
        _active.pop()
        return False
