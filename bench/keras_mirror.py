"""Benchmark: one training epoch of the Keras mirror against the same network built from Keras' own parts.

    MNIST_DATA_DIR=../shared/data/mnist python -m bench.keras_mirror [--repeats 5] [--threads 2]

"ours":     build_model (ScratchDense + ScratchSoftmax) trained through compile_for_training
            (logits model, our cross-entropy from logits, ScratchAdam).
"built-in": the same 784-128-64-10 network from keras.layers.Dense (relu hidden layers, linear
            logits), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            keras.optimizers.Adam, the same accuracy metric.

Both are built, compiled and warmed up (one untimed epoch each, which also traces the train
function), then timed epoch by epoch, both back to back in each repeat and in alternating order
(ours, built-in, built-in, ours, ...), so that load from other processes hits both alike. Reports
median / min / max seconds per epoch and the ratio ours / built-in: of the medians, of the minima
(the least disturbed epochs) and the median of the per-repeat ratios. Thread counts are set before
TensorFlow starts (TF intra-/inter-op, OMP/OpenBLAS) and printed with the load average, since the
numbers mean nothing without them. Not a unit test: timing belongs here, not in tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from bench.support import start_tensorflow, summary, tensorflow_threads, write_json


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs per implementation (default 5)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=60_000, help="training samples per epoch (default 60000)")
    parser.add_argument("--threads", type=int, default=2,
                        help="TensorFlow intra-op threads (also OMP/OpenBLAS threads); default 2")
    parser.add_argument("--inter-op-threads", type=int, default=1, help="TensorFlow inter-op threads (default 1)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--jit-compile", action="store_true", help="compile both with XLA")
    parser.add_argument("--synthetic", action="store_true",
                        help="random MNIST-shaped data instead of real MNIST (timing does not depend on values)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures here as JSON")
    return parser.parse_args(argv)


def load_data(args):
    import numpy as np

    if not args.synthetic:
        try:
            from training.data import load_mnist

            (x, y), _ = load_mnist(os.environ.get("MNIST_DATA_DIR") or None)
            return x[:args.samples], y[:args.samples], "MNIST"
        except Exception as error:  # noqa: BLE001 - report and fall back
            print(f"real MNIST unavailable ({error}); using synthetic data", file=sys.stderr)
    rng = np.random.default_rng(args.seed)
    x = rng.random((args.samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, args.samples)
    return x, y, "synthetic"


def builtin_model(keras, sizes, seed):
    inputs = keras.Input((sizes[0],), name="pixels")
    x = inputs
    for i, units in enumerate(sizes[1:-1]):
        x = keras.layers.Dense(units, activation="relu", kernel_initializer=keras.initializers.HeNormal(seed + i),
                               name=f"hidden_{i + 1}")(x)
    logits = keras.layers.Dense(sizes[-1], kernel_initializer=keras.initializers.HeNormal(seed + len(sizes) - 2),
                                name="logits")(x)
    return keras.Model(inputs, logits, name="builtin_logits")


def main(argv=None):
    args = parse_args(argv)
    tf = start_tensorflow(args.threads, args.inter_op_threads)
    import keras
    import numpy as np

    x, y, source = load_data(args)
    models = build_models(keras, args)
    print_settings(tf, keras, np, args, x, source)
    timer = EpochTimer(models, x, y, args.batch_size)
    warm = timer.warm_up()
    print("warm-up epoch (includes tracing): " + ", ".join(f"{k} {v:.2f}s" for k, v in warm.items()))
    timer.alternate(args.repeats)
    ratios = print_results(timer)
    write_json(args.json, {
        "data": source, "samples": int(x.shape[0]), "batch_size": args.batch_size, "repeats": args.repeats,
        "jit_compile": args.jit_compile, "threads": {**tensorflow_threads(tf), "blas": args.threads},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__},
        "warmup_seconds": warm, "seconds": timer.seconds, "cpu_seconds": timer.cpu_seconds,
        "train_accuracy": {k: float(v) for k, v in timer.accuracy.items()}, "pair_ratios": ratios["pairs"]})
    return ratios["medians"]


def build_models(keras, args) -> dict:
    """"ours" (the mirror through compile_for_training) and "built-in" (Keras' own parts), compiled alike."""
    from model.keras_network import build_model, compile_for_training

    sizes = (784, 128, 64, 10)
    ours = compile_for_training(build_model(sizes, "relu", seed=args.seed), "adam", args.learning_rate,
                                jit_compile=args.jit_compile)
    theirs = builtin_model(keras, sizes, args.seed)
    theirs.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                   jit_compile=args.jit_compile)
    return {"ours": ours, "built-in": theirs}


