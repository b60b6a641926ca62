"""``kandle.callbacks.TensorBoard``: Keras 3's scalar tags and folders, read back from the event files
(TFRecord framing, tensorboardX's protobufs)."""

import struct

import numpy as np
import pytest

from kandle import callbacks, layers, models


def events(folder):
    """Every (tag, step, value or histogram count) in the event files under `folder`."""
    from tensorboardX.proto import event_pb2

    out = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (n,) = struct.unpack("<Q", data[at:at + 8])
            record = data[at + 12:at + 12 + n]
            at += 12 + n + 4
            event = event_pb2.Event()
            event.ParseFromString(record)
            for v in event.summary.value:
                out.append((v.tag, event.step, v.histo.num if v.HasField("histo") else v.simple_value))
    return out


def test_scalars_and_histograms_as_keras_names_them(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 4), dtype=np.float32), np.eye(3, dtype=np.float32)[rng.integers(0, 3, 40)]
    model = models.Sequential([layers.Input((4,)), layers.Dense(5, activation="relu", name="hidden"),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acc"])
    tb = callbacks.TensorBoard(tmp_path / "logs", histogram_freq=1, update_freq=2, write_steps_per_second=True)
    history = model.fit(x, y, batch_size=10, epochs=2, validation_split=0.25, verbose=0, callbacks=[tb])
    train, val = events(tmp_path / "logs" / "train"), events(tmp_path / "logs" / "validation")
    scalars = {(tag, step): value for tag, step, value in train}
    for epoch in range(2):
        assert scalars[("epoch_loss", epoch)] == pytest.approx(history.history["loss"][epoch], rel=1e-6)
        assert scalars[("epoch_acc", epoch)] == pytest.approx(history.history["acc"][epoch], rel=1e-6)
        assert scalars[("epoch_learning_rate", epoch)] == pytest.approx(0.01)
        assert scalars[("epoch_steps_per_second", epoch)] > 0
        assert scalars[("hidden/kernel", epoch)] == 20  # a histogram of the 4x5 kernel
    assert sorted(step for tag, step in scalars if tag == "batch_loss") == [2, 4, 6]  # 3 batches an epoch, every 2nd
    assert {(tag, step) for tag, step, _ in val} == {(t, e) for t in ("epoch_loss", "epoch_acc") for e in (0, 1)}
    assert dict(((t, s), v) for t, s, v in val)[("epoch_loss", 1)] == pytest.approx(history.history["val_loss"][1], rel=1e-6)


def test_what_kandle_does_not_write_says_so():
    with pytest.raises(ValueError, match="kandle does not implement TensorBoard\\(profile_batch"):
        callbacks.TensorBoard(profile_batch=(2, 4))
    with pytest.raises(ValueError, match="update_freq"):
        callbacks.TensorBoard(update_freq="sometimes")
