"""`kandle.callbacks.BackupAndRestore`: a fit killed (SIGKILL) after epoch 2 of 4 and started again
ends with the uninterrupted fit's weights bit for bit, its remaining epochs' losses identical and a
History of all 4 epochs; a kill inside the backup's write leaves the previous backup usable; a backup
of another model or compile configuration is refused; completed fits delete their backup, interrupted
ones keep it; the runner's automatic backups (``KANDLE_FIT_BACKUP_DIR``) restore finished fits and
resume the interrupted one.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from kandle.callbacks import BackupAndRestore, Callback
from kandle.layers import BatchNormalization, Dense, Dropout, Flatten, Input
from kandle.models import Model, Sequential, save_model

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

# A functional model with Dropout (its own random stream), BatchNormalization (moving statistics),
# shuffling and Adam (its moments and step count): everything a resume has to bring back.
SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    import numpy as np
    from kandle.callbacks import BackupAndRestore, Callback
    from kandle.layers import BatchNormalization, Dense, Dropout, Flatten, Input
    from kandle.models import Model

    from kandle.utils import set_random_seed

    set_random_seed(5)  # the same initial weights in every process (the comparison needs them)
    backup, out, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(0)
    x = rng.random((96, 6, 6, 2)).astype("float32")
    y = np.eye(4)[rng.integers(0, 4, 96)]
    inp = Input((6, 6, 2))
    h = Dense(12, activation="relu")(Flatten()(inp))
    h = Dropout(0.4, seed=3)(BatchNormalization()(h))
    model = Model(inp, Dense(4, activation="softmax")(h))
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["acc"])

    class Kill(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [BackupAndRestore(backup)] if backup != "-" else []
    history = model.fit(x, y, batch_size=16, epochs=4, validation_split=0.25, callbacks=callbacks + [Kill()])
    np.savez(out, *model.get_weights())
    with open(out + ".json", "w") as f:
        json.dump({"history": history.history, "epoch": history.epoch}, f)
""")


def _run(tmp_path, *args, env=None):
    script = tmp_path / "fit.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def _result(path):
    weights = np.load(str(path) + ".npz")
    with open(str(path) + ".json") as f:
        return [weights[k] for k in sorted(weights.files, key=lambda k: int(k.split("_")[1]))], json.load(f)


def test_killed_after_epoch_2_of_4_resumes_bit_for_bit(tmp_path):
    ok = _run(tmp_path, "-", tmp_path / "straight", 0)
    assert ok.returncode == 0, ok.stderr[-2000:]
    backup = tmp_path / "backup"
    killed = _run(tmp_path, backup, tmp_path / "never", 2)
    assert killed.returncode == -signal.SIGKILL
    assert (backup / "backup.kandle").exists() and not (tmp_path / "never.npz").exists()
    resumed = _run(tmp_path, backup, tmp_path / "resumed", 0)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Epoch 1/4 (restored from backup)" in resumed.stdout and "Epoch 2/4 (restored from backup)" in resumed.stdout
    assert "Epoch 3/4\n" in resumed.stdout and "Epoch 3/4 (restored" not in resumed.stdout
    (w_straight, h_straight), (w_resumed, h_resumed) = _result(tmp_path / "straight"), _result(tmp_path / "resumed")
    assert len(w_straight) == len(w_resumed) == 8  # two Dense pairs and BN's four
    for a, b in zip(w_straight, w_resumed):
        assert a.tobytes() == b.tobytes()
    # the History covers all four epochs, the restored two included, with the same values
    assert h_resumed["epoch"] == [0, 1, 2, 3]
    assert h_resumed["history"] == h_straight["history"]
    assert not backup.exists()  # a completed fit deletes its backup


CHILD_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from kandle.callbacks import BackupAndRestore
    from kandle.layers import Dense, Input
    from kandle.models import Sequential

    model = Sequential([Input((256,)), Dense(512), Dense(512), Dense(10)])
    model.compile(optimizer="adam", loss="mse")
    x, y = np.ones((4000, 256), np.float32), np.zeros((4000, 10), np.float32)
    print("ready", flush=True)
    model.fit(x, y, batch_size=8, epochs=1000, verbose=0, callbacks=[BackupAndRestore(sys.argv[1], save_freq=1)])
