"""Helpers shared by the test folders and the benchmarks (``bench/`` imports them too), each written once.

- where things are: ``REPO``, ``mnist_dir()`` (the real MNIST files), ``cpu_model()``, ``git_commit()``;
- ``markdown_table()``, for the reports the reliability suite and the benchmarks write; ``EndOfRunReport``,
  the observed-differences sections printed at the end of a test run;
- local ports and waiting: ``free_port()``, ``wait_for()`` (a condition, with a timeout),
  ``http_status()`` (what a URL answers, if anything);
- servers: ``ServerProcess`` (any server command, its output in a log file, stopped with SIGTERM and
  then SIGKILL), ``GunicornServer`` (the real service under gunicorn), ``running_gunicorn()`` (one
  started, waited for and checked to shut down cleanly: the tests' server fixtures), ``gunicorn_settings()``;
- ``MirrorServer``: a fake MNIST download mirror whose URL prefixes each misbehave in one way.

Everything listens on and talks to 127.0.0.1 only, and every wait is bounded. Standard library only,
so that the container smoke client (tests/container/smoke_client.py) can use it too.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"
LOCALHOST = "127.0.0.1"
SERVICE_APP = "service.app:create_app()"
GUNICORN_CONFIG = "service/gunicorn.conf.py"
READY_LINE = "worker {pid} ready to accept requests"  # logged by gunicorn.conf.py's post_worker_init


# ---- where things are -----------------------------------------------------------------------------
def mnist_dir() -> Path | None:
    """The folder with the four MNIST IDX files: $MNIST_DATA_DIR, else ../shared/data/mnist."""
    configured = os.environ.get("MNIST_DATA_DIR")
    if configured:
        return Path(configured)
    return SHARED_MNIST if SHARED_MNIST.is_dir() else None


def cpu_model(default: str = "unknown CPU") -> str:
    """The CPU's model name from /proc/cpuinfo (``default`` where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return default


def git_commit(mark_dirty: bool = False) -> str:
    """The checkout's short commit ("unknown" outside git); ``-dirty`` appended for tracked changes."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if mark_dirty and git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    return commit


def markdown_table(header: list[str], rows: list[list[object]]) -> list[str]:
    """The lines of a Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]]


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


# ---- ports and waiting ----------------------------------------------------------------------------
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


def established_connections(pid: int) -> int:
    """TCP connections of a process in the ESTABLISHED state (its clients' open connections)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    count = 0
    for table_path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table_path).read_text().splitlines()[1:]
        except OSError:
            continue
        count += sum(1 for row in rows if row.split()[3] == "01" and row.split()[9] in inodes)
    return count


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


# ---- servers --------------------------------------------------------------------------------------
class ServerProcess:
    """A server command run from the repository on a free local port, in its own process group, its
    output in ``log_path``; ``stop()`` sends SIGTERM (graceful), then SIGKILL to the group."""

    def __init__(self, command: list[str], log_path: str | os.PathLike, *, port: int, env: dict,
                 name: str = "server"):
        self.name, self.port = name, port
        self.base_url = f"http://{LOCALHOST}:{port}"
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def url(self, path: str) -> str:
        return self.base_url + path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self) -> None:
        """Fail at once, with the end of its log, if the server has exited."""
        code = self.process.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} (pid {self.process.pid}) exited with status {code}; the end of "
                               f"its log:\n{self.log()[-4000:]}")

    def wait_until(self, condition: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
        """``wait_for(condition)``, failing at once if the server exits meanwhile; the log's end on timeout."""
        def alive_and():
            self.check_alive()
            return condition()
        try:
            return wait_for(alive_and, timeout, what, interval)
        except TimeoutError as error:
            raise TimeoutError(f"{self.name}: {error}; the end of its log:\n{self.log()[-4000:]}") from None

    def wait_until_answers(self, path: str, *, body: bytes | None = None, in_a_row: int = 1,
                           timeout: float = 180.0) -> None:
        """Until ``path`` answers 200 on ``in_a_row`` fresh connections one after the other (with
        several workers, fresh connections spread over them)."""
        def answered_in_a_row() -> bool:
            return all(http_status(self.port, path, body=body) == 200 for _ in range(in_a_row))
        self.wait_until(answered_in_a_row, timeout, f"{path} to answer 200 {in_a_row} time(s) in a row",
                        interval=0.3)

    def worker_pids(self) -> set[int]:
        """The server process's live child processes (gunicorn's workers)."""
        pids = set()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == self.process.pid and fields[0] != "Z":
                pids.add(int(entry.name))
        return pids

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM (graceful), then SIGKILL to the whole process group if it does not end; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def gunicorn_command(port: int, app: str = SERVICE_APP, extra_args: list[str] | None = None) -> list[str]:
    """``gunicorn -c service/gunicorn.conf.py --bind 127.0.0.1:PORT [extra_args] APP``."""
    return [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG, "--bind", f"{LOCALHOST}:{port}",
            *(extra_args or []), app]


class GunicornServer(ServerProcess):
    """``gunicorn -c service/gunicorn.conf.py "service.app:create_app()"`` on a free local port, serving
    the export base ``model_dir`` with ``workers`` workers (``app`` and ``extra_args`` run another
    app or pass more gunicorn options; ``extra_env`` adds to the environment)."""

    def __init__(self, model_dir: str | os.PathLike, log_path: str | os.PathLike, *, workers: int = 2,
                 poll_seconds: float = 0.5, extra_env: dict | None = None, app: str = SERVICE_APP,
                 extra_args: list[str] | None = None, name: str = "gunicorn"):
        env = dict(os.environ)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        # a free gRPC port of its own: the workers bind GRPC_PORT with SO_REUSEPORT, so two servers
        # given the same port would silently share its connections
        env.update({"MODEL_DIR": str(model_dir), "MODEL_POLL_SECONDS": str(poll_seconds),
                    "WEB_CONCURRENCY": str(workers), "TF_CPP_MIN_LOG_LEVEL": "2",
                    "PYTHONUNBUFFERED": "1", "GRPC_PORT": str(free_port()), **(extra_env or {})})
        self.grpc_port = int(env["GRPC_PORT"])
        port = free_port()
        while port == self.grpc_port:
            port = free_port()
        self.export_base = Path(model_dir)
        super().__init__(gunicorn_command(port, app, extra_args), log_path, port=port, env=env, name=name)

    def ready_workers(self) -> set[int]:
        """The live workers that have logged that they accept requests (each after loading its model)."""
        log = self.log()
        return {pid for pid in self.worker_pids() if READY_LINE.format(pid=pid) in log}

    def wait_until_up(self, timeout: float = 120.0, workers: int = 1) -> None:
        """Until ``workers`` live workers are ready (``ready_workers``) and one answers ``/healthz``."""
        self.wait_until(lambda: len(self.ready_workers()) >= workers and http_status(self.port, "/healthz",
                                                                                   timeout=2) == 200,
                        timeout, f"{workers} ready worker(s) and /healthz 200")


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


def gunicorn_settings(keys=("worker_class", "workers", "threads", "keepalive")) -> dict[str, str]:
    """These settings as service/gunicorn.conf.py makes them here (``gunicorn --print-config``)."""
    command = [sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG, "--print-config", SERVICE_APP]
    out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    settings = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in keys:
            settings[key.strip()] = value.strip()
    return settings


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
