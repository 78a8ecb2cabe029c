"""Slow clients against the real server, as an attacker with no credentials would try them.

Each attack holds its connections open while a probe measures what other clients get (a new
connection each time: ``GET /healthz`` and a single-image ``POST /predict``, in turn), then checks
that the server closes the attackers after their deadline (``KEEPALIVE_SECONDS`` for headers and idle
keep-alive, ``BODY_TIMEOUT_SECONDS`` for bodies; service/worker.py), with a JSON 408 to the clients
that had started a request. Everything stays on 127.0.0.1 and is bounded in count and time.

1. 200 connections that send a request line and some headers, then wait;
2. 200 connections that send their headers and dribble a body, one byte a second;
3. 1,000 idle keep-alive connections (each made one request, then nothing).

The checks are in tests/slow_clients.py (the attacks in bench/attacks.py), shared with the container
check, which runs them against the image as shipped (tests/container/smoke.sh).
"""

from __future__ import annotations

import resource

import pytest

from bench.attacks import raise_fd_limit
from service.config import Config
from tests.slow_clients import P99_LIMIT_MS, dribbled_bodies, idle_keep_alive, never_finished_headers

from .report import REPORT

pytestmark = pytest.mark.reliability

KEEPALIVE = Config.keepalive_seconds  # the shared server runs with the defaults
BODY_TIMEOUT = Config.body_timeout_seconds
UNAFFECTED = f"other clients unaffected (p99 < {P99_LIMIT_MS:g} ms)"


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors():
    try:
        previous = raise_fd_limit()
    except RuntimeError as error:
        pytest.skip(str(error))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, previous)


def test_200_connections_that_never_finish_their_headers(service):
    outcome = never_finished_headers(service.port, KEEPALIVE)
    REPORT.fault("200 connections that never finish their headers",
                 f"{UNAFFECTED}; each attacker answered 408 JSON and closed after KEEPALIVE_SECONDS "
                 f"({KEEPALIVE} s)", outcome.measured, f"all 200 closed {outcome.closed_after:.1f} s after they connected")


def test_200_connections_that_dribble_a_body(service):
    outcome = dribbled_bodies(service.port, BODY_TIMEOUT)
    REPORT.fault("200 connections that dribble a body at a byte a second",
                 f"{UNAFFECTED}; each attacker answered 408 JSON and closed after BODY_TIMEOUT_SECONDS "
                 f"({BODY_TIMEOUT:g} s)", outcome.measured,
                 f"all 200 closed {outcome.closed_after:.1f} s after they connected")


def test_1000_idle_keep_alive_connections(service):
    outcome = idle_keep_alive(service.port, KEEPALIVE)
    REPORT.fault("1,000 idle keep-alive connections",
                 f"{UNAFFECTED}; each closed after KEEPALIVE_SECONDS ({KEEPALIVE} s) of silence",
                 outcome.measured, f"all 1,000 closed {outcome.closed_after:.1f} s after their request")
