"""Run every benchmark in one go and rewrite docs/benchmarks.md (tables, plots, the machine, the commands).

    python -m bench.run_all                 # the full set, about 25 minutes on 2 cores
    python -m bench.run_all --quick         # a smoke version (about 1 minute): tiny sizes, same report
    python -m bench.run_all --only serving,numpy --output /tmp/b.md
    python -m bench.run_all --render-only   # rewrite docs/benchmarks.md from docs/benchmarks/results.json
    python -m bench.run_all --only serving --merge   # rerun one stage; keep the others' figures

Each benchmark runs as a subprocess with ``--json`` (``python -m bench.numpy_training``, ``bench.keras_mirror``,
``bench.backends``, ``bench.training_accuracy``, ``bench.serving``, ``bench.distributed``), plus ``python training/train.py --no-export`` with its
defaults, whose metrics.json and history.csv are read back. Every subprocess has a time limit; one that
fails or times out is reported as such in the document and the others still run. The report gives
every timing as median (min-max) over its repeats, and the ratios against the baselines measured side
by side in the same run (the servers take turns, the training engines alternate epoch by epoch).
Plots go to ``docs/benchmarks/`` (``--plots-dir``) with the raw figures (``results.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bench.support import machine, pyplot, save_figure, spread
from tests.support import REPO, markdown_table as table, mnist_dir

PY = sys.executable
TRAIN_RUNS = 2  # python training/train.py runs (same seed: same accuracy; the time varies)


@dataclass(frozen=True)
class Stage:
    """One benchmark of the run: its title in the report, its module under bench/ (None: training/train.py),
    its time limit in seconds, and its options in a ``--quick`` run and in a full one."""

    title: str
    module: str | None
    timeout: int
    quick: tuple[str, ...]
    full: tuple[str, ...]


STAGE_SPECS = {
    "numpy": Stage("NumPy epoch vs the tutorial's loop", "numpy_training", 400,
                   quick=("--repeats", "1", "--loop-samples", "500"),
                   full=("--repeats", "5", "--loop-samples", "6000", "--threads", "1")),
    "keras": Stage("Keras mirror vs built-in Keras", "keras_mirror", 400,
                   quick=("--repeats", "1", "--samples", "6000", "--threads", "1"),
                   full=("--repeats", "5", "--threads", "1")),
    "backends": Stage("Keras backends side by side", "backends", 900,
                      quick=("--epochs", "2", "--limit-train", "3000", "--threads", "1"),
                      full=("--epochs", "10", "--threads", "1")),
    "accuracy": Stage("accuracy against training time", "training_accuracy", 1800,
                      quick=("--epochs", "2", "--limit-train", "3000"),
                      full=("--repeats", "2", "--threads", "1")),
    "train": Stage("python training/train.py", None, 400, quick=("--epochs", "1", "--limit-train", "3000"), full=()),
    "serving": Stage("serving", "serving", 600, quick=("--requests", "60", "--max-seconds", "2", "--repeats", "1"),
                     full=("--requests", "1500", "--max-seconds", "10", "--repeats", "3")),
    "distributed": Stage("distributed training: 1 process, mirrored, multi-worker", "distributed", 1500,
                         quick=("--samples", "12000", "--epochs", "3", "--allreduce-repeats", "50"),
                         full=("--epochs", "3", "--allreduce-repeats", "100")),
}
STAGES = tuple(STAGE_SPECS)


def stage_commands(quick: bool, scratch: Path) -> dict:
    """name -> (title, argv, timeout seconds, json path or None)."""
    commands = {}
    for name, stage in STAGE_SPECS.items():
        json_path = None if stage.module is None else scratch / f"{name}.json"
        commands[name] = (stage.title, stage_argv(name, stage, quick, scratch), stage.timeout, json_path)
    return commands


def stage_argv(name: str, stage: Stage, quick: bool, scratch: Path) -> list[str]:
    """The stage's command: train.py without an export into a scratch run folder, or the benchmark module
    with ``--json`` into ``scratch`` (serving: given a model folder that does not exist, so that it makes
    its own small export; accuracy: its plot into ``scratch`` too)."""
    options = stage.quick if quick else stage.full
    if stage.module is None:
        return [PY, "training/train.py", *options, "--no-export", "--run-dir", str(scratch / "train-run")]
    before = ["--model-dir", str(scratch / "no-export")] if name == "serving" else []
    after = ["--plot", str(scratch / "accuracy_vs_time.png")] if name == "accuracy" else []
    return [PY, "-m", f"bench.{stage.module}", *before, *options, "--json", str(scratch / f"{name}.json"), *after]


def shown(argv: list[str], scratch: Path) -> str:
    """The command as a reader would type it (temporary paths as placeholders)."""
    out = ["python" if a == PY else a.replace(str(scratch), "$TMP") for a in argv]
    return " ".join(out)


def run_stage(name, title, argv, timeout, json_path, scratch, log, mnist) -> dict:
    print(f"== {name}: {shown(argv, scratch)}", flush=True)
    started = time.monotonic()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    if mnist:
        env["MNIST_DATA_DIR"] = mnist
    with open(log, "w") as out:
        try:
            code = subprocess.run(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
            error = None if code == 0 else f"exited with status {code}"
        except subprocess.TimeoutExpired:
            error = f"timed out after {timeout} s"
    seconds = time.monotonic() - started
    result = {"title": title, "command": shown(argv, scratch), "seconds": seconds, "error": error}
    if error:
        result["log_tail"] = Path(log).read_text(errors="replace")[-2000:]
        print(f"   FAILED ({error}); last lines:\n{result['log_tail'][-800:]}", flush=True)
        return result
    if json_path is not None:
        result["data"] = json.loads(Path(json_path).read_text())
    print(f"   done in {seconds:.0f} s", flush=True)
    return result


# ---- formatting -----------------------------------------------------------------------------------
def failed(stage: dict) -> list[str]:
    return [f"**Not measured: the command {stage['error']}.** Last lines of its output:", "", "```text",
            stage.get("log_tail", "")[-1500:], "```"]


def section_train(stage: dict, scratch: Path) -> list[str]:
    lines = ["## `python training/train.py`: the default training run", ""]
    arguments = (stage.get("runs") or [{}])[0].get("arguments")
    if arguments and "augment" in arguments:
        from argparse import Namespace

        from training.augment import Augmentation

        recipe = (f"the Keras mirror, {arguments['epochs']} epochs, batch {arguments['batch_size']}, Adam "
                  f"{arguments['learning_rate']:g} with cosine decay, augmentation "
                  f"{Augmentation.from_args(Namespace(**arguments)).describe()} prepared in a background thread, "
                  f"{100 * arguments['validation_fraction']:.0f} % validation")
    else:
        recipe = ("the Keras mirror, 30 epochs, batch 128, Adam 2e-3 with cosine decay, shifts of up to 2 pixels, "
                  "10 % validation")
    lines += [f"Command: `{stage['command']}` (the defaults: {recipe}; `--no-export` only skips the SavedModel). "
              "TensorFlow uses its default thread pools here, as a user's run would.", ""]
    if stage["error"]:
        return lines + failed(stage)
    runs = stage["runs"]
    accuracy = [r["test"]["accuracy"] * 100 for r in runs]
    header = ["test accuracy", "test loss", "epochs", "training time (sum of epochs, incl. validation)",
              "seconds per epoch"]
    cells = [spread(accuracy, ".2f", " %"), spread([r["test"]["loss"] for r in runs], ".4f"),
             runs[0]["epochs_completed"], spread([r["training_seconds"] for r in runs], ".1f", " s"),
             spread([seconds for r in runs for seconds in r["epoch_seconds"]], unit=" s")]
    if all(r.get("data_seconds_per_epoch") for r in runs):
        header += ["augmentation per epoch (background thread)", "waited for it per epoch"]
        cells += [spread([s for r in runs for s in r["data_seconds_per_epoch"]], unit=" s"),
                  spread([s for r in runs for s in r["data_wait_seconds_per_epoch"]], unit=" s")]
    lines += table(header + ["wall time of the command"],
                   [cells + [spread([r["seconds"] for r in runs], ".0f", " s")]])
    overlap = (" The next epoch's data is prepared in a background thread while one trains; \"waited\" is the "
               "part of it that training did not hide." if "data_seconds_per_epoch" in runs[0] else "")
    lines += ["", f"{len(runs)} run(s) of the same command, one after the other; median (min-max) over the runs "
              "(per-epoch times: over all their epochs). The same seed gives the same weights, so the accuracy "
              f"does not vary.{overlap} The wall time adds TensorFlow's import, loading MNIST, a checkpoint per "
              "epoch, the test evaluation and the plots."]
    return lines


def section_accuracy(stage: dict, plot_link: str | None) -> list[str]:
    lines = ["## Accuracy against time: the default recipe vs the previous one; NumPy, the Keras mirror and "
             "built-in Keras", ""]
    if stage["error"]:
        return lines + [f"Command: `{stage['command']}`", ""] + failed(stage)
    data = stage["data"]
    settings, per_variant = data["settings"], data["summary"]
    if stage.get("note"):  # a section measured apart from the rest of the document says so
        lines += [f"*{stage['note']}*", ""]
    described = "; ".join(
        f"**{name}**: {r['epochs']} epochs, batch {r['batch_size']}, Adam {r['learning_rate']:g} with cosine decay, "
        f"{r['augmentation_text']}" for name, r in settings["recipes"].items())
    reduced = [f"every recipe cut to {settings['epochs_override']} epochs" if settings.get("epochs_override") else "",
               f"the first {settings['limit_train']} training images only" if settings.get("limit_train") else ""]
    reduced = [text for text in reduced if text]
    lines += [f"Command: `{stage['command']}`", "",
              f"The 784-128-64-10 ReLU network on the same 90/10 split, with two recipes ({described}; default "
              "is what `train.py` does now, previous what it did before issue 14), each trained by `NumpyNetwork` "
              "+ our NumPy Adam (numpy), by the Keras mirror (ScratchDense + ScratchAdam through "
              "`compile_for_training`: mirror) and by built-in Keras (`Dense` + `keras.optimizers.Adam` + "
              "`CosineDecay` + `SparseCategoricalCrossentropy(from_logits=True)`: built-in) on the same augmented "
              "data. The variants train epoch by epoch in turn (rotating order); test accuracy on the 10,000 "
              "test images after every epoch (not timed). A variant's time is its `fit` time plus its recipe's "
              "data preparation (`training.augment.epoch_data`, timed once per recipe and epoch), as a loop "
              "preparing each epoch in line would spend (`train.py` overlaps the two: its wall time is in the "
              "section above); the first Keras epoch includes tracing the train function. Threads: TensorFlow "
              f"intra-op {data['threads']['tensorflow_intra_op']}, inter-op {data['threads']['tensorflow_inter_op']}; "
              f"{'; '.join(data['threads']['blas'])}." + (f" **Reduced run: {'; '.join(reduced)}.**" if reduced else ""),
              ""]
    base = per_variant.get("built-in, default")
    rows = []
    for name, figures in per_variant.items():
        cells = [f"**{name}**", str(figures["epochs"]), spread(figures["final_test_accuracy"], ".2f", " %", 100),
                 spread(figures["epoch_seconds"], unit=" s"), spread(figures["data_seconds"], unit=" s"),
                 spread(figures["total_seconds"], ".1f", " s")]
        cells += [time_to_target(figures[key]) for key in ("time_to_98", "time_to_99")]
        if base is not None:
            cells.append(f"{figures['epoch_seconds']['median'] / base['epoch_seconds']['median']:.2f}x")
        rows.append(cells)
    header = ["variant", "epochs", "final test accuracy", "fit seconds per epoch", "data seconds per epoch",
              "total time (fit + data)", "time to 98 %", "time to 99 %"] + (
        ["fit time per epoch vs built-in, default"] if base else [])
    lines += table(header, rows)
    lines += ["", f"{settings['repeats']} run(s) per variant (seeds 0 to {settings['repeats'] - 1}): final accuracy, "
              "total time and the times to 98 % and 99 % are median (min-max) over the runs; seconds per epoch "
              "over all their epochs. A time to a target is the cumulative time (fit + data) at the end of the "
              "first epoch whose test accuracy reached it (the epoch shown is the median of those epochs). "
              f"1-minute load average {data['load_average']['before'][0]:.2f} at the start, "
              f"{data['load_average']['after'][0]:.2f} at the end."]
    if plot_link:
        lines += ["", f"![test accuracy against cumulative time]({plot_link})", "",
                  "One line per run and variant: the colour is the engine; solid lines the default recipe, dotted "
                  "the previous one; seed 0 opaque, other seeds faded."]
    return lines


def time_to_target(reached: dict) -> str:
    """"4.1 s (3.9-4.3); epoch 7", or "not reached", from training_accuracy's time_to_98/99 figures."""
    if reached["seconds"] is None:
        return "not reached"
    missed = f", reached in {reached['reached']} of {reached['runs']} runs" if reached["reached"] < reached["runs"] else ""
    return f"{spread(reached['seconds'], '.1f', ' s')}; epoch {reached['epochs']['median']:.0f}{missed}"


