"""FLOP/s of each Conv2D layer of the tutorial CNN in kandle, forward and backward, batch 32.

Each convolution runs on its real input shape in a small model, `Activation('linear')` -> Conv2D ->
Flatten -> Dense(1): the leading no-op layer makes the convolution compute its input gradient, as
inside the tutorial CNN (a model's first layer skips it), and the Dense(1) head keeps the loss cheap.
`predict` times the forward pass, `train_on_batch` (mse, SGD) forward + backward + update; backward =
the difference (the head's share is negligible). FLOPs: forward 2*M*K*N for the im2col GEMM
(M = batch*out_h*out_w, K = kh*kw*in, N = filters); backward twice that (weight and input gradients),
once for conv1, which is the first layer in the tutorial CNN too (no input gradient). These are the
direct convolution's FLOPs for every layer: conv4 and conv5 run Winograd's F(2x2, 3x3), which needs
2.25x fewer multiplications, so their figures are effective rates and can exceed what the GEMMs do. Times are the
fastest of `--steps` calls (noise on a shared machine only adds time).
Usage: python benches/conv_flops.py [--steps 10] [--peak 333]
"""

import argparse
import time

import numpy as np

from kandle.layers import Activation, Conv2D, Dense, Flatten, Input
from kandle.models import Sequential

# (input shape, filters) of the tutorial CNN's six 3x3 convolutions.
LAYERS = [((32, 32, 3), 32), ((30, 30, 32), 64), ((14, 14, 64), 128), ((12, 12, 128), 256),
          ((10, 10, 256), 512), ((4, 4, 512), 1024)]


def best_time(fn, steps):
    """The fastest of `steps` calls: on a shared, noisy machine other load only ever adds time, and
    backward = train - forward needs both terms free of it."""
    fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--peak", type=float, default=333.0, help="fp32 peak of the machine in GFLOP/s")
    args = p.parse_args()
    rows = ["| layer | input | GFLOP fwd | fwd ms | fwd GFLOP/s | fwd % of peak | bwd ms | bwd GFLOP/s | bwd % of peak |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, (shape, filters) in enumerate(LAYERS):
        conv = Conv2D(filters, (3, 3), activation="relu")
        first = [conv] if i == 0 else [Activation("linear"), conv]
        model = Sequential([Input(shape)] + first + [Flatten(), Dense(1)])
        model.compile("sgd", "mse")
        x = np.random.default_rng(0).random((args.batch, *shape), dtype=np.float32)
        y = np.zeros((args.batch, 1), dtype=np.float32)
        m = args.batch * conv.output_shape[1] * conv.output_shape[2]
        flop_fwd = 2.0 * m * 9 * shape[2] * filters
        flop_bwd = flop_fwd * (1 if i == 0 else 2)
        fwd = best_time(lambda: model.predict(x, batch_size=args.batch), args.steps)
        train = best_time(lambda: model.train_on_batch(x, y), args.steps)
        bwd = train - fwd
        if bwd <= 0:  # too small to separate from the noise
            bwd_cols = "— | — | —"
        else:
            bwd_cols = f"{bwd * 1e3:.1f} | {flop_bwd / bwd / 1e9:.0f} | {100 * flop_bwd / bwd / 1e9 / args.peak:.0f}%"
        fwd_rate = flop_fwd / fwd / 1e9
        rows.append(f"| conv{i + 1} ({filters}) | {shape} | {flop_fwd / 1e9:.2f} | {fwd * 1e3:.1f} | "
                    f"{fwd_rate:.0f} | {100 * fwd_rate / args.peak:.0f}% | {bwd_cols} |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
