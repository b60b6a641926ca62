"""``Model``: Keras's model API over the Rust ``ModelCore``, and the functional construction
``Model(inputs, outputs)``.

Separation of concerns: this class turns Keras arguments into core calls (data as NumPy arrays,
names, callbacks) and owns the callback protocol; the graph, the batch loops, the maths and the checks
of shapes and values live in Rust, which runs them with the GIL released. A functional model's graph
is recorded here from the user's layer calls (``kandle.layers.input_layer``), ordered as Keras 3's
``map_graph`` orders it, and handed to the core once, as Keras's functional config.
"""

import json
import math

import numpy as np

from kandle import _kandle, backend, losses, optimizers
from kandle import metrics as metrics_module
from kandle.callbacks import CallbackList
from kandle.callbacks.backup_and_restore import automatic_backup
from kandle.distribution.distribution_lib import _world
from kandle.layers.input_layer import InputLayer, KerasTensor
from kandle.models import data_adapter
from kandle.models.functional import _functional_config, _map_graph, _node_args, _node_index
from kandle.utils.layer_utils import print_summary

_NOT_COMPILED = "You must compile your model before training/testing. Use `model.compile(optimizer, loss)`."


def _array(x, what):
    """A NumPy view of user data; never a full-size conversion of a NumPy array (the core converts
    per batch). Lists become arrays; object and string arrays are refused."""
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


def _keras_tensors(value):
    items = value if isinstance(value, (list, tuple)) else [value]
    return bool(items) and all(isinstance(t, KerasTensor) for t in items)