""")


def _model_for_writer():
    model = Sequential([Input((256,)), Dense(512), Dense(512), Dense(10)])
    model.compile(optimizer="adam", loss="mse")
    return model


def test_a_kill_inside_the_backup_write_leaves_the_previous_backup_usable(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(CHILD_WRITER)
    backup = tmp_path / "backup"
    kills_inside_write = 0
    for attempt in range(6):
        child = subprocess.Popen([sys.executable, str(script), str(backup)], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        # wait for a backup to exist, then for the next write's temporary file: kill inside that write
        while time.monotonic() < deadline and not (backup / "backup.kandle").exists():
            time.sleep(0.005)
        while time.monotonic() < deadline:
            if any(name.startswith(".backup.kandle.tmp") for name in os.listdir(backup)):
                kills_inside_write += 1
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        model = _model_for_writer()
        callback = BackupAndRestore(str(backup), delete_checkpoint=False)
        model.fit(np.ones((8, 256), np.float32), np.zeros((8, 10), np.float32), epochs=0, verbose=0,
                  callbacks=[callback])  # restores (and raises on an unreadable backup), trains nothing
        assert model._core.iterations > 0  # the optimizer's state came back with the weights
    assert kills_inside_write >= 3


def _data(n=32):
    rng = np.random.default_rng(1)
    return rng.random((n, 5)).astype("float32"), np.eye(3)[rng.integers(0, 3, n)]


def _small(units=7, optimizer="sgd"):
    model = Sequential([Input((5,)), Dense(units, activation="relu"), Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["acc"])
    return model


class _Interrupt(Callback):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt


def _interrupted_backup(folder, model=None):
    x, y = _data()
    model = model or _small()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[BackupAndRestore(str(folder)), _Interrupt(0)])
    assert (folder / "backup.kandle").exists()  # an interrupted fit keeps its backup
    return model


@pytest.mark.parametrize("other", [lambda: _small(units=8), lambda: _small(optimizer="adam"),
                                   lambda: Sequential([Input((5,)), Dense(7), Dropout(0.1), Dense(3)])])
def test_a_backup_of_another_model_is_refused(tmp_path, other):
    _interrupted_backup(tmp_path / "b")
    model = other()
    if model.optimizer is None:
        model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acc"])
    before = [w.copy() for w in model.get_weights()]
    x, y = _data()
    with pytest.raises(ValueError, match="written by a different model"):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[BackupAndRestore(str(tmp_path / "b"))])
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))  # nothing was loaded
    assert (tmp_path / "b" / "backup.kandle").exists()  # nor deleted


def test_the_same_architecture_built_again_restores(tmp_path):
    """A second run of the same script gets other automatic layer names (dense_3 for dense_1): still
    its own backup."""
    first = _interrupted_backup(tmp_path / "b")
    again = _small()
    assert [l.name for l in again.layers] != [l.name for l in first.layers]
    x, y = _data()
    history = again.fit(x, y, epochs=3, verbose=0, callbacks=[BackupAndRestore(str(tmp_path / "b"))])
    assert history.epoch == [0, 1, 2] and len(history.history["loss"]) == 3
    assert not (tmp_path / "b").exists()


def test_a_plain_model_file_is_not_a_backup(tmp_path):
    model = _small()
    (tmp_path / "b").mkdir()
    save_model(model, str(tmp_path / "b" / "backup.kandle"))
    x, y = _data()
    with pytest.raises(ValueError, match="not a BackupAndRestore backup"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[BackupAndRestore(str(tmp_path / "b"))])


def test_delete_checkpoint_false_keeps_it_and_a_finished_backup_restores_everything(tmp_path):
    x, y = _data()
    model = _small()
    first = model.fit(x, y, epochs=2, verbose=0, callbacks=[BackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)])
    assert (tmp_path / "b" / "backup.kandle").exists()
    again = _small()
    second = again.fit(x, y, epochs=2, verbose=0, callbacks=[BackupAndRestore(str(tmp_path / "b"), delete_checkpoint=False)])
    assert second.history == first.history and second.epoch == [0, 1]
    for a, b in zip(model.get_weights(), again.get_weights()):
        assert np.array_equal(a, b)


def test_save_freq_in_batches_backs_up_mid_epoch(tmp_path):
    x, y = _data(64)

    class StopMidEpoch(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if self.params and batch == 1 and getattr(self, "epoch", 0) == 1:
                raise KeyboardInterrupt

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

    model = _small()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, batch_size=16, verbose=0,
                  callbacks=[BackupAndRestore(str(tmp_path / "b"), save_freq=2), StopMidEpoch()])
    again = _small()
    history = again.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[BackupAndRestore(str(tmp_path / "b"))])
    # as Keras: the interrupted epoch (index 1) is run again from its start, with the backup's weights
    assert history.epoch == [0, 1, 2]


def test_double_checkpoint_falls_back_to_the_previous_backup(tmp_path):
    x, y = _data()
    model = _small()
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=4, verbose=0, callbacks=[BackupAndRestore(str(tmp_path / "b"), double_checkpoint=True),
                                                        _Interrupt(1)])
    latest = tmp_path / "b" / "backup.kandle"
    assert (tmp_path / "b" / "backup.kandle.bkp").exists()
    data = bytearray(latest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    latest.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="Could not load"):  # without the fallback the damage is reported
        _small().fit(x, y, epochs=4, verbose=0, callbacks=[BackupAndRestore(str(tmp_path / "b"))])
    again = _small()
    history = again.fit(x, y, epochs=4, verbose=0,
                        callbacks=[BackupAndRestore(str(tmp_path / "b"), double_checkpoint=True)])
    assert history.epoch == [0, 1, 2, 3] and len(history.history["loss"]) == 4


@pytest.mark.parametrize("bad", [0, -2, 1.5, "batch", True])
def test_bad_save_freq(bad, tmp_path):
    with pytest.raises(ValueError, match="save_freq"):
        BackupAndRestore(str(tmp_path), save_freq=bad)


def test_empty_backup_dir():
    with pytest.raises(ValueError, match="Empty `backup_dir`"):
        BackupAndRestore("")


AUTOMATIC = textwrap.dedent("""
    import os, signal, sys, json
    import numpy as np
    from kandle.callbacks import Callback
    from kandle.layers import Dense, Input
    from kandle.models import Sequential

    from kandle.utils import set_random_seed

    set_random_seed(6)
    rng = np.random.default_rng(2)
    x, y = rng.random((40, 5)).astype("float32"), np.eye(3)[rng.integers(0, 3, 40)]
    model = Sequential([Input((5,)), Dense(6, activation="relu"), Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acc"])

    class Kill(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if sys.argv[1] == "kill" and epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)

    first = model.fit(x, y, epochs=3, verbose=1)
    second = model.fit(x, y, epochs=4, verbose=1, callbacks=[Kill()])
    print("RESULT", json.dumps([first.history["loss"], second.history["loss"],
                                [float(w.sum()) for w in model.get_weights()]]))
""")


def test_automatic_backups_restore_finished_fits_and_resume_the_interrupted_one(tmp_path):
    script = tmp_path / "auto.py"
    script.write_text(AUTOMATIC)
    plain = subprocess.run([sys.executable, str(script), "run"], capture_output=True, text=True, timeout=300)
    env = dict(os.environ, KANDLE_FIT_BACKUP_DIR=str(tmp_path / "backups"))
    killed = subprocess.run([sys.executable, str(script), "kill"], capture_output=True, text=True, timeout=300, env=env)
    assert killed.returncode == -signal.SIGKILL
    assert sorted(os.listdir(tmp_path / "backups")) == ["fit-01", "fit-02"]
    resumed = subprocess.run([sys.executable, str(script), "run"], capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # the first fit ran no epoch again; the second was killed at its epoch 2's end, before the backup
    # (callbacks run in order, the automatic backup last), so it resumes after its epoch 1
    assert resumed.stdout.count("(restored from backup)") == 3 + 1
    result = lambda p: json.loads(p.stdout.split("RESULT ", 1)[1])
    assert result(resumed) == result(plain)
    assert sorted(os.listdir(tmp_path / "backups")) == ["fit-01", "fit-02"]  # kept for the next rerun
