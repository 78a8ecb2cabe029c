"""Test accuracy against training time: train.py's recipe now and before, on the NumPy network, the Keras
mirror and built-in Keras, side by side.

    python -m bench.training_accuracy                       # both recipes, 3 engines, 1 seed
    python -m bench.training_accuracy --repeats 2 --json out.json --plot acc.png
    python -m bench.training_accuracy --epochs 2 --limit-train 3000     # a smoke run (each recipe cut to 2 epochs)

The same 784-128-64-10 ReLU network, the same 90/10 stratified split, trained with two recipes:

- **default**:  what ``python training/train.py`` does now (issue 14): Adam at 3e-3 with cosine decay to 0
  over 60 epochs, batch 256, elastic distortions (alpha 34, sigma 5: ``training.augment``); taken from
  ``training/arguments.py``, so it follows the defaults;
- **previous**: the default before issue 14: Adam at 2e-3 cosine over 30 epochs, batch 128, whole-pixel
  shifts of up to 2 pixels;

each by three engines:

- **numpy**:    ``NumpyNetwork`` with our NumPy Adam (``model/numpy_network.py``, ``model/numpy_optimizers.py``);
- **mirror**:   the Keras mirror: ``build_model`` (ScratchDense) through ``compile_for_training`` with our
  ``ScratchAdam`` and our cross-entropy from the logits (what ``train.py`` trains);
- **built-in**: ``keras.layers.Dense`` + ``keras.optimizers.Adam`` + ``keras.optimizers.schedules.CosineDecay``
  + ``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``, on the same augmented data.

The variants are trained epoch by epoch in turn (the order rotates each epoch), so that load from other
processes hits all alike; the variants of a recipe get exactly the same data each epoch
(``training.augment.epoch_data``, computed once per recipe and epoch, and timed). After each epoch the
test accuracy on the official 10,000 test images is measured (not timed). A variant's time is its
cumulative ``fit`` time plus its recipe's data preparation (shuffle and augmentation), both per epoch,
as a loop that prepares each epoch in line would spend; ``train.py`` prepares the next epoch in a
background thread while one trains, which hides most of the shorter of the two (its own wall time:
the ``train`` section of docs/benchmarks.md). Reports, per variant: final test accuracy, seconds per
epoch (``fit``, and the data), total time and cumulative time to reach 98 % and 99 % test accuracy (or
"not reached"); with ``--repeats`` > 1 (seeds 0, 1, ...), the median, min and max over the repeats.

Threads are set before TensorFlow starts (``--threads``, default 1: TF intra-op and inter-op, and
OpenBLAS through threadpoolctl for NumPy and the augmentation), and printed: on a busy 2-core machine a
single thread is what keeps timings stable. The test set is used for this curve only; nothing is
selected on it.
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
TARGETS = (0.98, 0.99)
ENGINES = ("numpy", "mirror", "built-in")
RECIPE_NAMES = ("default", "previous")


def recipes() -> dict[str, dict]:
    """name -> epochs, batch_size, learning_rate (Adam, cosine decay to 0) and augmentation."""
    from training.arguments import AUGMENT_DEFAULTS, DEFAULT_AUGMENT, DEFAULT_LEARNING_RATES, STRENGTHS, build_parser
    from training.augment import Augmentation

    parser = build_parser()
    strengths = {key: 0 for key in STRENGTHS} | AUGMENT_DEFAULTS[DEFAULT_AUGMENT]  # as train.py resolves them
    default = Augmentation.from_args(argparse.Namespace(augment=DEFAULT_AUGMENT, **strengths))
    assert parser.get_default("optimizer") == "adam" and parser.get_default("schedule") == "cosine"
    return {"default": {"epochs": parser.get_default("epochs"), "batch_size": parser.get_default("batch_size"),
                        "learning_rate": DEFAULT_LEARNING_RATES["adam"], "augmentation": default},
            "previous": {"epochs": 30, "batch_size": 128, "learning_rate": 2e-3,
                         "augmentation": Augmentation("shift", 2)}}


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    """The options of a single shift-augmented recipe (the ``previous`` one's defaults), for benchmarks that
    train one recipe on several engines (bench/backends.py)."""
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--augment-shift", type=int, default=2)
    add_data_options(parser)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--limit-train", type=int, default=None, metavar="N", help="first N training images only")


def recipe_from_args(args) -> dict:
    """``add_recipe_options``' recipe, in the form ``NumpyRun`` and ``KerasRun`` take."""
    from training.augment import Augmentation

    return {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
            "augmentation": Augmentation("shift", args.augment_shift) if args.augment_shift else Augmentation()}


def recipe_settings(args) -> dict:
    """``add_recipe_options``' recipe as the results' ``settings`` record it."""
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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default=",".join(RECIPE_NAMES),
                        help=f"comma-separated subset of {','.join(RECIPE_NAMES)} (default: both)")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated subset of {','.join(ENGINES)}")
    parser.add_argument("--epochs", type=int, default=None,
                        help="train every recipe for this many epochs instead of its own (the cosine decays over "
                             "them): smoke runs")
    add_data_options(parser)
    parser.add_argument("--repeats", type=int, default=1, help="runs with seeds 0, 1, ... (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="TF intra-op threads and BLAS threads (default 1)")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $MNIST_DATA_DIR, then the cache)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here as JSON")
    parser.add_argument("--plot", type=Path, default=None, help="write the accuracy-vs-time plot here (PNG)")
    args = parser.parse_args(argv)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    args.recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    if set(args.engines) - set(ENGINES) or set(args.recipes) - set(RECIPE_NAMES):
        parser.error(f"choose engines from {','.join(ENGINES)} and recipes from {','.join(RECIPE_NAMES)}")
    return args


