"""Data-parallel training under ``mpiexec -n 2`` (kandle.distribution): the same weights and logs as
one process, identical weights on every process, one progress bar, files written once, stops and
failures shared by all processes, bad use refused."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("_mpi_worker.py")


def mpiexec():
    found = Path(sys.executable).with_name("mpiexec")
    path = str(found) if found.exists() else shutil.which("mpiexec")
    assert path, "mpiexec not found: the test extra installs it (pip install '.[test]' brings mpich)"
    return path


def run(mode, out, n=2, timeout=120, env=None):
    """Runs the worker under mpiexec -n `n` (n=0: alone, without mpiexec); returns (rc, output, seconds)."""
    full = dict(os.environ, **(env or {}))
    full.setdefault("KANDLE_COLLECTIVE_TIMEOUT", "30")
    cmd = [sys.executable, str(WORKER), mode, str(out)]
    if n:
        cmd = [mpiexec(), "-n", str(n)] + cmd
    start = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full)
    return p.returncode, p.stdout + p.stderr, time.monotonic() - start


def load(out, tag, rank):
    with np.load(Path(out) / f"{tag}_{rank}.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    alone, pair, again = (tmp_path_factory.mktemp(n) for n in ("alone", "pair", "again"))
    rc, log, _ = run("equivalence", alone, n=0, env={"KANDLE_TEST_DP": "0"})
    assert rc == 0, log
    rc, pair_log, _ = run("equivalence", pair)
    assert rc == 0, pair_log
    rc, log, _ = run("equivalence", again)
    assert rc == 0, log
    return alone, pair, again, pair_log


@pytest.mark.parametrize("tag", ["sgd", "adam", "train_on_batch"])
def test_two_processes_train_as_one(equivalence, tag):
    alone, pair, _, _ = equivalence
    one, r0, r1 = load(alone, tag, 0), load(pair, tag, 0), load(pair, tag, 1)
    assert one.keys() == r0.keys()
    for k in one:
        # The same arithmetic up to the order of float sums (each process sums its half of the batch).
        np.testing.assert_allclose(r0[k], one[k], rtol=1e-5, atol=1e-6, err_msg=f"{tag}: {k}")
        assert np.array_equal(r0[k], r1[k]), f"{tag}: {k} differs between the two processes"


def test_seeded_runs_repeat_bit_for_bit(equivalence):
    _, pair, again, _ = equivalence
    for tag in ("sgd", "adam", "train_on_batch"):
        a, b = load(pair, tag, 0), load(again, tag, 0)
        for k in a:
            assert np.array_equal(a[k], b[k]), f"{tag}: {k}"


def test_only_process_zero_prints_the_progress_bar(equivalence):
    *_, log = equivalence
    assert log.count("Epoch 1/3") == 1, log
    assert log.count("Epoch 3/3") == 1, log
    assert "rank 0 done" in log and "rank 1 done" in log


def test_a_feed_is_split_too(tmp_path):
    rc, log, _ = run("feed", tmp_path, n=0, env={"KANDLE_TEST_DP": "0"})
    assert rc == 0, log
    one = load(tmp_path, "feed", 0)
    rc, log, _ = run("feed", tmp_path)
    assert rc == 0, log
    r0, r1 = load(tmp_path, "feed", 0), load(tmp_path, "feed", 1)
    for k in one:
        np.testing.assert_allclose(r0[k], one[k], rtol=1e-5, atol=1e-6, err_msg=k)
        assert np.array_equal(r0[k], r1[k]), k


def test_batchnorm_statistics_stay_identical(tmp_path):
    rc, log, _ = run("batchnorm", tmp_path)
    assert rc == 0, log
    r0, r1 = load(tmp_path, "batchnorm", 0), load(tmp_path, "batchnorm", 1)
    assert len(r0) == 11  # conv (2), BN (gamma, beta, moving mean, moving variance), conv (2), dense (2), loss
    assert np.abs(r0["arr_4"]).max() > 1e-3, "the moving mean never moved"
    for k in r0:
        assert np.array_equal(r0[k], r1[k]), k


def test_files_are_written_by_process_zero_and_backups_resume_everywhere(tmp_path):
    rc, log, _ = run("files", tmp_path, env={"EPOCHS": "2"})
    assert rc == 0, log
    assert (tmp_path / "log_0.csv").exists() and not (tmp_path / "log_1.csv").exists()
    assert (tmp_path / "ckpt_0.kandle").exists() and not (tmp_path / "ckpt_1.kandle").exists()
    assert len(list((tmp_path / "backup").iterdir())) == 1
    first = load(tmp_path, "files", 0)
    # Run again for 3 epochs: both processes restore the 2 finished epochs and train the third.
    rc, log, _ = run("files", tmp_path, env={"EPOCHS": "3"})
    assert rc == 0, log
    r0, r1 = load(tmp_path, "files", 0), load(tmp_path, "files", 1)
    assert len(r0["loss"]) == 3 and np.array_equal(r0["loss"][:2], first["loss"])
    for k in r0:
        assert np.array_equal(r0[k], r1[k]), k


def test_a_stop_on_one_process_stops_all(tmp_path):
    rc, log, _ = run("stop_one", tmp_path)
    assert rc == 0, log
    assert len(load(tmp_path, "stop_one", 0)["loss"]) == 1
    assert len(load(tmp_path, "stop_one", 1)["loss"]) == 1


def test_a_killed_process_ends_the_others(tmp_path):
    rc, log, seconds = run("kill", tmp_path, timeout=90)
    assert rc != 0 and seconds < 60, log
    assert "rank 0 done" not in log


def test_a_hung_process_makes_the_others_fail_with_a_clear_error(tmp_path):
    rc, log, seconds = run("hang", tmp_path, timeout=90, env={"KANDLE_COLLECTIVE_TIMEOUT": "3"})
    assert rc != 0 and seconds < 60, log
    assert "process 0 of 2 waited 3 s for the others" in log, log


@pytest.mark.parametrize("mode, message", [
    ("no_initialize", "kandle.distribution.initialize() was not called"),
    ("small_batch", "batch_size=1 is smaller than the number of processes (2)"),
    ("different_data", "the processes were given different data"),
])
def test_bad_use_is_refused(tmp_path, mode, message):
    rc, log, _ = run(mode, tmp_path, timeout=90)
    assert rc != 0 and message in log, log
    assert "ValueError" in log


def test_import_and_single_process_fit_need_no_mpi():
    code = ("import sys, numpy as np, kandle\n"
            "from kandle import layers, models\n"
            "m = models.Sequential([layers.Input((3,)), layers.Dense(2)])\n"
            "m.compile(optimizer='sgd', loss='mse')\n"
            "m.fit(np.ones((4, 3), 'float32'), np.ones((4, 2), 'float32'), verbose=0)\n"
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'\n")
    run_alone(code)


def run_alone(code):
    """Runs `code` in a fresh interpreter, without mpiexec; it must succeed."""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_alone_is_a_world_of_one():
    code = ("import kandle\n"
            "from kandle import distribution\n"
            "distribution.initialize()\n"
            "d = distribution.DataParallel()\n"
            "distribution.set_distribution(d)\n"
            "assert distribution.distribution() is d\n"
            "assert distribution.list_devices() == ['cpu:0'], distribution.list_devices()\n"
            "assert distribution.list_devices('gpu') == []\n")
    run_alone(code)
