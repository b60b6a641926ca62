"""Check, with REAL Keras 3, that the ``.keras`` files kandle writes open in Keras and behave as in kandle.

Runs where Keras 3 (TensorFlow backend) AND kandle are installed (``pip install . h5py`` into the Keras
virtual environment of ``make_golden.py``). From the repository root:

    /work/kerasenv/bin/python tests/golden/make_keras_export.py

For each model of ``tests/_keras_export_models.py`` it writes, into ``tests/golden/``:

* ``export_<name>.keras`` -- what kandle's ``model.save()`` wrote;
* ``export_<name>.npz`` -- ``x``, ``y``; ``keras_pred``: ``keras.models.load_model(file).predict(x)``;
  ``kandle_pred``: kandle's own prediction; after one more ``train_on_batch(x[:8], y[:8])`` in Keras on
  the loaded model, its weights (``keras_step_<i>``) -- which need the optimizer state kandle exported;
  ``keras_iterations``; ``meta`` (versions, the loss and metrics Keras compiled with).

It fails (and writes nothing) if Keras cannot load a file or predicts more than 1e-5 away from kandle.
"""

import json
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import numpy as np  # noqa: E402

import keras  # noqa: E402

import kandle  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import _keras_export_models as models  # noqa: E402


def main():
    x, y = models.data()
    written = {}
    for name, model in models.build_all(kandle).items():
        path = os.path.join(HERE, f"export_{name}.keras")
        model.save(path)
        theirs = keras.models.load_model(path)
        keras_pred = theirs.predict(x, verbose=0)
        kandle_pred = model.predict(x, verbose=0)
        worst = float(np.abs(keras_pred - kandle_pred).max())
        if worst > 1e-5:
            raise SystemExit(f"{name}: Keras predicts {worst} away from kandle")
        iterations = int(theirs.optimizer.iterations.numpy())
        if iterations != model.optimizer.iterations:
            raise SystemExit(f"{name}: Keras restored iterations={iterations}, kandle has {model.optimizer.iterations}")
        theirs.train_on_batch(x[:8], y[:8])
        arrays = {"x": x, "y": y, "keras_pred": keras_pred, "kandle_pred": kandle_pred,
                  "keras_iterations": np.int64(iterations)}
        arrays.update({f"keras_step_{i}": w for i, w in enumerate(theirs.get_weights())})
        meta = {"keras": keras.__version__, "kandle": kandle.__version__, "numpy": np.__version__,
                "loss": re.sub(r" at 0x[0-9a-f]+", "", str(theirs.loss)), "metrics": [m.name for m in theirs.metrics],
                "optimizer": type(theirs.optimizer).__name__}
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(os.path.join(HERE, f"export_{name}.npz"), **arrays)
        written[name] = (worst, meta)
    for name, (worst, meta) in written.items():
        print(f"export_{name}: Keras loads kandle's file, predicts within {worst:.2e}; {meta}")


if __name__ == "__main__":
    main()
