"""The reliability report: the figures the tests record as they run, and the Markdown written from them.

Written only when asked: ``RELIABILITY_REPORT=docs/reliability.md`` (a path; relative ones are taken
from the current folder) names the file, and only a session in which a reliability test ran writes
it. A plain test run leaves the checkout as it was.
"""

from __future__ import annotations

import os
import platform
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import numpy as np

from bench.support import cpu_model, git_commit
from bench.support import markdown_table as table  # noqa: F401 - the tests' reports use it from here

TARGET_VARIABLE = "RELIABILITY_REPORT"
RUN_COMMAND = "python -m pytest tests/reliability -m reliability -p no:cacheprovider --timeout=600"
REGENERATE = f"{TARGET_VARIABLE}=docs/reliability.md {RUN_COMMAND}"


class Report:
    """Figures the tests record as they run; written at the end of the session when asked."""

    def __init__(self):
        self.sections: dict[str, list[str]] = {}
        self.faults: list[dict] = []
        self.outcomes: dict[str, tuple[str, float]] = {}  # test id -> (outcome, seconds)
        self.requests: dict[str, tuple[int, int]] = {}  # phase -> (requests sent, failures)
        self.server = "gunicorn"  # how the shared server runs (set by the fixture)
        self.model = "a small model"  # what it serves (set by the fixture, from the export's metadata)

    def section(self, title: str, lines: list[str]) -> None:
        self.sections[title] = lines

    def fault(self, name: str, expected: str, outcome: str, timing: str) -> None:
        self.faults = [f for f in self.faults if f["name"] != name]
        self.faults.append({"name": name, "expected": expected, "outcome": outcome, "timing": timing})


REPORT = Report()


def histogram(counter: Counter) -> str:
    return ", ".join(f"{key}: {count}" for key, count in sorted(counter.items(), key=lambda kv: str(kv[0])))


# ---- whether and where --------------------------------------------------------------------------
def report_target(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The file ``$RELIABILITY_REPORT`` names, or None (the default: write nothing)."""
    value = environ.get(TARGET_VARIABLE, "").strip()
    return Path(value).resolve() if value else None


def write_if_asked(report: Report, seconds: float, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Write ``report`` where ``$RELIABILITY_REPORT`` says, if it says so and a reliability test ran;
    the path written, else None."""
    target = report_target(environ)
    if target is None or not report.outcomes:
        return None
    from training.atomic import write_bytes_atomic

    write_bytes_atomic(target, render(report, seconds).encode())
    return target


# ---- the document ---------------------------------------------------------------------------------
def render(report: Report, seconds: float) -> str:
    lines = (header_lines(report, seconds) + summary_lines(report) + section_lines(report) + fault_lines(report)
             + outcome_lines(report))
    return "\n".join(lines)


def header_lines(report: Report, seconds: float) -> list[str]:
    return [
        "# Reliability report",
        "",
        "Written by the reliability suite (`tests/reliability/`) at the end of its run; do not edit by hand.",
        "Rerun it with:",
        "",
        "```bash",
        f"{REGENERATE}",
        "```",
        "",
        f"- Run: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit {git_commit()}, "
        f"{seconds:.0f} s in all; tests: {outcome_counts(report)}",
        f"- Machine: {machine()}",
        f"- Everything ran against the real service on 127.0.0.1: {report.server}, serving {report.model}.",
        "",
    ]


def outcome_counts(report: Report) -> str:
    """"11 passed, 1 failed": the outcomes the session's tests had."""
    counts = Counter(outcome for outcome, _ in report.outcomes.values())
    return ", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items()))


def machine() -> str:
    load = os.getloadavg()
    return (f"{os.cpu_count()} cores ({cpu_model()}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, NumPy {np.__version__}; load average at the end "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def summary_lines(report: Report) -> list[str]:
    if not report.requests:
        return []
    total_sent = sum(sent for sent, _ in report.requests.values())
    total_failed = sum(failed for _, failed in report.requests.values())
    rows = [[phase, sent, failed] for phase, (sent, failed) in report.requests.items()]
    return ["## Summary", "",
            *table(["phase", "requests sent", "failures"],
                   rows + [["**all**", f"**{total_sent}**", f"**{total_failed}**"]]),
            "",
            "A failure is a 5xx, a dropped connection, a response that does not match the OpenAPI "
            "document, a valid request not answered 200 with the model's own digits, or an invalid "
            "one not answered with its 4xx and a JSON error. The only failures allowed are "
            "those of the clients whose connection was open on the worker killed with SIGKILL (one "
            "each, at most).", ""]


def section_lines(report: Report) -> list[str]:
    lines = []
    for title, body in report.sections.items():
        lines += [f"## {title}", "", *body, ""]
    return lines


def fault_lines(report: Report) -> list[str]:
    if not report.faults:
        return []
    rows = [[fault["name"], fault["expected"], fault["outcome"], fault["timing"]] for fault in report.faults]
    return ["## Faults", "", *table(["fault", "expected", "outcome", "timing"], rows), "",
            "Each row is what its test measured; whether the test passed is in the table of tests below. A "
            "training run killed mid-epoch and resumed is tested in the default suite "
            "(`tests/training/test_train.py`).", ""]


def outcome_lines(report: Report) -> list[str]:
    rows = [[f"`{nodeid.split('tests/reliability/')[-1]}`", outcome, f"{duration:.1f}"]
            for nodeid, (outcome, duration) in report.outcomes.items()]
    return ["## Tests", "", *table(["test", "outcome", "seconds"], rows), ""]