def section_numpy(stage: dict) -> list[str]:
    lines = ["## One NumPy training epoch: vectorised vs the tutorial's per-sample loop", ""]
    lines += [f"Command: `{stage['command']}`", ""]
    if stage["error"]:
        return lines + failed(stage)
    data = stage["data"]
    tutorial = statistics.median(data["seconds"]["per-sample loop, tutorial"])
    peak = data["peak_gflops"]["128x784x128"]
    rows = []
    for name, values in data["seconds"].items():
        median = statistics.median(values)
        rows.append([name, spread(values, unit=" s"), f"{data['epoch_flops'] / median / 1e9:.1f}",
                     f"{data['epoch_flops'] / median / 1e9 / peak:.0%}", f"{tutorial / median:.1f}x"])
    lines += table(["variant (60,000 images)", "seconds per epoch, median (min-max)", "GFLOP/s",
                    "share of the (128x784)@(784x128) matmul peak", "speed-up over the tutorial's loop"], rows)
    lines += ["", f"{data['repeats']} repeat(s), alternating variants; BLAS: {'; '.join(data['blas'])}. The per-sample "
              f"loops ran on {data['loop_samples']} images, scaled to 60,000. float32 matmul peak of this machine: "
              f"{peak:.1f} GFLOP/s at (128x784)@(784x128), {data['peak_gflops']['2048^3']:.1f} GFLOP/s at 2048^3."]
    return lines


