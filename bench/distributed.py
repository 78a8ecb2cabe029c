"""Distributed training on this machine: seconds per step and per epoch for one process, MirroredStrategy
over 2 logical CPU devices and MultiWorkerMirroredStrategy over 2 local processes, the all-reduce's cost
per step, and what that predicts for N real machines.

    python -m bench.distributed                         # 54,000 real MNIST images, 3 timed epochs per setting
    python -m bench.distributed --samples 6000 --epochs 2 --allreduce-repeats 30   # a quick run
    python -m bench.distributed --json results.json

Every setting trains the 784-128-64-10 network with our Adam through ``training.distributed.DistributedEngine``
(the loop of ``train.py --strategy``; "1 process" runs it under TensorFlow's default strategy, and
``fit`` is timed too, as ``train.py`` without a strategy runs it), batch 128 global, one untimed warm-up
epoch (tracing) and then ``--epochs`` timed ones. The all-reduce is timed alone: the step's collective
(a SUM of tensors shaped like the gradients, 109,386 float32 = 427 KiB) in a ``tf.function``, as our
optimizer's ``apply_gradients`` issues it. The settings run one after the other, each in fresh
processes; every process uses ``--threads`` TensorFlow intra-op threads (default 1: 2 workers on 2 cores
then use both cores, like 2 machines with one core each).

On one shared 2-core machine no speed-up is expected. The estimate for N machines uses the measured
per-step compute of one process at batch 128/N (its CPU time: what a dedicated core would take; the
wall time here also counts other work holding the core) and a ring all-reduce model (TensorFlow's
RING collective on CPU: 2(N-1) message rounds of 1/N of the data each) whose per-round software
overhead is taken from the 2-process measurement here (its CPU time, or none: an upper bound), plus the network's bandwidth and latency as stated in the output.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.localhost import free_port
from bench.support import REPO, load_text, machine, markdown_table, spread, write_json

BATCH = 128
GRADIENT_SHAPES = [(784, 128), (128,), (128, 64), (64,), (64, 10), (10,)]
GRADIENT_BYTES = 4 * sum(math.prod(shape) for shape in GRADIENT_SHAPES)
NETWORKS = {"10 Gbit/s, 50 us": (1.25e9, 50e-6), "1 Gbit/s, 100 us": (1.25e8, 100e-6)}  # bytes/s, one-way latency
MACHINES = (2, 4, 8)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=54000, help="training images per epoch (default 54000)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per setting (after one warm-up)")
    parser.add_argument("--allreduce-repeats", type=int, default=100, help="timed all-reduces per setting")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads per process")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed for each setting")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures here as JSON")
    parser.add_argument("--role", choices=("single", "mirrored", "multi-worker"), default=None,
                        help=argparse.SUPPRESS)  # one measuring process, started by the coordinator
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# =============================================================================
# One measuring process
# =============================================================================
def measure(args) -> dict:
    """Times the loop (and, alone, fit and the loop at smaller batches) and the all-reduce in this process."""
    from bench.support import tensorflow_threads

    tf, strategy = start_strategy(args)
    images, labels = training_images(args.samples)
    result = {"role": args.role, "replicas": strategy.num_replicas_in_sync, "samples": len(labels),
              "threads": tensorflow_threads(tf), "loop": {}, "loop_cpu": {}}

    def time_loop(batch: int) -> None:
        seconds = loop_epochs(strategy, images, labels, batch, args.epochs)
        result["loop"][str(batch)], result["loop_cpu"][str(batch)] = seconds

    time_loop(BATCH)
    result["allreduce"], result["allreduce_cpu"] = allreduce_seconds(tf, strategy, args.allreduce_repeats)
    if args.role == "single":
        for machines in MACHINES:  # the compute of one machine's share of the batch
            time_loop(BATCH // machines)
        result["fit"], result["fit_cpu"] = fit_epochs(images, labels, args.epochs)
    result["load_average"] = os.getloadavg()
    return result


def start_strategy(args):
    """TensorFlow with ``--threads`` (inter-op 2 for mirrored), and the role's strategy: ``(tf, strategy)``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from bench.support import start_tensorflow

    tf = start_tensorflow(args.threads, inter_op=2 if args.role == "mirrored" else 1)
    from training.distributed import make_strategy

    if args.role == "single":
        return tf, tf.distribute.get_strategy()
    return tf, make_strategy(argparse.Namespace(strategy=args.role, replicas=2, comm_timeout=300.0))


def training_images(samples: int):
    """The first ``samples`` real MNIST training images and labels."""
    from training.data import load_mnist

    (images, labels), _ = load_mnist(os.environ.get("MNIST_DATA_DIR") or None)
    return images[:samples], labels[:samples]


def new_trainer():
    """The 784-128-64-10 network with our Adam at 1e-3, seed 0."""
    from model.keras_network import build_model, compile_for_training

    return compile_for_training(build_model(seed=0), "adam", 1e-3)


