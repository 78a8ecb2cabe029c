"""One device, TensorFlow backend: an epoch of ``model.fit`` against an epoch of our strategy step under
TensorFlow's default strategy, side by side, on the same data and the same starting weights.

    python -m bench.training_loop                      # real MNIST: 54,000 fit / 6,000 validation images
    python -m bench.training_loop --rounds 2 --samples 12000   # a quick run
    python -m bench.training_loop --jit                # also both compiled with XLA (--jit)
    python -m bench.training_loop --json results.json

``train.py`` trains one device as it trains every strategy: ``training.distributed.DistributedEngine``
under ``tf.distribute.get_strategy()``. This measures what that costs against ``fit`` (what
``train.py`` without a strategy used to run, and still runs on the torch and JAX backends, where there
is no tf.distribute): each variant trains the 784-128-64-10 network with our Adam (train.py's default
rate and cosine schedule) at ``--batch`` 256, one epoch per call with the validation split evaluated
after it, exactly as an epoch of ``train.py`` does. Rounds alternate the order of the variants, so
that noise from other work on the machine hits both alike; the first epoch of each variant (tracing)
is not timed. Reported: seconds per epoch, median (min-max) over the timed epochs, and the ratio
to ``fit``; and whether the two end with identical weights (they should: same steps, same order).
TensorFlow uses its default thread pools, as ``train.py`` does (``--threads`` pins them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from argparse import Namespace
from datetime import datetime, timezone

import numpy as np

from bench.support import load_text, machine, spread, write_json

BATCH = 256


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=54000, help="fit images per epoch (train.py's 90 %% of 60k)")
    parser.add_argument("--rounds", type=int, default=4, help="timed epochs per variant (after one warm-up)")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--jit", action="store_true", help="also time both variants compiled with XLA")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow intra-op threads (default: TF's)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures here as JSON")
    return parser.parse_args(argv)


def mnist_split(samples: int):
    """train.py's 90/10 stratified split of real MNIST (seed 0), the fit part cut to ``samples``."""
    from training.data import load_mnist, train_validation_split

    (x, y), _ = load_mnist(os.environ.get("MNIST_DATA_DIR") or None)
    (x_fit, y_fit), validation = train_validation_split(x, y, 0.1, 0)
    return (x_fit[:samples], y_fit[:samples]), validation


def variants(args, steps_per_epoch: int) -> dict:
    """Name -> an engine of the given kind (fit, or our step under the default strategy), same weights."""
    import tensorflow as tf

    from training.distributed import DistributedEngine, new_trainer
    from training.engines import KerasEngine

    settings = Namespace(sizes=(784, 128, 64, 10), activation="relu", loss="cross_entropy", optimizer="adam",
                         learning_rate=3e-3, schedule="cosine", epochs=args.rounds + 1, batch_size=args.batch,
                         seed=0, jit=False)
    found = {"fit": KerasEngine(settings, steps_per_epoch),
             "our step, default strategy": DistributedEngine(tf.distribute.get_strategy(),
                                                             lambda: new_trainer(settings, steps_per_epoch),
                                                             args.batch, verbose=False)}
    if args.jit:
        jit = Namespace(**{**vars(settings), "jit": True})
        found["fit, XLA"] = KerasEngine(jit, steps_per_epoch)
        found["our step, default strategy, XLA"] = DistributedEngine(
            tf.distribute.get_strategy(), lambda: new_trainer(jit, steps_per_epoch), args.batch, verbose=False,
            jit_compile=True)
    return found


def measure(args) -> dict:
    """Seconds per timed epoch of each variant, and whether the variants end with the same weights."""
    import contextlib
    import io

    fit, validation = mnist_split(args.samples)
    engines = variants(args, -(-len(fit[1]) // args.batch))
    seconds = {name: [] for name in engines}
    for epoch in range(args.rounds + 1):
        order = list(engines) if epoch % 2 == 0 else list(reversed(engines))
        for name in order:
            started = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # fit's per-epoch progress line
                engines[name].train_epoch(*fit, validation, epoch)
            if epoch:
                seconds[name].append(time.perf_counter() - started)
        print(f"epoch {epoch}: " + ", ".join(f"{name} {values[-1]:.2f} s" for name, values in seconds.items()
                                             if values), flush=True)
    weights = {name: engine.trainer.get_weights() for name, engine in engines.items()}
    reference = weights["fit"]
    identical = {name: all(np.array_equal(a, b) for a, b in zip(reference, values)) for name, values in weights.items()}
    return {"seconds": seconds, "identical_to_fit": identical,
            "max_abs_diff_to_fit": {name: max(float(np.abs(a - b).max()) for a, b in zip(reference, values))
                                    for name, values in weights.items()}}


def report_lines(data: dict) -> list[str]:
    seconds = data["results"]["seconds"]
    base = statistics.median(seconds["fit"])
    lines = [f"One device, TensorFlow, batch {data['settings']['batch']}, {data['settings']['samples']} fit + "
             f"validation images per epoch; {data['settings']['rounds']} timed epochs per variant; load "
             f"{data['load_average'][0]} -> {data['load_average'][1]}", "",
             "| variant | seconds per epoch | vs fit | weights vs fit |", "|---|---|---|---|"]
    for name, values in seconds.items():
        same = ("identical" if data["results"]["identical_to_fit"][name] else
                f"max abs diff {data['results']['max_abs_diff_to_fit'][name]:.1e}")
        lines.append(f"| {name} | {spread(values, unit=' s')} | {statistics.median(values) / base:.2f}x | {same} |")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["KERAS_BACKEND"] = "tensorflow"
    if args.threads:
        from bench.support import start_tensorflow

        start_tensorflow(args.threads)
    from training.backends import make_reproducible

    make_reproducible(0, "tensorflow")
    load_before = load_text()
    results = measure(args)
    data = {"machine": machine(), "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "settings": {"samples": args.samples, "rounds": args.rounds, "batch": args.batch, "jit": args.jit,
                         "threads": args.threads}, "load_average": [load_before, load_text()], "results": results}
    print("\n".join(report_lines(data)))
    write_json(args.json, data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
