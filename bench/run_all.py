"""Run every benchmark in one go and rewrite docs/benchmarks.md (tables, plots, the machine, the commands).

    python bench/run_all.py                 # the full set, about 10 minutes on 2 cores
    python bench/run_all.py --quick         # a smoke version (about 1 minute): tiny sizes, same report
    python bench/run_all.py --only serving,numpy --output /tmp/b.md
    python bench/run_all.py --render-only   # rewrite docs/benchmarks.md from docs/benchmarks/results.json

Each benchmark runs as a subprocess with ``--json`` (bench/numpy_training.py, bench/keras_mirror.py,
bench/training_accuracy.py, bench/serving.py), plus ``python training/train.py --no-export`` with its
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
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
STAGES = ("numpy", "keras", "accuracy", "train", "serving")
TRAIN_RUNS = 2  # python training/train.py runs (same seed: same accuracy; the time varies)


def stage_commands(quick: bool, scratch: Path) -> dict:
    """name -> (title, argv, timeout seconds, json path or None)."""
    j = {name: scratch / f"{name}.json" for name in STAGES}
    if quick:
        numpy = ["--repeats", "1", "--loop-samples", "500"]
        keras = ["--repeats", "1", "--samples", "6000", "--threads", "1"]
        accuracy = ["--epochs", "2", "--limit-train", "3000"]
        train = ["--epochs", "1", "--limit-train", "3000"]
        serving = ["--requests", "60", "--max-seconds", "2", "--repeats", "1"]
    else:
        numpy = ["--repeats", "5", "--loop-samples", "6000", "--threads", "1"]
        keras = ["--repeats", "5", "--threads", "1"]
        accuracy = ["--epochs", "30", "--repeats", "3", "--threads", "1"]
        train = []
        serving = ["--requests", "1500", "--max-seconds", "10", "--repeats", "3"]
    return {
        "numpy": ("NumPy epoch vs the tutorial's loop", [PY, "bench/numpy_training.py", *numpy,
                                                        "--json", str(j["numpy"])], 400, j["numpy"]),
        "keras": ("Keras mirror vs built-in Keras", [PY, "bench/keras_mirror.py", *keras,
                                                     "--json", str(j["keras"])], 400, j["keras"]),
        "accuracy": ("accuracy against training time", [PY, "bench/training_accuracy.py", *accuracy,
                                                        "--json", str(j["accuracy"]),
                                                        "--plot", str(scratch / "accuracy_vs_time.png")],
                     720, j["accuracy"]),
        "train": ("python training/train.py", [PY, "training/train.py", *train, "--no-export",
                                               "--run-dir", str(scratch / "train-run")], 400, None),
        "serving": ("serving", [PY, "bench/serving.py", "--model-dir", str(scratch / "no-export"), *serving,
                                "--json", str(j["serving"])], 600, j["serving"]),
    }


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


# ---- machine --------------------------------------------------------------------------------------
def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    from importlib import metadata

    for package in ("numpy", "tensorflow-cpu", "keras", "flask", "gunicorn", "pillow", "threadpoolctl"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    import numpy  # noqa: F401 - so that threadpoolctl sees its OpenBLAS
    from threadpoolctl import threadpool_info

    blas = [f"{i['internal_api']} {i.get('version')} with {i.get('architecture')} kernels"
            for i in threadpool_info() if i["user_api"] == "blas"]
    return {"cores": os.cpu_count(), "cpu": cpu, "blas": blas, "memory": memory, "os": f"{platform.system()} {platform.release()}",
            "versions": versions, "commit": commit + ("-dirty" if dirty else ""),
            "openblas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}}


# ---- formatting -----------------------------------------------------------------------------------
def mmm(values, fmt=".2f", unit="") -> str:
    values = list(values)
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:{fmt}}{unit}"
    return f"{med:{fmt}}{unit} ({min(values):{fmt}}-{max(values):{fmt}})"


def table(header, rows) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(str(c) for c in row) + " |" for row in rows]]


def failed(stage: dict) -> list[str]:
    return [f"**Not measured: the command {stage['error']}.** Last lines of its output:", "", "```text",
            stage.get("log_tail", "")[-1500:], "```"]


def section_train(stage: dict, scratch: Path) -> list[str]:
    lines = ["## `python training/train.py`: the default training run", "",
             f"Command: `{stage['command']}` (the defaults: the Keras mirror, 30 epochs, batch 128, Adam 2e-3 "
             "with cosine decay, shifts of up to 2 pixels, 10 % validation; `--no-export` only skips the "
             "SavedModel). TensorFlow uses its default thread pools here, as a user's run would.", ""]
    if stage["error"]:
        return lines + failed(stage)
    runs = stage["runs"]
    accuracy = [r["test"]["accuracy"] * 100 for r in runs]
    lines += table(["test accuracy", "test loss", "epochs", "training time (sum of epochs, incl. validation)",
                    "seconds per epoch", "wall time of the command"],
                   [[mmm(accuracy, ".2f", " %"), mmm([r["test"]["loss"] for r in runs], ".4f"),
                     runs[0]["epochs_completed"], mmm([r["training_seconds"] for r in runs], ".1f", " s"),
                     mmm([s for r in runs for s in r["epoch_seconds"]], unit=" s"),
                     mmm([r["seconds"] for r in runs], ".0f", " s")]])
    lines += ["", f"{len(runs)} run(s) of the same command, one after the other; median (min-max) over the runs "
              "(per-epoch time: over all their epochs). The same seed gives the same weights, so the accuracy "
              "does not vary. The wall time adds TensorFlow's import, loading MNIST, a checkpoint per epoch, "
              "the test evaluation and the plots."]
    return lines


def section_accuracy(stage: dict, plot_link: str | None) -> list[str]:
    lines = ["## Accuracy against training time: NumPy vs the Keras mirror vs built-in Keras", ""]
    if stage["error"]:
        return lines + [f"Command: `{stage['command']}`", ""] + failed(stage)
    data = stage["data"]
    settings, summ = data["settings"], data["summary"]
    lines += [f"Command: `{stage['command']}`", "",
              f"The same 784-128-64-10 ReLU network and the hyperparameters of `train.py` (Adam 2e-3, cosine "
              f"decay over {settings['epochs']} epochs, batch {settings['batch_size']}, shifts of up to "
              f"{settings['augment_shift']} px via `training.augment.epoch_data`, the same 90/10 split), "
              "trained by `NumpyNetwork` + our NumPy Adam, by the Keras mirror (ScratchDense + ScratchAdam "
              "through `compile_for_training`) and by built-in Keras (`Dense` + `keras.optimizers.Adam` + "
              "`CosineDecay` + `SparseCategoricalCrossentropy(from_logits=True)`). The engines train epoch by "
              "epoch in turn (rotating order) on identical data; test accuracy on the 10,000 test images after "
              "every epoch (not timed). Training time counts the `fit` calls only; the first Keras epoch "
              "includes tracing the train function. Threads: TensorFlow intra-op "
              f"{data['threads']['tensorflow_intra_op']}, inter-op {data['threads']['tensorflow_inter_op']}; "
              f"{'; '.join(data['threads']['blas'])}.", ""]
    base = summ.get("built-in")
    rows = []
    for name, s in summ.items():
        def three(d, fmt=".2f", unit="", scale=1.0):
            if d["min"] == d["max"]:
                return f"{d['median'] * scale:{fmt}}{unit}"
            return f"{d['median'] * scale:{fmt}}{unit} ({d['min'] * scale:{fmt}}-{d['max'] * scale:{fmt}})"

        cells = [f"**{name}**", three(s["final_test_accuracy"], ".2f", " %", 100), three(s["epoch_seconds"]),
                 three(s["total_seconds"], ".1f", " s")]
        for key in ("time_to_97", "time_to_98"):
            t = s[key]
            if t["seconds"] is None:
                cells.append("not reached")
            else:
                missed = f", reached in {t['reached']} of {t['runs']} runs" if t["reached"] < t["runs"] else ""
                cells.append(f"{three(t['seconds'], '.1f', ' s')}; epoch {t['epochs']['median']:.0f}{missed}")
        if base is not None:
            cells.append(f"{s['epoch_seconds']['median'] / base['epoch_seconds']['median']:.2f}x")
        rows.append(cells)
    header = ["engine", "final test accuracy", "seconds per epoch", "total training time",
              "time to 97 %", "time to 98 %"] + (["epoch time vs built-in"] if base else [])
    lines += table(header, rows)
    lines += ["", f"{settings['repeats']} run(s) per engine (seeds 0 to {settings['repeats'] - 1}): final accuracy, "
              "total time and the times to 97 % and 98 % are median (min-max) over the runs; seconds per epoch "
              "over all their epochs. A time to a target is the cumulative training time at the end of the "
              "first epoch whose test accuracy reached it (the epoch shown is the median of those epochs)."]
    if plot_link:
        lines += ["", f"![test accuracy against cumulative training time]({plot_link})", "",
                  "One line per run and engine: seed 0 solid, the other seeds faded."]
    return lines


def section_numpy(stage: dict) -> list[str]:
    lines = ["## One NumPy training epoch: vectorised vs the tutorial's per-sample loop", ""]
    lines += [f"Command: `{stage['command']}`", ""]
    if stage["error"]:
        return lines + failed(stage)
    d = stage["data"]
    tutorial = statistics.median(d["seconds"]["per-sample loop, tutorial"])
    peak = d["peak_gflops"]["128x784x128"]
    rows = []
    for name, values in d["seconds"].items():
        med = statistics.median(values)
        rows.append([name, mmm(values, unit=" s"), f"{d['epoch_flops'] / med / 1e9:.1f}",
                     f"{d['epoch_flops'] / med / 1e9 / peak:.0%}", f"{tutorial / med:.1f}x"])
    lines += table(["variant (60,000 images)", "seconds per epoch, median (min-max)", "GFLOP/s",
                    "share of the (128x784)@(784x128) matmul peak", "speed-up over the tutorial's loop"], rows)
    lines += ["", f"{d['repeats']} repeat(s), alternating variants; BLAS: {'; '.join(d['blas'])}. The per-sample loops "
              f"ran on {d['loop_samples']} images, scaled to 60,000. float32 matmul peak of this machine: "
              f"{peak:.1f} GFLOP/s at (128x784)@(784x128), {d['peak_gflops']['2048^3']:.1f} GFLOP/s at 2048^3."]
    return lines


def section_keras(stage: dict) -> list[str]:
    lines = ["## One Keras training epoch: our mirror vs built-in Keras", "", f"Command: `{stage['command']}`", ""]
    if stage["error"]:
        return lines + failed(stage)
    d = stage["data"]
    rows = [[name, mmm(values, unit=" s"), mmm(d["cpu_seconds"][name], unit=" s"),
             f"{d['train_accuracy'][name]:.4f}"] for name, values in d["seconds"].items()]
    lines += table(["implementation", "wall seconds per epoch, median (min-max)", "CPU seconds per epoch",
                    "train accuracy (last epoch)"], rows)
    ours, theirs = d["seconds"]["ours"], d["seconds"]["built-in"]
    lines += ["", f"Ratio ours / built-in: of the medians **{statistics.median(ours) / statistics.median(theirs):.2f}**, "
              f"of the minima {min(ours) / min(theirs):.2f}, median of the per-repeat ratios "
              f"{statistics.median(d['pair_ratios']):.2f} (range {min(d['pair_ratios']):.2f}-{max(d['pair_ratios']):.2f}). "
              f"{d['repeats']} timed epoch(s) each after one warm-up epoch, back to back in alternating order; "
              f"{d['samples']} {d['data']} samples, batch {d['batch_size']}; TensorFlow intra-op "
              f"{d['threads']['intra_op']}, inter-op {d['threads']['inter_op']} threads."]
    return lines


def section_serving(stage: dict, plot_link: str | None) -> list[str]:
    lines = ["## Serving: the service vs the tutorial's Flask + `model.predict`", "",
             f"Command: `{stage['command']}`", ""]
    if stage["error"]:
        return lines + failed(stage)
    d = stage["data"]
    res = d["results"]
    rows = []
    for scenario in res["service"]:
        for server in res:
            runs = res[server][scenario]
            rows.append([scenario, server, sum(r["requests"] for r in runs), mmm([r["rps"] for r in runs], ".1f"),
                         mmm([r["p50"] for r in runs]), mmm([r["p99"] for r in runs]),
                         sum(r["errors"] for r in runs)])
    lines += table(["scenario", "server", "requests", "requests/s", "p50 ms", "p99 ms", "errors"], rows)
    if "baseline" in res:
        ratio_rows = []
        for scenario in res["service"]:
            s, b = res["service"][scenario], res["baseline"][scenario]
            pairs = list(zip(s, b))
            ratio_rows.append([scenario, mmm([x["rps"] / y["rps"] for x, y in pairs], ".1f", "x"),
                               mmm([x["p50"] / y["p50"] for x, y in pairs], ".3f", "x"),
                               mmm([x["p99"] / y["p99"] for x, y in pairs], ".3f", "x")])
        lines += ["", "Ratios service / baseline, per repeat (each repeat measures both back to back), "
                  "median (min-max):", ""]
        lines += table(["scenario", "throughput", "p50 latency", "p99 latency"], ratio_rows)
    st = d["settings"]
    lines += ["", f"Every figure: median (min-max) over {st['repeats']} repeat(s); each repeat sends up to "
              f"{st['requests']} requests per single-instance scenario (a quarter for batches), at most "
              f"{st['max_seconds']:.0f} s, from separate client processes with one keep-alive connection each. "
              f"Service: gunicorn, {st['workers']} {st['worker_class']} workers x {st['threads']} threads "
              "(service/gunicorn.conf.py), TF_NUM_THREADS=1. Baseline: "
              f"Flask's own threaded server, Keras `model.predict` per request. Model: {d['model']}; "
              f"single-instance body {d['body_bytes']} bytes (a real MNIST test digit as JSON floats). Both "
              "servers stay up and take turns, scenario by scenario, in alternating order."]
    if plot_link:
        lines += ["", f"![latency percentiles, service vs baseline]({plot_link})"]
    return lines


def plot_serving(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
            x = range(len(qs))
            ax.plot(x, median, marker="o", color=colours.get(server), label=server)
            ax.fill_between(x, low, high, color=colours.get(server), alpha=0.2)
            ax.set_xticks(list(x), [f"p{q}" for q in qs])
        ax.set_yscale("log")
        ax.set_title(scenario, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency, ms (log scale; band: min-max over repeats)")
    axes[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def read_train_run(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    with open(run_dir / "history.csv") as f:
        metrics["epoch_seconds"] = [float(r["seconds"]) for r in csv.DictReader(f)]
    return metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the pipeline in a few minutes")
    parser.add_argument("--only", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--plots-dir", type=Path, default=None,
                        help="plots and results.json (default: a 'benchmarks' folder beside --output)")
    parser.add_argument("--render-only", action="store_true",
                        help="measure nothing: rewrite the document from the plots folder's results.json")
    args = parser.parse_args(argv)
    if args.render_only:
        output = args.output.resolve()
        plots = (args.plots_dir or output.parent / "benchmarks").resolve()
        render(json.loads((plots / "results.json").read_text()), output, plots)
        print(f"wrote {output} from {plots / 'results.json'}")
        return 0
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if set(only) - set(STAGES):
        parser.error(f"unknown stages {sorted(set(only) - set(STAGES))}; choose from {','.join(STAGES)}")
    output = args.output.resolve()
    plots = (args.plots_dir or output.parent / "benchmarks").resolve()
    mnist = os.environ.get("MNIST_DATA_DIR") or (str(REPO.parent / "shared" / "data" / "mnist")
                                                 if (REPO.parent / "shared" / "data" / "mnist").is_dir() else None)
    started = time.monotonic()
    info = machine()
    load_before = os.getloadavg()
    stages = {}
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        scratch = Path(tmp)
        commands = stage_commands(args.quick, scratch)
        for name in only:
            title, argv, timeout, json_path = commands[name]
            if name != "train":
                stages[name] = run_stage(name, title, argv, timeout, json_path, scratch, scratch / f"{name}.log",
                                         mnist)
                continue
            runs = []
            for i in range(1 if args.quick else TRAIN_RUNS):
                run_dir = scratch / f"train-run-{i + 1}"
                runs.append(run_stage(name, title, argv[:-1] + [str(run_dir)], timeout, None, scratch,
                                      scratch / f"train-{i + 1}.log", mnist))
                if runs[-1]["error"]:
                    break
                runs[-1]["data"] = read_train_run(run_dir)
            stages[name] = {**runs[-1], "command": runs[0]["command"].replace("train-run-1", "train-run"),
                            "seconds": sum(r["seconds"] for r in runs),
                            "runs": [{"seconds": r["seconds"], **r.get("data", {})} for r in runs]}
        plots.mkdir(parents=True, exist_ok=True)
        if "accuracy" in stages and not stages["accuracy"]["error"]:
            (plots / "accuracy_vs_time.png").write_bytes((scratch / "accuracy_vs_time.png").read_bytes())
        if "serving" in stages and not stages["serving"]["error"]:
            plot_serving(stages["serving"]["data"], plots / "serving_latency.png")
    total = time.monotonic() - started
    results = {"machine": info, "quick": args.quick, "seconds": total, "only": only,
               "finished_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "load_average": [load_before, os.getloadavg()], "stages": stages}
    (plots / "results.json").write_text(json.dumps(results, indent=1, default=str))
    render(results, output, plots)
    print(f"wrote {output} and {plots}/ in {total / 60:.1f} minutes")
    return 1 if any(s["error"] for s in stages.values()) else 0


def render(results: dict, output: Path, plots: Path) -> None:
    """Write the document from the figures (also ``--render-only``: from a saved results.json)."""
    info, stages, total = results["machine"], results["stages"], results["seconds"]
    only = results.get("only") or [n for n in STAGES if n in stages]
    load_before, load_after = results["load_average"]
    links = {name: os.path.relpath(plots / png, output.parent)
             for name, png in (("accuracy", "accuracy_vs_time.png"), ("serving", "serving_latency.png"))
             if name in stages and not stages[name]["error"] and (plots / png).is_file()}
    v = info["versions"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `python bench/run_all.py`" + (" **--quick** (smoke sizes: not meaningful figures)"
                                                  if results["quick"] else "")
        + "; do not edit by hand. Rerun it to reproduce (about 10 minutes on 2 cores; real MNIST from "
        "`MNIST_DATA_DIR`).",
        "",
        f"- Run: {results.get('finished_utc', 'unknown')}, commit {info['commit']}, {total / 60:.1f} minutes in all.",
        f"- Machine: {info['cores']} cores ({info['cpu']}), {info['memory']} memory, {info['os']}; load average "
        f"{load_before[0]:.2f} / {load_before[1]:.2f} / {load_before[2]:.2f} (1/5/15 min) at the start, "
        f"{load_after[0]:.2f} / {load_after[1]:.2f} / {load_after[2]:.2f} at the end"
        + (f"; environment {info['openblas_env']} (forces OpenBLAS kernels)" if info["openblas_env"] else "") + ".",
        "- Libraries: " + ", ".join(f"{k} {val}" for k, val in v.items()) + f"; NumPy's BLAS: {', '.join(info['blas'])}"
        + (" (`OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` unset, so OpenBLAS picks its kernels itself)."
           if not info["openblas_env"] else "."),
        "- The machine is shared (other work may run beside the benchmarks): compare figures within this run, "
        "where the baselines were measured side by side, rather than across runs.",
        f"- Raw figures: [`{os.path.relpath(plots / 'results.json', output.parent)}`]"
        f"({os.path.relpath(plots / 'results.json', output.parent)}).",
        "",
    ]
    sections = {"train": lambda s: section_train(s, None),
                "accuracy": lambda s: section_accuracy(s, links.get("accuracy")),
                "numpy": section_numpy, "keras": section_keras,
                "serving": lambda s: section_serving(s, links.get("serving"))}
    lines += ["| benchmark | command | minutes |", "|---|---|---|"]
    lines += [f"| {stages[n]['title']} | `{stages[n]['command']}` | {stages[n]['seconds'] / 60:.1f}"
              + (f" ({stages[n]['error']})" if stages[n]["error"] else "") + " |" for n in only]
    lines.append("")
    for name in ("train", "accuracy", "numpy", "keras", "serving"):
        if name in stages:
            lines += sections[name](stages[name]) + [""]
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = output.with_name(f".{output.name}.tmp")
    tmp_out.write_text("\n".join(lines))
    os.replace(tmp_out, output)


if __name__ == "__main__":
    sys.exit(main())