def variant_name(engine: str, recipe: str) -> str:
    return f"{engine}, {recipe}"


def time_to(history: list[dict], target: float):
    """Cumulative seconds (fit + data) at the first epoch whose test accuracy reaches ``target``."""
    for row in history:
        if row["test_accuracy"] >= target:
            return row["seconds_cumulative"], row["epoch"]
    return None, None


class NumpyRun:
    def __init__(self, recipe, seed, steps):
        from model import numpy_optimizers
        from model.numpy_network import NumpyNetwork
        from model.numpy_optimizers import cosine_decay

        self.batch_size = recipe["batch_size"]
        self.net = NumpyNetwork(SIZES, "relu", "cross_entropy", seed)
        self.optimizer = numpy_optimizers.get("adam", learning_rate=cosine_decay(recipe["learning_rate"],
                                                                                  recipe["epochs"] * steps))

    def epoch(self, x, y):
        self.net.fit(x, y, epochs=1, batch_size=self.batch_size, optimizer=self.optimizer, shuffle=False,
                     verbose=False)

    def accuracy(self, x, y):
        return float((self.net.predict(x) == y).mean())  # predict: class ids


class KerasRun:
    """Built-in Keras (``builtin``) or the Keras mirror (``jit_compile`` as ``compile_for_training``'s),
    with Adam and the cosine decay over the recipe's ``epochs * steps`` steps."""

    def __init__(self, recipe, seed, steps, builtin: bool, jit_compile: bool = False):
        import keras

        from model.keras_network import build_model, compile_for_training
        from model.keras_optimizers import get as get_optimizer

        self.batch_size = recipe["batch_size"]
        schedule = keras.optimizers.schedules.CosineDecay(recipe["learning_rate"],
                                                          decay_steps=recipe["epochs"] * steps)
        if builtin:
            from bench.keras_mirror import builtin_model  # the same He-normal initialisation per layer

            self.model = builtin_model(keras, SIZES, seed)
            self.model.compile(optimizer=keras.optimizers.Adam(schedule),
                               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                               metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                               jit_compile=jit_compile)
        else:
            self.model = compile_for_training(build_model(SIZES, "relu", seed), get_optimizer("adam", schedule),
                                              loss="cross_entropy", jit_compile=jit_compile)

    def epoch(self, x, y):
        self.model.fit(x, y, batch_size=self.batch_size, epochs=1, shuffle=False, verbose=0)

    def accuracy(self, x, y):
        logits = self.model.predict(x, batch_size=2048, verbose=0)
        return float((logits.argmax(1) == y).mean())


