"""The Keras model API, as a ported notebook uses it."""

import pickle
import threading
import time

import numpy as np
import pytest
from conftest import small_cnn, small_data

import kandle
from kandle import backend as K
from kandle.callbacks import Callback
from kandle.layers import Activation, Conv2D, Dense, Flatten, Input, MaxPooling2D
from kandle.models import Sequential
from kandle.optimizers import SGD, Adam
from kandle.utils import np_utils, set_random_seed, to_categorical


def test_tutorial_cnn_summary_and_param_counts(capsys):
    model = Sequential()
    model.add(Conv2D(32, (3, 3), activation="relu", input_shape=(32, 32, 3)))
    model.add(Conv2D(64, (3, 3), activation="relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    for filters in (128, 256, 512):
        model.add(Conv2D(filters, (3, 3), activation="relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Conv2D(1024, (3, 3), activation="relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Flatten())
    model.add(Dense(500, activation="relu"))
    model.add(kandle.layers.Dropout(0.5))
    model.add(Dense(100, activation="softmax"))
    model.summary()
    out = capsys.readouterr().out
    assert "Layer (type)" in out and "Output Shape" in out and "Param #" in out
    assert "conv2d (Conv2D)" in out and "(None, 30, 30, 32)" in out
    assert "Total params: 6,850,792" in out
    assert model.count_params() == 6850792
    assert [l.count_params() for l in model.layers] == [896, 18496, 0, 73856, 295168, 1180160, 0, 4719616,
                                                        0, 0, 512500, 0, 50100]
    assert model.output_shape == (None, 100)


def test_input_as_first_element_and_deferred_build():
    a = Sequential([Input((4,)), Dense(3)])
    assert a.output_shape == (None, 3)
    b = Sequential([Dense(3), Dense(2)])
    assert not b.built and b.layers[0].get_weights() == []
    out = b.predict(np.zeros((5, 7)))
    assert out.shape == (5, 2) and b.built and b.layers[0].get_weights()[0].shape == (7, 3)


def test_weights_are_exchanged_in_keras_layouts():
    model = Sequential([Conv2D(5, (3, 2), input_shape=(6, 6, 3)), Flatten(), Dense(4)])
    shapes = [w.shape for w in model.get_weights()]
    assert shapes == [(3, 2, 3, 5), (5,), (4 * 5 * 5, 4), (4,)]
    new = [np.full(s, i, dtype=np.float64) for i, s in enumerate(shapes)]
    model.set_weights(new)
    for got, want in zip(model.get_weights(), new):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    layer = model.layers[2]
    assert layer.name == "dense" and layer.get_config()["units"] == 4 and layer.count_params() == 404


def test_flatten_follows_channels_last_order():
    model = Sequential([Flatten(input_shape=(2, 2, 3))])
    x = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)
    np.testing.assert_array_equal(model.predict(x)[0], np.arange(12))


def test_predict_returns_float32_for_any_input_dtype_and_layout(cnn, data):
    x, _, _ = data
    reference = cnn.predict(x)
    assert reference.dtype == np.float32 and reference.shape == (48, 3)
    for variant in (x.astype(np.float64), np.asfortranarray(x), x[::-1][::-1], x.astype(np.float16)):
        np.testing.assert_allclose(cnn.predict(variant), reference, rtol=1e-3, atol=1e-4)
    as_uint8 = (x * 255).astype(np.uint8)
    np.testing.assert_allclose(cnn.predict(as_uint8), cnn.predict(as_uint8.astype(np.float32)), rtol=0, atol=0)
    strided = np.repeat(x, 2, axis=0)[::2]
    np.testing.assert_array_equal(cnn.predict(strided), reference)


def test_fit_returns_history_with_tutorial_and_modern_keys(cnn, data):
    x, y, _ = data
    cnn.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acc", "mse"])
    history = cnn.fit(x, y, batch_size=16, epochs=3, verbose=0, validation_data=(x[:12], y[:12]))
    h = history.history
    assert set(h) == {"loss", "acc", "mean_squared_error", "val_loss", "val_acc", "val_mean_squared_error"}
    assert all(len(v) == 3 and all(type(f) is float for f in v) for v in h.values())
    assert h["mse"] == h["mean_squared_error"] and h["val_mse"] == h["val_mean_squared_error"]
    assert cnn.history is history and history.epoch == [0, 1, 2]
    restored = pickle.loads(pickle.dumps(history.history))
    assert restored == h and restored["val_mse"] == h["val_mean_squared_error"]


def test_second_fit_continues_from_trained_weights(cnn, data):
    x, y, _ = data
    cnn.fit(x, y, epochs=1, verbose=0)
    after_first = cnn.get_weights()
    cnn.fit(x, y, epochs=1, verbose=0, shuffle=False)
    assert any(not np.array_equal(a, b) for a, b in zip(after_first, cnn.get_weights()))
    assert cnn.optimizer.iterations == 2 * 2  # 48 samples, batch 32 -> 2 steps per epoch


def test_evaluate_and_batch_methods(cnn, data):
    x, y, _ = data
    loss, acc = cnn.evaluate(x, y, batch_size=10, verbose=0)
    assert cnn.metrics_names == ["loss", "acc"]
    assert cnn.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx({"loss": loss, "acc": acc})
    assert cnn.test_on_batch(x, y) == pytest.approx([loss, acc], rel=1e-6)
    np.testing.assert_allclose(cnn.predict_on_batch(x), cnn.predict(x, batch_size=7), rtol=1e-6)
    before = cnn.get_weights()
    result = cnn.train_on_batch(x[:8], y[:8])
    assert len(result) == 2 and np.isfinite(result[0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, cnn.get_weights()))


def test_evaluate_without_metrics_returns_a_scalar(data):
    x, y, _ = data
    model = small_cnn(metrics=())
    assert isinstance(model.evaluate(x, y, verbose=0), float)


def test_validation_split_takes_the_last_samples(cnn, data):
    x, y, _ = data
    h = cnn.fit(x, y, epochs=1, verbose=0, validation_split=0.25, shuffle=False)
    val_loss = h.history["val_loss"][0]
    assert val_loss == pytest.approx(cnn.evaluate(x[36:], y[36:], verbose=0)[0], rel=1e-5)


def test_optimizers_by_name_and_object_with_2018_spelling():
    assert SGD(lr=0.1).learning_rate == pytest.approx(0.1)
    assert SGD().get_config()["learning_rate"] == pytest.approx(0.01)
    assert Adam().get_config()["epsilon"] == pytest.approx(1e-7)
    for opt in ("sgd", "adam", "rmsprop", "adagrad", SGD(0.05, momentum=0.9, nesterov=True)):
        model = small_cnn(optimizer=opt)
        x, y, _ = small_data(16)
        assert np.isfinite(model.fit(x, y, epochs=1, verbose=0).history["loss"][0])


def test_learning_rate_is_live_after_compile(cnn, data):
    x, y, _ = data
    cnn.optimizer.learning_rate = 0.0
    before = cnn.get_weights()
    cnn.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(before, cnn.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("loss,metrics,target", [
    ("sparse_categorical_crossentropy", ["acc", "sparse_categorical_accuracy"], "labels"),
    ("categorical_crossentropy", ["accuracy", "categorical_accuracy", "top_k_categorical_accuracy", "mae"], "onehot"),
    ("mean_squared_error", ["mse"], "onehot"),
    ("mae", ["mae"], "onehot"),
])
def test_each_loss_trains(loss, metrics, target):
    set_random_seed(3)
    model = small_cnn(loss=loss, metrics=metrics)
    x, y, labels = small_data(32)
    h = model.fit(x, labels if target == "labels" else y, epochs=2, verbose=0)
    assert all(np.isfinite(v).all() for v in h.history.values())


def test_binary_crossentropy_with_sigmoid_output():
    model = Sequential([Dense(1, activation="sigmoid", input_shape=(3,))])
    model.compile("adam", "binary_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(64, 3))
    y = (x[:, 0] > 0).astype(np.float32)
    h = model.fit(x, y, epochs=2, verbose=0)
    assert set(h.history) == {"loss", "accuracy"}


def test_seeded_runs_are_bit_identical(data):
    x, y, _ = data
    runs = []
    for _ in range(2):
        set_random_seed(42)
        model = small_cnn()
        h = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=True)
        runs.append((model.get_weights(), h.history["loss"]))
    assert runs[0][1] == runs[1][1]
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    set_random_seed(43)
    assert not np.array_equal(small_cnn().get_weights()[0], runs[0][0][0])


def test_dropout_only_while_training():
    model = Sequential([kandle.layers.Dropout(0.5, input_shape=(1000,))])
    x = np.ones((4, 1000), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(x), x)
    model.compile("sgd", "mse")
    # In training, about half the units are zeroed and the rest scaled by 2 (inverted dropout).
    model.add(Dense(1, kernel_initializer="ones", use_bias=False))
    model.layers[1].set_weights([np.ones((1000, 1))])
    model.compile(SGD(learning_rate=0.0), "mse")
    loss = model.train_on_batch(x[:1], np.zeros((1, 1)))
    assert 800 ** 2 < loss < 1200 ** 2


def test_callbacks_receive_keras_hooks_and_can_stop_training(cnn, data):
    x, y, _ = data
    events = []

    class Recorder(Callback):
        def on_train_begin(self, logs=None):
            events.append("train_begin")

        def on_epoch_begin(self, epoch, logs=None):
            events.append(f"epoch_begin {epoch}")

        def on_train_batch_end(self, batch, logs=None):
            events.append(f"batch_end {batch} {sorted(k for k in logs if k not in ('batch', 'size'))}")

        def on_epoch_end(self, epoch, logs=None):
            events.append(f"epoch_end {epoch} {sorted(logs)}")
            self.model.stop_training = epoch == 1

        def on_train_end(self, logs=None):
            events.append("train_end")

    h = cnn.fit(x, y, batch_size=24, epochs=5, verbose=0, callbacks=[Recorder()], validation_data=(x, y))
    assert events == [
        "train_begin",
        "epoch_begin 0", "batch_end 0 ['acc', 'loss']", "batch_end 1 ['acc', 'loss']",
        "epoch_end 0 ['acc', 'loss', 'val_acc', 'val_loss']",
        "epoch_begin 1", "batch_end 0 ['acc', 'loss']", "batch_end 1 ['acc', 'loss']",
        "epoch_end 1 ['acc', 'loss', 'val_acc', 'val_loss']",
        "train_end",
    ]
    assert len(h.history["loss"]) == 2


def test_progress_bar_prints_the_keras_lines(cnn, data, capsys):
    x, y, _ = data
    cnn.compile("sgd", "categorical_crossentropy", metrics=["acc", "mse"])
    cnn.fit(x, y, batch_size=16, epochs=2, verbose=1, validation_data=(x[:8], y[:8]))
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "Train on 48 samples, validate on 8 samples"
    assert lines[1] == "Epoch 1/2" and lines[3] == "Epoch 2/2"
    assert lines[2].startswith("48/48 [==============================] - ")
    for key in ("- loss: ", "- acc: ", "- mean_squared_error: ", "- val_loss: ", "- val_acc: ",
                "- val_mean_squared_error: "):
        assert key in lines[2]
    assert "\b" not in out and "\r" not in out  # captured stdout is not a terminal: clean lines
    cnn.fit(x, y, epochs=1, verbose=2)
    assert capsys.readouterr().out.splitlines()[-1].startswith(" - ")
    cnn.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_the_gil_is_released_during_fit(data):
    x, y, _ = data
    big_x = np.repeat(x, 20, axis=0)
    big_y = np.repeat(y, 20, axis=0)
    model = small_cnn()
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    start = time.perf_counter()
    try:
        model.fit(big_x, big_y, batch_size=960, epochs=10, verbose=0)
    finally:
        took = time.perf_counter() - start
        done.set()
        t.join()
    # A held GIL would starve the ticker for a whole (large) batch; released, it keeps ticking.
    during = [tick for tick in ticks if start <= tick <= start + took]
    assert len(during) >= took / 0.01  # ~1 ms sleeps: one tick per 10 ms at the very least
    assert np.diff(ticks).max() < 0.25


def test_two_threads_predicting_at_once_get_correct_results(cnn, data):
    x, _, _ = data
    want = cnn.predict(x)
    results, errors = [], []

    def work():
        try:
            for _ in range(5):
                results.append(cnn.predict(x, batch_size=5))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(3)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and len(results) == 15
    for r in results:
        np.testing.assert_array_equal(r, want)


def test_to_categorical_and_backend():
    y = np.array([[19], [29], [0]])
    onehot = to_categorical(y, 100)
    assert onehot.shape == (3, 100) and onehot.dtype == np.float32 and onehot[0, 19] == 1
    np.testing.assert_array_equal(np_utils.to_categorical([1, 0]), [[0, 1], [1, 0]])
    K.set_image_data_format("channels_last")
    assert K.image_data_format() == "channels_last"
    K.set_learning_phase(1)
    K.clear_session()
    assert Dense(2).name == "dense"
    with pytest.raises(ValueError):
        K.set_image_data_format("channels_first")


def test_activation_layer_and_functions():
    model = Sequential([Activation("softmax", input_shape=(3,))])
    p = model.predict(np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(kandle.activations.relu(np.array([-1.0, 0.0, 2.0])), [0, 0, 2])
    losses = kandle.losses.categorical_crossentropy(np.eye(3), np.full((3, 3), 1 / 3))
    np.testing.assert_allclose(losses, np.log(3), rtol=1e-6)


def test_model_config_round_trip(cnn):
    clone = Sequential.from_config(cnn.get_config())
    assert [l._class_name for l in clone.layers] == [l._class_name for l in cnn.layers]
    assert clone.count_params() == cnn.count_params()
    assert kandle.models.model_from_json(cnn.to_json()).output_shape == cnn.output_shape


def test_large_predict_batches_match_small_ones():
    # Inference unfolds a few images at a time; the result must not depend on how many.
    set_random_seed(5)
    model = Sequential([Conv2D(64, (3, 3), activation="relu", input_shape=(30, 30, 32)), Flatten(), Dense(3)])
    x = np.random.default_rng(1).random((70, 30, 30, 32), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, batch_size=70), model.predict(x, batch_size=1), rtol=1e-4, atol=1e-5)


def test_fit_on_float64_arrays_makes_no_full_size_copy():
    # In a fresh process, so the peak RSS is this fit's: a 400 MB float64 x may not be copied whole
    # (a float32 copy would add 200 MB, a float64 one 400 MB).
    import subprocess
    import sys

    script = """
import resource, numpy as np
from kandle.models import Sequential
from kandle.layers import Flatten, Dense
x = np.random.default_rng(0).random((50000, 32, 32, 1))   # 410 MB of float64, pages touched
y = np.eye(10)[np.arange(50000) % 10]
model = Sequential([Flatten(input_shape=(32, 32, 1)), Dense(10, activation="softmax")])
model.compile("sgd", "categorical_crossentropy")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
model.fit(x, y, batch_size=256, epochs=1, verbose=0)
model.predict(x, batch_size=1024)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""
    grown = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
                .stdout.strip().splitlines()[-1])
    assert grown < 100 * 2**20


def test_initial_epoch_continues_the_epoch_count(cnn, data, capsys):
    x, y, _ = data
    h = cnn.fit(x, y, epochs=3, initial_epoch=1, verbose=1)
    assert h.epoch == [1, 2] and len(h.history["loss"]) == 2
    out = capsys.readouterr().out
    assert "Epoch 2/3" in out and "Epoch 3/3" in out and "Epoch 1/3" not in out