def print_settings(tf, keras, np, args, x, source: str) -> None:
    threads = tensorflow_threads(tf)
    print(f"data: {source}, {x.shape[0]} samples, batch {args.batch_size}, "
          f"{-(-x.shape[0] // args.batch_size)} steps per epoch, jit_compile={args.jit_compile}")
    print(f"threads: TF intra-op {threads['intra_op']}, inter-op {threads['inter_op']}, "
          f"OMP/OpenBLAS {args.threads}; cpu_count {os.cpu_count()}; "
          f"load average before {os.getloadavg()[0]:.2f}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, NumPy {np.__version__}")


class EpochTimer:
    """One ``fit`` epoch at a time of each model: wall and process CPU seconds, last train accuracy."""

    def __init__(self, models: dict, x, y, batch_size: int):
        self.models, self.x, self.y, self.batch_size = models, x, y, batch_size
        self.seconds = {name: [] for name in models}
        self.cpu_seconds = {name: [] for name in models}
        self.accuracy = {}

    def epoch(self, name: str) -> float:
        start, start_cpu = time.perf_counter(), time.process_time()
        history = self.models[name].fit(self.x, self.y, batch_size=self.batch_size, epochs=1, shuffle=False,
                                        verbose=0)
        self.cpu_seconds[name].append(time.process_time() - start_cpu)
        self.accuracy[name] = history.history["accuracy"][-1]
        return time.perf_counter() - start

    def warm_up(self) -> dict[str, float]:
        """One untimed epoch each (it traces the train function); their seconds."""
        warm = {name: self.epoch(name) for name in self.models}
        for values in self.cpu_seconds.values():
            values.clear()
        return warm

    def alternate(self, repeats: int) -> None:
        """``repeats`` timed epochs each; which one goes first alternates, so neither always follows the other."""
        names = list(self.models)
        for repeat in range(repeats):
            for name in (names if repeat % 2 == 0 else names[::-1]):
                self.seconds[name].append(self.epoch(name))


def print_results(timer: EpochTimer) -> dict:
    """The table and the ratios ours / built-in: of the medians, of the minima, per repeat."""
    times, cpu = timer.seconds, timer.cpu_seconds
    print()
    print(f"{'implementation':<15}{'median s':>10}{'min s':>9}{'max s':>9}{'CPU s':>8}{'train acc':>11}  "
          f"wall seconds per epoch")
    for name, values in times.items():
        figures = summary(values)
        print(f"{name:<15}{figures['median']:>10.3f}{figures['min']:>9.3f}{figures['max']:>9.3f}"
              f"{statistics.median(cpu[name]):>8.3f}{timer.accuracy[name]:>11.4f}  "
              + " ".join(f"{v:.2f}" for v in values))
    ratio_median = statistics.median(times["ours"]) / statistics.median(times["built-in"])
    ratio_min = min(times["ours"]) / min(times["built-in"])
    # Each repeat times the two back to back: the ratio within a pair cancels slow load changes.
    pair_ratios = [a / b for a, b in zip(times["ours"], times["built-in"])]
    print()
    print(f"ratio ours / built-in: of medians {ratio_median:.3f}, of minima {ratio_min:.3f}, "
          f"median of per-repeat ratios {statistics.median(pair_ratios):.3f} "
          f"(range {min(pair_ratios):.2f}-{max(pair_ratios):.2f}); target <= 1.1")
    print(f"CPU-time ratio (median process CPU seconds per epoch, less sensitive to other processes): "
          f"{statistics.median(cpu['ours']) / statistics.median(cpu['built-in']):.3f}")
    print(f"load average after {os.getloadavg()[0]:.2f}")
    return {"medians": ratio_median, "pairs": pair_ratios}


if __name__ == "__main__":
    main()
