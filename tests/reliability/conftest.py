"""Reliability suite (issue 8): fuzzing, a bounded soak and injected faults against the real service.

Marked ``reliability`` and left out of the default ``python -m pytest``; run it with::

    python -m pytest tests/reliability -m reliability -p no:cacheprovider --timeout=600   # ~4 min
    RELIABILITY_SOAK_SECONDS=15 python -m pytest tests/reliability -m reliability        # a shorter soak
    RELIABILITY_REPORT=docs/reliability.md python -m pytest tests/reliability -m reliability -p no:cacheprovider --timeout=600

The tests share one gunicorn (2 workers as service/gunicorn.conf.py makes them, hot reload every second)
serving a small real model, and run in a fixed order: the API fuzzing, then the soak, then the slow
clients (floods of connections that stall), then the faults (the worker kill and the corrupt version
hit that same server, after the soak's measurements). The
figures they record are written, at the end of the session, only where ``RELIABILITY_REPORT`` says
(the third command regenerates docs/reliability.md; see report.py). All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bench.servers import gunicorn_settings
# The small real model of the service tests, exported once per session.
from tests.service.conftest import (copy_version, mnist_export_base, mnist_model,  # noqa: F401
                                    mnist_subset, reference)
from tests.support import running_gunicorn

from .report import REPORT, write_if_asked

HERE = Path(__file__).resolve().parent
ORDER = ("test_fuzz.py", "test_grpc_fuzz.py", "test_soak.py", "test_slow_clients.py", "test_faults.py")
WORKERS = 2
POLL_SECONDS = 1.0
MARKED: set[str] = set()  # node ids of the tests marked ``reliability`` that were collected


def pytest_collection_modifyitems(config, items):
    """Fuzz, then soak, then slow clients, then faults (they share the server; the faults come last). Notes which tests
    are reliability tests: only their outcomes go into the report."""
    MARKED.update(item.nodeid for item in items if item.get_closest_marker("reliability"))

    def rank(item):
        path = Path(str(item.fspath))
        if path.parent != HERE:
            return -1
        return ORDER.index(path.name) if path.name in ORDER else len(ORDER)
    items.sort(key=rank)  # stable: the order inside a file is kept


def pytest_runtest_logreport(report):
    if report.nodeid not in MARKED:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcome = "skipped" if report.skipped else report.outcome
        REPORT.outcomes[report.nodeid] = (outcome, report.duration)


def pytest_sessionstart(session):
    session.config._reliability_started = time.monotonic()


def pytest_sessionfinish(session, exitstatus):
    """The report, where $RELIABILITY_REPORT says and only if a reliability test ran (report.py)."""
    started = getattr(session.config, "_reliability_started", time.monotonic())
    written = write_if_asked(REPORT, time.monotonic() - started)
    if written:
        print(f"\nreliability report written to {written}")


@pytest.fixture(scope="session")
def version_dir(mnist_export_base):  # noqa: F811
    """The MNIST model (the fuzz tests check that real digits are recognised), not the digits one."""
    return mnist_export_base / "1"


@pytest.fixture(scope="session")
def service(tmp_path_factory, version_dir):  # noqa: F811 - the imported fixture
    """gunicorn with 2 workers on 127.0.0.1 serving version 1 of the small model, polling every 1 s."""
    folder = tmp_path_factory.mktemp("reliability-service")
    base = folder / "exports"
    copy_version(version_dir, base, 1)
    REPORT.server = describe_server(gunicorn_settings())
    REPORT.model = describe_model(version_dir)
    with running_gunicorn(base, folder / "gunicorn.log", workers=WORKERS, poll_seconds=POLL_SECONDS) as server:
        yield server


def describe_server(config: dict) -> str:
    """How the shared server runs, for the report: from gunicorn's settings and the service's config."""
    from service.config import load_config

    service = load_config()
    requests_run = (f"in {config.get('threads', '?')} threads each (ENABLE_BATCHING=1)" if service.enable_batching
                    else "on each worker's event loop")
    return (f"gunicorn with {WORKERS} {config.get('worker_class', '?')} workers, requests run {requests_run} "
            f"(keep-alive {config.get('keepalive', '?')} s; service/gunicorn.conf.py), "
            f"TF_NUM_THREADS={service.tf_num_threads}, hot reload polled every {POLL_SECONDS:g} s")


def describe_model(version: Path) -> str:
    """What the shared server serves, for the report: from the export's own metadata."""
    from service.contract import METADATA_PATH

    metadata = json.loads((version / METADATA_PATH).read_text())
    sizes = "-".join(str(size) for size in metadata.get("sizes", []))
    accuracy = metadata.get("test_accuracy")
    return (f"a small model ({sizes}"
            + (f", test accuracy {accuracy:.1%} per its metadata" if isinstance(accuracy, (int, float)) else "")
            + ")")


@pytest.fixture(scope="session")
def digits(mnist_subset):  # noqa: F811
    """200 real MNIST test digits (float32 in [0, 1]) and their labels."""
    _, (xt, yt) = mnist_subset
    return xt[:200], yt[:200]


@pytest.fixture(scope="session")
def expected(reference, digits):  # noqa: F811
    """The exported model's own probabilities for ``digits`` (tf.saved_model.load, no service)."""
    return reference(digits[0])
