"""A process killed (SIGKILL) at any moment of ``model.save`` leaves the previous file intact.

A child process saves a 7 MB model (Adam state included) over and over, each version with all its
weights set to the version number, and prints each version once ``save`` has returned. The parent
kills it at a random moment (most of a child's time is spent inside ``save``), every other time
right after the save's temporary file appears (so inside the write itself), then loads the file:
it must load without error, hold one single version (no mix of two), and that version must be the
last one reported or the one being written when the kill came, predicting as that version does.
The temporary files of the killed saves are the only litter allowed, and the next successful save
removes them.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from kandle.layers import Dense, Input
from kandle.models import Sequential, load_model

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

KILLS = 20

CHILD = """
import sys
import numpy as np
from kandle.layers import Dense, Input
from kandle.models import Sequential

path, version = sys.argv[1], int(sys.argv[2])
model = Sequential([Input((256,)), Dense(640), Dense(640), Dense(10)])
model.compile(optimizer="adam", loss="mse")
model.train_on_batch(np.zeros((2, 256), np.float32), np.zeros((2, 10), np.float32))
shapes = [w.shape for w in model.get_weights()]
print("ready", flush=True)
while True:
    model.set_weights([np.full(s, version / 1000, np.float32) for s in shapes])
    model.save(path)
    print(version, flush=True)
    version += 1
"""


def architecture():
    return Sequential([Input((256,)), Dense(640), Dense(640), Dense(10)])


def version_of(model):
    """The one version all weights belong to (fails for a mix)."""
    values = np.unique(np.concatenate([w.ravel() for w in model.get_weights()]))
    assert len(values) == 1, f"the file mixes versions: {values[:5]}"
    return int(round(float(values[0]) * 1000))


def wait_for_temporary(folder, timeout=5.0):
    """Returns once a new save's temporary file exists (a leftover from an earlier kill does not count)."""
    known = set(os.listdir(folder))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(n.startswith(".model.kandle.tmp-") for n in set(os.listdir(folder)) - known):
            return
    raise AssertionError("the child never started writing")


def test_sigkill_during_save_leaves_a_loadable_file(tmp_path):
    path = tmp_path / "model.kandle"
    rng = np.random.default_rng(int(time.time()))
    x = np.random.default_rng(0).random((4, 256), dtype=np.float32)
    reference = architecture()
    last = None
    inside = 0  # kills that landed inside a write, leaving that save's temporary file
    for kill in range(KILLS):
        start = 0 if last is None else last + 1
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(start)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        if last is None:  # the first child must complete a save before the game starts
            last = int(child.stdout.readline())
        if kill % 2:
            wait_for_temporary(tmp_path)
            time.sleep(rng.uniform(0.0, 0.01))
        else:
            time.sleep(rng.uniform(0.0, 0.15))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        reported = [int(line) for line in child.stdout.read().split()]
        child.stdout.close()
        child.stderr.close()
        if reported:
            last = reported[-1]
        inside += any(n.startswith(f".model.kandle.tmp-{child.pid}-") for n in os.listdir(tmp_path))
        loaded = load_model(path)
        version = version_of(loaded)
        # The last reported version, or the next one if its rename happened before the kill.
        assert version in (last, last + 1), (version, last)
        last = version
        reference.set_weights([np.full(w.shape, version / 1000, np.float32) for w in reference.get_weights()])
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), reference.predict(x, verbose=0))
    leftovers = [n for n in os.listdir(tmp_path) if n != "model.kandle"]
    assert all(n.startswith(".model.kandle.tmp-") for n in leftovers), leftovers
    # Some kills did land inside the write (each left its temporary file behind).
    assert inside, "no kill landed while a temporary file was being written"
    # The next successful save to the same path removes what the killed saves left behind.
    loaded.save(path)
    assert os.listdir(tmp_path) == ["model.kandle"], os.listdir(tmp_path)
