"""Slow-client attacks, and the probe that measures what other clients get meanwhile: one copy for

- the reliability suite (tests/reliability/test_slow_clients.py: gunicorn on this machine), and
- the container check (``python -m tests.container.smoke_client slow-clients``: the image as shipped).

Each attack opens its connections to ``127.0.0.1:port``, holds them while :func:`probe` measures
``GET /healthz`` and a single-image ``POST /predict`` on new connections (in turn, for
``PROBE_SECONDS``), then waits for the server to close every attacker after its deadline
(``KEEPALIVE_SECONDS`` for headers and idle keep-alive, ``BODY_TIMEOUT_SECONDS`` for bodies;
service/worker.py), with a JSON 408 to the clients that had started a request. A broken expectation
raises ``AssertionError`` saying what was seen; otherwise the attack returns an :class:`Outcome`.

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
from dataclasses import dataclass

from tests.support import LOCALHOST

PROBE_SECONDS = 3.0  # inside the 5 s header deadline: the attackers are all still there
P99_LIMIT_MS = 100.0
MIN_PROBES = 10
GRACE_SECONDS = 5.0  # how long after its deadline an attacker may still be open
FDS_NEEDED = 1300  # 1,000 idle connections + probes + the process's own files
PREDICT_BODY = json.dumps({"instances": [[0.0] * 784]}).encode()


@dataclass
class Outcome:
    measured: str  # the probe's p99 (and max, count) per path while the attackers were held
    closed_after: float  # seconds from holding the attackers until the server had closed them all


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


def probe(port: int, seconds: float = PROBE_SECONDS) -> dict[str, list[float]]:
    """Milliseconds of each /healthz and /predict answer on new connections, for ``seconds``."""
    requests = {"/healthz": b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n",
                "/predict": (b"POST /predict HTTP/1.1\r\nHost: probe\r\nContent-Type: application/json\r\n"
                             b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(PREDICT_BODY)) + PREDICT_BODY}
    latencies = {path: [] for path in requests}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path, request in requests.items():
            started = time.monotonic()
            with socket.create_connection((LOCALHOST, port), timeout=10) as sock:
                sock.sendall(request)
                response = read_all(sock)
            assert response.startswith(b"HTTP/1.1 200"), f"{path} while attacked: {response[:200]!r}"
            latencies[path].append((time.monotonic() - started) * 1000)
        time.sleep(0.01)
    return latencies


def p99(values: list[float]) -> float:
    """The 99th percentile, interpolated linearly between the nearest ranks (numpy.percentile's way)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * 0.99
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def check_probe(latencies: dict[str, list[float]]) -> str:
    """Assert enough probes and each path's p99 under ``P99_LIMIT_MS``; return them as one line."""
    for path, values in latencies.items():
        assert len(values) >= MIN_PROBES, f"only {len(values)} {path} probes in {PROBE_SECONDS} s"
        assert p99(values) < P99_LIMIT_MS, f"{path} p99 {p99(values):.1f} ms while attacked (limit {P99_LIMIT_MS:g})"
    return ", ".join(f"{path} p99 {p99(values):.1f} ms (max {max(values):.1f}, n={len(values)})"
                     for path, values in latencies.items())


def wait_closed(sockets: list[socket.socket], limit: float) -> tuple[float, list[bytes]]:
    """Seconds until the server closed every socket (at most ``limit``), and what each received
    (``b"<open>"`` for one still open at the limit)."""
    started = time.monotonic()
    answers = []
    for sock in sockets:
        sock.settimeout(max(limit - (time.monotonic() - started), 0.1))
        try:
            answers.append(read_all(sock))
        except OSError:  # timed out: still open
            answers.append(b"<open>")
        sock.close()
    return time.monotonic() - started, answers


def summary(answers: list[bytes]) -> str:
    """What the attackers received, counted: ``{b'HTTP/1.1 408 Request Timeout...': 200}``."""
    counts: dict[bytes, int] = {}
    for answer in answers:
        counts[answer[:40]] = counts.get(answer[:40], 0) + 1
    return ", ".join(f"{count} x {head!r}" for head, count in counts.items())


def never_finished_headers(port: int, keepalive: float, count: int = 200) -> Outcome:
    """``count`` connections that send a request line and part of the headers, then wait: each must
    get a JSON 408 and be closed within ``keepalive`` (+ grace) while others are served."""
    attackers = connect(port, count, b"POST /predict HTTP/1.1\r\nHost: slow\r\nContent-Type: a")
    held = time.monotonic()
    try:
        measured = check_probe(probe(port))
    finally:
        _, answers = wait_closed(attackers, keepalive + GRACE_SECONDS)
    closed_after = time.monotonic() - held
    assert all(answer.startswith(b"HTTP/1.1 408") and b'"error"' in answer for answer in answers), \
        f"expected a JSON 408 on every attacker: {summary(answers)}"
    assert closed_after < keepalive + GRACE_SECONDS, f"closed only after {closed_after:.1f} s"
    return Outcome(measured, closed_after)


def dribbled_bodies(port: int, body_timeout: float, count: int = 200) -> Outcome:
    """``count`` connections that send complete headers, then a body at one byte a second: each must
    get a JSON 408 naming BODY_TIMEOUT_SECONDS and be closed within ``body_timeout`` (+ grace)."""
    head = (b"POST /predict HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4000\r\n\r\n{")
    attackers = connect(port, count, head)
    held = time.monotonic()
    stop = threading.Event()

    def dribble():  # one byte a second on every connection, until stopped or closed
        while not stop.wait(1.0):
            for sock in attackers:
                try:
                    sock.send(b" ")
                except OSError:
                    pass

    dribbler = threading.Thread(target=dribble, daemon=True)
    dribbler.start()
    try:
        measured = check_probe(probe(port))
    finally:
        _, answers = wait_closed(attackers, body_timeout + GRACE_SECONDS)
        stop.set()
        dribbler.join(5)
    closed_after = time.monotonic() - held
    assert all(answer.startswith(b"HTTP/1.1 408") and b"BODY_TIMEOUT_SECONDS" in answer for answer in answers), \
        f"expected a JSON 408 naming BODY_TIMEOUT_SECONDS on every attacker: {summary(answers)}"
    assert closed_after < body_timeout + GRACE_SECONDS, f"closed only after {closed_after:.1f} s"
    return Outcome(measured, closed_after)


def idle_keep_alive(port: int, keepalive: float, count: int = 1000) -> Outcome:
    """``count`` connections that each make one request and then stay silent: each must be closed
    (without a response) within ``keepalive`` (+ grace) of its answer."""
    attackers = connect(port, count, b"")
    try:
        for sock in attackers:  # each makes one request and keeps its connection
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n")
        for sock in attackers:
            first = sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200"), f"an idle client's request got {first[:80]!r}"
    except BaseException:
        for sock in attackers:
            sock.close()
        raise
    held = time.monotonic()
    try:
        measured = check_probe(probe(port))
    finally:
        _, answers = wait_closed(attackers, keepalive + GRACE_SECONDS)
    closed_after = time.monotonic() - held
    assert answers == [b""] * count, f"expected every idle connection closed without a response: {summary(answers)}"
    assert closed_after < keepalive + GRACE_SECONDS, f"closed only after {closed_after:.1f} s"
    return Outcome(measured, closed_after)
