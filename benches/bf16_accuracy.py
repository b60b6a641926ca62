#!/usr/bin/env python3
"""float32 against mixed_bfloat16 on a CIFAR-100 slice: the tutorial CNN's val_acc per epoch.

The same seed, initial weights and batches for both runs (kandle.utils.set_random_seed before each
build), so that the runs differ only in the precision of Conv2D/Dense products. Writes a JSON
record and prints a table.

    python benches/bf16_accuracy.py                       # 10,000 train / 2,000 test images, 10 epochs
    python benches/bf16_accuracy.py --train 2000 --test 500 --epochs 3 --out /tmp/acc.json
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import TUTORIAL_CNN  # noqa: E402
from fit_epoch import DATA_CANDIDATES, load_cifar100  # noqa: E402


def run(policy, data, epochs, batch):
    import kandle
    from kandle import layers

    (x, y), (xt, yt) = data
    kandle.mixed_precision.set_global_policy(policy)
    kandle.utils.set_random_seed(0)
    model = kandle.Sequential([layers.Input(x.shape[1:])] +
                              [getattr(layers, cls)(*args, **kw) for cls, args, kw in TUTORIAL_CNN])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=["acc"])
    t0 = time.perf_counter()
    h = model.fit(x, y, epochs=epochs, batch_size=batch, validation_data=(xt, yt), shuffle=True, verbose=0)
    kandle.mixed_precision.set_global_policy(None)
    return {"policy": policy, "seconds": time.perf_counter() - t0,
            "val_acc": [float(v) for v in h.history["val_acc"]], "acc": [float(v) for v in h.history["acc"]],
            "loss": [float(v) for v in h.history["loss"]], "predict_dtype": str(model.predict(xt[:2], verbose=0).dtype),
            "first_layer_policy": model.layers[0].dtype_policy.name}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", default=os.path.join(HERE, "BF16_ACCURACY.json"))
    args = p.parse_args()
    import numpy as np
    from kandle import _kandle

    path = next(p for p in DATA_CANDIDATES if os.path.exists(p))
    (x, labels), (xt, labels_t) = load_cifar100(path, args.train, args.test)
    eye = np.eye(100, dtype=np.float32)
    data = ((x / 255.0).astype(np.float32), eye[labels]), ((xt / 255.0).astype(np.float32), eye[labels_t])
    runs = [run(policy, data, args.epochs, args.batch) for policy in ("float32", "mixed_bfloat16")]
    record = {"args": vars(args), "bf16_kernel": _kandle.bf16_kernel()[0], "runs": runs,
              "final_val_acc_difference": runs[1]["val_acc"][-1] - runs[0]["val_acc"][-1]}
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, args.out)
    print("epoch  " + "  ".join(f"{r['policy']:>15}" for r in runs))
    for e in range(args.epochs):
        print(f"{e + 1:5d}  " + "  ".join(f"{r['val_acc'][e]:15.4f}" for r in runs))
    print(f"final val_acc difference (bf16 - f32): {record['final_val_acc_difference']:+.4f}; "
          f"fit seconds {runs[0]['seconds']:.0f} / {runs[1]['seconds']:.0f} (bf16 kernel: {record['bf16_kernel']})")


if __name__ == "__main__":
    main()
