"""service/worker.py and service/whole_requests.py against a real gunicorn on 127.0.0.1: requests are
read whole by the event loop, slow or broken clients get JSON errors within their deadlines, and
connections spread evenly over the workers. (Floods of slow clients: tests/reliability.)"""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from bench.localhost import wait_for
from tests.support import established_connections, running_gunicorn

KEEPALIVE_SECONDS = 1
BODY_TIMEOUT_SECONDS = 1.5
MAX_BODY_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory, export_base):
    folder = tmp_path_factory.mktemp("worker")
    limits = {"KEEPALIVE_SECONDS": str(KEEPALIVE_SECONDS), "BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_SECONDS),
              "MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    with running_gunicorn(export_base, folder / "gunicorn.log", workers=2, poll_seconds=0,
                          extra_env=limits) as gunicorn:
        yield gunicorn


def exchange(port: int, data: bytes, wait: float = 10.0) -> tuple[float, bytes]:
    """Send ``data`` on a new connection and read until the server closes it: (seconds since before the
    connection was opened, response). The clock starts before connecting: the server's deadline starts when
    it accepts the connection, which a busy machine may do before this process gets to run again."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
        return time.monotonic() - started, response


def status_and_error(response: bytes) -> tuple[int, str]:
    """The status code and the JSON body's ``error`` of a raw HTTP response."""
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return int(head.split()[1]), json.loads(body)["error"]


def test_headers_not_finished_in_time_get_a_json_408_and_the_connection_closes(server):
    seconds, response = exchange(server.port, b"POST /predict HTTP/1.1\r\nHost: x\r\n")
    assert status_and_error(response) == (
        408, f"request headers not received within {KEEPALIVE_SECONDS} seconds (KEEPALIVE_SECONDS)")
    assert KEEPALIVE_SECONDS <= seconds < KEEPALIVE_SECONDS + 2


def test_body_not_finished_in_time_gets_a_json_408(server):
    request = (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: 100\r\n\r\n{\"instances\"")
    seconds, response = exchange(server.port, request)
    assert status_and_error(response) == (408, "request body not received within 1.5 seconds "
                                                "(BODY_TIMEOUT_SECONDS): send the whole body at once")
    assert BODY_TIMEOUT_SECONDS <= seconds < BODY_TIMEOUT_SECONDS + 2


def test_an_idle_connection_is_closed_without_an_answer(server):
    seconds, response = exchange(server.port, b"")
    assert response == b"" and KEEPALIVE_SECONDS <= seconds < KEEPALIVE_SECONDS + 2


def test_a_body_declared_too_large_gets_a_json_413_at_once(server):
    request = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{"
    seconds, response = exchange(server.port, request)
    status, error = status_and_error(response)
    assert status == 413 and f"at most {MAX_BODY_BYTES} bytes (MAX_BODY_BYTES)" in error
    assert seconds < 1


def test_a_body_sent_too_large_gets_a_json_413_after_it_is_read(server):
    """Read to the end (not refused halfway), so a client writing its body sees the 413."""
    body = b"[" + b"0," * MAX_BODY_BYTES + b"0]"
    response = requests.post(server.url("/predict"), data=body, headers={"Content-Type": "application/json"},
                             timeout=10)
    assert response.status_code == 413 and "MAX_BODY_BYTES" in response.json()["error"]
    chunked = requests.post(server.url("/predict"), data=iter([body[:40000], body[40000:]]),
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert chunked.status_code == 413 and "over the limit" in chunked.json()["error"]


@pytest.mark.parametrize("request_bytes, status, error", [
    (b"GARBAGE\r\n\r\n", 400, "Invalid request line"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431, "too large"),
    (b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, ""),
])
def test_requests_the_parser_refuses_get_json_errors(server, request_bytes, status, error):
    _, response = exchange(server.port, request_bytes)
    got_status, got_error = status_and_error(response)
    assert got_status == status and error in got_error


def test_a_chunked_body_is_read_whole_before_flask_sees_it(server, reference):
    pixels = [[0.25] * 784]
    body = json.dumps({"instances": pixels}).encode()
    response = requests.post(server.url("/predict"), data=iter([body[:7], body[7:2000], body[2000:]]),
                             headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 200
    assert response.json()["predictions"][0]["digit"] == int(reference(pixels).argmax())


def test_connections_spread_evenly_over_the_workers(server):
    """8 keep-alive connections opened at once: 4 on each worker, every time (not 8/0 or 6/2)."""
    workers = sorted(server.ready_workers())
    assert len(workers) == 2
    for attempt in range(3):
        sessions = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(8)]
        try:
            wait_for(lambda: sum(established_connections(pid) for pid in workers) == 8, 10,
                     "the 8 connections to be accepted")
            assert [established_connections(pid) for pid in workers] == [4, 4], f"attempt {attempt}"
        finally:
            for sock in sessions:
                sock.close()
        wait_for(lambda: sum(established_connections(pid) for pid in workers) == 0, 10,
                 "the connections to close")
