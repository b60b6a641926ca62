"""A kandle backup (or model file) of the tutorial's ResNet50 continued side by side in Keras and
kandle: the model and its Adam state go to Keras through kandle's .keras export, then both train
on the same shuffled CIFAR-100 batches; mean losses per 50 steps, then both evaluate 1000 test
images. A check that chapter 3's full run (notebooks/RESULTS.md) trains as Keras would from where
it stands. Run in an environment with both installed (the Keras venv with kandle pip-installed):

    /work/kerasenv/bin/python benches/resnet50_from_backup.py out/tutorial/backups/03_resnet/fit-01/backup.kandle 400

Measured 2026-12-01 from the backup after epoch 8 (Adam, 12,504 steps): mean losses Keras/kandle
2.805/2.800 (steps 1-50), 2.754/2.735 (101-150), 2.807/3.082 (151-200, a spike in kandle's run),
2.810/2.908 (351-400); evaluate on 1000 test images: loss 6.21/5.83, acc 0.260/0.218 (both far
from the training loss: BatchNormalization's moving statistics, in Keras as in kandle).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import kandle  # noqa: E402
import keras  # noqa: E402


def main(path, steps, export="/tmp/resnet50_from_backup.keras"):
    d = kandle.models.load_model(path)
    d.save(export)
    k = keras.models.load_model(export)
    print("keras iterations", int(k.optimizer.iterations), type(k.optimizer).__name__, "kandle", d._core.iterations,
          flush=True)
    (x, y), (xt, yt) = kandle.datasets.cifar100.load_data()
    idx = np.random.default_rng(1).permutation(len(x))
    lk, ld = [], []
    for s in range(steps):
        b = idx[s * 32:(s + 1) * 32]
        xb, yb = x[b].astype("float32") / 255, np.eye(100, dtype="float32")[y[b, 0]]
        lk.append(float(np.asarray(k.train_on_batch(xb, yb)).ravel()[0]))
        ld.append(float(np.asarray(d.train_on_batch(xb, yb)).ravel()[0]))
        if (s + 1) % 50 == 0:
            print(f"steps {s - 48:4d}-{s + 1:4d}: mean loss keras {np.mean(lk[-50:]):.4f}  kandle {np.mean(ld[-50:]):.4f}",
                  flush=True)
    xv, yv = xt[:1000].astype("float32") / 255, np.eye(100, dtype="float32")[yt[:1000, 0]]
    print("evaluate on 1000 test images: keras", k.evaluate(xv, yv, verbose=0), "kandle", d.evaluate(xv, yv, verbose=0))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 400)