def section_keras(stage: dict) -> list[str]:
    lines = ["## One Keras training epoch: our mirror vs built-in Keras", "", f"Command: `{stage['command']}`", ""]
    if stage["error"]:
        return lines + failed(stage)
    data = stage["data"]
    rows = [[name, spread(values, unit=" s"), spread(data["cpu_seconds"][name], unit=" s"),
             f"{data['train_accuracy'][name]:.4f}"] for name, values in data["seconds"].items()]
    lines += table(["implementation", "wall seconds per epoch, median (min-max)", "CPU seconds per epoch",
                    "train accuracy (last epoch)"], rows)
    ours, theirs, pairs = data["seconds"]["ours"], data["seconds"]["built-in"], data["pair_ratios"]
    lines += ["", f"Ratio ours / built-in: of the medians **{statistics.median(ours) / statistics.median(theirs):.2f}**, "
              f"of the minima {min(ours) / min(theirs):.2f}, median of the per-repeat ratios "
              f"{statistics.median(pairs):.2f} (range {min(pairs):.2f}-{max(pairs):.2f}). "
              f"{data['repeats']} timed epoch(s) each after one warm-up epoch, back to back in alternating order; "
              f"{data['samples']} {data['data']} samples, batch {data['batch_size']}; TensorFlow intra-op "
              f"{data['threads']['intra_op']}, inter-op {data['threads']['inter_op']} threads."]
    return lines


