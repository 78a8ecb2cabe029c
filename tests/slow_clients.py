"""The slow-client checks: what the service must do to slow clients, asserted, for

- the reliability suite (tests/reliability/test_slow_clients.py: gunicorn on this machine) and
- the container check (``python -m tests.container.smoke_client slow-clients``: the image as shipped).

The attacks and the probe are bench/attacks.py's (the benchmark, ``python -m bench.slow_clients``,
uses them to compare several servers, some of which fail these checks). :func:`never_finished_headers`,
:func:`dribbled_bodies` and :func:`idle_keep_alive` expect the server to close every attacker after its
deadline (``KEEPALIVE_SECONDS`` for headers and idle keep-alive, ``BODY_TIMEOUT_SECONDS`` for bodies;
service/worker.py), with a JSON 408 to the clients that had started a request, and every probe
answered 200 with a p99 under ``P99_LIMIT_MS``. A broken expectation raises ``AssertionError``
saying what was seen; otherwise the attack returns an :class:`Outcome`.

Bounded in count (200, 200, 1,000 connections) and in time (each attack at most its deadline + 5 s
after the probe), loopback only. Standard library only, like bench/attacks.py.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from bench.attacks import PROBE_SECONDS, Probes, attack, hold, p99, probe

P99_LIMIT_MS = 100.0
MIN_PROBES = 10
GRACE_SECONDS = 5.0  # how long after its deadline an attacker may still be open


@dataclass
class Outcome:
    measured: str  # the probe's p99 (and max, count) per path while the attackers were held
    closed_after: float  # seconds from holding the attackers until the server had closed them all


def check_probe(probes: Probes) -> str:
    """Assert every probe answered, enough of them and each path's p99 under ``P99_LIMIT_MS``; return
    them as one line."""
    for path, failures in probes.failed.items():
        assert not failures, f"{path} while attacked: {failures[0]} ({len(failures)} failed)"
    for path, values in probes.answered.items():
        assert len(values) >= MIN_PROBES, f"only {len(values)} {path} probes in {PROBE_SECONDS} s"
        assert p99(values) < P99_LIMIT_MS, f"{path} p99 {p99(values):.1f} ms while attacked (limit {P99_LIMIT_MS:g})"
    return ", ".join(f"{path} p99 {p99(values):.1f} ms (max {max(values):.1f}, n={len(values)})"
                     for path, values in probes.answered.items())


# ------------------------------------------------------------------------------------- the checks
def summary(answers: list[bytes]) -> str:
    """What the attackers received, counted: ``{b'HTTP/1.1 408 Request Timeout...': 200}``."""
    counts: dict[bytes, int] = {}
    for answer in answers:
        counts[answer[:40]] = counts.get(answer[:40], 0) + 1
    return ", ".join(f"{count} x {head!r}" for head, count in counts.items())


# What every attacker of a kind must have received by the time the server closed it, and that said.
EXPECTED_ANSWERS: dict[str, tuple[Callable[[bytes], bool], str]] = {
    "headers": (lambda answer: answer.startswith(b"HTTP/1.1 408") and b'"error"' in answer,
                "a JSON 408 on every attacker"),
    "body": (lambda answer: answer.startswith(b"HTTP/1.1 408") and b"BODY_TIMEOUT_SECONDS" in answer,
             "a JSON 408 naming BODY_TIMEOUT_SECONDS on every attacker"),
    "idle": (lambda answer: answer == b"", "every idle connection closed without a response"),
}


def check_first_answers(attackers: list[socket.socket], first_answers: list[bytes]) -> None:
    """Every idle attacker's one request was answered 200 (else all are closed, and it says so)."""
    for answer in first_answers:
        if not answer.startswith(b"HTTP/1.1 200"):
            for sock in attackers:
                sock.close()
            raise AssertionError(f"an idle client's request got {answer[:80]!r}")


def closed_after_deadline(port: int, kind: str, count: int, deadline: float, tls=None) -> Outcome:
    """``count`` attackers of ``kind`` held while the probe must find every answer fast, then each
    closed by the server within ``deadline`` (+ grace) with the answer ``EXPECTED_ANSWERS`` names.
    ``tls``: an ``ssl.SSLContext`` trusting the server, for attackers and probe over TLS."""
    attackers, first_answers = attack(port, kind, count, tls)
    check_first_answers(attackers, first_answers)
    measured, answers, closed_after = hold(attackers, kind, lambda: check_probe(probe(port, tls=tls)),
                                           deadline + GRACE_SECONDS)
    expected, expectation = EXPECTED_ANSWERS[kind]
    assert all(expected(answer) for answer in answers), f"expected {expectation}: {summary(answers)}"
    assert closed_after < deadline + GRACE_SECONDS, f"closed only after {closed_after:.1f} s"
    return Outcome(measured, closed_after)


def never_finished_headers(port: int, keepalive: float, count: int = 200, tls=None) -> Outcome:
    """``count`` connections that send a request line and part of the headers, then wait: each must
    get a JSON 408 and be closed within ``keepalive`` (+ grace) while others are served."""
    return closed_after_deadline(port, "headers", count, keepalive, tls)


def dribbled_bodies(port: int, body_timeout: float, count: int = 200, tls=None) -> Outcome:
    """``count`` connections that send complete headers, then a body at one byte a second: each must
    get a JSON 408 naming BODY_TIMEOUT_SECONDS and be closed within ``body_timeout`` (+ grace)."""
    return closed_after_deadline(port, "body", count, body_timeout, tls)


def idle_keep_alive(port: int, keepalive: float, count: int = 1000, tls=None) -> Outcome:
    """``count`` connections that each make one request and then stay silent: each must be closed
    (without a response) within ``keepalive`` (+ grace) of its answer."""
    return closed_after_deadline(port, "idle", count, keepalive, tls)