def run_once(args, seed, data, plan: dict[str, dict]) -> dict:
    """One seed: every variant of ``plan`` (recipe name -> recipe) trained epoch by epoch in turn."""
    from training.augment import epoch_data
    from training.data import train_validation_split

    (x_train, y_train), (x_test, y_test) = data
    (x_fit, y_fit), _ = train_validation_split(x_train, y_train, args.validation_fraction, seed)
    import keras

    keras.utils.set_random_seed(seed)
    makers = {"numpy": lambda recipe, steps: NumpyRun(recipe, seed, steps),
              "mirror": lambda recipe, steps: KerasRun(recipe, seed, steps, builtin=False),
              "built-in": lambda recipe, steps: KerasRun(recipe, seed, steps, builtin=True)}
    variants = [(engine, name) for name in plan for engine in args.engines]
    steps = {name: math.ceil(len(x_fit) / recipe["batch_size"]) for name, recipe in plan.items()}
    models = {variant_name(*v): makers[v[0]](plan[v[1]], steps[v[1]]) for v in variants}
    history = {variant_name(*v): [] for v in variants}
    cumulative = {variant_name(*v): 0.0 for v in variants}
    data_seconds = {name: [] for name in plan}
    for epoch in range(max(recipe["epochs"] for recipe in plan.values())):
        active = [v for v in variants if epoch < plan[v[1]]["epochs"]]
        epoch_sets = {}
        for name in dict.fromkeys(recipe for _, recipe in active):
            started = time.perf_counter()
            epoch_sets[name] = epoch_data(x_fit, y_fit, epoch, seed, plan[name]["augmentation"])
            data_seconds[name].append(time.perf_counter() - started)
        shift = epoch % len(active)
        for engine, recipe in active[shift:] + active[:shift]:
            name = variant_name(engine, recipe)
            started, started_cpu = time.perf_counter(), time.process_time()
            models[name].epoch(*epoch_sets[recipe])
            seconds, cpu = time.perf_counter() - started, time.process_time() - started_cpu
            cumulative[name] += seconds + data_seconds[recipe][-1]
            accuracy = models[name].accuracy(x_test, y_test)
            history[name].append({"epoch": epoch + 1, "seconds": seconds, "cpu_seconds": cpu,
                                  "data_seconds": data_seconds[recipe][-1],
                                  "seconds_cumulative": cumulative[name], "test_accuracy": accuracy})
        print(f"seed {seed} epoch {epoch + 1}: " + "  ".join(
            f"{variant_name(*v)} {history[variant_name(*v)][-1]['test_accuracy']:.2%} "
            f"({history[variant_name(*v)][-1]['seconds']:.2f} s)" for v in active), file=sys.stderr, flush=True)
    return {"seed": seed, "train_images": int(len(x_fit)), "steps_per_epoch": steps, "history": history,
            "data_seconds": data_seconds}


def aggregate(runs: list[dict], names) -> dict:
    out = {}
    for name in names:
        final = [r["history"][name][-1]["test_accuracy"] for r in runs]
        epoch_seconds = [row["seconds"] for r in runs for row in r["history"][name]]
        epoch_cpu = [row["cpu_seconds"] for r in runs for row in r["history"][name]]
        data = [row["data_seconds"] for r in runs for row in r["history"][name]]
        total = [r["history"][name][-1]["seconds_cumulative"] for r in runs]
        entry = {"final_test_accuracy": summary(final), "epoch_seconds": summary(epoch_seconds),
                 "epoch_cpu_seconds": summary(epoch_cpu), "data_seconds": summary(data),
                 "total_seconds": summary(total), "epochs": len(runs[0]["history"][name])}
        for target in TARGETS:
            hits = [time_to(r["history"][name], target) for r in runs]
            reached = [h for h in hits if h[0] is not None]
            entry[f"time_to_{round(target * 100)}"] = {
                "reached": len(reached), "runs": len(runs),
                "seconds": summary([h[0] for h in reached]) if reached else None,
                "epochs": summary([h[1] for h in reached]) if reached else None}
        out[name] = entry
    return out


