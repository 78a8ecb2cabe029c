"""The photo benchmark's report (bench/photos.py): a progress line per row, and the Markdown tables of a
saved ``--json`` run (``report_from_json``), for docs/benchmarks.md."""

from __future__ import annotations

import json
import os
from pathlib import Path


def row_line(row: dict) -> str:
    """One row's figures on one line, printed as the run goes."""
    if row.get("available") is False:
        return f"{row['name']:<22} route not available (HTTP {next(iter(row['statuses']))})"
    ratio = f"  x{row['ratio']:.3f} of clean" if row.get("ratio") is not None else ""
    ratio += f"  ceiling {row['ceiling']:.1%}" if "ceiling" in row else ""
    goal = {True: "  meets goal", False: "  below goal"}.get(row.get("meets_goal"), "")
    return (f"{row['name']:<22} {row['success']:7.1%}{ratio}  422 {row['refused']:.0%}  failed {row['failed']:.0%}  "
            f"CPU {row['cpu_ms']['median']:.1f} ms (p90 {row['cpu_ms']['p90']:.1f}){goal}")


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    """The lines of a Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]]


def _percent(value) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _cpu(row: dict) -> str:
    return f"{row['cpu_ms']['median']:.1f} ({row['cpu_ms']['p90']:.1f})" if "cpu_ms" in row else "n/a"


def _answers(row: dict) -> str:
    """"200: 141, 422: 9": how many answers of each HTTP status."""
    return ", ".join(f"{status}: {count}" for status, count in row.get("statuses", {}).items())


def _goal(row: dict) -> str:
    return {True: "met", False: "**not met**"}.get(row.get("meets_goal"), "")


def report_from_json(source: str | os.PathLike | dict) -> str:
    """The Markdown report of a ``--json`` file (or its data): three tables (single digits, numbers,
    sheets without a digit) and a line on the run."""
    data = json.loads(Path(source).read_text()) if not isinstance(source, dict) else source
    rows = data["rows"]
    clean = next(row for row in rows if row["group"] == "clean")
    digits = [[row["name"], row["note"], row["count"], _percent(row["success"]),
               "1" if row["group"] == "clean" else f"{row['ratio']:.3f}", _percent(row.get("ceiling")),
               _percent(row["refused"]),
               _percent(row["failed"]), _answers(row), _cpu(row), _goal(row)]
              for row in rows if row["group"] in ("clean", "digit")]
    numbers = [[row["name"], row["note"], "route not available", "", "", _answers(row), "", ""]
               if row.get("available") is False
               else [row["name"], row["note"], row["count"], _percent(row["success"]), _percent(row["flagged"]),
                     _answers(row), _cpu(row), _goal(row)]
               for row in rows if row["group"] == "number"]
    others = [[row["name"], row["note"], row["count"], _percent(row["success"]), _answers(row), _cpu(row),
               _goal(row)] for row in rows if row["group"] == "no_digit"]
    parts = [_table(["photo", "what it models", "photos", "read right", "vs clean",
                     "the true ink as numbers", "refused (422)",
                     "failed", "answers (HTTP status: count)", "CPU ms per photo, median (p90)",
                     "goal: >= 97 % of clean"], digits)]
    if numbers:
        parts.append(_table(["sheet", "what it holds", "sheets", "read exactly (touching: or flagged)",
                             "flagged touching", "answers (HTTP status: count)", "CPU ms per sheet, median (p90)",
                             "goal"], numbers))
    if others:
        parts.append(_table(["sheet without a digit", "what it holds", "sheets", "answered 422",
                             "answers (HTTP status: count)", "CPU ms per sheet, median (p90)",
                             "goal: >= 95 % 422"], others))
    machine = data.get("machine", {})
    about = (f"Seed {data['seed']}, {clean['count']} digits per row (MNIST test digits 0-{clean['count'] - 1}); "
             f"model version {data['service']['model_version']}; {machine.get('cpu', '?')}, "
             f"{machine.get('cores', '?')} cores; commit {machine.get('commit', '?')}; "
             f"took {data['elapsed_seconds'] / 60:.1f} min. `python -m bench.photos --seed {data['seed']} "
             f"--count {clean['count']}` regenerates the photos and the figures.")
    return "\n\n".join(["\n".join(part) for part in parts] + [about])


