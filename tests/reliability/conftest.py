"""Reliability suite (issue 8): fuzzing, a bounded soak and injected faults against the real service.

Marked ``reliability`` and left out of the default ``python -m pytest``; run it with::

    python -m pytest tests/reliability -m reliability -p no:cacheprovider      # what CI runs (~4 min)
    RELIABILITY_SOAK_SECONDS=15 python -m pytest tests/reliability -m reliability   # a shorter soak

The tests share one gunicorn (2 workers as service/gunicorn.conf.py makes them, hot reload every second) serving a small real model, and run
in a fixed order: the API fuzzing, then the soak, then the faults (the worker kill and the corrupt
version hit that same server, after the soak's measurements). At the end of the session the figures
they recorded are written to ``docs/reliability.md`` (atomically; ``RELIABILITY_REPORT`` names
another file). All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

# The small real model of the service tests (784-64-10, ~93 %), exported once per session.
from tests.service.conftest import (copy_version, export_base, mnist_subset, reference,  # noqa: F401
                                    trained_model, version_dir)
from tests.service.gunicorn_server import GunicornServer

from .support import REPORT, gunicorn_settings, table

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ORDER = ("test_fuzz.py", "test_soak.py", "test_faults.py")


def pytest_collection_modifyitems(config, items):
    """Fuzz, then soak, then faults (they share the server; the faults come last)."""
    def rank(item):
        path = Path(str(item.fspath))
        if path.parent != HERE:
            return -1
        return ORDER.index(path.name) if path.name in ORDER else len(ORDER)
    items.sort(key=rank)  # stable: the order inside a file is kept


def pytest_runtest_logreport(report):
    if "tests/reliability/" not in report.nodeid.replace(os.sep, "/"):
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcome = "skipped" if report.skipped else report.outcome
        REPORT.outcomes[report.nodeid] = (outcome, report.duration)


def pytest_sessionstart(session):
    session.config._reliability_started = time.monotonic()


def pytest_sessionfinish(session, exitstatus):
    if not REPORT.outcomes:
        return  # no reliability test ran (e.g. the default suite): leave docs/reliability.md alone
    started = getattr(session.config, "_reliability_started", time.monotonic())
    target = Path(os.environ.get("RELIABILITY_REPORT") or REPO / "docs" / "reliability.md")
    write_report(target, time.monotonic() - started)


@pytest.fixture(scope="session")
def service(tmp_path_factory, version_dir):  # noqa: F811 - the imported fixture
    """gunicorn with 2 workers on 127.0.0.1 serving version 1 of the small model, polling every 1 s."""
    folder = tmp_path_factory.mktemp("reliability-service")
    base = folder / "exports"
    copy_version(version_dir, base, 1)
    server = GunicornServer(base, folder / "gunicorn.log", workers=2, poll_seconds=1.0)
    server.export_base = base
    config = gunicorn_settings()
    server.threads = int(config.get("threads", 1))
    REPORT.server = (f"gunicorn with 2 {config.get('worker_class', '?')} workers x {config.get('threads', '?')} "
                     f"threads (keep-alive {config.get('keepalive', '?')} s; service/gunicorn.conf.py)")
    try:
        server.wait_until_up()
        wait_for_both_workers(server)
        yield server
    finally:
        code = server.stop()
        print(server.log()[-3000:])
    assert code == 0, "gunicorn did not shut down cleanly on SIGTERM"


def wait_for_both_workers(server, timeout: float = 120.0) -> None:
    """Until every worker has logged that it loaded the model and accepts requests."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        log = server.log()
        if len(pids) == 2 and all(f"worker {pid} ready to accept requests" in log for pid in pids):
            return
        time.sleep(0.2)
    raise TimeoutError(f"the workers did not all become ready:\n{server.log()[-3000:]}")


@pytest.fixture(scope="session")
def digits(mnist_subset):  # noqa: F811
    """200 real MNIST test digits (float32 in [0, 1]) and their labels."""
    _, (xt, yt) = mnist_subset
    return xt[:200], yt[:200]


@pytest.fixture(scope="session")
def expected(reference, digits):  # noqa: F811
    """The exported model's own probabilities for ``digits`` (tf.saved_model.load, no service)."""
    return reference(digits[0])


# ---- the report -----------------------------------------------------------------------------------
def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, NumPy {np.__version__}; load average at the end "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_report(target: Path, seconds: float) -> None:
    counts = {}
    for outcome, _ in REPORT.outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    lines = [
        "# Reliability report",
        "",
        "Written by the reliability suite (`tests/reliability/`) at the end of its run; do not edit by hand.",
        "Rerun it with:",
        "",
        "```bash",
        "python -m pytest tests/reliability -m reliability -p no:cacheprovider   # what .ci/checks.d/40-reliability.sh runs",
        "```",
        "",
        f"- Run: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit {_commit()}, "
        f"{seconds:.0f} s in all; tests: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
        f"- Machine: {_machine()}",
        f"- Everything ran against the real service on 127.0.0.1: {REPORT.server}, TF_NUM_THREADS=1, "
        "hot reload polled every second, serving a small real model (784-64-10, trained on 10,000 MNIST "
        "images).",
        "",
    ]
    if REPORT.requests:
        total = [sum(v[i] for v in REPORT.requests.values()) for i in (0, 1)]
        lines += ["## Summary", "",
                  *table(["phase", "requests sent", "failures"],
                         [[phase, sent, failed] for phase, (sent, failed) in REPORT.requests.items()]
                         + [["**all**", f"**{total[0]}**", f"**{total[1]}**"]]),
                  "",
                  "A failure is a 5xx, a dropped connection, a response that does not match the OpenAPI "
                  "document, a valid request not answered 200 with the model's own digits, or an invalid "
                  "one not answered with its 4xx and a JSON error. The only failures allowed are "
                  "those of the clients whose connection was open on the worker killed with SIGKILL (one "
                  "each, at most).", ""]
    for title, body in REPORT.sections.items():
        lines += [f"## {title}", "", *body, ""]
    if REPORT.faults:
        lines += ["## Faults", "",
                  *table(["fault", "expected", "outcome", "timing"],
                         [[f["name"], f["expected"], f["outcome"], f["timing"]] for f in REPORT.faults]), ""]
    lines += ["## Tests", "",
              *table(["test", "outcome", "seconds"],
                     [[f"`{nodeid.split('tests/reliability/')[-1]}`", outcome, f"{duration:.1f}"]
                      for nodeid, (outcome, duration) in REPORT.outcomes.items()]), ""]
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as out:
            out.write("\n".join(lines))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