def timed_epochs(epoch_function, epochs: int) -> tuple[list[float], list[float]]:
    """Wall and process CPU seconds of ``epochs`` timed epochs, after one untimed warm-up epoch."""
    wall, cpu = [], []
    for epoch in range(epochs + 1):
        started, started_cpu = time.perf_counter(), time.process_time()
        epoch_function(epoch)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return wall[1:], cpu[1:]


def loop_epochs(strategy, images, labels, batch: int, epochs: int) -> tuple[list[float], list[float]]:
    """``timed_epochs`` of ``DistributedEngine`` (the loop of ``train.py --strategy``) at global ``batch``."""
    from training.distributed import DistributedEngine

    engine = DistributedEngine(strategy, new_trainer, batch, verbose=False)
    no_validation = (images[:0], labels[:0])
    return timed_epochs(lambda epoch: engine.train_epoch(images, labels, no_validation, epoch), epochs)


def fit_epochs(images, labels, epochs: int) -> tuple[list[float], list[float]]:
    """``timed_epochs`` of ``model.fit`` (as ``train.py`` without a strategy trains)."""
    model = new_trainer()
    return timed_epochs(lambda epoch: model.fit(images, labels, batch_size=BATCH, epochs=1, shuffle=False,
                                                verbose=0), epochs)


def allreduce_seconds(tf, strategy, repeats: int) -> tuple[list[float], float]:
    """Wall seconds of each SUM all-reduce of gradient-shaped tensors over the strategy's replicas, and
    the process CPU seconds per all-reduce (over all of them)."""
    shapes = GRADIENT_SHAPES

    @tf.function
    def all_reduce():
        def replica():
            context = tf.distribute.get_replica_context()
            return context.all_reduce(tf.distribute.ReduceOp.SUM, [tf.ones(shape) for shape in shapes])[-1][0]
        return strategy.run(replica)

    for _ in range(5):  # the first ones trace and set the collectives up
        float(strategy.experimental_local_results(all_reduce())[0])
    seconds, started_cpu = [], time.process_time()
    for _ in range(repeats):
        started = time.perf_counter()
        float(strategy.experimental_local_results(all_reduce())[0])
        seconds.append(time.perf_counter() - started)
    return seconds, (time.process_time() - started_cpu) / repeats