class Model:
    """``keras.Model``: ``Model(inputs, outputs, name=None)`` over symbolic tensors."""

    def __init__(self, inputs=None, outputs=None, name=None, trainable=True, **kwargs):
        if kwargs:
            raise TypeError(f"Model() got unexpected keyword argument(s): {sorted(kwargs)}")
        subclassed = inputs is None and outputs is None and type(self) is not Model
        default = backend.snake_case(type(self).__name__) if subclassed else "functional"
        self._init_state(name or backend.unique_name(default))
        self._subclassed = subclassed
        if subclassed:
            if type(self).call is Model.call:
                raise NotImplementedError(f"{type(self).__name__}: a subclassed Model must define call(inputs)")
            return  # built on the first data it sees (or build(input_shape)), by tracing call()
        if inputs is None or outputs is None:
            raise ValueError("Model(inputs, outputs): both `inputs` and `outputs` are required (symbolic tensors "
                             "from kandle.Input and layer calls)")
        self._build_functional(inputs, outputs)

    def _init_state(self, name):
        self.name = name
        self._layers = []
        self._core = None
        self._compiled = None
        self.optimizer = None
        self.loss = None
        self.stop_training = False
        self.history = None
        self._functional = None

    # -- the functional graph -------------------------------------------------------------------
    def _build_functional(self, inputs, outputs):
        self._inputs_struct = inputs
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        outs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        for what, tensors in (("inputs", inputs), ("outputs", outs)):
            if not _keras_tensors(tensors):
                raise TypeError(f"Model: all `{what}` must be symbolic tensors (from kandle.Input and layer calls), "
                                f"got {[type(t).__name__ for t in tensors]}")
        for t in inputs:
            if not isinstance(t._keras_history[0], InputLayer):
                raise ValueError(f"Model inputs must come from kandle.Input(); {t} is the output of layer "
                                 f"\"{t._keras_history[0].name}\"")
        if len(outs) != 1:
            raise ValueError(f"Model \"{self.name}\" has {len(outs)} outputs: kandle does not implement models with "
                             "several outputs yet")
        operations, nodes = _map_graph(inputs, outs)
        self._layers = operations
        self._functional = (inputs, outs[0], nodes)
        self.inputs, self.outputs = inputs, outs
        config = _functional_config(self.name, inputs, outs[0], operations, nodes)
        core = _kandle.ModelCore.from_config(json.dumps(config))
        self._adopt(core)

    def _adopt(self, core):
        """Attaches the layers to a freshly built core; a layer already built in another model brings
        its current weights along (kandle's models do not share weights after that)."""
        for layer in self._layers:
            if isinstance(layer, InputLayer):
                continue
            previous = layer._model
            if previous is not None and previous is not core:
                weights = previous.layer_get_weights(layer.name)
                if weights:
                    core.layer_set_weights(layer.name, [np.require(w, dtype=np.float32, requirements="C") for w in weights])
            layer._attach(core)
        self._core = core

    def _use_core(self, core):
        """Takes over a core built from the same config (a loaded file's: its weights, optimizer
        state and random streams), in place of the one construction made."""
        for layer in self._layers:
            if not isinstance(layer, InputLayer):
                layer._attach(core)
        self._core = core

    def _ensure_core(self, input_shapes=None):
        if self._core is None and getattr(self, "_subclassed", False) and input_shapes:
            self._trace(input_shapes)
        return self._core

    # -- subclassed models ----------------------------------------------------------------------
    def call(self, inputs, training=None, mask=None):
        """A subclassed model's forward pass: layer calls and ``kandle.ops`` on its inputs."""
        raise NotImplementedError

    def _trace(self, input_shapes):
        from kandle.models.subclassed import trace

        trace(self, input_shapes)

    def build(self, input_shape=None):
        """Builds a subclassed model for ``input_shape`` (with the batch axis, as Keras takes it)."""
        if self._core is not None:
            return
        if input_shape is None:
            raise ValueError(f"Model \"{self.name}\": build() needs an input_shape")
        shapes = input_shape if isinstance(input_shape, list) and input_shape and isinstance(input_shape[0], (list, tuple)) else [input_shape]
        self._ensure_core([tuple(s)[1:] for s in shapes])

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
        shapes = [(None, *s) for s in self._core_or_fail().input_shapes()]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        return (None, *self._core_or_fail().output_shape())

    def _core_or_fail(self):
        core = self._ensure_core()
        if core is None:
            raise ValueError(f"Model \"{self.name}\" is not built yet")
        return core

    def count_params(self):
        if self._core is None:
            raise ValueError(f"You tried to call `count_params` on model \"{self.name}\", but the model isn't built.")
        return self._core.count_params()

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False):
        if self._core is None:
            raise ValueError("This model has not yet been built. Build the model first by calling `build()` or "
                             "by calling the model on a batch of data.")
        print_summary(self, line_length=line_length, positions=positions, print_fn=print_fn)

    def _connected_to(self, layer):
        """Keras's "Connected to" column: ``name[node][tensor]`` of each input of the layer's calls."""
        if self._functional is None or isinstance(layer, InputLayer):
            return []
        nodes = self._functional[2]
        out = []
        for node in nodes.get(id(layer), []):
            for t in node.input_tensors:
                src, index, tensor = t._keras_history
                out.append(f"{src.name}[{_node_index(nodes, src, index)}][{tensor}]")
        return out

    # -- calling the model --------------------------------------------------------------------------
    def __call__(self, x, training=None, mask=None):
        """On symbolic tensors: the model's graph replayed on them (its layers, so its weights, are
        the same objects); on arrays: ``predict_on_batch``."""
        if _keras_tensors(x):
            if self._functional is None:
                raise NotImplementedError("kandle does not implement calling a Sequential on symbolic tensors yet; "
                                          "add its layers to the new model instead")
            inputs, output, nodes = self._functional
            given = list(x) if isinstance(x, (list, tuple)) else [x]
            if len(given) != len(inputs):
                raise ValueError(f"Model \"{self.name}\" expects {len(inputs)} input(s), got {len(given)}")
            mapped = {id(t): g for t, g in zip(inputs, given)}
            for layer in self._layers:
                if isinstance(layer, InputLayer):
                    continue
                for node in nodes.get(id(layer), []):
                    args = node.args
                    new_args = [mapped[id(t)] for t in args] if isinstance(args, (list, tuple)) else mapped[id(args)]
                    mapped[id(node.output)] = layer(new_args)
            return mapped[id(output)]
        if training:
            raise ValueError("Calling a model with training=True is not supported; use fit or train_on_batch")
        return self.predict_on_batch(x)

    # -- weights ----------------------------------------------------------------------------
    def _layer_weights(self, layer):
        """A layer's weights in this model's core (a layer reused in a newer model is attached to
        that one; this model keeps its own copy)."""
        if self._core is None or isinstance(layer, InputLayer):
            return layer.get_weights()
        return self._core.layer_get_weights(layer.name)

    def get_weights(self):
        return [w for layer in self._layers for w in self._layer_weights(layer)]

    def set_weights(self, weights):
        weights = list(weights)
        counts = [len(self._layer_weights(layer)) for layer in self._layers]
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
            if n:
                self._core.layer_set_weights(layer.name, [np.require(w, dtype=np.float32, requirements="C")
                                                          for w in weights[start:start + n]])
            start += n

    @property
    def weights(self):
        return self.get_weights()

    @property
    def trainable_weights(self):
        return [w for layer in self._layers for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self):
        return [w for layer in self._layers for w in layer.non_trainable_weights]

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
        """Keras 3's functional config: layers with their ``inbound_nodes``, ``input_layers``,
        ``output_layers`` (written by the core from its graph)."""
        return json.loads(self._core_or_fail().config_json())["config"]

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuilds layers from the config, then replays their calls."""
        from kandle.layers import deserialize
        from kandle.saving.object_registration import custom_object_scope

        with custom_object_scope(custom_objects):
            return cls._from_config(config, deserialize)

    @classmethod
    def _from_config(cls, config, make_layer):
        for key in ("layers", "input_layers", "output_layers"):
            if key not in config:
                raise ValueError(f"the functional config has no '{key}' (is it a Sequential's config?)")
        by_name, tensors = {}, {}
        for spec in config["layers"]:
            layer = make_layer(spec)
            by_name[layer.name] = layer
            if isinstance(layer, InputLayer):
                tensors[(layer.name, 0)] = layer.output
        pending = [s for s in config["layers"] if s.get("class_name") != "InputLayer"]
        calls = [(s, i, node) for s in pending for i, node in enumerate(s.get("inbound_nodes") or [])]
        while calls:
            progressed, rest = False, []
            for spec, i, node in calls:
                args = _node_args(node)
                refs = args if isinstance(args, list) else [args]
                if all(r in tensors for r in refs):
                    name = spec.get("name") or spec["config"]["name"]
                    value = [tensors[r] for r in refs] if isinstance(args, list) else tensors[args]
                    tensors[(name, i)] = by_name[name](value)
                    progressed = True
                else:
                    rest.append((spec, i, node))
            if not progressed:
                raise ValueError("Graph disconnected: some layer calls in the config read tensors nothing produces")
            calls = rest

        def roots(key):
            v = config[key]
            items = [v] if v and isinstance(v[0], str) else v
            return [tensors[(r[0], r[1])] for r in items]

        inputs, outputs = roots("input_layers"), roots("output_layers")
        return cls(inputs=inputs if len(inputs) > 1 else inputs[0], outputs=outputs[0], name=config.get("name"))

    def to_json(self, **kwargs):
        return json.dumps({"class_name": self._class_name(), "config": self.get_config()}, **kwargs)

    def _class_name(self):
        return "Functional"

    # -- compile ----------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None, weighted_metrics=None,
                run_eagerly=None, steps_per_execution=None, jit_compile=None, **kwargs):
        if loss is None:
            raise ValueError("compile: `loss` is required (kandle trains with a loss by its Keras name)")
        if loss_weights is not None:
            raise ValueError("compile: `loss_weights` is not supported yet")
        opt = optimizers.get(optimizer)
        # Python metrics, like a Python loss, are recorded once the output shape is known.
        from kandle.metrics_custom import is_python_metric
        for m in weighted_metrics or []:
            if is_python_metric(m):
                raise ValueError(f"kandle does not implement Python metrics in `weighted_metrics` yet ({m!r}); "
                                 "pass it in `metrics`")
        self._metric_objects = list(metrics or []) + list(weighted_metrics or [])
        metric_names = [None if is_python_metric(m) else metrics_module.identifier(m) for m in metrics or []]
        metric_names += [metrics_module.weighted_identifier(m) for m in weighted_metrics or []]
        # A Python loss is recorded when the output shape is known (_apply_compile).
        loss_name = None if losses.is_python_loss(loss) else losses.name_of(loss)
        # Check names now, even before the model is built, as Keras does.
        probe = _kandle.ModelCore("probe", [1])
        probe.compile(json.dumps(opt._serialize()), loss_name or "mse", [m for m in metric_names if m is not None])
        self._compiled = (opt, loss_name, metric_names)
        self.optimizer, self.loss = opt, loss
        if self._core is not None:
            self._apply_compile()

    def _apply_compile(self):
        opt, loss_name, metric_names = self._compiled
        if loss_name is None:
            loss_name = losses.record(self.loss, self._core.output_shape())
        if None in metric_names:
            from kandle.metrics_custom import record
            # A Python metric sees the targets as given: class indices (None, 1) beside a sparse loss
            # (the core hands it (n,) or (n, 1) labels in that shape), else shaped like the output.
            output = self._core.output_shape()
            target = [1] if losses.is_sparse(self.loss) else output
            metric_names = [record(obj, output, target) if spec is None else spec
                            for spec, obj in zip(metric_names, self._metric_objects)]
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

    # -- data ---------------------------------------------------------------------------------------
    def _inputs(self, x, what="x"):
        """The model's input arrays, in input order: one array, a list/tuple, or a dict by input name."""
        if isinstance(x, dict):
            core = self._core_or_fail()
            names = core.input_names()
            missing = [n for n in names if n not in x]
            if missing:
                raise ValueError(f"`{what}` is a dict without the model input(s) {missing}; its keys: {sorted(x)}")
            return [_array(x[n], f"{what}['{n}']") for n in names]
        if isinstance(x, (list, tuple)) and x and all(isinstance(a, np.ndarray) for a in x):
            return [_array(a, f"{what}[{i}]") for i, a in enumerate(x)]
        if x is None:
            raise ValueError(f"`{what}` is required")
        return [_array(x, what)]

    def _prepare(self, x, what="x"):
        xs = self._inputs(x, what)
        self._ensure_core([a.shape[1:] for a in xs])
        return xs

    # -- training and inference ---------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None, sample_weight=None,
            initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1, nb_epoch=None, **kwargs):
        if kwargs:
            raise TypeError(f"fit() got unexpected keyword argument(s): {sorted(kwargs)}")
        if not isinstance(validation_freq, (int, list, tuple)) or isinstance(validation_freq, bool):
            raise ValueError(f"`validation_freq` must be an integer or a list of epochs, got {validation_freq!r}")
        validation_freq = list(validation_freq) if isinstance(validation_freq, tuple) else validation_freq
        epochs = _int_arg("epochs", nb_epoch if nb_epoch is not None else epochs)
        initial_epoch = _int_arg("initial_epoch", initial_epoch)
        validation_split = _float_arg("validation_split", validation_split)
        self._require_compiled()
        verbose = 1 if verbose == "auto" else int(verbose)
        if data_adapter.is_feed(x):
            if sample_weight is not None:
                raise ValueError("`sample_weight` argument is not supported when using a dataset, generator or "
                                 "PyDataset as input: its batches can be (x, y, sample_weight) tuples")
            return self._fit_feed(x, y, batch_size, epochs, verbose, callbacks, validation_split, validation_data,
                                  shuffle, initial_epoch, steps_per_epoch, validation_steps, validation_freq,
                                  class_weight)
        for key, value in (("steps_per_epoch", steps_per_epoch), ("validation_steps", validation_steps)):
            if value is not None:
                raise ValueError(f"kandle does not implement fit(`{key}`=...) on arrays yet (it does on "
                                 "generators, iterables of batches and PyDatasets)")
        xs, y = self._prepare(x), _array(y, "y")
        batch_size = _batch_size(batch_size)
        weights = data_adapter.sample_weights(y, sample_weight, class_weight, len(y))
        val_xs = val_y = val_w = None
        if validation_data is not None:
            val_xs, val_y, val_w = self._validation_arrays(validation_data)
            validation_split = 0.0
        n = len(xs[0])
        if any(len(a) != n for a in xs) or len(y) != n:
            raise ValueError(f"Data cardinality is ambiguous: x sizes: {', '.join(str(len(a)) for a in xs)}, "
                             f"y sizes: {len(y)}. Make sure all arrays contain the same number of samples.")
        n_val = len(val_xs[0]) if val_xs is not None else n - int(math.floor(n * (1.0 - validation_split)))
        n_train = n - (0 if val_xs is not None else n_val)
        names = self._core.metrics_names()
        do_validation = n_val > 0
        cbs = CallbackList(automatic_backup(callbacks), add_history=True, add_progbar=verbose != 0, model=self,
                           verbose=verbose, epochs=max(epochs, 0), steps=math.ceil(n_train / batch_size),
                           samples=n_train, batch_size=batch_size, do_validation=do_validation, val_samples=n_val,
                           metrics=names + (["val_" + n for n in names] if do_validation else []))
        return self._run_fit(cbs, initial_epoch, lambda start: self._core.fit(
            xs, y, val_xs, val_y, validation_split, batch_size, epochs, start, bool(shuffle), validation_freq, cbs, self,
            _world(), weights, val_w))

    def _fit_feed(self, x, y, batch_size, epochs, verbose, callbacks, validation_split, validation_data, shuffle,
                  initial_epoch, steps_per_epoch, validation_steps, validation_freq, class_weight):
        """`fit` on a generator, an iterable of batches or a PyDataset (Keras 3's rules for them)."""
        if validation_split:
            raise ValueError("`validation_split` is only supported for NumPy arrays, not for a dataset, "
                             "generator or PyDataset: pass validation_data instead")
        train = self._feed(x, y, steps_per_epoch, targets=True, shuffle=bool(shuffle), class_weight=class_weight)
        val = val_xs = val_y = None
        try:
            if validation_data is not None and data_adapter.is_feed(validation_data):
                val = data_adapter.Adapter(validation_data, self, validation_steps, what="validation_data")
            elif validation_data is not None:
                val_xs, val_y, val_w = self._validation_arrays(validation_data)
                if val_w is not None:
                    raise ValueError("kandle does not implement sample weights in array validation_data beside a "
                                     "dataset or generator yet")
            names = self._core.metrics_names()
            do_validation = validation_data is not None
            cbs = CallbackList(automatic_backup(callbacks), add_history=True, add_progbar=verbose != 0, model=self,
                               verbose=verbose, epochs=max(epochs, 0), steps=train.num_batches(), samples=None,
                               batch_size=batch_size, do_validation=do_validation,
                               val_steps=None if val is None else val.num_batches(),
                               metrics=names + (["val_" + n for n in names] if do_validation else []))
            return self._run_fit(cbs, initial_epoch, lambda start: self._core.fit_feed(
                train, val_xs, val_y, val, _batch_size(batch_size), epochs, start, validation_freq, cbs, self,
                _world()))
        finally:
            train.close()
            if val is not None:
                val.close()

    def _run_fit(self, cbs, initial_epoch, run):
        """The callbacks around one call of the core's loop (`run(initial_epoch)`)."""
        self.stop_training = False
        self._initial_epoch, self._restored_epochs, self._fit_completed = None, (), False
        cbs.on_train_begin({})
        try:
            if self._initial_epoch:  # set by BackupAndRestore, as in Keras
                initial_epoch = max(initial_epoch, self._initial_epoch)
            self._replay_restored(cbs)
            run(initial_epoch)
            self._fit_completed = True
        finally:
            self._initial_epoch, self._restored_epochs = None, ()
            cbs.on_train_end({})
        self.history = cbs.history
        return cbs.history

    def _feed(self, x, y, steps, targets, shuffle=False, class_weight=None):
        """The adapter over a generator / iterable / PyDataset `x`, the model built from its first batch."""
        if y is not None:
            raise ValueError("`y` argument is not supported when using a dataset, generator or PyDataset as "
                             "input: the batches carry their targets")
        feed = data_adapter.Adapter(x, self, steps, targets=targets, shuffle=shuffle, class_weight=class_weight)
        try:
            feed.first_batch_shapes()
        except BaseException:
            feed.close()
            raise
        return feed

    def _validation_arrays(self, validation_data):
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be a tuple (x_val, y_val), a dataset, a generator or a PyDataset")
        xs, y = self._inputs(validation_data[0], "validation_data x"), _array(validation_data[1], "validation_data y")
        w = validation_data[2] if len(validation_data) == 3 else None
        return xs, y, data_adapter.sample_weights(y, w, None, len(y))

    def _replay_restored(self, cbs):
        """Epochs a BackupAndRestore brought back: into the History (so that a resumed fit's History
        covers every epoch) and onto the progress bar, with the logs and seconds they had."""
        for epoch, logs, seconds in self._restored_epochs:
            if cbs.history is not None:
                cbs.history.on_epoch_end(epoch, dict(logs))
            if cbs.progbar is not None:
                cbs.progbar.show_restored_epoch(epoch, logs, seconds)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False, **kwargs):
        self._require_compiled()
        verbose = 1 if verbose == "auto" else int(verbose)
        if data_adapter.is_feed(x):
            if sample_weight is not None:
                raise ValueError("`sample_weight` argument is not supported when using a dataset, generator or "
                                 "PyDataset as input: its batches can be (x, y, sample_weight) tuples")
            feed = self._feed(x, y, steps, targets=True)
            cbs = CallbackList(callbacks, add_progbar=verbose == 1, model=self, verbose=verbose, steps=feed.num_batches(),
                               samples=None, batch_size=batch_size)
            cbs.on_test_begin({})
            with feed:
                values = self._core.evaluate_feed(feed, cbs, _world())
        else:
            xs, y = self._prepare(x), _array(y, "y")
            batch_size = _batch_size(batch_size)
            cbs = CallbackList(callbacks, add_progbar=verbose == 1, model=self, verbose=verbose,
                               steps=math.ceil(len(xs[0]) / batch_size), samples=len(xs[0]), batch_size=batch_size)
            cbs.on_test_begin({})
            weights = data_adapter.sample_weights(y, sample_weight, None, len(y))
            values = self._core.evaluate(xs, y, batch_size, cbs, _world(), weights)
        names = self._core.metrics_names()
        cbs.on_test_end(dict(zip(names, values)))
        return _results(names, values, return_dict)

    def predict(self, x, batch_size=None, verbose=0, steps=None, callbacks=None, **kwargs):
        verbose = 1 if verbose == "auto" else int(verbose)
        if data_adapter.is_feed(x):
            feed = self._feed(x, None, steps, targets=False)
            cbs = CallbackList(callbacks, add_progbar=verbose == 1, model=self, verbose=verbose, steps=feed.num_batches(),
                               samples=None, batch_size=batch_size)
            cbs.on_predict_begin({})
            with feed:
                out = self._core.predict_feed(feed, cbs, _world())
            cbs.on_predict_end({})
            return out
        xs = self._prepare(x)
        batch_size = _batch_size(batch_size)
        cbs = CallbackList(callbacks, add_progbar=verbose == 1, model=self, verbose=verbose,
                           steps=math.ceil(len(xs[0]) / batch_size), samples=len(xs[0]), batch_size=batch_size)
        cbs.on_predict_begin({})
        out = self._core.predict(xs, batch_size, cbs, _world())
        cbs.on_predict_end({})
        return out

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, reset_metrics=True,
                       return_dict=False):
        self._require_compiled()
        xs, y = self._prepare(x), _array(y, "y")
        weights = data_adapter.sample_weights(y, sample_weight, class_weight, len(y))
        return _results(self._core.metrics_names(), self._core.train_on_batch(xs, y, _world(), weights), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._require_compiled()
        xs, y = self._prepare(x), _array(y, "y")
        weights = data_adapter.sample_weights(y, sample_weight, None, len(y))
        values = self._core.evaluate(xs, y, max(len(xs[0]), 1), None, None, weights)
        return _results(self._core.metrics_names(), values, return_dict)

    def predict_on_batch(self, x):
        xs = self._prepare(x)
        return self._core.predict(xs, max(len(xs[0]), 1))

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


# Larger counts behave exactly as this one (no run gets that far), so they are passed on as it.
_HUGE = 2 ** 62


def _int_arg(name, value):
    """An integer argument as the core takes it: a TypeError in Keras's words for anything that is not
    an integer; huge values clamped (they mean "forever" or "all at once" either way)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer, got {value!r} of type {type(value).__name__}")
    return int(max(min(int(value), _HUGE), -_HUGE))


def _float_arg(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number, got {value!r} of type {type(value).__name__}")
    return float(value)


def _batch_size(batch_size):
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size!r}")
    return min(int(batch_size), _HUGE)


def _results(names, values, return_dict):
    values = [float(v) for v in values]
    if return_dict:
        return dict(zip(names, values))
    return values[0] if len(values) == 1 else values
