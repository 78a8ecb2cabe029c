"""Test accuracy against training time: the NumPy network, the Keras mirror and built-in Keras, side by side.

    python -m bench.training_accuracy                       # 30 epochs each, ~4 minutes on 2 cores
    python -m bench.training_accuracy --epochs 10 --repeats 2 --json out.json --plot acc.png

The same 784-128-64-10 ReLU network is trained with the hyperparameters of ``python training/train.py``
(Adam at 2e-3 with cosine decay to 0 over all steps, batch 128, random shifts of up to 2 pixels from
``training.augment.epoch_data``, the same 90/10 stratified split, seed 0) by:

- **numpy**:    ``NumpyNetwork`` with our NumPy Adam (``model/numpy_network.py``, ``model/numpy_optimizers.py``);
- **mirror**:   the Keras mirror: ``build_model`` (ScratchDense) through ``compile_for_training`` with our
  ``ScratchAdam`` and our cross-entropy from the logits (what ``train.py`` trains);
- **built-in**: ``keras.layers.Dense`` + ``keras.optimizers.Adam`` + ``keras.optimizers.schedules.CosineDecay``
  + ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``.

The three are trained epoch by epoch in turn (the order rotates each epoch), so that load from other
processes hits all three alike; every engine gets exactly the same data each epoch. After each epoch
the test accuracy on the official 10,000 test images is measured (not timed). Training time is the
cumulative wall time of the epochs' ``fit`` calls only (the epoch's data is prepared once, untimed).
Reports, per engine: final test accuracy, seconds per epoch (median, min, max over the epochs) and
cumulative time to reach 97 % and 98 % test accuracy (or "not reached"); with ``--repeats`` > 1
(seeds 0, 1, ...), the median, min and max of those over the repeats.

Threads are set before TensorFlow starts (``--threads``, default 1: TF intra-op and inter-op, and
OpenBLAS through threadpoolctl for NumPy), and printed: on a busy 2-core machine a single thread is
what keeps timings stable. The test set is used for this curve only; nothing is selected on it.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from bench.support import (blas_libraries, pyplot, save_figure, start_tensorflow, summary, tensorflow_threads,
                           write_json)

SIZES = (784, 128, 64, 10)
TARGETS = (0.97, 0.98)
ENGINES = ("numpy", "mirror", "built-in")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30, help="epochs (the cosine decays to 0 over them); default 30")
    add_recipe_options(parser)
    parser.add_argument("--repeats", type=int, default=1, help="runs with seeds 0, 1, ... (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="TF intra-op threads and BLAS threads (default 1)")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated subset of {','.join(ENGINES)}")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $MNIST_DATA_DIR, then the cache)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
    parser.add_argument("--plot", type=Path, default=None, help="write the accuracy-vs-time plot here (PNG)")
    return parser.parse_args(argv)


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """The training recipe's options that the training benchmarks share (bench/backends.py too), with
    ``python training/train.py``'s defaults."""
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--augment-shift", type=int, default=2)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--limit-train", type=int, default=None, metavar="N", help="first N training images only")


def recipe_settings(args) -> dict:
    """The recipe as the results' ``settings`` record it."""
    return {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
            "schedule": "cosine", "augment_shift": args.augment_shift,
            "validation_fraction": args.validation_fraction, "limit_train": args.limit_train}


def load_training_data(args):
    """MNIST from ``--data-dir`` (else the usual search), the training set cut to ``--limit-train``:
    ``((x_train, y_train), (x_test, y_test))``."""
    from training.data import load_mnist

    (x_train, y_train), test = load_mnist(args.data_dir)
    if args.limit_train:
        x_train, y_train = x_train[:args.limit_train], y_train[:args.limit_train]
    return (x_train, y_train), test


def time_to(history: list[dict], target: float):
    """Cumulative training seconds at the first epoch whose test accuracy reaches ``target``."""
    for row in history:
        if row["test_accuracy"] >= target:
            return row["seconds_cumulative"], row["epoch"]
    return None, None


