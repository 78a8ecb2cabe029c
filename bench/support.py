"""Helpers every benchmark shares, each written once: where things are (the repository, the real MNIST
files), the machine and commit a figure was measured on, median/min/max summaries and their text,
Markdown tables, thread pinning (BLAS through threadpoolctl, TensorFlow), the load average, the newest
export to serve, figures (PNG) and JSON output. Ports and waiting are in bench/localhost.py, server
processes in bench/servers.py; the tests use all three.

The benchmarks run as modules from the repository root: ``python -m bench.serving`` and so on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path

import psutil

from service.contract import list_versions

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
PACKAGES = ("numpy", "tensorflow-cpu", "keras", "flask", "gunicorn", "pillow", "threadpoolctl")


# ---- where things are -----------------------------------------------------------------------------
def command_line(doc: str) -> argparse.ArgumentParser:
    """A benchmark's parser: its module docstring's first paragraph as the description, the rest (the
    commands and what they measure) as the epilogue, as written."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=doc.split("\n\n", 1)[1],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def mnist_dir() -> Path | None:
    """The folder with the four MNIST IDX files: $MNIST_DATA_DIR, else ../shared/data/mnist."""
    configured = os.environ.get("MNIST_DATA_DIR")
    if configured:
        return Path(os.path.abspath(configured))  # relative: to the working directory it was set in
    return SHARED_MNIST if SHARED_MNIST.is_dir() else None


# ---- the machine ----------------------------------------------------------------------------------
def machine() -> dict:
    """Cores, CPU model, memory, OS, library versions, BLAS, commit (``-dirty`` with local changes)."""
    return {"cores": os.cpu_count(), "cpu": cpu_model(platform.processor() or platform.machine()),
            "blas": blas_libraries(threads=False), "memory": memory(), "os": f"{platform.system()} {platform.release()}",
            "versions": versions(), "commit": git_commit(mark_dirty=True),
            "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}}


def cpu_model(default: str = "unknown CPU") -> str:
    """The CPU's model name from /proc/cpuinfo (``default`` where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return default


def git_commit(mark_dirty: bool = False) -> str:
    """The checkout's short commit ("unknown" outside git); ``-dirty`` appended for tracked changes."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if mark_dirty and git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    return commit


def memory() -> str:
    """Total memory, e.g. "24 GiB"."""
    return f"{psutil.virtual_memory().total / 2**30:.0f} GiB"


def versions() -> dict[str, str]:
    """Python's version and those of the installed PACKAGES."""
    from importlib import metadata

    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return found


def blas_libraries(threads: bool = True) -> list[str]:
    """NumPy's BLAS as threadpoolctl sees it: "openblas 0.3.27 (Zen, 1 threads)", or without the
    thread count "openblas 0.3.27 with Zen kernels"."""
    import numpy  # noqa: F401 - so that threadpoolctl sees its BLAS
    from threadpoolctl import threadpool_info

    blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
    if threads:
        return [f"{i['internal_api']} {i.get('version')} ({i.get('architecture')}, {i['num_threads']} threads)"
                for i in blas]
    return [f"{i['internal_api']} {i.get('version')} with {i.get('architecture')} kernels" for i in blas]


def load_text(load: tuple[float, float, float] | None = None) -> str:
    """"1.02 0.88 0.75": the 1, 5 and 15-minute load averages (now, unless given)."""
    load = load or os.getloadavg()
    return f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


# ---- threads --------------------------------------------------------------------------------------
def pin_blas_threads_by_environment(threads: int) -> None:
    """OpenMP/OpenBLAS/MKL thread counts, for libraries that have not started yet (TensorFlow's)."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)


def start_tensorflow(intra_op: int, inter_op: int = 1):
    """TensorFlow with these thread pools (and BLAS pinned to ``intra_op`` threads), set before it
    runs anything; the ``tensorflow`` module."""
    pin_blas_threads_by_environment(intra_op)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    return tf


def tensorflow_threads(tf) -> dict[str, int]:
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


# ---- summaries ------------------------------------------------------------------------------------
def summary(values) -> dict[str, float]:
    """``{"median", "min", "max"}`` of the values."""
    values = list(values)
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def spread(values_or_summary, fmt: str = ".2f", unit: str = "", scale: float = 1.0) -> str:
    """"1.23 s (1.10-1.40)": the median (min-max) of values, or of a ``summary()``; the median alone
    when min and max are equal (one value); "n/a" for no values."""
    if isinstance(values_or_summary, dict):
        figures = values_or_summary
    else:
        values = list(values_or_summary)
        if not values:
            return "n/a"
        figures = summary(values)
    median, low, high = (figures[key] * scale for key in ("median", "min", "max"))
    if low == high:
        return f"{median:{fmt}}{unit}"
    return f"{median:{fmt}}{unit} ({low:{fmt}}-{high:{fmt}})"


def markdown_table(header: list[str], rows: list[list[object]]) -> list[str]:
    """The lines of a Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]]


def failed_stage(stage: dict) -> list[str]:
    """Markdown for a benchmark that did not finish: what went wrong and the end of its output (a
    ``bench.run_all`` stage's ``error`` and ``log_tail``)."""
    return [f"**Not measured: the command {stage['error']}.** Last lines of its output:", "", "```text",
            stage.get("log_tail", "")[-1500:], "```"]


# ---- exports --------------------------------------------------------------------------------------
def newest_version(export_base: Path) -> Path | None:
    """The folder of the newest version under ``export_base`` (service/contract.py's ``list_versions``, as
    the service counts them), or None."""
    versions = list_versions(export_base)
    return export_base / str(versions[-1]) if versions else None


# ---- output ---------------------------------------------------------------------------------------
def pyplot():
    """matplotlib.pyplot, drawing to files only (the Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Lay the figure out, write it to ``path`` (its folder made if needed) and free it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    pyplot().close(fig)


def write_json(path: str | os.PathLike | None, data: dict) -> None:
    """The figures as indented JSON at ``path`` (its folder made if needed); nothing for None."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
