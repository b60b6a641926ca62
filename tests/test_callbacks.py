"""Owns the specification tests of kandle.callbacks (CallbackList, History and the Keras callbacks),
driven by a fake model and a fake fit loop that follows the contract in kandle.callbacks."""

import json
import math
import os
import pickle

import numpy as np
import pytest

from kandle.callbacks import (CSVLogger, Callback, CallbackList, EarlyStopping, History,
                              HistoryDict, LambdaCallback, LearningRateScheduler, ModelCheckpoint,
                              ProgbarLogger, ReduceLROnPlateau, TerminateOnNaN)
from kandle.callbacks.callback import resolve_mode


class FakeOptimizer:
    def __init__(self, learning_rate=0.01):
        self._lr = learning_rate

    @property
    def learning_rate(self):
        return self._lr

    @learning_rate.setter
    def learning_rate(self, value):
        self._lr = float(value)

    lr = learning_rate


class FakeModel:
    def __init__(self):
        self.stop_training = False
        self.history = None
        self.optimizer = FakeOptimizer()
        self.weights = [np.zeros(2)]
        self.saved = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def save(self, filepath, overwrite=True):
        self.saved.append(("model", filepath))
        with open(filepath, "w") as f:
            f.write("model")

    def save_weights(self, filepath, overwrite=True):
        self.saved.append(("weights", filepath))
        with open(filepath, "w") as f:
            f.write("weights")


def fit(model, callbacks, epoch_logs, steps=2, batch_loss=0.5, interrupt_epoch=None):
    """Fake fit: epoch `e` ends with `epoch_logs[e]`; the weights become [e, e] in epoch e."""
    cbs = CallbackList(callbacks, add_history=True, model=model, verbose=0,
                       epochs=len(epoch_logs), steps=steps, samples=steps * 10, batch_size=10,
                       do_validation=any(k.startswith("val_") for k in epoch_logs[0]),
                       metrics=list(epoch_logs[0]))
    model.stop_training = False
    cbs.on_train_begin({})
    try:
        for epoch, logs in enumerate(epoch_logs):
            if epoch == interrupt_epoch:
                raise KeyboardInterrupt
            cbs.on_epoch_begin(epoch, {})
            for batch in range(steps):
                cbs.on_train_batch_begin(batch, {"batch": batch, "size": 10})
                model.weights = [np.full(2, float(epoch))]
                cbs.on_train_batch_end(batch, {"batch": batch, "size": 10, "loss": batch_loss})
                if model.stop_training:
                    break
            cbs.on_epoch_end(epoch, dict(logs))
            if model.stop_training:
                break
    finally:
        cbs.on_train_end({})
    return cbs.history


def val_losses(*values):
    return [{"loss": 1.0, "val_loss": v} for v in values]


