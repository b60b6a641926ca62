"""Owns the specification tests of the Keras-2.2-style progress output (Progbar, ProgbarLogger)."""

import io
import sys

import pytest

from kandle.callbacks import CallbackList, TerminateOnNaN
from kandle.utils import generic_utils
from kandle.utils.generic_utils import Progbar, format_eta, format_time_per_unit

BAR_FULL = "[" + "=" * 30 + "]"


class Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


class Clock:
    def __init__(self, start=1000.0):
        self.now = start

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(generic_utils, "_now", fake)
    monkeypatch.delenv("KANDLE_PROGBAR", raising=False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    monkeypatch.setattr(generic_utils, "_open_stream", None)
    return fake


@pytest.fixture
def console(monkeypatch, clock):
    def make(tty):
        stream = Stream(tty)
        monkeypatch.setattr(sys, "stdout", stream)
        return stream
    return make


class FakeModel:
    stop_training = False
    history = None


EPOCH_LOGS = {"loss": 0.5, "acc": 0.8, "val_loss": 0.6, "val_acc": 0.75}


def fake_fit(clock, verbose=1, epochs=2, samples=1000, batch_size=100, validation=True,
             seconds_per_batch=0.5, batch_loss=lambda b: 0.5 / (b + 1), callbacks=None,
             interrupt_at=None, with_test_hooks=False):
    """Drives a CallbackList the way the model's fit does (see kandle.callbacks' docstring)."""
    model = FakeModel()
    steps = -(-samples // batch_size)
    params = dict(verbose=verbose, epochs=epochs, steps=steps, samples=samples,
                  batch_size=batch_size, do_validation=validation,
                  metrics=["loss", "acc"] + (["val_loss", "val_acc"] if validation else []))
    if validation:
        params["val_samples"] = 200
    cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=model,
                       **params)
    cbs.on_train_begin({})
    try:
        for epoch in range(epochs):
            cbs.on_epoch_begin(epoch, {})
            for batch in range(steps):
                size = min(batch_size, samples - batch * batch_size)
                cbs.on_train_batch_begin(batch, {"batch": batch, "size": size})
                clock.now += seconds_per_batch
                if interrupt_at == (epoch, batch):
                    raise KeyboardInterrupt
                cbs.on_train_batch_end(batch, {"batch": batch, "size": size,
                                               "loss": batch_loss(batch), "acc": 0.0001})
                if model.stop_training:
                    break
            if with_test_hooks:
                cbs.on_test_begin({})
                cbs.on_test_batch_begin(0, {"batch": 0, "size": 200})
                cbs.on_test_batch_end(0, {"batch": 0, "size": 200, "loss": 0.6})
                cbs.on_test_end({"loss": 0.6})
            logs = dict(EPOCH_LOGS) if validation else {"loss": 0.5, "acc": 0.8}
            cbs.on_epoch_end(epoch, logs)
            if model.stop_training:
                break
    finally:
        cbs.on_train_end({})
    return cbs


FINAL = ("1000/1000 " + BAR_FULL
         + " - 5s 5ms/step - loss: 0.5000 - acc: 0.8000 - val_loss: 0.6000 - val_acc: 0.7500")


def test_static_output_is_clean_lines(console, clock):
    out = console(tty=False)
    fake_fit(clock)
    assert out.getvalue() == ("Train on 1000 samples, validate on 200 samples\n"
                              "Epoch 1/2\n" + FINAL + "\nEpoch 2/2\n" + FINAL + "\n")


def test_train_on_without_validation(console, clock):
    out = console(tty=False)
    fake_fit(clock, epochs=1, validation=False)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Train on 1000 samples"
    assert lines[2] == "1000/1000 " + BAR_FULL + " - 5s 5ms/step - loss: 0.5000 - acc: 0.8000"


def test_dynamic_output_rewrites_line_in_place(console, clock):
    out = console(tty=True)
    fake_fit(clock, epochs=1)
    text = out.getvalue()
    assert "\b" not in text
    assert text.startswith("Train on 1000 samples, validate on 200 samples\nEpoch 1/1\n\r")
    assert text.endswith("\r" + FINAL + "\n")
    frames = text.split("\n")[2].split("\r")[1:]
    assert len(frames) == 10  # 9 batch updates (the last one is drawn at epoch end) + final
    assert frames[0] == (" 100/1000 [==>...........................] - ETA: 4s"
                         " - loss: 0.5000 - acc: 1.0000e-04")
    assert frames[8].startswith(" 900/1000 [==========================>...] - ETA: 0s")


def test_dynamic_pads_shorter_line_with_spaces(console, clock):
    out = console(tty=True)
    bar = Progbar(target=10, stateful_metrics=["loss"])
    clock.now += 1
    bar.update(1, [("loss", 0.0001)])
    clock.now += 1
    bar.update(2, [("loss", 0.5)])
    first, second = out.getvalue().split("\r")[1:]
    assert first == " 1/10 [==>...........................] - ETA: 9s - loss: 1.0000e-04"
    assert second.rstrip(" ") == " 2/10 [=====>........................] - ETA: 8s - loss: 0.5000"
    assert len(second) == len(first)


def test_env_and_jupyter_select_dynamic_mode(console, clock, monkeypatch):
    out = console(tty=False)
    monkeypatch.setenv("KANDLE_PROGBAR", "dynamic")
    fake_fit(clock, epochs=1)
    assert "\r" in out.getvalue()

    out = console(tty=True)
    monkeypatch.setenv("KANDLE_PROGBAR", "static")
    fake_fit(clock, epochs=1)
    assert "\r" not in out.getvalue()

    out = console(tty=False)
    monkeypatch.delenv("KANDLE_PROGBAR")
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    fake_fit(clock, epochs=1)
    assert "\r" in out.getvalue()


def test_dynamic_updates_are_throttled_by_interval(console, clock):
    out = console(tty=True)
    fake_fit(clock, epochs=1, seconds_per_batch=0.02)  # interval is 0.05 s
    frames = out.getvalue().split("\n")[2].split("\r")[1:]
    assert 3 <= len(frames) <= 5
    assert frames[-1].startswith("1000/1000 " + BAR_FULL + " - 0s 200us/step")


def test_static_long_epoch_prints_a_line_every_30_seconds(console, clock):
    out = console(tty=False)
    fake_fit(clock, epochs=1, seconds_per_batch=20.0)
    lines = out.getvalue().split("\n")
    assert "\r" not in out.getvalue()
    progress = [line for line in lines if "ETA" in line]
    assert len(progress) == 4  # at 40 s, 80 s, 120 s, 160 s
    assert progress[0] == (" 200/1000 [=====>........................] - ETA: 2:40"
                           " - loss: 0.2500 - acc: 1.0000e-04")
    assert lines[-2].startswith("1000/1000 " + BAR_FULL + " - 200s 200ms/step")


def test_verbose_2_prints_one_line_per_epoch(console, clock):
    out = console(tty=True)
    fake_fit(clock, verbose=2)
    line = " - 5s - loss: 0.5000 - acc: 0.8000 - val_loss: 0.6000 - val_acc: 0.7500\n"
    assert out.getvalue() == ("Train on 1000 samples, validate on 200 samples\n"
                              "Epoch 1/2\n" + line + "Epoch 2/2\n" + line)


def test_verbose_0_prints_nothing(console, clock):
    out = console(tty=True)
    cbs = fake_fit(clock, verbose=0)
    assert out.getvalue() == ""
    assert cbs.history.history["loss"] == [0.5, 0.5]


def test_validation_inside_fit_draws_no_extra_bar(console, clock):
    out = console(tty=False)
    fake_fit(clock, with_test_hooks=True)
    assert out.getvalue().count("[") == 2


def test_number_format_switches_at_1e_3(console, clock):
    console(tty=False)
    bar = Progbar(target=1, stateful_metrics=["a", "b", "c", "d", "e"])
    values = [("a", 0.0011), ("b", 0.001), ("c", -0.5), ("d", 0.0), ("e", "text")]
    assert bar._metrics_text() == ""
    bar.update(1, values)
    assert sys.stdout.getvalue().endswith(
        " - a: 0.0011 - b: 1.0000e-03 - c: -0.5000 - d: 0.0000e+00 - e: text\n")


def test_keras_example_line(console, clock):
    out = console(tty=True)
    bar = Progbar(target=50000, stateful_metrics=["loss", "acc"])
    clock.now += 352 * 151.5 / (50000 - 352)
    bar.update(352, [("loss", 4.60517), ("acc", 0.01)])
    assert out.getvalue() == ("\r  352/50000 [..............................] - ETA: 2:31"
                              " - loss: 4.6052 - acc: 0.0100")


def test_bar_shapes_and_unknown_target(console, clock):
    out = console(tty=True)
    Progbar(target=10).update(5)
    assert out.getvalue() == "\r 5/10 [==============>...............] - ETA: 0s"
    out = console(tty=True)
    Progbar(target=None).update(42, finalize=True)
    assert out.getvalue() == "\r     42/Unknown - 0s 0us/step\n"


def test_eta_and_time_per_step_formats():
    assert format_eta(3661) == "1:01:01"
    assert format_eta(151) == "2:31"
    assert format_eta(60) == "60s"
    assert format_eta(4.7) == "4s"
    assert format_time_per_unit(2.4) == "2s/step"
    assert format_time_per_unit(0.0014) == "1ms/step"
    assert format_time_per_unit(0.00015) == "150us/step"
    assert format_time_per_unit(0.5, "sample") == "500ms/sample"


def test_non_stateful_values_are_averaged_like_keras(console, clock):
    out = console(tty=False)
    bar = Progbar(target=3)
    bar.update(1, [("a", 1.0)])
    bar.update(3, [("a", 4.0)])
    assert out.getvalue().endswith(" - a: 3.0000\n")


def test_evaluate_bar_has_no_values(console, clock):
    out = console(tty=False)
    cbs = CallbackList(None, add_progbar=True, model=FakeModel(), verbose=1, steps=10,
                       samples=10000, batch_size=1000)
    cbs.on_test_begin({})
    for batch in range(10):
        cbs.on_test_batch_begin(batch, {"batch": batch, "size": 1000})
        clock.now += 0.2
        cbs.on_test_batch_end(batch, {"batch": batch, "size": 1000, "loss": 0.3})
    cbs.on_test_end({"loss": 0.3})
    assert out.getvalue() == "10000/10000 " + BAR_FULL + " - 2s 200us/step\n"


def test_predict_bar_counts_steps_when_samples_unknown(console, clock):
    out = console(tty=False)
    cbs = CallbackList(None, add_progbar=True, verbose=1, steps=4, samples=None)
    cbs.on_predict_begin({})
    for batch in range(4):
        clock.now += 1.0
        cbs.on_predict_batch_end(batch, {"batch": batch, "size": 7})
    cbs.on_predict_end({})
    assert out.getvalue() == "4/4 " + BAR_FULL + " - 4s 1s/step\n"


def test_evaluate_verbose_2_shows_nothing(console, clock):
    out = console(tty=False)
    cbs = CallbackList(None, add_progbar=True, verbose=2, steps=1, samples=10)
    cbs.on_test_begin({})
    cbs.on_test_batch_end(0, {"batch": 0, "size": 10})
    cbs.on_test_end({})
    assert out.getvalue() == ""


def test_interrupted_fit_ends_the_open_line(console, clock):
    out = console(tty=True)
    with pytest.raises(KeyboardInterrupt):
        fake_fit(clock, interrupt_at=(0, 5))
    text = out.getvalue()
    assert text.endswith("\r 500/1000 [==============>...............] - ETA: 2s"
                         " - loss: 0.1000 - acc: 1.0000e-04\n")


def test_messages_start_on_a_new_line(console, clock):
    out = console(tty=True)
    fake_fit(clock, epochs=1, callbacks=[TerminateOnNaN()],
             batch_loss=lambda b: float("nan") if b == 3 else 0.5)
    text = out.getvalue()
    assert "loss: nan - acc: 1.0000e-04   \nBatch 3: Invalid loss, terminating training\n\r" in text
    assert text.endswith("\r 400/1000 [===========>..................] - 2s 5ms/step"
                         " - loss: 0.5000 - acc: 0.8000 - val_loss: 0.6000 - val_acc: 0.7500\n")
