"""The peers benchmark's report: per figure, the median (min-max) over the repeats of each server, and the
ratio of ours to the best framework peer computed within each repeat; as text or Markdown tables, from a
run or from its saved JSON (``python -m bench.run_all --render-only`` puts it into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

from bench.peers_load import CPU_LEVEL, Level, level_from_name
from bench.peers_servers import COMPARISONS, PEERS, SPECS
from bench.support import spread, summary


def summary_of_present(values) -> dict[str, float] | None:
    """bench/support.py's ``summary`` (median, min, max) of the values that are not None; None if none are."""
    present = [value for value in values if value is not None]
    return summary(present) if present else None


@dataclass(frozen=True)
class Column:
    """One figure of the report: its label, how to read it from a repeat's result, whether higher is
    better, and its number format."""

    label: str
    read: Callable[[dict], float | None]
    higher_is_better: bool
    fmt: str = ".1f"
    level: str | None = None  # the load level it comes from (its failed requests flag it)


def level_column(label: str, level: Level, key: str, higher_is_better: bool, fmt: str) -> Column:
    return Column(label, lambda run: run["levels"].get(level.name, {}).get(key), higher_is_better, fmt,
                  level.name)


def flagged(run: dict, column: Column) -> bool:
    """The column's level had failed requests, or completed none (h2load against KServe's gRPC at c=1)."""
    figures = run["levels"].get(column.level, {}) if column.level is not None else {}
    return bool(figures.get("flagged", False) or figures.get("requests") == 0)


def report_tables(levels: list[Level]) -> list[tuple[str, list[Column]]]:
    """The tables: throughput, p50, p99 (one column per level), then CPU per request and memory."""
    cpu_level = CPU_LEVEL if CPU_LEVEL in levels else levels[0]
    return [
        ("requests/s", [level_column(l.name, l, "rps", True, ".1f") for l in levels]),
        ("p50 latency, ms", [level_column(l.name, l, "p50_ms", False, ".2f") for l in levels]),
        ("p99 latency, ms", [level_column(l.name, l, "p99_ms", False, ".2f") for l in levels]),
        ("resources", [level_column(f"CPU ms/request ({cpu_level.name})", cpu_level,
                                    "cpu_ms_per_request", False, ".2f"),
                       Column("PSS MiB after load", lambda run: run.get("pss_mib"), False, ".0f")]),
    ]


def summarise(results: dict, columns: list[Column]) -> dict[str, list[str]]:
    """Rows of cells: per server, "median (min-max)" of each column over its measured repeats (``!`` if
    any of them had failed requests), or why it was not measured."""
    rows = {}
    for name, runs in results.items():
        measured = [run for run in runs if run["status"] == "measured"]
        if not measured:
            rows[name] = [", ".join(sorted({run["status"] for run in runs}))] + [""] * (len(columns) - 1)
            continue
        cells = []
        for column in columns:
            stats = summary_of_present([column.read(run) for run in measured])
            flag = "!" if any(flagged(run, column) for run in measured) else ""
            cells.append("-" if stats is None else spread(stats, column.fmt) + flag)
        rows[name] = cells
    return rows


def ours_vs_best_peer(results: dict, column: Column, ours_name: str = "ours",
                      peers: tuple = PEERS) -> tuple[dict[str, float] | None, list[str]]:
    """Ratio ours / best of ``peers`` for one column, within each repeat (peers whose level had failed
    requests are left out of "best"), summarised (``summary_of_present``); and the best peers' names."""
    ratios, best_names = [], []
    for repeat, ours in enumerate(results.get(ours_name, [])):
        ours_value = column.read(ours) if ours["status"] == "measured" else None
        candidates = []
        for name in peers:
            runs = results.get(name, [])
            if repeat < len(runs) and runs[repeat]["status"] == "measured" \
                    and not flagged(runs[repeat], column):
                value = column.read(runs[repeat])
                if value is not None:
                    candidates.append((value, name))
        if ours_value is None or not candidates:
            continue
        value, name = (max if column.higher_is_better else min)(candidates)
        if value:
            ratios.append(ours_value / value)
            best_names.append(name)
    return summary_of_present(ratios), sorted(set(best_names))


def render_table(title: str, columns: list[Column], results: dict, markdown: bool) -> str:
    """One table: a row per server, then ours / best peer."""
    header = ["server"] + [column.label for column in columns]
    rows = [[SPECS[name].name] + cells for name, cells in summarise(results, columns).items()]
    for ours_name, peers, label in COMPARISONS:
        if ours_name not in results or not any(name in results for name in peers):
            continue
        cells = []
        for column in columns:
            stats, names = ours_vs_best_peer(results, column, ours_name, peers)
            cells.append("-" if stats is None else f"{spread(stats, '.2f')} vs {'/'.join(names)}")
        rows.append([f"{ours_name} / {label}"] + cells)
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = [title] + ["  ".join(str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
                                 for i, (cell, w) in enumerate(zip(row, widths))) for row in [header] + rows]
    return "\n".join(lines)


def render_report(results: dict, levels: list[Level], markdown: bool, about: str = "") -> str:
    """The tables, the servers (how each runs), and ``about`` (machine and settings)."""
    tables = [render_table(title, columns, results, markdown) for title, columns in report_tables(levels)]
    if any(run.get("plain_client_rps") for runs in results.values() for run in runs):
        plain = {name: runs for name, runs in results.items() if any(run.get("plain_client_rps") for run in runs)}
        tables.append(render_table("c=1 check of h2load: a plain grpcio client, 1 image, sequential calls, calls/s",
                                   [Column("calls/s", lambda run: run.get("plain_client_rps"), True, ".1f")],
                                   plain, markdown))
    bullet = "- " if markdown else "  "
    servers = "\n".join(f"{bullet}{name}: {SPECS[name].note}" for name in results)
    return "\n\n".join(tables + [f"Servers:\n{servers}"] + ([about] if about else []))


def report_from_json(data: dict) -> str:
    """The Markdown report of a saved ``--json`` file (``python -m bench.run_all --render-only`` puts it
    into docs/benchmarks.md)."""
    settings = data["settings"]
    levels = [level_from_name(name) for name in settings["levels"]]
    args = argparse.Namespace(repeats=settings["repeats"], warmup=settings["warmup"], seconds=settings["seconds"])
    return render_report(data["results"], levels, True, describe_run(data["machine"], args, data["elapsed_seconds"]))


def describe_run(machine: dict, args, elapsed: float) -> str:
    """One paragraph: machine, commit, load average, settings, duration."""
    return (f"{machine['cpu']}, {machine['usable_cores']} cores, {machine['memory']}, {machine['os']}, "
            f"Python {machine['versions']['python']}, {machine['wrk']}; commit {machine['commit']}; "
            f"load average before {machine['load_average_before']}, after {machine['load_average_after']}. "
            f"{args.repeats} repeat(s); per level {args.warmup} s warm-up + {args.seconds} s measured, "
            f"wrk -t1; medians (min-max); ! = a level with non-2xx responses or socket errors; "
            f"took {elapsed / 60:.1f} min.")