def section_backends(stage: dict) -> list[str]:
    lines = ["## One training epoch on each Keras backend, the NumPy twin and built-in Keras", "",
             f"Command: `{stage['command']}`", ""]
    if stage["error"]:
        return lines + failed(stage)
    data = stage["data"]
    rows = [backends_row(name, entry, data["workers"][name]) for name, entry in data["summary"].items()]
    lines += table(["variant", "library", "first epoch (incl. tracing/compiling)", "seconds per later epoch",
                    "CPU seconds per later epoch", "vs tensorflow", "vs numpy", "time to 97 %", "time to 98 %",
                    "final test accuracy"], rows)
    return lines + ["", backends_notes(data)]


def backends_row(name: str, entry: dict, worker: dict) -> list[str]:
    """One variant's row of the backends table."""
    def reached(key):
        seconds, epoch = entry[key]["seconds"], entry[key]["epoch"]
        return f"{seconds:.1f} s (epoch {epoch})" if seconds is not None else "not reached"

    library = f"{worker['backend']} {worker['version']}" if "backend" in worker else "numpy"
    return [f"**{name}**", library, f"{entry['first_epoch_seconds']:.2f} s", spread(entry["epoch_seconds"],
            unit=" s"), spread(entry["epoch_cpu_seconds"], unit=" s"),
            f"{entry['ratio_to_tensorflow']:.2f}x" if "ratio_to_tensorflow" in entry else "-",
            f"{entry['ratio_to_numpy']:.2f}x" if "ratio_to_numpy" in entry else "-",
            reached("time_to_97"), reached("time_to_98"), f"{100 * entry['final_test_accuracy']:.2f} %"]


