"""FLOP/s of each Conv2D layer of the tutorial CNN in kandle, forward and backward, batch 32.

Each layer runs alone in a one-layer model on its real input shape: `predict` times the forward pass,
`train_on_batch` (mse against zeros, SGD) the forward + backward + update; backward = the difference.
FLOPs: forward 2*M*K*N for the im2col GEMM (M = batch*out_h*out_w, K = kh*kw*in, N = filters);
backward twice that (weight and input gradients), once for the first layer (no input gradient).
Usage: python benches/conv_flops.py [--steps 10] [--peak 333]
"""

import argparse
import time

import numpy as np

from kandle.layers import Conv2D
from kandle.models import Sequential

# (input shape, filters) of the tutorial CNN's six 3x3 convolutions.
LAYERS = [((32, 32, 3), 32), ((30, 30, 32), 64), ((14, 14, 64), 128), ((12, 12, 128), 256),
          ((10, 10, 256), 512), ((4, 4, 512), 1024)]


def median_time(fn, steps):
    fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--peak", type=float, default=333.0, help="fp32 peak of the machine in GFLOP/s")
    args = p.parse_args()
    rows = ["| layer | input | GFLOP fwd | fwd ms | fwd GFLOP/s | bwd ms | bwd GFLOP/s | % of peak (fwd / bwd) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, (shape, filters) in enumerate(LAYERS):
        model = Sequential([Conv2D(filters, (3, 3), activation="relu", input_shape=shape)])
        model.compile("sgd", "mse")
        x = np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32)
        y = np.zeros((args.batch, *model.output_shape[1:]), dtype=np.float32)
        m = args.batch * model.output_shape[1] * model.output_shape[2]
        flop_fwd = 2.0 * m * 9 * shape[2] * filters
        flop_bwd = flop_fwd * (1 if i == 0 else 2)
        fwd = median_time(lambda: model.predict(x, batch_size=args.batch), args.steps)
        train = median_time(lambda: model.train_on_batch(x, y), args.steps)
        bwd = max(train - fwd, 1e-9)
        rows.append(f"| conv{i + 1} ({filters}) | {shape} | {flop_fwd / 1e9:.2f} | {fwd * 1e3:.1f} | "
                    f"{flop_fwd / fwd / 1e9:.0f} | {bwd * 1e3:.1f} | {flop_bwd / bwd / 1e9:.0f} | "
                    f"{100 * flop_fwd / fwd / 1e9 / args.peak:.0f}% / {100 * flop_bwd / bwd / 1e9 / args.peak:.0f}% |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
