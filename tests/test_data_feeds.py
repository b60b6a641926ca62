"""`fit` / `evaluate` / `predict` on data that is not an array: a list of `(x, y)` batches, a Python
generator with `steps_per_epoch`, `kandle.utils.PyDataset` (threads and processes), objects that only
convert with `np.asarray` (as torch tensors do). The same batches in the same order train exactly as the
arrays do; the errors are Keras's.
"""

import random
import warnings

import numpy as np
import pytest

from kandle.callbacks import Callback
from kandle.layers import Concatenate, Dense, Input
from kandle.models import Model, Sequential
from kandle.utils import PyDataset, set_random_seed

RNG = np.random.default_rng(0)
X = RNG.random((64, 5)).astype("float32")
Y = np.eye(3)[RNG.integers(0, 3, 64)]
BATCHES = [(X[i:i + 16], Y[i:i + 16]) for i in range(0, 64, 16)]


def _model(build=True):
    set_random_seed(0)
    layers = ([Input((5,))] if build else []) + [Dense(8, activation="relu"), Dense(3, activation="softmax")]
    model = Sequential(layers)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["acc"])
    return model


def _reference(epochs=3):
    model = _model()
    history = model.fit(X, Y, batch_size=16, epochs=epochs, shuffle=False, verbose=0)
    return model, history


def _same(a, b):
    return all(np.array_equal(p, q) for p, q in zip(a.get_weights(), b.get_weights()))


class Batches(PyDataset):
    """Module level, so that it pickles for use_multiprocessing."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.epochs_ended = 0

    def __len__(self):
        return len(BATCHES)

    def __getitem__(self, index):
        return BATCHES[index]

    def on_epoch_end(self):
        self.epochs_ended += 1


class TorchLike:
    """What a torch tensor offers NumPy: ``__array__`` only."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


class Loader:
    """A DataLoader-like re-iterable: a fresh pass of TorchLike batches per `iter`."""

    def __iter__(self):
        return ((TorchLike(x), TorchLike(y)) for x, y in BATCHES)

    def __len__(self):
        return len(BATCHES)


def _generator():
    while True:
        yield from BATCHES


@pytest.mark.parametrize("data, kwargs", [
    (BATCHES, {}),
    (Loader(), {}),
    (Batches(), {"shuffle": False}),
    (Batches(workers=3), {"shuffle": False}),
    (Batches(workers=2, use_multiprocessing=True), {"shuffle": False}),
], ids=["list", "loader", "pydataset", "threads", "processes"])
def test_batches_train_exactly_as_the_arrays(data, kwargs):
    reference, ref_history = _reference()
    model = _model()
    history = model.fit(data, epochs=3, verbose=0, **kwargs)
    assert history.history == ref_history.history
    assert _same(model, reference)


def test_a_generator_with_steps_per_epoch():
    reference, ref_history = _reference()
    model = _model()
    history = model.fit(_generator(), steps_per_epoch=4, epochs=3, verbose=0)
    assert history.history == ref_history.history and _same(model, reference)