class Recorder(Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        attr = object.__getattribute__(self, name)
        if name.startswith("on_"):
            def record(*args):
                object.__getattribute__(self, "calls").append(name)
                return attr(*args)
            return record
        return attr


# -- CallbackList ----------------------------------------------------------------------------

def test_callback_list_order_params_and_model():
    model, mine = FakeModel(), Callback()
    cbs = CallbackList([mine], add_history=True, add_progbar=True, model=model, verbose=1,
                       epochs=3)
    assert isinstance(cbs.callbacks[0], ProgbarLogger)
    assert cbs.callbacks[1] is mine and isinstance(cbs.callbacks[-1], History)
    assert cbs.history is cbs.callbacks[-1]
    assert all(c.model is model and c.params == {"verbose": 1, "epochs": 3} for c in cbs)
    own = History()
    assert CallbackList([own], add_history=True).history is own
    assert len(CallbackList(Callback(), add_history=False)) == 1


def test_hook_order_and_keras2_batch_hooks():
    rec = Recorder()
    fit(FakeModel(), [rec], val_losses(1.0), steps=1)
    assert rec.calls == ["on_train_begin", "on_epoch_begin", "on_train_batch_begin",
                         "on_batch_begin", "on_train_batch_end", "on_batch_end", "on_epoch_end",
                         "on_train_end"]

    class Old(Callback):
        seen = []

        def on_batch_end(self, batch, logs=None):
            self.seen.append((batch, logs["loss"]))

    cbs = CallbackList([Old()])
    cbs.on_batch_end(4, {"loss": 2.0})       # Keras 2 name on the list
    cbs.on_train_batch_end(5, {"loss": 3.0})
    assert Old.seen == [(4, 2.0), (5, 3.0)]


def test_logs_dict_is_shared_and_train_end_reaches_everyone():
    class Boom(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["extra"] = 1.0

        def on_train_end(self, logs=None):
            raise RuntimeError("boom")

    history = History()
    cbs = CallbackList([Boom(), history], model=FakeModel())
    cbs.on_train_begin()
    cbs.on_epoch_end(0, {"loss": 1.0})
    assert history.history == {"loss": [1.0], "extra": [1.0]}
    closed = []
    cbs.append(LambdaCallback(on_train_end=lambda logs: closed.append(True)))
    with pytest.raises(RuntimeError):
        cbs.on_train_end()
    assert closed == [True]


# -- History ---------------------------------------------------------------------------------

def test_history_records_floats_and_sets_model_history():
    model = FakeModel()
    logs = [{"loss": np.float32(0.5), "acc": np.float64(0.25), "batch": 3, "size": 10,
             "val_loss": 0.75}] * 2
    history = fit(model, [], logs)
    assert model.history is history
    assert history.epoch == [0, 1]
    assert history.history == {"loss": [0.5, 0.5], "acc": [0.25, 0.25],
                               "val_loss": [0.75, 0.75]}
    assert all(type(v) is float for values in history.history.values() for v in values)
    assert history.params["epochs"] == 2 and history.model is model


def test_history_dict_aliases():
    h = HistoryDict(mean_squared_error=[1.0], acc=[0.5], val_accuracy=[0.25], val_mae=[2.0],
                    lr=[0.1])
    assert h["mse"] == [1.0] and h["accuracy"] == [0.5] and h["val_acc"] == [0.25]
    assert h["val_mean_absolute_error"] == [2.0] and h["learning_rate"] == [0.1]
    assert h.get("mse") == [1.0] and h.get("nope") is None
    assert "mse" not in h and "mean_squared_error" in h
    assert sorted(h) == sorted(h.keys()) == ["acc", "lr", "mean_squared_error", "val_accuracy",
                                             "val_mae"]
    assert len(h) == 5 and dict(h) == {k: h[k] for k in h}
    with pytest.raises(KeyError):
        h["val_loss"]
    assert json.loads(json.dumps(h)) == dict(h)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_history_dict_pickle_round_trip(protocol):
    h = fit(FakeModel(), [], [{"loss": 1.0, "accuracy": 0.5, "val_mse": 0.1}]).history
    back = pickle.loads(pickle.dumps(h, protocol))
    assert type(back) is HistoryDict and back == h
    assert back["acc"] == [0.5] and back["val_mean_squared_error"] == [0.1]


# -- EarlyStopping ---------------------------------------------------------------------------

def test_early_stopping_patience():
    model = FakeModel()
    stop = EarlyStopping(monitor="val_loss", patience=2)
    history = fit(model, [stop], val_losses(1.0, 0.5, 0.6, 0.55, 0.4, 0.3))
    assert history.epoch == [0, 1, 2, 3]
    assert stop.stopped_epoch == 3 and stop.best == 0.5 and model.stop_training
    stop0 = EarlyStopping(patience=0, min_delta=0.2)
    assert fit(FakeModel(), [stop0], val_losses(1.0, 0.9, 0.1)).epoch == [0, 1]


def test_early_stopping_restores_best_weights_and_reports(capsys):
    model = FakeModel()
    stop = EarlyStopping(patience=1, restore_best_weights=True, verbose=1)
    fit(model, [stop], val_losses(1.0, 0.5, 0.7, 0.8))
    assert stop.best_epoch == 1 and np.array_equal(model.weights[0], [1.0, 1.0])
    out = capsys.readouterr().out
    assert "Epoch 00003: early stopping\n" in out
    assert "Restoring model weights from the end of the best epoch: 2.\n" in out

    model = FakeModel()  # interrupted by the user: on_train_end still restores
    with pytest.raises(KeyboardInterrupt):
        fit(model, [EarlyStopping(patience=5, restore_best_weights=True)],
            val_losses(0.5, 0.9, 1.0), interrupt_epoch=2)
    assert np.array_equal(model.weights[0], [0.0, 0.0])


def test_early_stopping_mode_auto_baseline_start_and_missing_monitor():
    stop = EarlyStopping(monitor="val_acc", patience=1)
    logs = [{"loss": 1.0, "val_acc": v} for v in (0.5, 0.6, 0.55, 0.7)]
    assert fit(FakeModel(), [stop], logs).epoch == [0, 1, 2] and stop.best == 0.6
    plateau = val_losses(0.5, 0.45, 0.45, 0.45, 0.45)
    assert fit(FakeModel(), [EarlyStopping(patience=2)], plateau).epoch == [0, 1, 2, 3]
    stop = EarlyStopping(patience=2, baseline=0.4)  # improvements above the baseline don't count
    assert fit(FakeModel(), [stop], plateau).epoch == [0, 1, 2]
    stop = EarlyStopping(patience=0, start_from_epoch=2)
    assert fit(FakeModel(), [stop], val_losses(1, 2, 3, 4)).epoch == [0, 1, 2, 3]
    alias = EarlyStopping(monitor="val_acc", patience=0)
    fit(FakeModel(), [alias], [{"val_accuracy": 0.9}])
    assert alias.best == 0.9
    with pytest.warns(RuntimeWarning, match="val_loss"):
        fit(FakeModel(), [EarlyStopping()], [{"loss": 1.0}])


def test_mode_auto_names():
    assert resolve_mode("auto", "val_acc", "X") == "max"
    assert resolve_mode("auto", "val_accuracy", "X") == "max"
    assert resolve_mode("auto", "auc", "X") == "max"
    assert resolve_mode("auto", "val_loss", "X") == "min"
    assert resolve_mode("auto", "mean_squared_error", "X") == "min"
    assert resolve_mode("min", "val_acc", "X") == "min"
    with pytest.warns(RuntimeWarning, match="unknown"):
        assert resolve_mode("sideways", "loss", "X") == "min"


# -- ModelCheckpoint -------------------------------------------------------------------------

def test_model_checkpoint_names_files_with_epoch_and_logs(tmp_path):
    model = FakeModel()
    path = tmp_path / "sub" / "w.{epoch:02d}-{val_loss:.2f}.h5"
    fit(model, [ModelCheckpoint(path)], val_losses(0.5, 0.25))
    assert model.saved == [("model", str(tmp_path / "sub" / "w.01-0.50.h5")),
                           ("model", str(tmp_path / "sub" / "w.02-0.25.h5"))]
    assert os.path.exists(model.saved[0][1])


def test_model_checkpoint_save_best_only(tmp_path, capsys):
    model = FakeModel()
    path = str(tmp_path / "best-{epoch}.w")
    fit(model, [ModelCheckpoint(path, save_best_only=True, save_weights_only=True, verbose=1)],
        val_losses(0.5, 0.7, 0.25))
    assert model.saved == [("weights", path.format(epoch=1)), ("weights", path.format(epoch=3))]
    out = capsys.readouterr().out
    assert "\nEpoch 00001: val_loss improved from inf to 0.50000, saving model to " in out
    assert "\nEpoch 00002: val_loss did not improve from 0.50000\n" in out

    model = FakeModel()  # mode auto for accuracies, names looked up through aliases
    fit(model, [ModelCheckpoint(str(tmp_path / "{val_acc:.1f}"), monitor="val_acc",
                                save_best_only=True)],
        [{"val_accuracy": v} for v in (0.5, 0.4, 0.8)])
    assert [os.path.basename(p) for _, p in model.saved] == ["0.5", "0.8"]

    model = FakeModel()
    fit(model, [ModelCheckpoint(str(tmp_path / "t"), save_best_only=True,
                                initial_value_threshold=0.3)], val_losses(0.5, 0.2))
    assert len(model.saved) == 1


def test_model_checkpoint_save_freq_and_period(tmp_path):
    model = FakeModel()
    fit(model, [ModelCheckpoint(str(tmp_path / "e{epoch}b{batch}"), save_freq=3)],
        val_losses(1, 1, 1), steps=2)
    assert [os.path.basename(p) for _, p in model.saved] == ["e2b0", "e3b1"]
    model = FakeModel()
    fit(model, [ModelCheckpoint(str(tmp_path / "p{epoch}"), period=2)], val_losses(1, 1, 1, 1))
    assert [os.path.basename(p) for _, p in model.saved] == ["p2", "p4"]
    with pytest.raises(ValueError):
        ModelCheckpoint("x", save_freq="batch")


# -- CSVLogger -------------------------------------------------------------------------------

def test_csv_logger_writes_header_and_rows_and_appends(tmp_path):
    path = tmp_path / "log.csv"
    logs = [{"loss": 0.5, "acc": 0.25, "val_loss": 0.75}, {"loss": 0.25, "acc": 0.5,
                                                            "val_loss": 0.5}]
    fit(FakeModel(), [CSVLogger(path)], logs)
    assert path.read_text() == "epoch,acc,loss,val_loss\n0,0.25,0.5,0.75\n1,0.5,0.25,0.5\n"
    fit(FakeModel(), [CSVLogger(path, append=True)], logs[:1])
    assert path.read_text().splitlines()[1:] == ["0,0.25,0.5,0.75", "1,0.5,0.25,0.5",
                                                 "0,0.25,0.5,0.75"]
    fit(FakeModel(), [CSVLogger(path, separator=";")], [{"loss": 1.0}])
    assert path.read_text() == "epoch;loss\n0;1.0\n"


def test_csv_logger_flushes_each_epoch_and_closes_after_interrupt(tmp_path):
    path = tmp_path / "log.csv"
    logger = CSVLogger(path)
    seen = []
    peek = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(path.read_text()))
    with pytest.raises(KeyboardInterrupt):
        fit(FakeModel(), [logger, peek], val_losses(0.5, 0.4, 0.3), interrupt_epoch=2)
    assert seen[0] == "epoch,loss,val_loss\n0,1.0,0.5\n"
    assert logger.csv_file.closed
    assert path.read_text().count("\n") == 3


# -- learning rate callbacks -----------------------------------------------------------------

def test_reduce_lr_on_plateau(capsys):
    model = FakeModel()
    reduce = ReduceLROnPlateau(factor=0.5, patience=1, min_lr=0.003, verbose=1)
    history = fit(model, [reduce], val_losses(1.0, 1.0, 1.0, 1.0))
    assert history.history["lr"] == [0.01, 0.01, 0.005, 0.003]
    assert history.history["learning_rate"] == history.history["lr"]
    assert model.optimizer.learning_rate == 0.003
    assert "\nEpoch 00002: ReduceLROnPlateau reducing learning rate to 0.005.\n" in \
        capsys.readouterr().out

    model = FakeModel()
    fit(model, [ReduceLROnPlateau(factor=0.1, patience=0, cooldown=2)],
        val_losses(1.0, 1.0, 1.0, 1.0, 1.0))
    assert model.optimizer.lr == pytest.approx(0.0001)  # reduced at epochs 1 and 3 (0-based)
    with pytest.raises(ValueError):
        ReduceLROnPlateau(factor=1.0)


def test_learning_rate_scheduler_both_signatures(capsys):
    model = FakeModel()
    rates = []
    watch = LambdaCallback(on_epoch_begin=lambda e, logs: rates.append(model.optimizer.lr))
    fit(model, [LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1)), watch], val_losses(1, 1))
    assert rates == [0.1, 0.05]

    def halve(epoch, lr):
        return lr / 2

    model = FakeModel()
    history = fit(model, [LearningRateScheduler(halve, verbose=1)], val_losses(1, 1))
    assert model.optimizer.learning_rate == 0.0025 and history.history["lr"] == [0.005, 0.0025]
    assert "\nEpoch 00002: LearningRateScheduler setting learning rate to 0.0025.\n" in \
        capsys.readouterr().out
    with pytest.raises(ValueError):
        fit(FakeModel(), [LearningRateScheduler(lambda epoch: "fast")], val_losses(1))


