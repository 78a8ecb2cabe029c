"""bench/servers.py's ServerProcess with stand-in commands: its workers (zombies left out), and stop():
SIGTERM first, then SIGKILL to the group and to descendants that left it."""

from __future__ import annotations

import os
import sys

import psutil

from bench.localhost import free_port, wait_for
from bench.servers import ServerProcess

# Starts a child that sleeps and one that ends at once and is never reaped (a zombie), prints their
# pids, then sleeps.
WITH_A_ZOMBIE = """
import subprocess, sys, time
sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
ended = subprocess.Popen([sys.executable, "-c", "pass"])
print(sleeper.pid, ended.pid, flush=True)
time.sleep(60)
"""

# Ignores SIGTERM, and starts a grandchild in a session (and process group) of its own.
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
escaped = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
print(escaped.pid, flush=True)
time.sleep(60)
"""


def start(script: str, tmp_path) -> ServerProcess:
    return ServerProcess([sys.executable, "-c", script], tmp_path / "log.txt", port=free_port(),
                         env=dict(os.environ), name="stand-in")


def ended(pid: int) -> bool:
    """Gone, or a zombie waiting for whoever inherited it to reap it."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def printed_pids(server: ServerProcess) -> list[int]:
    return [int(pid) for pid in server.wait_until(lambda: server.log().split(), 30, "the pids printed")]


def test_worker_pids_are_the_live_children(tmp_path):
    server = start(WITH_A_ZOMBIE, tmp_path)
    try:
        sleeper, zombie = printed_pids(server)
        wait_for(lambda: psutil.Process(zombie).status() == psutil.STATUS_ZOMBIE, 30, "the zombie")
        assert server.worker_pids() == {sleeper}
    finally:
        server.stop()
    assert server.worker_pids() == set()
    wait_for(lambda: ended(sleeper), 10, "the worker to end")


def test_stop_kills_what_ignores_sigterm_and_what_left_the_group(tmp_path):
    server = start(STUBBORN, tmp_path)
    (escaped,) = printed_pids(server)
    assert os.getpgid(escaped) != os.getpgid(server.process.pid)
    assert server.stop(timeout=1) == -9  # SIGTERM ignored: killed
    wait_for(lambda: ended(escaped), 10, "the escaped grandchild to end")
