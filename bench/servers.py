"""Server processes, started and stopped for the benchmarks and the tests:

- ``ServerProcess``: any server command on a local port, in its own process group, its output in a log
  file; ``stop()`` sends SIGTERM (graceful), then SIGKILL to the group and to any descendant left;
- ``GunicornServer``: the real service under gunicorn (``gunicorn_command()``), with its workers and
  when each is ready; ``gunicorn_settings()``: what service/gunicorn.conf.py makes of gunicorn here.

Every wait is bounded and every server listens on 127.0.0.1 only (bench/localhost.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

import psutil

from bench.localhost import LOCALHOST, free_port, http_status, wait_for
from bench.support import REPO

SERVICE_APP = "service.app:create_app()"
GUNICORN_CONFIG = "service/gunicorn.conf.py"
READY_LINE = "worker {pid} ready to accept requests"  # logged by gunicorn.conf.py's post_worker_init


class ServerProcess:
    """A server command run from ``cwd`` (the repository by default) on local port ``port``, in its own
    process group, its output in ``log_path`` (appended to with ``append_log``)."""

    def __init__(self, command: list[str], log_path: str | os.PathLike, *, port: int, env: dict,
                 name: str = "server", cwd: str | os.PathLike = REPO, append_log: bool = False):
        self.name, self.port = name, port
        self.base_url = f"http://{LOCALHOST}:{port}"
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "ab" if append_log else "wb")
        self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=self._log,
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

    def descendants(self) -> list[psutil.Process]:
        """The server's live descendant processes (none once it has ended)."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def worker_pids(self) -> set[int]:
        """The server process's live child processes (gunicorn's workers), zombies left out."""
        pids = set()
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(self.process.pid).children():
                with contextlib.suppress(psutil.NoSuchProcess):
                    if child.status() != psutil.STATUS_ZOMBIE:
                        pids.add(child.pid)
        return pids

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM (graceful), then SIGKILL to the process group and to every descendant still there
        (psutil checks that each is still the same process); the exit status."""
        descendants = self.descendants()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for process in descendants:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                process.kill()
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
