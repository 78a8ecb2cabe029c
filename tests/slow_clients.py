"""Slow-client attacks, and the probe that measures what other clients get meanwhile: one copy for

- the reliability suite (tests/reliability/test_slow_clients.py: gunicorn on this machine),
- the container check (``python -m tests.container.smoke_client slow-clients``: the image as shipped), and
- the benchmark (``python -m bench.slow_clients``: several servers, some of which fail the probe).

The mechanics: :func:`attack` opens the attackers' connections to ``127.0.0.1:port`` (``ATTACKS``: what
each sends first), :func:`hold` holds them (the body ones dribbling a byte a second) while a
measurement runs, usually :func:`probe`: ``GET /healthz`` and a single-image ``POST /predict`` on new
connections, in turn, for ``PROBE_SECONDS``, recording what failed instead of stopping at it; then
:func:`hold` waits for the server to close every attacker.

The checks, for the tests: :func:`never_finished_headers`, :func:`dribbled_bodies` and
:func:`idle_keep_alive` expect the server to close every attacker after its deadline
(``KEEPALIVE_SECONDS`` for headers and idle keep-alive, ``BODY_TIMEOUT_SECONDS`` for bodies;
service/worker.py), with a JSON 408 to the clients that had started a request, and every probe
answered 200 with a p99 under ``P99_LIMIT_MS``. A broken expectation raises ``AssertionError``
saying what was seen; otherwise the attack returns an :class:`Outcome`.

Bounded in count (200, 200, 1,000 connections) and in time (each attack at most its deadline + 5 s
after the probe), loopback only. The client needs ~1,300 file descriptors: :func:`raise_fd_limit`.
Standard library only, like tests/support.py.
"""

from __future__ import annotations

import json
import resource
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tests.support import LOCALHOST

PROBE_SECONDS = 3.0  # inside the 5 s header deadline: the attackers are all still there
PROBE_TIMEOUT = 10.0  # seconds for each probe's connection and answer
P99_LIMIT_MS = 100.0
MIN_PROBES = 10
GRACE_SECONDS = 5.0  # how long after its deadline an attacker may still be open
FDS_NEEDED = 1300  # 1,000 idle connections + probes + the process's own files
PREDICT_BODY = json.dumps({"instances": [[0.0] * 784]}).encode()
STILL_OPEN = b"<open>"  # what wait_closed reports for an attacker the server had not closed

# What each kind of attacker sends as soon as it is connected: part of the headers; complete headers
# and the first byte of a 4,000-byte body (then a byte a second: DRIBBLED); one whole request, after
# which the connection stays open, silent.
ATTACKS = {"headers": b"POST /predict HTTP/1.1\r\nHost: slow\r\nContent-Type: a",
           "body": b"POST /predict HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 4000\r\n\r\n{",
           "idle": b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n"}
DRIBBLED = ("body",)

Measured = TypeVar("Measured")


@dataclass
class Outcome:
    measured: str  # the probe's p99 (and max, count) per path while the attackers were held
    closed_after: float  # seconds from holding the attackers until the server had closed them all


@dataclass
class Probes:
    """What the probe saw, by path: the milliseconds of each whole 200 answer, and what came instead
    of the others (an error, another answer)."""
    answered: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, list[str]] = field(default_factory=dict)


class ProbeFailed(Exception):
    """A probe got no whole 200 answer: the message says what it got instead."""


def raise_fd_limit(wanted: int = 4096) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (never above the hard limit).

    Returns the previous ``(soft, hard)``, to restore. Raises ``RuntimeError`` when fewer than
    ``FDS_NEEDED`` descriptors can be had."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < FDS_NEEDED:
        raise RuntimeError(f"this process may open only {target} files; the attacks need {FDS_NEEDED}")
    return soft, hard


