"""Slow clients against the real server, as an attacker with no credentials would try them.

Each attack holds its connections open while a probe measures what other clients get (a new
connection each time: ``GET /healthz`` and a single-image ``POST /predict``, in turn), then checks
that the server closes the attackers after their deadline (``KEEPALIVE_SECONDS`` for headers and idle
keep-alive, ``BODY_TIMEOUT_SECONDS`` for bodies; service/worker.py), with a JSON 408 to the clients
that had started a request. Everything stays on 127.0.0.1 and is bounded in count and time.

1. 200 connections that send a request line and some headers, then wait;
2. 200 connections that send their headers and dribble a body, one byte a second;
3. 1,000 idle keep-alive connections (each made one request, then nothing).
"""

from __future__ import annotations

import json
import resource
import socket
import threading
import time

import numpy as np
import pytest

from service.config import Config

from .report import REPORT

pytestmark = pytest.mark.reliability

PROBE_SECONDS = 3.0  # inside the 5 s header deadline: the attackers are all still there
P99_LIMIT_MS = 100.0
KEEPALIVE = Config.keepalive_seconds  # the shared server runs with the defaults
BODY_TIMEOUT = Config.body_timeout_seconds
PREDICT_BODY = json.dumps({"instances": [[0.0] * 784]}).encode()


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 4096)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < 1300:
        pytest.skip(f"this process may open only {wanted} files; the attacks need 1,300")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(port: int, count: int, first_bytes: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if first_bytes:
            sock.sendall(first_bytes)
        sockets.append(sock)
    return sockets


def probe(port: int, seconds: float) -> dict[str, list[float]]:
    """Milliseconds of each /healthz and /predict answer on new connections, for ``seconds``."""
    requests = {"/healthz": b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n",
                "/predict": (b"POST /predict HTTP/1.1\r\nHost: probe\r\nContent-Type: application/json\r\n"
                             b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(PREDICT_BODY)) + PREDICT_BODY}
    latencies = {path: [] for path in requests}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path, request in requests.items():
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request)
                response = read_all(sock)
            assert response.startswith(b"HTTP/1.1 200"), response[:200]
            latencies[path].append((time.monotonic() - started) * 1000)
        time.sleep(0.01)
    return latencies


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99))


def wait_closed(sockets: list[socket.socket], limit: float) -> tuple[float, list[bytes]]:
    """Seconds until the server closed every socket (at most ``limit``), and what each received."""
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


def check_probe(latencies: dict[str, list[float]]) -> str:
    for path, values in latencies.items():
        assert len(values) >= 10, f"only {len(values)} {path} probes in {PROBE_SECONDS} s"
        assert p99(values) < P99_LIMIT_MS, f"{path} p99 {p99(values):.1f} ms while attacked"
    return ", ".join(f"{path} p99 {p99(values):.1f} ms (max {max(values):.1f}, n={len(values)})"
                     for path, values in latencies.items())


def test_200_connections_that_never_finish_their_headers(service):
    attackers = connect(service.port, 200, b"POST /predict HTTP/1.1\r\nHost: slow\r\nContent-Type: a")
    held = time.monotonic()
    measured = check_probe(probe(service.port, PROBE_SECONDS))
    seconds, answers = wait_closed(attackers, KEEPALIVE + 5)
    closed_after = time.monotonic() - held
    assert all(answer.startswith(b"HTTP/1.1 408") and b'"error"' in answer for answer in answers), \
        {answer[:60] for answer in answers}
    assert closed_after < KEEPALIVE + 5
    REPORT.fault("200 connections that never finish their headers",
                 "other clients unaffected (p99 < 100 ms); each attacker answered 408 JSON and closed "
                 f"after KEEPALIVE_SECONDS ({KEEPALIVE} s)", measured,
                 f"all 200 closed {closed_after:.1f} s after they connected")


def test_200_connections_that_dribble_a_body(service):
    head = (b"POST /predict HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4000\r\n\r\n{")
    attackers = connect(service.port, 200, head)
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
        measured = check_probe(probe(service.port, PROBE_SECONDS))
        seconds, answers = wait_closed(attackers, BODY_TIMEOUT + 5)
    finally:
        stop.set()
        dribbler.join(5)
    closed_after = time.monotonic() - held
    assert all(answer.startswith(b"HTTP/1.1 408") and b"BODY_TIMEOUT_SECONDS" in answer for answer in answers), \
        {answer[:60] for answer in answers}
    assert closed_after < BODY_TIMEOUT + 5
    REPORT.fault("200 connections that dribble a body at a byte a second",
                 "other clients unaffected (p99 < 100 ms); each attacker answered 408 JSON and closed "
                 f"after BODY_TIMEOUT_SECONDS ({BODY_TIMEOUT:g} s)", measured,
                 f"all 200 closed {closed_after:.1f} s after they connected")


def test_1000_idle_keep_alive_connections(service):
    attackers = connect(service.port, 1000, b"")
    for sock in attackers:  # each makes one request and keeps its connection
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n")
    for sock in attackers:
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    held = time.monotonic()
    measured = check_probe(probe(service.port, PROBE_SECONDS))
    seconds, answers = wait_closed(attackers, KEEPALIVE + 5)
    closed_after = time.monotonic() - held
    assert answers == [b""] * 1000, "an idle connection is closed without a response"
    assert closed_after < KEEPALIVE + 5
    REPORT.fault("1,000 idle keep-alive connections",
                 "other clients unaffected (p99 < 100 ms); each closed after KEEPALIVE_SECONDS "
                 f"({KEEPALIVE} s) of silence", measured,
                 f"all 1,000 closed {closed_after:.1f} s after their request")