# =============================================================================
# The coordinator
# =============================================================================
def run_setting(args, role: str, scratch: Path) -> dict:
    """Starts the processes of one setting, waits for them, and returns the chief's figures."""
    command = [sys.executable, "-m", "bench.distributed", "--role", role, "--samples", str(args.samples),
               "--epochs", str(args.epochs), "--allreduce-repeats", str(args.allreduce_repeats),
               "--threads", str(args.threads)]
    count = 2 if role == "multi-worker" else 1
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(count)]
    processes = []
    for index in range(count):
        env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
        env.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(REPO))
        if role == "multi-worker":
            env["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})
        log = open(scratch / f"{role}-{index}.log", "wb")
        processes.append((subprocess.Popen(command + ["--out", str(scratch / f"{role}-{index}.json")], cwd=REPO,
                                           env=env, stdout=log, stderr=subprocess.STDOUT), log))
    deadline = time.monotonic() + args.timeout
    for process, log in processes:
        try:
            process.wait(max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other, _ in processes:
                other.kill()
        log.close()
    for index, (process, _) in enumerate(processes):
        if process.returncode != 0:
            tail = (scratch / f"{role}-{index}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{role} process {index} exited with {process.returncode}:\n{tail}")
    return json.loads((scratch / f"{role}-0.json").read_text())


def estimate(single: dict, multi: dict) -> list[dict]:
    """Predicted seconds per step and speed-up on N machines, per network and overhead assumption (see
    the module docstring): the measured compute of one machine's share, plus a ring all-reduce."""
    # Compute: CPU seconds per step of one single-threaded process (what a dedicated core takes; wall
    # time on this shared machine also counts the time other work held the core).
    step = {int(batch): statistics.median(seconds) / math.ceil(single["samples"] / int(batch))
            for batch, seconds in single["loop_cpu"].items()}  # batch -> seconds per step
    one = step[BATCH]
    # 2 processes here: 2 rounds of (overhead + half the data over loopback); the loopback transfer is
    # small next to the overhead, so the overhead per round is about half the measured all-reduce: its
    # CPU time (the work of TensorFlow and gRPC; its wall time here adds waiting for a core), or none.
    overheads = {"CPU time measured here": multi["allreduce_cpu"] / 2, "none (network only)": 0.0}
    rows = []
    for overhead_name, per_round in overheads.items():
        for network, (bandwidth, latency) in NETWORKS.items():
            for machines in MACHINES:
                rounds = 2 * (machines - 1)
                allreduce = rounds * (per_round + latency + GRADIENT_BYTES / machines / bandwidth)
                predicted = step[BATCH // machines] + allreduce
                rows.append({"overhead": overhead_name, "network": network, "machines": machines,
                             "compute": step[BATCH // machines], "allreduce": allreduce, "step": predicted,
                             "speedup": one / predicted})
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.role:
        result = measure(args)
        Path(args.out).write_text(json.dumps(result))
        return 0
    load_before = load_text()
    started = time.monotonic()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        for role in ("single", "mirrored", "multi-worker"):
            print(f"== {role}", flush=True)
            results[role] = run_setting(args, role, Path(tmp))
    data = {"machine": machine(), "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "settings": {"samples": args.samples, "epochs": args.epochs, "batch": BATCH,
                                               "allreduce_repeats": args.allreduce_repeats, "threads": args.threads,
                                               "gradient_bytes": GRADIENT_BYTES},
            "load_average": [load_before, load_text()], "seconds": time.monotonic() - started,
            "results": results, "estimate": estimate(results["single"], results["multi-worker"])}
    for line in report_lines(data):
        print(line)
    write_json(args.json, data)
    return 0


def rows(data: dict) -> list[list[str]]:
    """The measured table: setting, seconds per epoch, ms per step, all-reduce ms, step vs 1 process."""
    results, samples = data["results"], data["settings"]["samples"]
    steps = math.ceil(samples / BATCH)
    base = statistics.median(results["single"]["loop"][str(BATCH)])
    table = []

    def loop_of(result):
        return result["loop"][str(BATCH)]

    single, mirrored, multi = results["single"], results["mirrored"], results["multi-worker"]
    entries = [("1 process, `fit` (train.py without --strategy)", single["fit"], single["fit_cpu"], None),
               ("1 process, our loop (default strategy)", loop_of(single), single["loop_cpu"][str(BATCH)], single),
               ("mirrored, 2 logical CPU devices, 1 process", loop_of(mirrored), mirrored["loop_cpu"][str(BATCH)],
                mirrored),
               ("multi-worker, 2 processes on 127.0.0.1 (worker 0)", loop_of(multi), multi["loop_cpu"][str(BATCH)],
                multi)]
    for name, seconds, cpu, allreduce in entries:
        table.append([name, spread(seconds, unit=" s"), spread(seconds, ".1f", " ms", 1000 / steps),
                      spread(cpu, ".1f", " ms", 1000 / steps),
                      f"{spread(allreduce['allreduce'], '.2f', ' ms', 1000)}; CPU {1000 * allreduce['allreduce_cpu']:.2f} ms"
                      if allreduce else "-",
                      f"{statistics.median(seconds) / base:.2f}x"])
    return table


def overhead_per_step(data: dict) -> dict[str, float]:
    """Median seconds per step of each distributed setting minus that of one process (our loop)."""
    results, steps = data["results"], math.ceil(data["settings"]["samples"] / BATCH)
    one = statistics.median(results["single"]["loop"][str(BATCH)]) / steps
    return {name: statistics.median(results[role]["loop"][str(BATCH)]) / steps - one
            for name, role in (("mirrored", "mirrored"), ("multi-worker", "multi-worker"))}


def report_lines(data: dict) -> list[str]:
    settings = data["settings"]
    lines = markdown_table(["setting", "seconds per epoch", "ms per step", "CPU ms per step (the process)",
                            "all-reduce alone, ms (wall; process CPU)", "epoch time vs 1 process (our loop)"], rows(data))
    lines += ["", "Distribution overhead per step (step time minus 1 process's at the same global batch): "
              + "; ".join(f"{name} {1000 * value:.1f} ms" for name, value in overhead_per_step(data).items()) + "."]
    lines += ["", f"{settings['samples']} MNIST images per epoch, global batch {settings['batch']}, our Adam; "
              f"median (min-max) over {settings['epochs']} timed epochs after a warm-up one, and over "
              f"{settings['allreduce_repeats']} all-reduces of {settings['gradient_bytes'] / 1024:.0f} KiB; "
              f"TensorFlow intra-op threads {settings['threads']} per process. Measured {data['finished_utc']} at "
              f"commit {data['machine']['commit']}; load average {data['load_average'][0]} before, "
              f"{data['load_average'][1]} after (2 cores, shared with other work).", ""]
    lines += markdown_table(["software overhead per message", "network", "machines",
                             "compute per step (measured at 128/N)", "all-reduce per step (modelled)", "step",
                             "speed-up over 1 machine"],
                            [[r["overhead"], r["network"], r["machines"], f"{1000 * r['compute']:.2f} ms",
                              f"{1000 * r['allreduce']:.2f} ms", f"{1000 * r['step']:.2f} ms", f"{r['speedup']:.2f}x"]
                             for r in data["estimate"]])
    return lines


if __name__ == "__main__":
    sys.exit(main())
