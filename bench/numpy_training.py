"""How fast is the vectorised NumPy network, against the tutorial's per-sample loop and against the machine?

    python -m bench.numpy_training                  # 3 repeats, 1 BLAS thread, full per-sample epoch
    python -m bench.numpy_training --threads 2 --repeats 5
    python -m bench.numpy_training --loop-samples 6000   # time the slow loop on a tenth, scale to 60k

In one run, alternating so that machine noise hits every variant alike, it times one epoch over the
60,000 MNIST training images of:

- ``NumpyNetwork.fit`` (784-128-64-10, ReLU, cross-entropy, Adam) at batch 128 and batch 32;
- the tutorial's per-sample loop, as published (one forward, backward and SGD update per image, as
  vectors, float64, sigmoid, the diagonal-only MSE), the baseline the targets refer to;
- a per-sample loop of *our* network (ReLU, biases, cross-entropy, float32), to separate what
  vectorising buys from what float32 and ReLU buy;

and the float32 matrix-product throughput of this machine at the shapes an epoch uses, to say how close
the vectorised epoch comes to the hardware: an epoch costs about
``6 * 60000 * (784*128 + 128*64 + 64*10)`` floating-point operations (2 for the forward product,
4 for the two backward ones, per weight and image).

Timing is median (min-max) over ``--repeats``. The BLAS thread count is set with threadpoolctl and
printed: with 2 BLAS threads on a busy 2-core machine, matrix products slow down many times over, so a
figure means little without the thread count it was measured with.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
from threadpoolctl import threadpool_limits

from bench.support import blas_libraries, cpu_model, summary, write_json
from model import numpy_optimizers
from model.numpy_activations import relu, softmax
from model.numpy_network import NumpyNetwork

SIZES = (784, 128, 64, 10)
EPOCH_FLOPS_PER_IMAGE = 6 * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))


def tutorial_epoch(x, y, learning_rate=0.001, seed=0):
    """The tutorial as published: per image, W @ a with (out, in) weights and no biases, sigmoid
    hidden layers, float64, the MSE-style loss through the softmax Jacobian's diagonal, and an SGD
    update from np.outer products. Activation derivatives recompute exp() as the tutorial does."""
    rng = np.random.default_rng(seed)
    params = {"W1": rng.standard_normal((128, 784)) * np.sqrt(1.0 / 128),
              "W2": rng.standard_normal((64, 128)) * np.sqrt(1.0 / 64),
              "W3": rng.standard_normal((10, 64)) * np.sqrt(1.0 / 10)}

    def sigmoid(z, derivative=False):
        if derivative:
            return np.exp(-z) / ((np.exp(-z) + 1) ** 2)
        return 1 / (1 + np.exp(-z))

    def softmax_vector(z, derivative=False):
        exps = np.exp(z - z.max())
        if derivative:
            return exps / np.sum(exps, axis=0) * (1 - exps / np.sum(exps, axis=0))
        return exps / np.sum(exps, axis=0)

    targets = np.eye(10)[y] * 0.99 + 0.01
    for xi, ti in zip(x.astype(np.float64), targets):
        params["A0"] = xi
        params["Z1"] = params["W1"] @ params["A0"]
        params["A1"] = sigmoid(params["Z1"])
        params["Z2"] = params["W2"] @ params["A1"]
        params["A2"] = sigmoid(params["Z2"])
        params["Z3"] = params["W3"] @ params["A2"]
        output = softmax_vector(params["Z3"])
        error = 2 * (output - ti) / output.shape[0] * softmax_vector(params["Z3"], derivative=True)
        change = {"W3": np.outer(error, params["A2"])}
        error = (params["W3"].T @ error) * sigmoid(params["Z2"], derivative=True)
        change["W2"] = np.outer(error, params["A1"])
        error = (params["W2"].T @ error) * sigmoid(params["Z1"], derivative=True)
        change["W1"] = np.outer(error, params["A0"])
        for key, value in change.items():
            params[key] -= learning_rate * value


def per_sample_epoch(params, x, y, learning_rate=0.01):
    """Our network (ReLU, biases, cross-entropy, float32) trained one image at a time, as vectors."""
    w1, b1, w2, b2, w3, b3 = params
    for xi, yi in zip(x, y):
        z1 = xi @ w1 + b1
        a1 = relu(z1)
        z2 = a1 @ w2 + b2
        a2 = relu(z2)
        z3 = a2 @ w3 + b3
        p = softmax(z3[None, :])[0]
        delta3 = p.copy()
        delta3[yi] -= 1                      # dL/dz3 for cross-entropy, one sample
        delta2 = (w3 @ delta3) * (z2 > 0)
        delta1 = (w2 @ delta2) * (z1 > 0)
        w3 -= learning_rate * np.outer(a2, delta3)
        b3 -= learning_rate * delta3
        w2 -= learning_rate * np.outer(a1, delta2)
        b2 -= learning_rate * delta2
        w1 -= learning_rate * np.outer(xi, delta1)
        b1 -= learning_rate * delta1


def matmul_gflops(m, k, n, seconds=0.5):
    """Sustained float32 GFLOP/s of (m x k) @ (k x n)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
    a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - started) / 1e9


