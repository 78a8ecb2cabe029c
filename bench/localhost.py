"""Talking to servers on this machine: a free port, waiting for a condition, what a URL answers.

Everything listens on and talks to 127.0.0.1 only, and every wait is bounded. Standard library only:
the container smoke client (tests/container/smoke_client.py) and the slow-client attacks use it too.
"""

from __future__ import annotations

import http.client
import socket
import time
from typing import Callable

LOCALHOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll ``predicate`` until it returns something truthy, which is returned; ``TimeoutError``
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def http_status(port: int, path: str, *, body: bytes | None = None, timeout: float = 30.0) -> int | None:
    """The status 127.0.0.1:``port`` answers ``path`` with on a fresh connection (POST of a JSON
    ``body``, else GET), or None when it does not answer."""
    conn = http.client.HTTPConnection(LOCALHOST, port, timeout=timeout)
    try:
        conn.request("POST" if body else "GET", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
