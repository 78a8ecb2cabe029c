"""The serving section of docs/benchmarks.md (stage ``serving`` of ``python -m bench.run_all``: the service
vs the tutorial's Flask + ``model.predict``) and its latency plot.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.support import failed_stage, pyplot, save_figure, spread
from bench.support import markdown_table as table


def section_serving(stage: dict, plot_link: str | None) -> list[str]:
    lines = ["## Serving: the service vs the tutorial's Flask + `model.predict`", "",
             f"Command: `{stage['command']}`", ""]
    if stage["error"]:
        return lines + failed_stage(stage)
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
