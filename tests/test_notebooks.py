"""Executes the tutorial notebooks headless (nbclient, through ``notebooks/run.py``) on a small,
class-balanced slice of the real CIFAR-100, chapter 1, chapter 2 then chapter 3 (ResNet50) in one
temporary folder, and checks what they produce: the history pickles (keys and lengths), the summaries'
parameter totals, the figure files, the over-fitting run, RESULTS.md. About 1.5 minutes on two idle cores
(chapter 3 about 30 s of it; three minutes when the cores are busy).

The dataset archive is found (never downloaded) through $KANDLE_TEST_CIFAR100, the ``shared/datasets``
folder beside the checkout, or kandle's and Keras's caches; without it (or with
KANDLE_TEST_CIFAR100=synthetic) the notebooks run on a small
synthetic archive in the official format (``_synthetic_cifar``), so every machine executes them.
The runner's resume path is checked too: a run killed (SIGKILL, kernel included) in the middle of a fit
and started again ends with every epoch, the earlier ones restored from their backup.
"""

import json
import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest

from _synthetic_cifar import write_cifar100_archive

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ARCHIVE = "cifar-100-python.tar.gz"
SAMPLES, TEST_SAMPLES, EPOCHS, EXTRA_EPOCHS = 256, 128, 1, 1
HISTORY_KEYS = {"loss", "acc", "mean_squared_error", "val_loss", "val_acc", "val_mean_squared_error"}
STEMS = ("01_simple_nn", "02_simple_cnn", "03_resnet")
NEEDED = ("nbclient", "nbformat", "ipykernel", "matplotlib", "seaborn", "pandas", "sklearn", "scipy", "PIL")


def _read(name):
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _find_archive():
    from kandle.utils.data_utils import kandle_home, keras_home

    if os.environ.get("KANDLE_TEST_CIFAR100") == "synthetic":  # the synthetic archive even where the real one is
        return None
    candidates = [os.environ.get("KANDLE_TEST_CIFAR100"), ROOT.parent / "shared" / "datasets" / ARCHIVE,
                  ROOT / "shared" / "datasets" / ARCHIVE, pathlib.Path(kandle_home()) / "datasets" / ARCHIVE,
                  pathlib.Path(keras_home()) / "datasets" / ARCHIVE]
    for c in candidates:
        if c and os.path.isfile(c):
            return os.path.realpath(c)
    return None


# ------------------------------------------------------------------------------- static checks (fast)
@pytest.mark.parametrize("name", ["01_simple_nn.ipynb", "02_simple_cnn.ipynb"])
def test_notebook_is_the_article_ported(name):
    nb = _read(name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.outputs for c in code), "commit the notebooks without outputs"
    sources = "\n".join(c.source for c in code)
    for line in sources.splitlines():
        stripped = line.strip()
        assert not stripped.startswith(("import keras", "from keras", "import tensorflow", "from tensorflow")), line
    assert sum(bool(c.metadata.get("kandle", {}).get("size_knob")) for c in code) == 1
    assert "np.interp(all_fpr" in sources and "scipy.interp" in sources  # the one forced fix, marked
    assert "metrics=['acc', 'mse']" in sources and "batch_size=32" in sources and "optimizer='sgd'" in sources
    assert "pickle.dump(" in sources


