"""The stages of ``python -m bench.run_all``: each benchmark as a subprocess with a time limit and its
options in a ``--quick`` and a full run, its figures read back (``--json``, or train.py's run files);
and ``merged``, which puts a rerun stage into a saved run.

Each benchmark runs as ``python -m bench.NAME ... --json PATH``, plus ``python training/train.py
--no-export`` with its defaults. A stage that fails or times out is reported as such (its log's end
kept for the document), and the others still run.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.serving_sections import plot_serving
from bench.support import REPO, mnist_dir

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


def read_train_run(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    with open(run_dir / "history.csv") as history:
        rows = list(csv.DictReader(history))
    metrics["epoch_seconds"] = [float(row["seconds"]) for row in rows]
    if rows and "data_seconds" in rows[0]:
        metrics["data_seconds_per_epoch"] = [float(row["data_seconds"]) for row in rows]
        metrics["data_wait_seconds_per_epoch"] = [float(row["data_wait_seconds"]) for row in rows]
    return metrics


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


def merged(previous: dict, rerun: dict) -> dict:
    """``previous`` (a saved results.json) with the stages of ``rerun`` in place of its own, each marked
    with when, at which commit and under which load it was rerun (the document says so)."""
    load_before, load_after = rerun["load_average"]
    for name, stage in rerun["stages"].items():
        stage["rerun"] = (f"{rerun['finished_utc']}, commit {rerun['machine']['commit']}, load average "
                          f"{load_before[0]:.2f} at the start, {load_after[0]:.2f} at the end")
        previous["stages"][name] = stage
    return previous
