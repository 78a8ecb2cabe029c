"""Benchmark: one training epoch of the 784-128-64-10 network on each Keras backend, the NumPy twin and built-in Keras.

    MNIST_DATA_DIR=../shared/data/mnist python -m bench.backends [--epochs 10] [--threads 1]
    python -m bench.backends --epochs 2 --limit-train 6000 --variants tensorflow,torch,jax,numpy   # a quick check

Variants (the same network, data and hyperparameters as ``python training/train.py``: Adam 2e-3 with cosine
decay to 0 over all steps, batch 128, random shifts of up to 2 pixels from ``training.augment.epoch_data``,
the same 90/10 stratified split, seed 0):

- ``tensorflow``:     the Keras mirror (ScratchDense + ScratchAdam through ``compile_for_training``) on
  TensorFlow, ``jit_compile=False`` (Keras's default on CPU: a ``tf.function`` graph, no XLA);
- ``tensorflow-xla``: the same with ``jit_compile=True`` (XLA);
- ``torch``:          the Keras mirror on PyTorch (eager, as ``train.py --backend torch``);
- ``jax``:            the Keras mirror on JAX, jit-compiled (XLA, as ``train.py --backend jax``);
- ``numpy``:          ``NumpyNetwork`` with our NumPy Adam;
- ``builtin``:        built-in Keras on TensorFlow (``Dense``, ``keras.optimizers.Adam``, ``CosineDecay``,
  ``SparseCategoricalCrossentropy(from_logits=True)``).

A process has one Keras backend, so each variant lives in a worker process of its own (``--worker``),
started once, that loads MNIST, builds and compiles its model, and then trains one epoch per command on
its standard input. The parent hands out the epochs in turn, one worker at a time and in a rotating
order (so load from other processes hits all alike), until every variant has trained ``--epochs`` epochs.
Each epoch's ``fit`` is timed (wall and CPU); the test accuracy on the 10,000 test images is measured
after it, untimed. Reported per variant: the first epoch (it includes tracing / compiling), the median
(min-max) of the other epochs, the time to 97 % and 98 % test accuracy (cumulative training time at the
end of the first epoch that reached it), the final accuracy, and ratios of the median epoch time to the
``tensorflow`` variant's and to NumPy's. Threads (``--threads``, default 1) are set in every worker
before its libraries start: OpenMP/OpenBLAS/MKL, TensorFlow's intra-op pool (inter-op 1), torch's
intra-op pool, XLA's CPU thread pool for JAX. Not a unit test: timing belongs here, not in tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.support import machine, pin_blas_threads_by_environment, spread, summary, write_json
from bench.training_accuracy import TARGETS, add_recipe_options, load_training_data, recipe_from_args, recipe_settings

VARIANTS = ("tensorflow", "tensorflow-xla", "torch", "jax", "numpy", "builtin")
BACKEND_OF = {"tensorflow": "tensorflow", "tensorflow-xla": "tensorflow", "torch": "torch", "jax": "jax",
              "numpy": "tensorflow", "builtin": "tensorflow"}  # numpy: Keras is never imported there
REPLY = "@@bench "  # the prefix of a worker's answers on its stdout (libraries may print there too)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10, help="epochs per variant (cosine decays to 0 over them)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}")
    add_recipe_options(parser)
    parser.add_argument("--threads", type=int, default=1, help="threads per worker, every library (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $MNIST_DATA_DIR, then the cache)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    parser.add_argument("--worker", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# =============================================================================
# The worker: one variant, one process
# =============================================================================
def pin_threads(variant: str, threads: int) -> None:
    """Thread pools of every library this variant uses, before any of them starts."""
    pin_blas_threads_by_environment(threads)
    os.environ["KERAS_BACKEND"] = BACKEND_OF[variant]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if variant == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (flags + f" --xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}"
                                   f" intra_op_parallelism_threads={threads}").strip()


def build_run(variant: str, args, steps: int):
    """The variant's trainer (bench/training_accuracy.py's ``NumpyRun`` or ``KerasRun``: one epoch at a
    time, then the test accuracy), seeded with ``--seed``."""
    from bench.training_accuracy import KerasRun, NumpyRun

    recipe = recipe_from_args(args)
    if variant == "numpy":
        return NumpyRun(recipe, args.seed, steps)
    import keras

    keras.utils.set_random_seed(args.seed)
    return KerasRun(recipe, args.seed, steps, builtin=variant == "builtin",
                    jit_compile=variant in ("tensorflow-xla", "jax"))


def library_threads(variant: str, threads: int) -> dict:
    """Start the variant's library with ``threads`` threads; what it reports."""
    info = {}
    if variant == "numpy":
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
    elif BACKEND_OF[variant] == "tensorflow":
        from bench.support import start_tensorflow, tensorflow_threads

        info["tensorflow"] = tensorflow_threads(start_tensorflow(threads, inter_op=1))
    elif variant == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(1)
        info["torch"] = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    elif variant == "jax":
        info["xla_flags"] = os.environ.get("XLA_FLAGS")
    from bench.support import blas_libraries

    info["blas"] = blas_libraries()
    return info


def reply(message: dict) -> None:
    print(REPLY + json.dumps(message), flush=True)


