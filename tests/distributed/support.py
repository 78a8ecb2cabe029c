"""Workers as real processes on 127.0.0.1 for the distributed tests: TF_CONFIG, start, wait, logs.

Every process has a time limit: a hang fails the test (and the processes are killed), never CI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.localhost import LOCALHOST, free_port
from bench.support import REPO

TRAIN = [sys.executable, str(REPO / "training" / "train.py")]


def tf_config(addresses: list[str], index: int) -> str:
    """TensorFlow's TF_CONFIG for worker ``index`` of a cluster of ``addresses``."""
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


def environment(**extra) -> dict:
    """The test environment for a worker: TF quiet, output unbuffered, no inherited TF_CONFIG."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    return {**env, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO), **extra}


class Cluster:
    """``count`` worker processes running ``command`` (a list, or a function of the worker's index that
    returns one), each with its TF_CONFIG unless ``with_tf_config`` is False, in their own process
    groups, outputs in ``logs/<name>-<index>.log``."""

    def __init__(self, command, count: int, logs: Path, name: str = "worker", with_tf_config: bool = True):
        self.addresses = [f"{LOCALHOST}:{free_port()}" for _ in range(count)]
        logs.mkdir(parents=True, exist_ok=True)
        self.log_paths = [logs / f"{name}-{index}.log" for index in range(count)]
        self.processes = []
        for index, log_path in enumerate(self.log_paths):
            with open(log_path, "wb") as log:
                argv = command(index) if callable(command) else command
                self.processes.append(subprocess.Popen(
                    [str(part) for part in argv], cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                    env=environment(**({"TF_CONFIG": tf_config(self.addresses, index)} if with_tf_config else {})),
                    start_new_session=True))

    def log(self, index: int) -> str:
        return self.log_paths[index].read_text(errors="replace")

    def poll(self) -> list[int | None]:
        return [process.poll() for process in self.processes]

    def wait(self, timeout: float) -> list[int]:
        """Every process's exit status; all killed and AssertionError (with their logs' ends) if any
        is still running after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(f"the workers did not finish within {timeout} s:\n" + self.tails()) from None
        return [process.returncode for process in self.processes]

    def kill(self, index: int | None = None) -> None:
        """SIGKILL worker ``index`` (all of them if None): no clean-up, as a lost machine."""
        for i, process in enumerate(self.processes):
            if (index is None or i == index) and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)

    def tails(self, characters: int = 3000) -> str:
        return "\n".join(f"--- {path.name}:\n{path.read_text(errors='replace')[-characters:]}"
                         for path in self.log_paths)