class NumpyRun:
    def __init__(self, args, seed, steps):
        from model import numpy_optimizers
        from model.numpy_network import NumpyNetwork
        from model.numpy_optimizers import cosine_decay

        self.args = args
        self.net = NumpyNetwork(SIZES, "relu", "cross_entropy", seed)
        self.optimizer = numpy_optimizers.get("adam", learning_rate=cosine_decay(args.learning_rate,
                                                                                  args.epochs * steps))

    def epoch(self, x, y):
        self.net.fit(x, y, epochs=1, batch_size=self.args.batch_size, optimizer=self.optimizer,
                     shuffle=False, verbose=False)

    def accuracy(self, x, y):
        return float((self.net.predict(x) == y).mean())  # predict: class ids


class KerasRun:
    """Built-in Keras (``builtin``) or the Keras mirror (``jit_compile`` as ``compile_for_training``'s),
    with Adam and the cosine decay over ``args.epochs * steps`` steps."""

    def __init__(self, args, seed, steps, builtin: bool, jit_compile: bool = False):
        import keras

        from model.keras_network import build_model, compile_for_training
        from model.keras_optimizers import get as get_optimizer

        self.args = args
        schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate, decay_steps=args.epochs * steps)
        if builtin:
            from bench.keras_mirror import builtin_model  # the same He-normal initialisation per layer

            self.model = builtin_model(keras, SIZES, seed)
            self.model.compile(optimizer=keras.optimizers.Adam(schedule),
                               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                               metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        else:
            self.model = compile_for_training(build_model(SIZES, "relu", seed), get_optimizer("adam", schedule),
                                              loss="cross_entropy", jit_compile=jit_compile)

    def epoch(self, x, y):
        self.model.fit(x, y, batch_size=self.args.batch_size, epochs=1, shuffle=False, verbose=0)

    def accuracy(self, x, y):
        logits = self.model.predict(x, batch_size=2048, verbose=0)
        return float((logits.argmax(1) == y).mean())


def run_once(args, seed, data, engines) -> dict:
    from training.augment import epoch_data
    from training.data import train_validation_split

    (x_train, y_train), (x_test, y_test) = data
    (x_fit, y_fit), _ = train_validation_split(x_train, y_train, args.validation_fraction, seed)
    steps = math.ceil(len(x_fit) / args.batch_size)
    import keras

    keras.utils.set_random_seed(seed)
    runs = {"numpy": lambda: NumpyRun(args, seed, steps),
            "mirror": lambda: KerasRun(args, seed, steps, builtin=False),
            "built-in": lambda: KerasRun(args, seed, steps, builtin=True)}
    models = {name: runs[name]() for name in engines}
    history = {name: [] for name in engines}
    cumulative = {name: 0.0 for name in engines}
    for epoch in range(args.epochs):
        x, y = epoch_data(x_fit, y_fit, epoch, seed, args.augment_shift)
        shift = epoch % len(engines)
        for name in engines[shift:] + engines[:shift]:
            started, started_cpu = time.perf_counter(), time.process_time()
            models[name].epoch(x, y)
            seconds, cpu = time.perf_counter() - started, time.process_time() - started_cpu
            cumulative[name] += seconds
            accuracy = models[name].accuracy(x_test, y_test)
            history[name].append({"epoch": epoch + 1, "seconds": seconds, "cpu_seconds": cpu,
                                  "seconds_cumulative": cumulative[name], "test_accuracy": accuracy})
        print(f"seed {seed} epoch {epoch + 1}/{args.epochs}: " + "  ".join(
            f"{n} {history[n][-1]['test_accuracy']:.2%} ({history[n][-1]['seconds']:.2f} s)" for n in engines),
            file=sys.stderr, flush=True)
    return {"seed": seed, "train_images": int(len(x_fit)), "steps_per_epoch": steps, "history": history}


def aggregate(runs: list[dict], engines) -> dict:
    out = {}
    for name in engines:
        final = [r["history"][name][-1]["test_accuracy"] for r in runs]
        epoch_seconds = [row["seconds"] for r in runs for row in r["history"][name]]
        epoch_cpu = [row["cpu_seconds"] for r in runs for row in r["history"][name]]
        total = [r["history"][name][-1]["seconds_cumulative"] for r in runs]
        entry = {"final_test_accuracy": summary(final), "epoch_seconds": summary(epoch_seconds),
                 "epoch_cpu_seconds": summary(epoch_cpu), "total_seconds": summary(total)}
        for target in TARGETS:
            hits = [time_to(r["history"][name], target) for r in runs]
            reached = [h for h in hits if h[0] is not None]
            entry[f"time_to_{round(target * 100)}"] = {
                "reached": len(reached), "runs": len(runs),
                "seconds": summary([h[0] for h in reached]) if reached else None,
                "epochs": summary([h[1] for h in reached]) if reached else None}
        out[name] = entry
    return out


def plot(runs: list[dict], engines, path: Path, title: str) -> None:
    plt = pyplot()
    colours = {"numpy": "tab:blue", "mirror": "tab:orange", "built-in": "tab:green"}
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for repeat, run in enumerate(runs):
        for name in engines:
            rows = run["history"][name]
            ax.plot([row["seconds_cumulative"] for row in rows], [100 * row["test_accuracy"] for row in rows],
                    marker="o", markersize=3, color=colours[name], alpha=1.0 if repeat == 0 else 0.5,
                    label=name if repeat == 0 else None)
    for target in TARGETS:
        ax.axhline(100 * target, color="grey", linestyle="--", linewidth=0.8)
        ax.text(0.005, 100 * target + 0.04, f"{target:.0%}", color="grey", fontsize=8,
                transform=ax.get_yaxis_transform())
    ax.set_ylim(95.5, 99.2)
    ax.set_xlabel("cumulative training time, seconds (evaluation excluded)")
    ax.set_ylabel("test accuracy, % (10,000 MNIST test images)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    save_figure(fig, path)


def main(argv=None) -> dict:
    args = parse_args(argv)
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"unknown engines {sorted(unknown)}; choose from {ENGINES}")
    tf = start_tensorflow(args.threads, inter_op=1)
    import keras
    import numpy as np
    from threadpoolctl import threadpool_limits

    (x_train, y_train), test = load_training_data(args)
    load_before = os.getloadavg()
    with threadpool_limits(limits=args.threads, user_api="blas"):
        blas = blas_libraries()
        runs = [run_once(args, seed, ((x_train, y_train), test), engines) for seed in range(args.repeats)]
    threads = tensorflow_threads(tf)
    result = {
        "settings": {**recipe_settings(args), "repeats": args.repeats, "threads": args.threads, "engines": engines},
        "threads": {"tensorflow_intra_op": threads["intra_op"], "tensorflow_inter_op": threads["inter_op"],
                    "blas": blas},
        "versions": {"numpy": np.__version__, "tensorflow": tf.__version__, "keras": keras.__version__},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "runs": runs,
        "summary": aggregate(runs, engines),
    }
    print_summary(result["summary"])
    write_json(args.json, result)
    if args.plot:
        plot(runs, engines, args.plot, f"784-128-64-10, Adam 2e-3 cosine, batch {args.batch_size}, shift "
                                       f"{args.augment_shift}, {args.epochs} epochs, {args.threads} thread(s)")
    return result


def print_summary(per_engine: dict) -> None:
    def time_text(figures: dict, key: str) -> str:
        seconds = figures[key]["seconds"]
        return f"{seconds['median']:.1f} s" if seconds else "not reached"

    print(f"\n{'engine':10s} {'final test acc':>15s} {'s/epoch (min-max)':>22s} {'to 97 %':>10s} {'to 98 %':>10s}")
    for name, figures in per_engine.items():
        epoch = figures["epoch_seconds"]
        print(f"{name:10s} {figures['final_test_accuracy']['median']:>15.2%} "
              f"{epoch['median']:>8.2f} ({epoch['min']:.2f}-{epoch['max']:.2f}) "
              f"{time_text(figures, 'time_to_97'):>10s} {time_text(figures, 'time_to_98'):>10s}")


if __name__ == "__main__":
    main()
