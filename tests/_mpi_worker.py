"""Run by tests/test_distribution.py under ``mpiexec -n N`` (or alone): one data-parallel scenario
per mode, results written to ``<out>/<mode>_<rank>.npz`` (weights, History, predictions)."""

import os
import sys
import time

import numpy as np

import kandle
from kandle import callbacks, distribution, layers, models

mode, out = sys.argv[1], sys.argv[2]
parallel = os.environ.get("KANDLE_TEST_DP", "1") == "1"
if mode != "no_initialize":
    distribution.initialize()
if parallel:
    distribution.set_distribution(distribution.DataParallel())
group = distribution.distribution()._group if distribution.distribution() else None
rank = group.rank if group is not None else 0


def data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8, 8, 3)).astype("float32")
    y = np.eye(5, dtype="float32")[rng.integers(0, 5, n)]
    return x, y


def cnn():
    return models.Sequential([layers.Input((8, 8, 3)), layers.Conv2D(4, 3, activation="relu"), layers.MaxPooling2D(),
                              layers.Flatten(), layers.Dense(16, activation="relu"),
                              layers.Dense(5, activation="softmax")])


def bn_model():
    inp = layers.Input((8, 8, 3))
    a = layers.Conv2D(4, 3, padding="same")(inp)
    a = layers.BatchNormalization(axis=3)(a)
    b = layers.Conv2D(4, 1, padding="same")(inp)
    z = layers.Activation("relu")(layers.Add()([a, b]))
    z = layers.Dropout(0.3)(layers.Flatten()(z))
    return models.Model(inp, layers.Dense(5, activation="softmax")(z))


def save(tag, model, **arrays):
    np.savez(os.path.join(out, f"{tag}_{rank}.npz"), *model.get_weights(), **arrays)


def run():
    kandle.utils.set_random_seed(1)
    x, y = data()
    if mode == "equivalence":
        # The tutorial's plain SGD (the fused update path when alone), shuffled, with a validation split
        # and a last batch of 20; then Adam with a batch that splits 17/16.
        m = cnn()
        m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acc", "mse"])
        h = m.fit(x, y, batch_size=32, epochs=3, validation_split=0.1, verbose=1)
        save("sgd", m, loss=h.history["loss"], val_loss=h.history["val_loss"], acc=h.history["acc"],
             pred=m.predict(x[:37], batch_size=8), ev=m.evaluate(x, y, batch_size=16, verbose=0))
        m = cnn()
        m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["acc"])
        h = m.fit(x, y, batch_size=33, epochs=2, verbose=0, shuffle=True)
        save("adam", m, loss=h.history["loss"])
        m = cnn()
        m.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["acc"])
        logs = [m.train_on_batch(x[i:i + 32], y[i:i + 32]) for i in range(0, 96, 32)]
        save("train_on_batch", m, logs=np.array(logs), test=m.test_on_batch(x[:32], y[:32]),
             pred=m.predict_on_batch(x[:5]))
    elif mode == "feed":
        def batches():
            for i in range(0, 160, 32):
                yield x[i:i + 32], y[i:i + 32]
        m = cnn()
        m.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acc"])
        h = m.fit(batches(), epochs=1, verbose=0)
        save("feed", m, loss=h.history["loss"], pred=m.predict(x[:10], batch_size=4))
    elif mode == "batchnorm":
        m = bn_model()
        m.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["acc"])
        h = m.fit(x, y, batch_size=32, epochs=2, verbose=0)
        save("batchnorm", m, loss=h.history["loss"])
    elif mode == "files":
        m = cnn()
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
        cbs = [callbacks.CSVLogger(os.path.join(out, f"log_{rank}.csv")),
               callbacks.ModelCheckpoint(os.path.join(out, f"ckpt_{rank}.kandle")),
               callbacks.BackupAndRestore(os.path.join(out, "backup"), delete_checkpoint=False)]
        h = m.fit(x, y, batch_size=32, epochs=int(os.environ["EPOCHS"]), verbose=0, callbacks=cbs)
        save("files", m, loss=h.history["loss"])
    elif mode == "stop_one":
        class StopOnOne(callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if rank == 1:
                    self.model.stop_training = True
        m = cnn()
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
        h = m.fit(x, y, batch_size=32, epochs=5, verbose=0, callbacks=[StopOnOne()])
        save("stop_one", m, loss=h.history["loss"])
    elif mode in ("kill", "hang"):
        class Die(callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if rank == 1 and batch == 2:
                    if mode == "kill":
                        os.kill(os.getpid(), 9)
                    time.sleep(1000)
        m = cnn()
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
        m.fit(x, y, batch_size=32, epochs=5, verbose=0, callbacks=[Die()])
    elif mode == "small_batch":
        m = cnn()
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
        m.fit(x, y, batch_size=1, epochs=1, verbose=0)
    elif mode == "different_data":
        m = cnn()
        m.compile(optimizer="sgd", loss="categorical_crossentropy")
        m.fit(x[: 100 + rank], y[: 100 + rank], batch_size=32, epochs=1, verbose=0)


try:
    run()
except Exception as exc:  # reported per rank, for the test to read
    print(f"rank {rank} raised {type(exc).__name__}: {exc}", flush=True)
    raise
print(f"rank {rank} done", flush=True)