# -- TerminateOnNaN and LambdaCallback -------------------------------------------------------

@pytest.mark.parametrize("bad", [math.nan, math.inf, np.float32("nan")])
def test_terminate_on_nan(bad, capsys):
    model = FakeModel()
    history = fit(model, [TerminateOnNaN()], val_losses(1, 1, 1), batch_loss=bad)
    assert model.stop_training and history.epoch == [0]
    assert "Batch 0: Invalid loss, terminating training\n" in capsys.readouterr().out
    model = FakeModel()
    assert fit(model, [TerminateOnNaN()], val_losses(1, 1)).epoch == [0, 1]


def test_lambda_callback():
    events = []
    cb = LambdaCallback(on_epoch_begin=lambda e, logs: events.append(("eb", e)),
                        on_epoch_end=lambda e, logs: events.append(("ee", e, logs["val_loss"])),
                        on_batch_end=lambda b, logs: events.append(("be", b)),
                        on_train_begin=lambda logs: events.append("tb"),
                        on_train_end=lambda logs: events.append("te"),
                        on_test_begin=lambda logs: events.append("test"))
    fit(FakeModel(), [cb], val_losses(0.5), steps=2)
    assert events == ["tb", ("eb", 0), ("be", 0), ("be", 1), ("ee", 0, 0.5), "te"]
    cb.on_test_begin({})
    assert events[-1] == "test"