# ---------------------------------------------------------------------------------------- attackers
def connect(port: int, count: int, first_bytes: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((LOCALHOST, port), timeout=10)
        if first_bytes:
            sock.sendall(first_bytes)
        sockets.append(sock)
    return sockets


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def attack(port: int, kind: str, count: int) -> tuple[list[socket.socket], list[bytes]]:
    """Open ``count`` attacking connections of ``kind`` (a key of ``ATTACKS``). Returns them and, for
    the idle ones, the answer each read to its one request (``b""`` where none came); ``[]`` otherwise."""
    sockets = connect(port, count, ATTACKS[kind])
    first_answers = []
    if kind == "idle":
        for sock in sockets:
            try:
                first_answers.append(sock.recv(65536))  # then the connection idles
            except OSError:
                first_answers.append(b"")
    return sockets, first_answers


def dribble(sockets: list[socket.socket], stop: threading.Event) -> None:
    """One byte a second on every connection, until stopped (a closed one is skipped)."""
    while not stop.wait(1.0):
        for sock in sockets:
            try:
                sock.send(b" ")
            except OSError:
                pass


def wait_closed(sockets: list[socket.socket], limit: float) -> tuple[float, list[bytes]]:
    """Seconds until the server closed every socket (at most ``limit``), and what each received
    (``STILL_OPEN`` for one still open at the limit). Every socket is closed on return."""
    started = time.monotonic()
    answers = []
    for sock in sockets:
        sock.settimeout(max(limit - (time.monotonic() - started), 0.1))
        try:
            answers.append(read_all(sock))
        except OSError:  # timed out: still open
            answers.append(STILL_OPEN)
        sock.close()
    return time.monotonic() - started, answers


def hold(attackers: list[socket.socket], kind: str, measure: Callable[[], Measured],
         wait: float) -> tuple[Measured, list[bytes], float]:
    """Hold the attackers (dribbling, for a kind in ``DRIBBLED``) while ``measure()`` runs, then give
    the server up to ``wait`` seconds more to close them (they are closed in any case). Returns what
    ``measure()`` returned, what each attacker received (:func:`wait_closed`) and the seconds from
    the start of the hold until the last was closed."""
    held = time.monotonic()
    stop = threading.Event()
    dribbler = threading.Thread(target=dribble, args=(attackers, stop), daemon=True)
    if kind in DRIBBLED:
        dribbler.start()
    try:
        measured = measure()
    finally:
        _, answers = wait_closed(attackers, wait)
        stop.set()
        if dribbler.is_alive():
            dribbler.join(5)
    return measured, answers, time.monotonic() - held


# -------------------------------------------------------------------------------------------- probe
def probe_requests(body: bytes = PREDICT_BODY) -> dict[str, bytes]:
    """The probe's two requests, each on a connection of its own: /healthz, and /predict with ``body``."""
    return {"/healthz": b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n",
            "/predict": (b"POST /predict HTTP/1.1\r\nHost: probe\r\nContent-Type: application/json\r\n"
                         b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body}


def probe_once(port: int, request: bytes, timeout: float) -> float:
    """Milliseconds for one whole 200 answer to ``request`` on a new connection; ``ProbeFailed``
    (saying what came instead) on an error, a timeout or another answer."""
    started = time.monotonic()
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout) as sock:
            sock.sendall(request)
            response = read_all(sock)
    except OSError as error:
        raise ProbeFailed(repr(error)) from error
    if not response.startswith(b"HTTP/1.1 200"):
        raise ProbeFailed(repr(response[:200]))
    return (time.monotonic() - started) * 1000


def probe(port: int, seconds: float = PROBE_SECONDS, body: bytes = PREDICT_BODY,
          timeout: float = PROBE_TIMEOUT) -> Probes:
    """/healthz and /predict in turn, each on a new connection, for ``seconds``; failures are
    recorded, not raised."""
    requests = probe_requests(body)
    probes = Probes({path: [] for path in requests}, {path: [] for path in requests})
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path, request in requests.items():
            try:
                probes.answered[path].append(probe_once(port, request, timeout))
            except ProbeFailed as failure:
                probes.failed[path].append(str(failure))
        time.sleep(0.01)
    return probes


def p99(values: list[float]) -> float:
    """The 99th percentile, interpolated linearly between the nearest ranks (numpy.percentile's way)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * 0.99
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


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


def closed_after_deadline(port: int, kind: str, count: int, deadline: float) -> Outcome:
    """``count`` attackers of ``kind`` held while the probe must find every answer fast, then each
    closed by the server within ``deadline`` (+ grace) with the answer ``EXPECTED_ANSWERS`` names."""
    attackers, first_answers = attack(port, kind, count)
    check_first_answers(attackers, first_answers)
    measured, answers, closed_after = hold(attackers, kind, lambda: check_probe(probe(port)),
                                           deadline + GRACE_SECONDS)
    expected, expectation = EXPECTED_ANSWERS[kind]
    assert all(expected(answer) for answer in answers), f"expected {expectation}: {summary(answers)}"
    assert closed_after < deadline + GRACE_SECONDS, f"closed only after {closed_after:.1f} s"
    return Outcome(measured, closed_after)


def never_finished_headers(port: int, keepalive: float, count: int = 200) -> Outcome:
    """``count`` connections that send a request line and part of the headers, then wait: each must
    get a JSON 408 and be closed within ``keepalive`` (+ grace) while others are served."""
    return closed_after_deadline(port, "headers", count, keepalive)


def dribbled_bodies(port: int, body_timeout: float, count: int = 200) -> Outcome:
    """``count`` connections that send complete headers, then a body at one byte a second: each must
    get a JSON 408 naming BODY_TIMEOUT_SECONDS and be closed within ``body_timeout`` (+ grace)."""
    return closed_after_deadline(port, "body", count, body_timeout)


def idle_keep_alive(port: int, keepalive: float, count: int = 1000) -> Outcome:
    """``count`` connections that each make one request and then stay silent: each must be closed
    (without a response) within ``keepalive`` (+ grace) of its answer."""
    return closed_after_deadline(port, "idle", count, keepalive)