def plot(runs: list[dict], names, path: Path, title: str) -> None:
    plt = pyplot()
    colours = {"numpy": "tab:blue", "mirror": "tab:orange", "built-in": "tab:green"}
    styles = {"default": "-", "previous": ":"}
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    for i, run in enumerate(runs):
        for name in names:
            engine, recipe = name.split(", ")
            rows = run["history"][name]
            ax.plot([r["seconds_cumulative"] for r in rows], [100 * r["test_accuracy"] for r in rows],
                    linestyle=styles[recipe], marker="o", markersize=2.5, color=colours[engine],
                    alpha=1.0 if i == 0 else 0.45, label=name if i == 0 else None)
    for target in TARGETS:
        ax.axhline(100 * target, color="grey", linestyle="--", linewidth=0.8)
        ax.text(0.005, 100 * target + 0.03, f"{target:.0%}", color="grey", fontsize=8,
                transform=ax.get_yaxis_transform())
    ax.set_ylim(97.0, 99.5)
    ax.set_xlabel("cumulative time, seconds: fit + the epoch's data preparation (evaluation excluded)")
    ax.set_ylabel("test accuracy, % (10,000 MNIST test images)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def describe_recipe(recipe: dict) -> dict:
    """A recipe as JSON: its numbers and its augmentation (kind and strengths)."""
    from dataclasses import asdict

    return {**{k: v for k, v in recipe.items() if k != "augmentation"}, "augmentation": asdict(recipe["augmentation"]),
            "augmentation_text": recipe["augmentation"].describe()}


def main(argv=None) -> dict:
    args = parse_args(argv)
    tf = start_tensorflow(args.threads, inter_op=1)
    import keras
    import numpy as np
    from threadpoolctl import threadpool_limits

    every = recipes()
    plan = {name: {**every[name], **({"epochs": args.epochs} if args.epochs else {})} for name in args.recipes}
    (x_train, y_train), test = load_training_data(args)
    load_before = os.getloadavg()
    with threadpool_limits(limits=args.threads, user_api="blas"):
        blas = blas_libraries()
        runs = [run_once(args, seed, ((x_train, y_train), test), plan) for seed in range(args.repeats)]
    names = list(runs[0]["history"])
    threads = tensorflow_threads(tf)
    result = {
        "settings": {"recipes": {name: describe_recipe(recipe) for name, recipe in plan.items()},
                     "epochs_override": args.epochs, "validation_fraction": args.validation_fraction,
                     "repeats": args.repeats, "threads": args.threads, "limit_train": args.limit_train,
                     "engines": args.engines, "optimizer": "adam", "schedule": "cosine"},
        "threads": {"tensorflow_intra_op": threads["intra_op"], "tensorflow_inter_op": threads["inter_op"],
                    "blas": blas},
        "versions": {"numpy": np.__version__, "tensorflow": tf.__version__, "keras": keras.__version__},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "runs": runs,
        "summary": aggregate(runs, names),
    }
    print_summary(result["summary"])
    write_json(args.json, result)
    if args.plot:
        plot(runs, names, args.plot, plot_title(result["settings"]))
    return result


def plot_title(settings: dict) -> str:
    """The network, the threads and one line per recipe (from the results' settings)."""
    return "\n".join([f"784-128-64-10 ReLU, {settings['threads']} thread(s), {settings['repeats']} seed(s)"] + [
        f"{name}: {r['epochs']} epochs, batch {r['batch_size']}, Adam {r['learning_rate']:g} cosine, "
        f"{r['augmentation_text']}" for name, r in settings["recipes"].items()])


def print_summary(per_variant: dict) -> None:
    def time_text(figures: dict, key: str) -> str:
        seconds = figures[key]["seconds"]
        return f"{seconds['median']:.1f} s" if seconds else "not reached"

    print(f"\n{'variant':20s} {'final test acc':>15s} {'fit s/epoch':>12s} {'data s/epoch':>13s} {'total':>8s} "
          f"{'to 98 %':>10s} {'to 99 %':>10s}")
    for name, figures in per_variant.items():
        print(f"{name:20s} {figures['final_test_accuracy']['median']:>15.2%} "
              f"{figures['epoch_seconds']['median']:>12.2f} {figures['data_seconds']['median']:>13.2f} "
              f"{figures['total_seconds']['median']:>7.1f}s "
              f"{time_text(figures, 'time_to_98'):>10s} {time_text(figures, 'time_to_99'):>10s}")


if __name__ == "__main__":
    main()