def backends_notes(data: dict) -> str:
    """What the backends table measured, and how."""
    settings = data["settings"]
    images = next(iter(data["workers"].values()))["train_images"]
    return (f"The 784-128-64-10 ReLU network with the hyperparameters of `train.py` (Adam {settings['learning_rate']:g}, "
            f"cosine decay over {settings['epochs']} epochs, batch {settings['batch_size']}, shifts of up to "
            f"{settings['augment_shift']} px, the 90/10 split: {images} training images), seed {settings['seed']}. "
            "tensorflow / tensorflow-xla / torch / jax: the Keras mirror (ScratchDense + ScratchAdam) on that "
            "backend (tensorflow: Keras's CPU default, a graph without XLA; tensorflow-xla: `jit_compile=True`; "
            "torch: eager; jax: jit-compiled, as `train.py --backend jax`); numpy: `NumpyNetwork` + our NumPy "
            "Adam; builtin: `Dense` + `keras.optimizers.Adam` on TensorFlow. Each variant runs in a worker "
            "process of its own (one Keras backend per process); the workers take turns epoch by epoch in a "
            f"rotating order, one at a time, on identical data, each with {settings['threads']} thread(s) in "
            "every library. Seconds per epoch: median (min-max) over the epochs after the first; times to a "
            "target: cumulative training time (the first epoch included) at the end of the first epoch whose "
            "test accuracy reached it (measured after each epoch, untimed); ratios: of the median epoch times. "
            f"{settings['epochs'] - 1} later epoch(s) per variant; 1-minute load average "
            f"{data['load_average']['before'][0]:.2f} at the start, {data['load_average']['after'][0]:.2f} at the end "
            "(wall times well above CPU times mean other processes took the cores).")


def section_serving(stage: dict, plot_link: str | None) -> list[str]:
    lines = ["## Serving: the service vs the tutorial's Flask + `model.predict`", "",
             f"Command: `{stage['command']}`", ""]
    if stage["error"]:
        return lines + failed(stage)
    data = stage["data"]
    res = data["results"]
    rows = []
    for scenario in res["service"]:
        for server in res:
            runs = res[server][scenario]
            rows.append([scenario, server, sum(r["requests"] for r in runs), spread([r["rps"] for r in runs], ".1f"),
                         spread([r["p50"] for r in runs]), spread([r["p99"] for r in runs]),
                         sum(r["errors"] for r in runs)])
    lines += table(["scenario", "server", "requests", "requests/s", "p50 ms", "p99 ms", "errors"], rows)
    if "baseline" in res:
        lines += ["", "Ratios service / baseline, per repeat (each repeat measures both back to back), "
                  "median (min-max):", ""]
        lines += table(["scenario", "throughput", "p50 latency", "p99 latency"], serving_ratio_rows(res))
    st = data["settings"]
    lines += ["", f"Every figure: median (min-max) over {st['repeats']} repeat(s); each repeat sends up to "
              f"{st['requests']} requests per single-instance scenario (a quarter for batches), at most "
              f"{st['max_seconds']:.0f} s, from separate client processes with one keep-alive connection each. "
              f"Service: gunicorn, {st['workers']} {st['worker_class']} workers (service/gunicorn.conf.py), "
              "requests run on each worker's event loop, TF_NUM_THREADS=1; batching: the same with "
              f"ENABLE_BATCHING=1, requests in {st['threads']} threads per worker. Baseline: "
              f"Flask's own threaded server, Keras `model.predict` per request. Model: {data['model']}; "
              f"single-instance body {data['body_bytes']} bytes (a real MNIST test digit as JSON floats). Both "
              "servers stay up and take turns, scenario by scenario, in alternating order."]
    if plot_link:
        lines += ["", f"![latency percentiles, service vs baseline]({plot_link})"]
    return lines