def test_resnet_notebook_is_the_assignment_ported():
    nb = _read("03_resnet.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not any(c.outputs for c in code), "commit the notebooks without outputs"
    sources = "\n".join(c.source for c in code)
    for line in sources.splitlines():
        stripped = line.strip()
        assert not stripped.startswith(("import keras", "from keras", "import tensorflow", "from tensorflow")), line
    assert ("from kandle.layers import Flatten, Input, Add, Dense, Activation, ZeroPadding2D, BatchNormalization, "
            "Flatten, Conv2D, AveragePooling2D, MaxPooling2D, GlobalMaxPooling2D, Dropout") in sources
    assert "from kandle.models import Sequential, Model, load_model" in sources
    knobs = [c for c in code if c.metadata.get("kandle", {}).get("size_knob")]
    ch1_knob = next(c for c in _read("01_simple_nn.ipynb").cells if c.metadata.get("kandle", {}).get("size_knob"))
    assert len(knobs) == 1 and knobs[0].source == ch1_knob.source  # chapter 1's knob, unchanged
    # the assignment's code, with one marked change: the final pooling's padding
    for needle in ("def identity_block(X, f, filters, stage, block):",
                   "def convolutional_block(X, f, filters, stage, block, s = 2):",
                   "def ResNet50(input_shape = (64, 64, 3), classes = 6):",
                   "X = Add()([X, X_shortcut])", "model = Model(inputs = X_input, outputs = X, name='ResNet50')",
                   "ResNet50(input_shape=(64, 64, 3), classes=6).summary()",
                   "model = ResNet50(input_shape=(32, 32, 3), classes=100)",
                   "metrics=['acc', 'mse']", "batch_size=32", "optimizer='adam'", "pickle.dump(",
                   "open('simplenn_history.txt', 'rb')", "open('scnn_history.txt', 'rb')"):
        assert needle in sources, needle
    ports = [line for line in sources.splitlines() if "# kandle port:" in line]
    assert len(ports) == 3, ports  # cv2, epochs=EPOCHS, and the pooling
    assert any(line.strip().startswith('X = AveragePooling2D((2,2), name="avg_pool", padding=\'same\')')
               for line in ports)


def _knob_namespace(env, monkeypatch, n_train=1000, n_test=400):
    for var in ("KANDLE_TUTORIAL_SAMPLES", "KANDLE_TUTORIAL_TEST_SAMPLES", "KANDLE_TUTORIAL_EPOCHS",
                "KANDLE_TUTORIAL_EXTRA_EPOCHS"):
        monkeypatch.delenv(var, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    rng = np.random.default_rng(0)
    ns = {"np": np,
          "x_train_original": np.arange(n_train), "y_train_original": rng.integers(0, 100, (n_train, 1)),
          "x_test_original": np.arange(n_test), "y_test_original": rng.integers(0, 100, (n_test, 1))}
    knob = next(c for c in _read("02_simple_cnn.ipynb").cells if c.metadata.get("kandle", {}).get("size_knob"))
    exec(knob.source, ns)
    return ns


def test_size_knob_defaults_to_the_article(monkeypatch, capsys):
    ns = _knob_namespace({}, monkeypatch)
    assert ns["EPOCHS"] == 10 and ns["EXTRA_EPOCHS"] == 20
    assert len(ns["x_train_original"]) == 1000 and len(ns["x_test_original"]) == 400
    assert "1000 training images, 400 test images, 10 epochs + 20 more" in capsys.readouterr().out


def test_size_knob_takes_balanced_slices(monkeypatch):
    ns = _knob_namespace({"KANDLE_TUTORIAL_SAMPLES": "300", "KANDLE_TUTORIAL_EPOCHS": "2",
                          "KANDLE_TUTORIAL_EXTRA_EPOCHS": "3"}, monkeypatch, n_train=5000, n_test=1000)
    assert ns["EPOCHS"] == 2 and ns["EXTRA_EPOCHS"] == 3
    x, y = ns["x_train_original"], ns["y_train_original"]
    assert len(x) == 300 and np.all(np.diff(x) > 0)  # dataset order kept
    counts = np.bincount(y.ravel(), minlength=100)
    assert counts.min() == 3 and counts.max() == 3
    assert len(ns["x_test_original"]) == 100  # 300 / 5 = 60, raised to 100 so every class is there
    assert len(np.unique(ns["y_test_original"])) == 100


# ------------------------------------------------------------------------------ executing both
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    for mod in NEEDED:
        pytest.importorskip(mod)
    tmp = tmp_path_factory.mktemp("tutorial")
    env = _tutorial_env(tmp, SAMPLES, TEST_SAMPLES, EPOCHS, EXTRA_EPOCHS)
    out = tmp / "out"
    proc = subprocess.run([sys.executable, str(NOTEBOOKS / "run.py"), "--out", str(out), "--quiet",
                           "--timeout", "600"], cwd=tmp, env=env, capture_output=True, text=True, timeout=1200)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    return proc, out, summary


def _tutorial_env(tmp, samples, test_samples, epochs, extra_epochs):
    """The runner's environment: a KANDLE_HOME whose dataset cache holds the real archive when this
    machine has one, else a synthetic one; the size knob."""
    (tmp / "home" / "datasets").mkdir(parents=True)
    archive = _find_archive()
    if archive is None:
        write_cifar100_archive(tmp / "home" / "datasets" / ARCHIVE)
    else:
        os.symlink(archive, tmp / "home" / "datasets" / ARCHIVE)
    env = dict(os.environ, KANDLE_HOME=str(tmp / "home"), KANDLE_TUTORIAL_SAMPLES=str(samples),
               KANDLE_TUTORIAL_TEST_SAMPLES=str(test_samples), KANDLE_TUTORIAL_EPOCHS=str(epochs),
               KANDLE_TUTORIAL_EXTRA_EPOCHS=str(extra_epochs))
    for var in ("KANDLE_TUTORIAL_COMMAND", "KANDLE_FIT_BACKUP_DIR"):
        env.pop(var, None)
    return env


def _executed(out, name):
    nbformat = pytest.importorskip("nbformat")
    return nbformat.read(out / name, as_version=4)


@pytest.mark.parametrize("stem", STEMS)
def test_notebook_runs_without_errors(run, stem):
    proc, out, summary = run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(summary["notebooks"]) == list(STEMS)
    assert summary["notebooks"][stem]["error"] is None
    nb = _executed(out, stem + ".ipynb")
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.execution_count is not None
            assert not [o for o in cell.outputs if o.output_type == "error"]
    assert nb.metadata["kernelspec"]["name"] == "python3"
    if _has("nbconvert"):
        assert (out / (stem + ".html")).stat().st_size > 10_000


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_size_knob_was_applied(run):
    _, _, summary = run
    nbs = summary["notebooks"]
    assert nbs["01_simple_nn"]["size_knob"] == {"train_images": SAMPLES, "test_images": TEST_SAMPLES, "epochs": EPOCHS}
    assert nbs["02_simple_cnn"]["size_knob"] == {"train_images": SAMPLES, "test_images": TEST_SAMPLES,
                                                 "epochs": EPOCHS, "extra_epochs": EXTRA_EPOCHS}


def _history(out, fname):
    with open(out / fname, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("fname", ["simplenn_history.txt", "scnn_history.txt", "resnet_history.txt"])
def test_history_pickles(run, fname):
    _, out, _ = run
    history = _history(out, fname)
    assert set(history) == HISTORY_KEYS
    for key in HISTORY_KEYS:
        assert len(history[key]) == EPOCHS and all(np.isfinite(history[key]))
    assert history["mse"] == history["mean_squared_error"]  # the modern alias answers too
    assert 0.0 <= history["val_acc"][0] <= 1.0


def test_summaries_param_totals(run):
    _, _, summary = run
    assert summary["notebooks"]["01_simple_nn"]["total_params"] == 3_623_600
    assert summary["notebooks"]["02_simple_cnn"]["total_params"] == 6_850_792
    text = "".join(o.get("text", "") for c in _executed(run[1], "02_simple_cnn.ipynb").cells
                   if c.cell_type == "code" for o in c.outputs)
    assert "Total params: 6,850,792" in text


def test_resnet_summaries_knob_and_fit(run):
    _, out, summary = run
    ch3 = summary["notebooks"]["03_resnet"]
    assert ch3["size_knob"] == {"train_images": SAMPLES, "test_images": TEST_SAMPLES, "epochs": EPOCHS}
    assert ch3["total_params"] == 23_792_612  # the last summary: the 32x32, 100-class model
    text = "".join(o.get("text", "") for c in _executed(out, "03_resnet.ipynb").cells
                   if c.cell_type == "code" for o in c.outputs)
    assert "Total params: 23,600,006" in text  # the assignment's 64x64, 6-class model, as Keras counts it
    assert "Total params: 23,792,612" in text and "Test Accuracy = " in text
    assert [e["epoch"] for e in ch3["fits"]["resnet"]["epochs"]] == list(range(1, EPOCHS + 1))
    for e in ch3["fits"]["resnet"]["epochs"]:
        assert {"loss", "acc", "val_acc", "val_loss", "val_mean_squared_error", "seconds"} <= set(e)


def test_fits_and_over_fitting_run(run):
    _, _, summary = run
    fits1, fits2 = summary["notebooks"]["01_simple_nn"]["fits"], summary["notebooks"]["02_simple_cnn"]["fits"]
    assert [e["epoch"] for e in fits1["snn"]["epochs"]] == list(range(1, EPOCHS + 1))
    assert [e["epoch"] for e in fits2["scnn"]["epochs"]] == list(range(1, EPOCHS + 1))
    assert [e["epoch"] for e in fits2["scnn_more"]["epochs"]] == list(range(1, EXTRA_EPOCHS + 1))
    for fit in (fits1["snn"], fits2["scnn"], fits2["scnn_more"]):
        for e in fit["epochs"]:
            assert {"loss", "acc", "val_acc", "val_loss", "val_mean_squared_error", "seconds"} <= set(e)


@pytest.mark.parametrize("stem", STEMS)
def test_figure_files_written(run, stem):
    _, out, summary = run
    declared = [name for c in _read(stem + ".ipynb").cells
                for name in c.metadata.get("kandle", {}).get("figures", [])]
    files = sorted(p.stem for p in (out / "figures" / stem).glob("*.png"))
    assert sorted(declared) == files
    for name in declared:
        data = (out / "figures" / stem / (name + ".png")).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    assert summary["notebooks"][stem]["figures"] == [f"figures/{stem}/{n}.png" for n in declared]
    expected = {"02_simple_cnn": ("compare_val_acc", "compare_val_loss", "compare_val_mse", "confusion_matrix",
                                  "roc", "roc_zoom", "more_accuracy", "more_loss"),
                "03_resnet": ("accuracy", "loss", "confusion_matrix", "compare_val_acc", "compare_val_loss",
                              "compare_val_mse")}.get(stem, ())
    for name in expected:
        assert (out / "figures" / stem / (name + ".png")).exists()


def test_results_markdown(run):
    _, out, _ = run
    text = (out / "RESULTS.md").read_text()
    assert "size knob" in text and "0.0233" in text and "6,850,792" in text
    assert "![02_simple_cnn confusion_matrix](figures/02_simple_cnn/confusion_matrix.png)" in text
    assert "## Chapter 3: ResNet50" in text and "23,792,612" in text
    assert "![03_resnet confusion_matrix](figures/03_resnet/confusion_matrix.png)" in text


# ------------------------------------------------------------------------------ resuming a run
def test_the_runner_resumes_an_interrupted_run(tmp_path):
    """Chapter 1 with 12 epochs, killed with its kernel once its fit has backed up an epoch, then run
    again: the run ends with all 12 epochs (those before the kill restored, not run again), the
    history pickle whole, the backups gone; a third run skips the finished notebook."""
    import signal
    import time

    for mod in NEEDED:
        pytest.importorskip(mod)
    epochs = 12
    env = _tutorial_env(tmp_path, 256, 128, epochs, 1)
    out = tmp_path / "out"
    command = [sys.executable, str(NOTEBOOKS / "run.py"), "--out", str(out), "--quiet", "--no-html",
               "--timeout", "600", str(NOTEBOOKS / "01_simple_nn.ipynb")]
    backup = out / "backups" / "01_simple_nn" / "fit-01" / "backup.kandle"
    first = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not backup.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # the runner and its kernel
    first.wait(timeout=60)
    assert backup.exists(), "the fit wrote no backup before the kill"
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    fit = summary["notebooks"]["01_simple_nn"]["fits"]["snn"]
    assert [e["epoch"] for e in fit["epochs"]] == list(range(1, epochs + 1))
    restored = [e["epoch"] for e in fit["epochs"] if e.get("restored")]
    assert restored and restored == list(range(1, len(restored) + 1)) and len(restored) < epochs
    for e in fit["epochs"]:
        assert {"loss", "acc", "val_acc", "val_loss", "seconds"} <= set(e)
    history = _history(out, "simplenn_history.txt")
    assert all(len(history[k]) == epochs for k in HISTORY_KEYS)
    assert not (out / "backups" / "01_simple_nn").exists()
    third = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and "finished in an earlier run" in third.stdout