def worker(args) -> int:
    variant = args.worker
    pin_threads(variant, args.threads)
    threads = library_threads(variant, args.threads)
    from training.augment import epoch_data
    from training.backends import version
    from training.data import train_validation_split

    (x_train, y_train), (x_test, y_test) = load_training_data(args)
    (x_fit, y_fit), _ = train_validation_split(x_train, y_train, args.validation_fraction, args.seed)
    steps = math.ceil(len(x_fit) / args.batch_size)
    started = time.perf_counter()
    run = build_run(variant, args, steps)
    info = {"variant": variant, "threads": threads, "train_images": int(len(x_fit)), "steps_per_epoch": steps,
            "build_seconds": time.perf_counter() - started}
    if variant != "numpy":
        import keras

        info.update(keras=keras.__version__, backend=keras.backend.backend(), version=version(keras.backend.backend()))
    reply({"ready": info})
    for line in sys.stdin:
        command = line.split()
        if command[:1] != ["epoch"]:
            break
        epoch = int(command[1])
        x, y = epoch_data(x_fit, y_fit, epoch, args.seed, args.augment_shift)
        started, started_cpu = time.perf_counter(), time.process_time()
        run.epoch(x, y)
        seconds, cpu = time.perf_counter() - started, time.process_time() - started_cpu
        reply({"epoch": epoch + 1, "seconds": seconds, "cpu_seconds": cpu, "test_accuracy": run.accuracy(x_test, y_test),
               "load": os.getloadavg()[0]})
    return 0


# =============================================================================
# The parent: workers take turns
# =============================================================================
class Worker:
    def __init__(self, variant: str, argv: list[str], log: Path):
        self.variant = variant
        self.log = open(log, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "bench.backends", *argv, "--worker", variant],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                        bufsize=1, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def read(self) -> dict:
        for line in self.process.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        self.log.flush()
        raise RuntimeError(f"worker {self.variant} ended (exit {self.process.wait()}); see {self.log.name}")

    def send(self, text: str) -> None:
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        try:
            self.send("quit")
            self.process.stdin.close()
            self.process.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        self.log.close()


def worker_argv(args) -> list[str]:
    argv = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--learning-rate",
            str(args.learning_rate), "--augment-shift", str(args.augment_shift), "--validation-fraction",
            str(args.validation_fraction), "--threads", str(args.threads), "--seed", str(args.seed)]
    if args.limit_train:
        argv += ["--limit-train", str(args.limit_train)]
    if args.data_dir:
        argv += ["--data-dir", str(args.data_dir)]
    return argv


def time_to(history: list[dict], target: float):
    """(cumulative training seconds, epoch) at the first epoch whose test accuracy reached ``target``."""
    total = 0.0
    for row in history:
        total += row["seconds"]
        if row["test_accuracy"] >= target:
            return total, row["epoch"]
    return None, None


def aggregate(history: dict[str, list[dict]]) -> dict:
    out = {}
    for name, rows in history.items():
        later = rows[1:] or rows
        entry = {"first_epoch_seconds": rows[0]["seconds"], "epoch_seconds": summary(r["seconds"] for r in later),
                 "epoch_cpu_seconds": summary(r["cpu_seconds"] for r in later),
                 "total_seconds": sum(r["seconds"] for r in rows), "final_test_accuracy": rows[-1]["test_accuracy"]}
        for target in TARGETS:
            seconds, epoch = time_to(rows, target)
            entry[f"time_to_{round(target * 100)}"] = {"seconds": seconds, "epoch": epoch}
        out[name] = entry
    for base in ("tensorflow", "numpy"):
        if base in out:
            for entry in out.values():
                entry[f"ratio_to_{base}"] = entry["epoch_seconds"]["median"] / out[base]["epoch_seconds"]["median"]
    return out


def main(argv=None) -> dict | int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown or not variants:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {','.join(VARIANTS)}")
    import tempfile

    logs = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    load_before = os.getloadavg()
    workers = {name: Worker(name, worker_argv(args), logs / f"{name}.log") for name in variants}
    try:
        ready = {name: w.read()["ready"] for name, w in workers.items()}  # they start side by side
        history = {name: [] for name in variants}
        for epoch in range(args.epochs):
            shift = epoch % len(variants)
            for name in variants[shift:] + variants[:shift]:
                workers[name].send(f"epoch {epoch}")
                history[name].append(workers[name].read())
            print(f"epoch {epoch + 1}/{args.epochs}: " + "  ".join(
                f"{n} {history[n][-1]['seconds']:.2f} s {history[n][-1]['test_accuracy']:.2%}" for n in variants),
                file=sys.stderr, flush=True)
    finally:
        for worker_process in workers.values():
            worker_process.close()
    result = {
        "settings": {**recipe_settings(args), "threads": args.threads, "seed": args.seed, "variants": variants},
        "machine": machine(), "load_average": {"before": load_before, "after": os.getloadavg()},
        "workers": ready, "history": history, "summary": aggregate(history),
    }
    print_summary(result)
    write_json(args.json, result)
    return result


def print_summary(result: dict) -> None:
    def target(entry, key):
        seconds, epoch = entry[key]["seconds"], entry[key]["epoch"]
        return f"{seconds:.1f} s (ep {epoch})" if seconds is not None else "not reached"

    print(f"\n{'variant':15s} {'library':>16s} {'1st epoch':>9s} {'s/epoch, median (min-max)':>27s} "
          f"{'vs tf':>6s} {'to 97 %':>14s} {'to 98 %':>14s} {'final':>7s}")
    for name, entry in result["summary"].items():
        info = result["workers"][name]
        library = f"{info.get('backend', 'numpy')} {info.get('version') or ''}".strip()
        ratio = f"{entry['ratio_to_tensorflow']:.2f}x" if "ratio_to_tensorflow" in entry else "-"
        print(f"{name:15s} {library:>16s} {entry['first_epoch_seconds']:>8.2f}s "
              f"{spread(entry['epoch_seconds'], unit=' s'):>27s} {ratio:>6s} {target(entry, 'time_to_97'):>14s} "
              f"{target(entry, 'time_to_98'):>14s} {entry['final_test_accuracy']:>7.2%}")


if __name__ == "__main__":
    outcome = main()
    sys.exit(outcome if isinstance(outcome, int) else 0)
