"""Slow-client attacks, and the probe that measures what other clients get meanwhile: one copy for the
benchmark (``python -m bench.slow_clients``: several ways to run the service, some of which fail the
probe) and for the checks of tests/slow_clients.py (the reliability suite and the container check).

:func:`attack` opens the attackers' connections to ``127.0.0.1:port`` (``ATTACKS``: what each sends
first), :func:`hold` holds them (the body ones dribbling a byte a second) while a measurement runs,
usually :func:`probe`: ``GET /healthz`` and a single-image ``POST /predict`` on new connections, in
turn, for ``PROBE_SECONDS``, recording what failed instead of stopping at it; then :func:`hold` waits
for the server to close every attacker.

Over TLS too: give ``tls`` (an ``ssl.SSLContext`` that trusts the server) to :func:`attack` and
:func:`probe`, and every connection is a verified TLS connection (tests/reliability/test_tls_slow_clients.py).

Loopback only, bounded in count (the callers choose how many attackers) and in time (every wait has a
limit). The client needs ~1,300 file descriptors: :func:`raise_fd_limit`. Standard library only, like
bench/localhost.py: the container smoke client runs it with no more than that and NumPy.
"""

from __future__ import annotations

import json
import resource
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from bench.localhost import LOCALHOST

PROBE_SECONDS = 3.0  # inside the 5 s header deadline: the attackers are all still there
PROBE_TIMEOUT = 10.0  # seconds for each probe's connection and answer
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
def open_connection(port: int, timeout: float, tls: ssl.SSLContext | None = None) -> socket.socket:
    """A connection to 127.0.0.1:``port``; with ``tls``, TLS on it (the handshake done)."""
    sock = socket.create_connection((LOCALHOST, port), timeout=timeout)
    return sock if tls is None else tls.wrap_socket(sock, server_hostname=LOCALHOST)


def connect(port: int, count: int, first_bytes: bytes, tls: ssl.SSLContext | None = None) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = open_connection(port, 10, tls)
        if first_bytes:
            sock.sendall(first_bytes)
        sockets.append(sock)
    return sockets


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def attack(port: int, kind: str, count: int, tls: ssl.SSLContext | None = None) -> tuple[list[socket.socket], list[bytes]]:
    """Open ``count`` attacking connections of ``kind`` (a key of ``ATTACKS``). Returns them and, for
    the idle ones, the answer each read to its one request (``b""`` where none came); ``[]`` otherwise."""
    sockets = connect(port, count, ATTACKS[kind], tls)
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


def probe_once(port: int, request: bytes, timeout: float, tls: ssl.SSLContext | None = None) -> float:
    """Milliseconds for one whole 200 answer to ``request`` on a new connection; ``ProbeFailed``
    (saying what came instead) on an error, a timeout or another answer."""
    started = time.monotonic()
    try:
        with open_connection(port, timeout, tls) as sock:
            sock.sendall(request)
            response = read_all(sock)
    except OSError as error:
        raise ProbeFailed(repr(error)) from error
    if not response.startswith(b"HTTP/1.1 200"):
        raise ProbeFailed(repr(response[:200]))
    return (time.monotonic() - started) * 1000


def probe(port: int, seconds: float = PROBE_SECONDS, body: bytes = PREDICT_BODY,
          timeout: float = PROBE_TIMEOUT, tls: ssl.SSLContext | None = None) -> Probes:
    """/healthz and /predict in turn, each on a new connection, for ``seconds``; failures are
    recorded, not raised."""
    requests = probe_requests(body)
    probes = Probes({path: [] for path in requests}, {path: [] for path in requests})
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path, request in requests.items():
            try:
                probes.answered[path].append(probe_once(port, request, timeout, tls))
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
