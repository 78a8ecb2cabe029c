"""Helpers shared by the test folders, each written once; what the benchmarks need too lives in bench/
(bench/support.py: ``REPO``, ``mnist_dir()``, ``cpu_model()``, ``git_commit()``, ``markdown_table()``;
bench/localhost.py: ``free_port()``, ``wait_for()``, ``http_status()``; bench/servers.py:
``ServerProcess``, ``GunicornServer``, ``gunicorn_settings()``), and the tests import it from there.

- ``EndOfRunReport``: the observed-differences sections printed at the end of a test run;
- ``established_connections()``: a process's clients' open TCP connections;
- ``running_gunicorn()``: the real service started, waited for and checked to shut down cleanly (the
  tests' server fixtures);
- ``MirrorServer``: a fake MNIST download mirror whose URL prefixes each misbehave in one way.

Everything listens on and talks to 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
from typing import Iterator

import psutil

from bench.localhost import LOCALHOST
from bench.servers import GunicornServer


class EndOfRunReport:
    """Lines that tests record (``add``), printed under ``title`` at the end of the pytest run
    (``print_to``, from a conftest's ``pytest_terminal_summary``): the largest differences they
    observed, so that the tolerances are visibly justified and drift shows before it fails."""

    def __init__(self, title: str):
        self.title = title
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def print_to(self, terminalreporter) -> None:
        if self.lines:
            terminalreporter.section(self.title)
            for line in self.lines:
                terminalreporter.write_line(line)


def established_connections(pid: int) -> int:
    """TCP connections of a process in the ESTABLISHED state (its clients' open connections)."""
    connections = psutil.Process(pid).net_connections(kind="tcp")
    return sum(1 for connection in connections if connection.status == psutil.CONN_ESTABLISHED)


@contextlib.contextmanager
def running_gunicorn(model_dir: str | os.PathLike, log_path: str | os.PathLike, *, workers: int = 2,
                     **options) -> Iterator[GunicornServer]:
    """A ``GunicornServer`` (``options`` as its own) with ``workers`` workers ready; on leaving, stopped
    with SIGTERM, the end of its log printed, and ``AssertionError`` unless it shut down cleanly."""
    server = GunicornServer(model_dir, log_path, workers=workers, **options)
    try:
        server.wait_until_up(workers=workers)
        yield server
    finally:
        code = server.stop()
        print(server.log()[-3000:])
    assert code == 0, "gunicorn did not shut down cleanly on SIGTERM"


# ---- a fake download mirror -----------------------------------------------------------------------
class MirrorServer:
    """Serves ``files`` ({name: bytes}) on 127.0.0.1 under URL prefixes that each behave one way:

    /good/<name>      the file
    /corrupt/<name>   right length, one byte flipped (checksum fails)
    /short/<name>     the first half, with an honest Content-Length (size/checksum fails)
    /liar/<name>      announces the full length, sends half and closes (incomplete read)
    /stall/<name>     announces the full length, sends half, then nothing until ``close()`` (at most
                      10 s): the client's timeout must end it
    /missing/<name>   404

    ``requests`` lists the paths asked for, in order.
    """

    KINDS = ("good", "corrupt", "short", "liar", "stall", "missing")

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        self.release = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer((LOCALHOST, 0), self._handler())
        self.httpd.daemon_threads = True
        self.base = f"http://{LOCALHOST}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, kind: str) -> str:
        return f"{self.base}/{kind}/"

    @staticmethod
    def answer(kind: str, body: bytes) -> tuple[int, bytes]:
        """(the Content-Length announced, the bytes sent) for a file served under ``kind``."""
        if kind == "corrupt":
            return len(body), body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
        if kind == "short":
            return len(body) // 2, body[:len(body) // 2]
        if kind in ("liar", "stall"):
            return len(body), body[:len(body) // 2]
        return len(body), body

    def _handler(self):
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                mirror.requests.append(self.path)
                kind, _, name = self.path.strip("/").partition("/")
                body = mirror.files.get(name)
                if body is None or kind not in mirror.KINDS or kind == "missing":
                    self.send_error(404)
                    return
                announced, sent = mirror.answer(kind, body)
                self.send_response(200)
                self.send_header("Content-Length", str(announced))
                self.end_headers()
                try:
                    self.wfile.write(sent)
                    self.wfile.flush()
                    if kind == "stall":
                        mirror.release.wait(10)
                except OSError:
                    pass  # the client gave up early, e.g. on seeing the wrong size announced
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
