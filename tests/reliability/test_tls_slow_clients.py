"""The slow-client attacks over TLS (TLS_CERT_FILE, TLS_KEY_FILE), against a real gunicorn of its own
with the default deadlines and a self-signed certificate made here: the same checks as
test_slow_clients.py (tests/slow_clients.py), every attacker and probe a verified TLS connection, plus
the attack TLS adds, connections that never start their handshake. With TLS the worker hands each
accepted socket to the event loop's TLS layer (service/balancing.py), which must keep the deadlines.
"""

from __future__ import annotations

import resource
import time

import pytest

from bench.attacks import connect, hold, probe, raise_fd_limit
from service.config import Config
from tests.service.operator_support import running_tls_gunicorn, self_signed_certificate
from tests.slow_clients import (GRACE_SECONDS, P99_LIMIT_MS, check_probe, dribbled_bodies, idle_keep_alive,
                                never_finished_headers)

from .report import REPORT

pytestmark = pytest.mark.reliability

KEEPALIVE = Config.keepalive_seconds
BODY_TIMEOUT = Config.body_timeout_seconds
UNAFFECTED = f"other clients unaffected (p99 < {P99_LIMIT_MS:g} ms, over TLS)"


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors():
    try:
        previous = raise_fd_limit()
    except RuntimeError as error:
        pytest.skip(str(error))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, previous)


@pytest.fixture(scope="module")
def tls_service(tmp_path_factory, version_dir):
    folder = tmp_path_factory.mktemp("tls-reliability")
    cert, key = self_signed_certificate(folder)
    base = version_dir.parent  # the MNIST export base of the suite (read only)
    yield from running_tls_gunicorn(base, folder, cert, key, workers=2)


def test_200_connections_that_never_start_their_tls_handshake(tls_service):
    attackers = connect(tls_service.port, 200, b"")
    measured, answers, closed_after = hold(attackers, "handshake",
                                           lambda: check_probe(probe(tls_service.port, tls=tls_service.tls_context)),
                                           KEEPALIVE + GRACE_SECONDS)
    assert all(answer == b"" for answer in answers), "every silent connection closed without a byte"
    assert closed_after < KEEPALIVE + GRACE_SECONDS, f"closed only after {closed_after:.1f} s"
    REPORT.fault("200 connections that never start their TLS handshake",
                 f"{UNAFFECTED}; each closed after KEEPALIVE_SECONDS ({KEEPALIVE} s)", measured,
                 f"all 200 closed {closed_after:.1f} s after they connected")


def test_200_tls_connections_that_never_finish_their_headers(tls_service):
    outcome = never_finished_headers(tls_service.port, KEEPALIVE, tls=tls_service.tls_context)
    REPORT.fault("200 TLS connections that never finish their headers",
                 f"{UNAFFECTED}; each answered 408 JSON and closed after KEEPALIVE_SECONDS ({KEEPALIVE} s)",
                 outcome.measured, f"all 200 closed {outcome.closed_after:.1f} s after they connected")


def test_200_tls_connections_that_dribble_a_body(tls_service):
    outcome = dribbled_bodies(tls_service.port, BODY_TIMEOUT, tls=tls_service.tls_context)
    REPORT.fault("200 TLS connections that dribble a body at a byte a second",
                 f"{UNAFFECTED}; each answered 408 JSON and closed after BODY_TIMEOUT_SECONDS ({BODY_TIMEOUT:g} s)",
                 outcome.measured, f"all 200 closed {outcome.closed_after:.1f} s after they connected")


def test_1000_idle_tls_keep_alive_connections(tls_service):
    started = time.monotonic()
    outcome = idle_keep_alive(tls_service.port, KEEPALIVE, tls=tls_service.tls_context)
    REPORT.fault("1,000 idle TLS keep-alive connections",
                 f"{UNAFFECTED}; each closed after KEEPALIVE_SECONDS ({KEEPALIVE} s) of silence",
                 outcome.measured, f"all 1,000 closed {outcome.closed_after:.1f} s after their request "
                                   f"({time.monotonic() - started:.0f} s with the handshakes)")
