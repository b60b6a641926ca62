"""``Sequential``: Keras's model API over the Rust ``ModelCore``.

Separation of concerns: this class turns Keras arguments into core calls (data as NumPy arrays,
names, callbacks) and owns the callback protocol; the batch loops, maths and checks of shapes and
values run in Rust with the GIL released (``kandle._kandle.ModelCore``).
"""

import json
import math

import numpy as np

from kandle import _kandle, backend, losses, optimizers
from kandle.callbacks import CallbackList
from kandle.layers import InputSpec, Layer, deserialize, serialize
from kandle.utils.layer_utils import print_summary

_NOT_COMPILED = "You must compile your model before training/testing. Use `model.compile(optimizer, loss)`."


def _array(x, what):
    """A NumPy view of user data; never a full-size conversion of a NumPy array (the core converts
    per batch). Lists become arrays; object and string arrays are refused."""
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], np.ndarray) and len(x) == 1:
        x = x[0]
    a = x if isinstance(x, np.ndarray) else np.asarray(x)
    if a.dtype.kind in "OUSVMmc":
        raise TypeError(f"`{what}` has dtype {a.dtype}; kandle needs numbers (float, int or bool arrays)")
    if a.dtype.kind == "b":
        a = a.view(np.uint8)
    elif a.dtype == np.float16 or a.dtype.kind == "f" and a.dtype.itemsize > 8:
        a = a.astype(np.float32)
    if a.ndim == 0:
        raise ValueError(f"`{what}` must have a batch axis, got a scalar")
    return a