def serving_ratio_rows(res: dict) -> list[list[str]]:
    """Per scenario, service / baseline of throughput and latencies: median (min-max) over the repeats."""
    rows = []
    for scenario in res["service"]:
        pairs = list(zip(res["service"][scenario], res["baseline"][scenario]))
        rows.append([scenario, spread([ours["rps"] / theirs["rps"] for ours, theirs in pairs], ".1f", "x"),
                     spread([ours["p50"] / theirs["p50"] for ours, theirs in pairs], ".3f", "x"),
                     spread([ours["p99"] / theirs["p99"] for ours, theirs in pairs], ".3f", "x")])
    return rows


def plot_serving(data: dict, path: Path) -> None:
    plt = pyplot()
    res = data["results"]
    scenarios = list(res["service"])
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4 * len(scenarios), 4), dpi=110, sharey=True)
    colours = {"service": "tab:blue", "baseline": "tab:red"}
    for ax, scenario in zip(axes, scenarios):
        for server in res:
            runs = res[server][scenario]
            qs = list(runs[0]["percentiles"])
            median = [statistics.median(r["percentiles"][q] for r in runs) for q in qs]
            low = [min(r["percentiles"][q] for r in runs) for q in qs]
            high = [max(r["percentiles"][q] for r in runs) for q in qs]
            positions = range(len(qs))
            ax.plot(positions, median, marker="o", color=colours.get(server), label=server)
            ax.fill_between(positions, low, high, color=colours.get(server), alpha=0.2)
            ax.set_xticks(list(positions), [f"p{q}" for q in qs])
        ax.set_yscale("log")
        ax.set_title(scenario, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency, ms (log scale; band: min-max over repeats)")
    axes[0].legend()
    save_figure(fig, path)


def section_distributed(stage: dict) -> list[str]:
    lines = ["## Distributed training: 1 process, MirroredStrategy, MultiWorkerMirroredStrategy", "",
             f"Command: `{stage['command']}`", ""]
    if stage["error"]:
        return lines + failed(stage)
    from bench.distributed import report_lines

    lines += ["`train.py --strategy` trains through `training.distributed.DistributedEngine` (docs/distributed.md). "
              "Each setting trains the same network with our Adam on the same images, in fresh processes, one "
              "setting after the other; the all-reduce (the gradient-sized SUM our optimizer issues every step) is "
              "also timed alone. On one 2-core machine shared with other work no speed-up is possible: the table "
              "shows what distribution costs here, and the second one what it would give on N machines.", ""]
    lines += report_lines(stage["data"])
    lines += ["", "The estimate: compute per step is one process's measured step at batch 128/N (a machine's share); "
              "the all-reduce is TensorFlow's ring (2(N-1) messages of 1/N of the 427 KiB each) with the network's "
              "latency and bandwidth, plus a software overhead per message taken from the all-reduce between 2 "
              "local processes measured here (its CPU time; its wall time on this loaded machine also includes "
              "waiting to be scheduled), or none (an upper bound on the speed-up). This 109k-parameter MLP "
              "computes a step in under a millisecond of CPU, most of it fixed per-step work that does not shrink "
              "with the batch, and exchanging its gradients costs about as much even on a fast network: expect "
              "little or no speed-up at batch 128. Data parallelism pays when a step computes much more per byte "
              "of gradient (larger models, or larger batches per worker). `fit`'s seconds per epoch include the "
              "set-up of each `fit` call (train.py calls it once per epoch), large next to a small epoch."]
    return lines


def read_train_run(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    with open(run_dir / "history.csv") as history:
        rows = list(csv.DictReader(history))
    metrics["epoch_seconds"] = [float(row["seconds"]) for row in rows]
    if rows and "data_seconds" in rows[0]:
        metrics["data_seconds_per_epoch"] = [float(row["data_seconds"]) for row in rows]
        metrics["data_wait_seconds_per_epoch"] = [float(row["data_wait_seconds"]) for row in rows]
    return metrics


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the pipeline in a few minutes")
    parser.add_argument("--only", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--plots-dir", type=Path, default=None,
                        help="plots and results.json (default: a 'benchmarks' folder beside --output)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other stages of the plots folder's results.json and replace only the "
                             "--only stages (the document marks them as rerun)")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rewrite the document from the plots folder's results.json")
    args = parser.parse_args(argv)
    args.only = [stage.strip() for stage in args.only.split(",") if stage.strip()]
    if set(args.only) - set(STAGES):
        parser.error(f"unknown stages {sorted(set(args.only) - set(STAGES))}; choose from {','.join(STAGES)}")
    args.output = args.output.resolve()
    args.plots_dir = (args.plots_dir or args.output.parent / "benchmarks").resolve()
    if (args.merge or args.render_only) and not (args.plots_dir / "results.json").is_file():
        parser.error(f"{args.plots_dir / 'results.json'} does not exist: run without --merge/--render-only first")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    plots = args.plots_dir
    if args.render_only:
        render(json.loads((plots / "results.json").read_text()), args.output, plots)
        print(f"wrote {args.output} from {plots / 'results.json'}")
        return 0
    started = time.monotonic()
    info = machine()
    load_before = os.getloadavg()
    stages = run_stages(args.only, args.quick, plots)
    total = time.monotonic() - started
    results = {"machine": info, "quick": args.quick, "seconds": total, "only": args.only,
               "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "load_average": [load_before, os.getloadavg()], "stages": stages}
    if args.merge:
        results = merged(json.loads((plots / "results.json").read_text()), results)
    (plots / "results.json").write_text(json.dumps(results, indent=1, default=str))
    render(results, args.output, plots)
    print(f"wrote {args.output} and {plots}/ in {total / 60:.1f} minutes")
    return 1 if any(stage["error"] for stage in stages.values()) else 0


def merged(previous: dict, rerun: dict) -> dict:
    """``previous`` (a saved results.json) with the stages of ``rerun`` in place of its own, each marked
    with when, at which commit and under which load it was rerun (the document says so)."""
    load_before, load_after = rerun["load_average"]
    for name, stage in rerun["stages"].items():
        stage["rerun"] = (f"{rerun['finished_utc']}, commit {rerun['machine']['commit']}, load average "
                          f"{load_before[0]:.2f} at the start, {load_after[0]:.2f} at the end")
        previous["stages"][name] = stage
    return previous


def run_stages(only: list[str], quick: bool, plots: Path) -> dict:
    """Each stage in ``only``, in a scratch folder; its plots copied or drawn into ``plots``."""
    folder = mnist_dir()
    mnist = str(folder) if folder else None
    stages = {}
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        scratch = Path(tmp)
        commands = stage_commands(quick, scratch)
        for name in only:
            title, argv, timeout, json_path = commands[name]
            if name == "train":
                stages[name] = run_train_stage(title, argv, timeout, scratch, mnist, 1 if quick else TRAIN_RUNS)
            else:
                stages[name] = run_stage(name, title, argv, timeout, json_path, scratch, scratch / f"{name}.log",
                                         mnist)
        plots.mkdir(parents=True, exist_ok=True)
        if "accuracy" in stages and not stages["accuracy"]["error"]:
            (plots / "accuracy_vs_time.png").write_bytes((scratch / "accuracy_vs_time.png").read_bytes())
        if "serving" in stages and not stages["serving"]["error"]:
            plot_serving(stages["serving"]["data"], plots / "serving_latency.png")
    return stages


def run_train_stage(title: str, argv: list[str], timeout: float, scratch: Path, mnist: str | None,
                    count: int) -> dict:
    """``python training/train.py`` ``count`` times, one after the other; metrics.json and history.csv
    of each run read back."""
    runs = []
    for number in range(1, count + 1):
        run_dir = scratch / f"train-run-{number}"
        runs.append(run_stage("train", title, argv[:-1] + [str(run_dir)], timeout, None, scratch,
                              scratch / f"train-{number}.log", mnist))
        if runs[-1]["error"]:
            break
        runs[-1]["data"] = read_train_run(run_dir)
    return {**runs[-1], "command": runs[0]["command"].replace("train-run-1", "train-run"),
            "seconds": sum(run["seconds"] for run in runs),
            "runs": [{"seconds": run["seconds"], **run.get("data", {})} for run in runs]}


def render(results: dict, output: Path, plots: Path) -> None:
    """Write the document from the figures (also ``--render-only``: from a saved results.json)."""
    from training.atomic import write_bytes_atomic

    stages = results["stages"]
    only = results.get("only") or [name for name in STAGES if name in stages]
    links = {name: os.path.relpath(plots / png, output.parent)
             for name, png in (("accuracy", "accuracy_vs_time.png"), ("serving", "serving_latency.png"))
             if name in stages and not stages[name]["error"] and (plots / png).is_file()}
    sections = {"train": lambda stage: section_train(stage, None),
                "accuracy": lambda stage: section_accuracy(stage, links.get("accuracy")),
                "numpy": section_numpy, "keras": section_keras, "backends": section_backends,
                "serving": lambda stage: section_serving(stage, links.get("serving")),
                "distributed": section_distributed}
    lines = header_lines(results, os.path.relpath(plots / "results.json", output.parent))
    lines += table(["benchmark", "command", "minutes"],
                   [[stages[name]["title"], f"`{stages[name]['command']}`", f"{stages[name]['seconds'] / 60:.1f}"
                     + (f" ({stages[name]['error']})" if stages[name]["error"] else "")] for name in only])
    lines.append("")
    for name in ("train", "accuracy", "numpy", "keras", "backends", "serving", "distributed"):
        if name in stages:
            section = sections[name](stages[name])
            if stages[name].get("rerun"):
                section[1:1] = ["", f"Rerun on its own (`--only {name} --merge`): {stages[name]['rerun']}; "
                                    "the other sections come from the run described at the top."]
            lines += section + [""]
    lines += section_peers(plots / PEERS_JSON, output)
    write_bytes_atomic(output, "\n".join(lines).encode())


PEERS_JSON = "peers.json"  # python -m bench.peers --json docs/benchmarks/peers.json (not run by run_all: ~20 min)


def section_peers(path: Path, output: Path) -> list[str]:
    """The serving frameworks side by side (bench/peers.py), from its last saved run, if there is one."""
    if not path.is_file():
        return []
    from bench.peers import report_from_json

    data = json.loads(path.read_text())
    link = os.path.relpath(path, output.parent)
    return ["## Serving against the Python serving frameworks", "",
            "`python -m bench.peers --json docs/benchmarks/peers.json --markdown` (not part of `run_all`: it "
            "builds a virtual environment per framework and takes about 20 minutes), run on its own on "
            f"{data['when']}; raw figures: [`{link}`]({link}). Every server loads the same SavedModel and passes "
            "a correctness gate first; the servers take turns in every repeat; wrk -t1 with keep-alive "
            "connections; CPU per request and PSS over each server's whole process tree.", "",
            report_from_json(data), ""]


def header_lines(results: dict, raw_link: str) -> list[str]:
    """The title, how the document was made, the run, the machine and the libraries."""
    info = results["machine"]
    load_before, load_after = results["load_average"]
    return [
        "# Benchmarks",
        "",
        "Written by `python -m bench.run_all`" + (" **--quick** (smoke sizes: not meaningful figures)"
                                                  if results["quick"] else "")
        + "; do not edit by hand. Rerun it to reproduce (about 25 minutes on 2 cores; real MNIST from "
        "`MNIST_DATA_DIR`).",
        "",
        f"- Run: {results.get('finished_utc', 'unknown')}, commit {info['commit']}, "
        f"{results['seconds'] / 60:.1f} minutes in all.",
        f"- Machine: {info['cores']} cores ({info['cpu']}), {info['memory']} memory, {info['os']}; load average "
        f"{load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} (1/5/15 min) at the start, "
        f"{load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f} at the end"
        + (f"; environment {info['openblas_env']} (forces OpenBLAS kernels)" if info["openblas_env"] else "") + ".",
        "- Libraries: " + ", ".join(f"{package} {version}" for package, version in info["versions"].items())
        + f"; NumPy's BLAS: {', '.join(info['blas'])}"
        + (" (`OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` unset, so OpenBLAS picks its kernels itself)."
           if not info["openblas_env"] else "."),
        "- The machine is shared (other work may run beside the benchmarks): compare figures within this run, "
        "where the baselines were measured side by side, rather than across runs.",
        f"- Raw figures: [`{raw_link}`]({raw_link}).",
        "",
    ]


if __name__ == "__main__":
    sys.exit(main())