def load_training_images(data_dir):
    from training.data import load_mnist

    (x, y), _ = load_mnist(data_dir)
    return x, y


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (threadpoolctl)")
    parser.add_argument("--loop-samples", type=int, default=60000,
                        help="images the per-sample loop runs on; its epoch time is scaled to 60,000")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $MNIST_DATA_DIR, then the cache)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures here as JSON")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    x, y = load_training_images(args.data_dir)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        blas = blas_libraries()
        results = time_epochs(x, y, args.repeats, args.loop_samples)
        peaks = {"128x784x128": matmul_gflops(128, 784, 128), "2048^3": matmul_gflops(2048, 2048, 2048)}
    epoch_flops = EPOCH_FLOPS_PER_IMAGE * len(x)
    print_results(results, peaks, epoch_flops, blas, len(x), args)
    write_json(args.json, {
        "repeats": args.repeats, "threads": args.threads, "blas": blas, "images": len(x),
        "loop_samples": min(args.loop_samples, len(x)), "epoch_flops": epoch_flops,
        "seconds": results, "peak_gflops": peaks,
        "versions": {"python": platform.python_version(), "numpy": np.__version__}})


def time_epochs(x, y, repeats: int, loop_samples: int) -> dict[str, list[float]]:
    """Seconds per 60,000-image epoch of each variant, ``repeats`` times, the variants alternating."""
    n = len(x)
    results = {"vectorised, batch 128": [], "vectorised, batch 32": [], "per-sample loop, our network": [],
               "per-sample loop, tutorial": []}
    subset = slice(0, min(loop_samples, n))
    scale = n / len(x[subset])  # the per-sample loops run on a subset, scaled to the whole epoch
    for repeat in range(repeats):
        for batch in (128, 32):
            net = NumpyNetwork(SIZES, seed=repeat)
            started = time.perf_counter()
            net.fit(x, y, epochs=1, batch_size=batch, optimizer=numpy_optimizers.Adam(1e-3), verbose=False,
                    seed=repeat)
            results[f"vectorised, batch {batch}"].append(time.perf_counter() - started)
        net = NumpyNetwork(SIZES, seed=repeat)
        started = time.perf_counter()
        per_sample_epoch(net.params, x[subset], y[subset])
        results["per-sample loop, our network"].append((time.perf_counter() - started) * scale)
        started = time.perf_counter()
        tutorial_epoch(x[subset], y[subset], seed=repeat)
        results["per-sample loop, tutorial"].append((time.perf_counter() - started) * scale)
        print(f"repeat {repeat + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.items()),
              file=sys.stderr, flush=True)
    return results


def print_results(results: dict, peaks: dict, epoch_flops: float, blas: list[str], n: int, args) -> None:
    peak_layer = peaks["128x784x128"]
    loop = statistics.median(results["per-sample loop, tutorial"])
    print(f"\nMachine: {os.cpu_count()} cores, {cpu_model(platform.processor() or platform.machine())}, "
          f"Python {platform.python_version()}, NumPy {np.__version__}; {'; '.join(blas)}")
    print(f"One epoch = {n} images = {epoch_flops / 1e9:.1f} GFLOP "
          f"(6 x {EPOCH_FLOPS_PER_IMAGE // 6} weights x images). Repeats: {args.repeats}.\n")
    print("| variant | epoch seconds, median (min-max) | GFLOP/s | share of (128x784)@(784x128) peak | "
          "speed-up over the tutorial's loop |")
    print("|---|---|---|---|---|")
    for name, values in results.items():
        figures = summary(values)
        median = figures["median"]
        print(f"| {name} | {median:.2f} ({figures['min']:.2f}-{figures['max']:.2f}) | {epoch_flops / median / 1e9:.1f} | "
              f"{epoch_flops / median / 1e9 / peak_layer:.0%} | {loop / median:.1f}x |")
    ours = statistics.median(results["per-sample loop, our network"])
    print(f"\nVectorised batch 128 vs the per-sample loop of the same (our) network: "
          f"{ours / statistics.median(results['vectorised, batch 128']):.1f}x")
    print(f"float32 matmul throughput: (128x784)@(784x128) {peak_layer:.1f} GFLOP/s, "
          f"2048^3 {peaks['2048^3']:.1f} GFLOP/s")
    if args.loop_samples < n:
        print(f"(per-sample loop timed on {args.loop_samples} images and scaled to {n})")


if __name__ == "__main__":
    main()