class Sequential:
    def __init__(self, layers=None, name=None):
        self.name = name or backend.unique_name("sequential")
        self._layers = []
        self._input_shape = None
        self._core = None
        self._compiled = None
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self.history = None
        for layer in layers or []:
            self.add(layer)

    # -- building ---------------------------------------------------------------------------
    def add(self, layer):
        if isinstance(layer, InputSpec):
            if self._layers or self._input_shape is not None:
                raise ValueError("An Input can only be the first element of a Sequential model")
            self._input_shape = layer.shape[1:]
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"The added layer must be an instance of kandle.layers.Layer, got {layer!r}")
        if not self._layers and self._input_shape is None and layer._input_shape_arg is not None:
            self._input_shape = layer._input_shape_arg
        self._layers.append(layer)
        if self._core is not None or self._input_shape is not None:
            try:
                self._add_to_core(layer)
            except Exception:
                self._layers.pop()
                raise

    def _ensure_core(self, input_shape=None):
        if self._core is not None:
            return self._core
        if self._input_shape is None:
            if input_shape is None:
                raise ValueError(
                    f"Model \"{self.name}\" has no input shape yet: pass input_shape=... to its first layer, "
                    "start it with kandle.layers.Input(shape), or call fit/predict on data first")
            self._input_shape = tuple(int(d) for d in input_shape)
        self._core = _kandle.ModelCore(self.name, list(self._input_shape))
        for layer in list(self._layers):
            self._add_to_core(layer)
        if self._compiled is not None:
            self._apply_compile()
        return self._core

    def _add_to_core(self, layer):
        core = self._core if self._core is not None else self._ensure_core()
        if layer._model is core:
            return
        core.add(layer._class_name, json.dumps(layer._config))
        layer._attach(core, core.num_layers() - 1)

    def build(self, input_shape=None):
        self._ensure_core(None if input_shape is None else tuple(input_shape)[1:])

    @property
    def built(self):
        return self._core is not None

    @property
    def layers(self):
        return list(self._layers)

    def get_layer(self, name=None, index=None):
        if index is not None:
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name}. Existing layers are: {[l.name for l in self._layers]}.")

    @property
    def input_shape(self):
        return (None, *self._ensure_core().input_shape())

    @property
    def output_shape(self):
        return (None, *self._ensure_core().output_shape())

    def count_params(self):
        if self._core is None:
            raise ValueError(f"You tried to call `count_params` on model \"{self.name}\", but the model isn't built.")
        return self._core.count_params()

    def summary(self, line_length=None, positions=None, print_fn=None):
        if self._core is None:
            raise ValueError("This model has not yet been built. Build the model first by calling `build()` or "
                             "by calling the model on a batch of data.")
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn)

    # -- weights ----------------------------------------------------------------------------
    def get_weights(self):
        return [w for layer in self._layers for w in layer.get_weights()]

    def set_weights(self, weights):
        weights = list(weights)
        counts = [len(layer.get_weights()) for layer in self._layers]
        if len(weights) != sum(counts):
            raise ValueError(f"You called `set_weights(weights)` on model \"{self.name}\" with a weight list of "
                             f"length {len(weights)}, but the model was expecting {sum(counts)} weights.")
        current = self.get_weights()
        for i, (new, old) in enumerate(zip(weights, current)):
            if np.shape(new) != old.shape:
                raise ValueError(f"Weight {i} of model \"{self.name}\": expected shape {old.shape}, "
                                 f"received {np.shape(new)}")
        start = 0
        for layer, n in zip(self._layers, counts):
            layer.set_weights(weights[start:start + n])
            start += n

    @property
    def weights(self):
        return self.get_weights()

    # -- saving (kandle.saving) -------------------------------------------------------------
    def save(self, filepath, overwrite=True, include_optimizer=True, **kwargs):
        from kandle import saving

        saving.save_model(self, filepath, overwrite=overwrite, include_optimizer=include_optimizer, **kwargs)

    def save_weights(self, filepath, overwrite=True, **kwargs):
        from kandle import saving

        saving.save_weights(self, filepath, overwrite=overwrite, **kwargs)

    def load_weights(self, filepath, skip_mismatch=False, by_name=False, **kwargs):
        from kandle import saving

        saving.load_weights(self, filepath, skip_mismatch=skip_mismatch, by_name=by_name, **kwargs)

    # -- configuration ----------------------------------------------------------------------
    def get_config(self):
        config = {"name": self.name, "layers": [serialize(layer) for layer in self._layers]}
        if self._input_shape is not None:
            config["input_shape"] = list(self._input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        model = cls(name=config.get("name"))
        if config.get("input_shape"):
            model.add(InputSpec(tuple(config["input_shape"])))
        for layer_config in config["layers"]:
            model.add(deserialize(layer_config))
        return model

    def to_json(self, **kwargs):
        return json.dumps({"class_name": "Sequential", "config": self.get_config()}, **kwargs)

    # -- compile ----------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, weighted_metrics=None,
                run_eagerly=None, steps_per_execution=None, jit_compile=None, **kwargs):
        if loss is None:
            raise ValueError("compile: `loss` is required (kandle trains with a loss by its Keras name)")
        for key, value in (("loss_weights", loss_weights), ("weighted_metrics", weighted_metrics)):
            if value is not None:
                raise ValueError(f"compile: `{key}` is not supported yet")
        opt = optimizers.get(optimizer)
        metric_names = []
        for m in metrics or []:
            name = m if isinstance(m, str) else getattr(m, "__name__", None) or getattr(m, "name", None)
            if not isinstance(name, str):
                raise ValueError(f"Could not interpret metric identifier: {m!r}")
            metric_names.append(name)
        loss_name = losses.name_of(loss)
        # Check names now, even before the model is built, as Keras does.
        probe = _kandle.ModelCore("probe", [1])
        probe.compile(json.dumps(opt._serialize()), loss_name, metric_names)
        self._compiled = (opt, loss_name, metric_names)
        self.optimizer, self.loss = opt, loss
        if self._core is not None:
            self._apply_compile()

    def _apply_compile(self):
        opt, loss_name, metric_names = self._compiled
        self._core.compile(json.dumps(opt._serialize()), loss_name, metric_names)
        opt._bind(self._core)

    @property
    def metrics_names(self):
        if self._compiled is None:
            return []
        return self._core.metrics_names() if self._core is not None else ["loss"]

    def _require_compiled(self):
        if self._compiled is None:
            raise RuntimeError(_NOT_COMPILED)

    # -- training and inference ---------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None, sample_weight=None,
            initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1, nb_epoch=None, **kwargs):
        if kwargs:
            raise TypeError(f"fit() got unexpected keyword argument(s): {sorted(kwargs)}")
        for key, value in (("class_weight", class_weight), ("sample_weight", sample_weight),
                           ("steps_per_epoch", steps_per_epoch), ("validation_steps", validation_steps)):
            if value is not None:
                raise ValueError(f"fit: `{key}` is not supported yet")
        if validation_freq != 1:
            raise ValueError("fit: `validation_freq` other than 1 is not supported yet")
        epochs = nb_epoch if nb_epoch is not None else epochs
        self._require_compiled()
        x, y = _array(x, "x"), _array(y, "y")
        self._ensure_core(x.shape[1:])
        batch_size = _batch_size(batch_size)
        val_x = val_y = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            if len(validation_data) == 3 and validation_data[2] is not None:
                raise ValueError("validation_data: sample weights are not supported yet")
            val_x, val_y = _array(validation_data[0], "validation_data x"), _array(validation_data[1], "validation_data y")
            validation_split = 0.0
        if len(x) != len(y):
            raise ValueError(f"Data cardinality is ambiguous: x sizes: {len(x)}, y sizes: {len(y)}. "
                             "Make sure all arrays contain the same number of samples.")
        n_val = len(val_x) if val_x is not None else len(x) - int(math.floor(len(x) * (1.0 - validation_split)))
        n_train = len(x) - (0 if val_x is not None else n_val)
        names = self._core.metrics_names()
        do_validation = n_val > 0
        verbose = 1 if verbose == "auto" else int(verbose)
        cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self, verbose=verbose,
                           epochs=int(epochs), steps=math.ceil(n_train / batch_size), samples=n_train,
                           batch_size=batch_size, do_validation=do_validation, val_samples=n_val,
                           metrics=names + (["val_" + n for n in names] if do_validation else []))
        self.stop_training = False
        cbs.on_train_begin({})
        try:
            self._core.fit(x, y, val_x, val_y, float(validation_split), batch_size, int(epochs),
                           int(initial_epoch), bool(shuffle), cbs, self)
        finally:
            cbs.on_train_end({})
        self.history = cbs.history
        return cbs.history

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        if sample_weight is not None:
            raise ValueError("evaluate: `sample_weight` is not supported yet")
        self._require_compiled()
        x, y = _array(x, "x"), _array(y, "y")
        self._ensure_core(x.shape[1:])
        batch_size = _batch_size(batch_size)
        verbose = 1 if verbose == "auto" else int(verbose)
        cbs = CallbackList(callbacks, add_progbar=verbose == 1, model=self, verbose=verbose,
                           steps=math.ceil(len(x) / batch_size), samples=len(x), batch_size=batch_size)
        cbs.on_test_begin({})
        values = self._core.evaluate(x, y, batch_size, cbs)
        names = self._core.metrics_names()
        cbs.on_test_end(dict(zip(names, values)))
        return _results(names, values, return_dict)

    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None, **kwargs):
        x = _array(x, "x")
        self._ensure_core(x.shape[1:])
        batch_size = _batch_size(batch_size)
        verbose = 1 if verbose == "auto" else int(verbose)
        cbs = CallbackList(callbacks, add_progbar=verbose == 1, model=self, verbose=verbose,
                           steps=math.ceil(len(x) / batch_size), samples=len(x), batch_size=batch_size)
        cbs.on_predict_begin({})
        out = self._core.predict(x, batch_size, cbs)
        cbs.on_predict_end({})
        return out

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, reset_metrics=True,
                       return_dict=False):
        if sample_weight is not None or class_weight is not None:
            raise ValueError("train_on_batch: sample/class weights are not supported yet")
        self._require_compiled()
        x, y = _array(x, "x"), _array(y, "y")
        self._ensure_core(x.shape[1:])
        return _results(self._core.metrics_names(), self._core.train_on_batch(x, y), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._require_compiled()
        x, y = _array(x, "x"), _array(y, "y")
        self._ensure_core(x.shape[1:])
        values = self._core.evaluate(x, y, max(len(x), 1))
        return _results(self._core.metrics_names(), values, return_dict)

    def predict_on_batch(self, x):
        x = _array(x, "x")
        self._ensure_core(x.shape[1:])
        return self._core.predict(x, max(len(x), 1))

    def __call__(self, x, training=False):
        if training:
            raise ValueError("Calling a model with training=True is not supported; use fit or train_on_batch")
        return self.predict_on_batch(x)

    def __repr__(self):
        return f"<Sequential name={self.name}, built={self.built}>"


def _batch_size(batch_size):
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _results(names, values, return_dict):
    values = [float(v) for v in values]
    if return_dict:
        return dict(zip(names, values))
    return values[0] if len(values) == 1 else values