def test_an_unbuilt_model_is_built_from_the_first_batch_which_is_not_lost():
    reference = _model(build=False)  # built by its first data too (its weights drawn then)
    ref_history = reference.fit(X, Y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    model = _model(build=False)
    history = model.fit(_generator(), steps_per_epoch=4, epochs=3, verbose=0)
    assert history.history == ref_history.history and _same(model, reference)


def test_pydataset_on_epoch_end_and_shuffled_order():
    """shuffle=True shuffles a PyDataset's batch order each epoch with Python's `random`, as Keras."""
    data = Batches()
    shuffled = _model()  # (set_random_seed seeds Python's random too: seed after it)
    random.seed(3)
    history = shuffled.fit(data, epochs=3, verbose=0)
    assert data.epochs_ended == 3  # after every epoch, the last one too (Keras 3)
    random.seed(3)
    orders = []
    for _ in range(3):
        order = list(range(4))
        random.shuffle(order)
        orders.append(order)
    assert any(o != [0, 1, 2, 3] for o in orders)
    same_order = _model()
    replay = same_order.fit(iter([BATCHES[i] for o in orders for i in o]), steps_per_epoch=4, epochs=3, verbose=0)
    assert history.history == replay.history and _same(shuffled, same_order)


def test_validation_from_a_feed_and_evaluate_predict_on_feeds():
    reference, _ = _reference(epochs=1)
    model = _model()
    history = model.fit(BATCHES, validation_data=Batches(), epochs=1, verbose=0)
    loss, acc = model.evaluate(Batches(), verbose=0)
    assert history.history["val_loss"] == [loss] and history.history["val_acc"] == [acc]
    assert np.isclose(loss, reference.evaluate(X, Y, verbose=0)[0], rtol=1e-6)
    predicted = model.predict(iter([X[:10], X[10:30], X[30:]]))
    assert predicted.dtype == np.float32 and predicted.shape == (64, 3)
    assert np.array_equal(predicted, model.predict(X))
    # predict also takes (x,) and (x, y) batches, ignoring y
    assert np.array_equal(model.predict(BATCHES), predicted)
    # validation_steps limits a re-iterable's validation pass
    h = _model().fit(BATCHES, validation_data=_generator(), validation_steps=4, epochs=2, verbose=0)
    assert len(h.history["val_loss"]) == 2


def test_multi_input_batches_as_dicts():
    a, b = Input((5,), name="a"), Input((2,), name="b")
    out = Dense(3, activation="softmax")(Concatenate()([a, b]))
    model = Model([a, b], out)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    extra = RNG.random((64, 2)).astype("float32")
    feed = [({"a": X[i:i + 16], "b": extra[i:i + 16]}, Y[i:i + 16]) for i in range(0, 64, 16)]
    history = model.fit(feed, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    assert model.predict(iter([[X, extra]])).shape == (64, 3)


def test_running_out_of_data_warns_and_stops():
    model = _model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(iter(BATCHES), steps_per_epoch=3, epochs=5, verbose=0)
    assert history.epoch == [0, 1]  # 3 batches, then the last one, then nothing
    assert sum("ran out of data" in str(w.message) for w in caught) == 1


@pytest.mark.parametrize("call, error, match", [
    (lambda m: m.fit(BATCHES, Y), ValueError, "`y` argument is not supported"),
    (lambda m: m.fit(BATCHES, validation_split=0.2), ValueError, "validation_split"),
    (lambda m: m.fit([(x, y, np.ones(len(x) + 1)) for x, y in BATCHES]), ValueError,
     "one weight per sample"),
    (lambda m: m.fit(iter([X[:16]])), ValueError, "carry no targets"),
    (lambda m: m.fit(iter([(X[:16], Y[:16]), (X[:16, :4], Y[:16])]), verbose=0), ValueError,
     r"expected shape=\(None, 5\), found shape=\(None, 4\)"),
    (lambda m: m.fit(iter([(X[:16], Y[:10])]), verbose=0), ValueError, "cardinality"),
    (lambda m: m.fit(iter([(X[:16], Y[:16, :2])]), verbose=0), ValueError, "3"),
    (lambda m: m.fit(iter([(np.array([["a"] * 5] * 2), Y[:2])]), verbose=0), TypeError, "dtype"),
    (lambda m: m.fit(iter([(X[:16], Y[:16], None, 1)]), verbose=0), ValueError, "4 elements"),
    (lambda m: m.fit(BATCHES, steps_per_epoch=0), ValueError, "positive integer"),
    (lambda m: m.fit(X, Y, steps_per_epoch=2), ValueError, "kandle does not implement"),
])
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(_model())


def test_an_error_inside_the_generator_reaches_the_caller():
    def broken():
        yield BATCHES[0]
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        _model().fit(broken(), epochs=2, verbose=0)


def test_progress_bar_counts_steps(capsys):
    _model().fit(_generator(), steps_per_epoch=4, epochs=1, verbose=1)
    out = capsys.readouterr().out
    assert "Train for 4 steps" in out and "4/4 [" in out


@pytest.mark.parametrize("freq, validated", [(2, [1, 3]), ([1, 4], [0, 3]), (1, [0, 1, 2, 3])])
def test_validation_freq(freq, validated):
    """Keras 3: validation after every n-th epoch, or after the listed (1-based) epochs; arrays and feeds."""
    for data in ((X, Y), (BATCHES,)):
        model = _model()
        seen = []

        class Watch(Callback):
            def on_epoch_end(self, epoch, logs=None):
                if "val_loss" in logs:
                    seen.append(epoch)

        kwargs = {"y": data[1], "batch_size": 16} if len(data) == 2 else {}
        model.fit(data[0], epochs=4, validation_data=(X[:16], Y[:16]), validation_freq=freq, verbose=0,
                  callbacks=[Watch()], **kwargs)
        assert seen == validated


@pytest.mark.parametrize("bad", [0, -1, [0], "2", 1.5, True])
def test_bad_validation_freq(bad):
    with pytest.raises(ValueError, match="validation_freq"):
        _model().fit(X, Y, epochs=1, validation_data=(X, Y), validation_freq=bad, verbose=0)
