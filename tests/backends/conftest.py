"""Helpers of the backend tests (tests/backends): one Keras backend per process, so every measurement runs
in a child process (``python -m tests.backends.run_checks BACKEND``, or ``training/train.py --backend``)
and the tests here assert what it observed.

- ``mirror_report``: the Keras mirror's report of observed differences (tests/model/conftest.py), the
  same list: the backends' lines appear in the same end-of-run section.
- ``require_backend(name)``: skip when the backend's package is not installed (``requirements-backends.txt``);
  in CI (``CI`` set) that is a failure instead, so a missing install cannot pass as skipped tests.
- ``child_env()``: the environment of a child: the repository on ``PYTHONPATH`` and one thread for
  OpenMP/OpenBLAS/MKL (torch's intra-op pool too): on 2 shared cores, more threads make every step
  several times slower, and nothing here measures speed.
- ``backend_checks(backend)``: every check of run_checks.py on that backend, run once per session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.support import REPO, mnist_dir
from tests.model import conftest as model_conftest
from training import backends

mirror_report = model_conftest.mirror_report  # the same fixture, appending to the same report

THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CHILD_TIMEOUT_S = 600


def pytest_terminal_summary(terminalreporter, config):
    # tests/model/conftest.py prints the report when it is loaded; when only tests/backends runs, print it here
    if not config.pluginmanager.is_registered(model_conftest):
        model_conftest.pytest_terminal_summary(terminalreporter)


def require_backend(name: str) -> None:
    """Skip (fail in CI) unless the backend's package is installed; skip without real MNIST (as tests/conftest.py)."""
    if mnist_dir() is None or not mnist_dir().is_dir():
        pytest.skip("real MNIST not found: set MNIST_DATA_DIR to a folder with the four IDX .gz files")
    try:
        backends.check(name)
    except backends.BackendError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI installs it: .ci/setup.d/30-backends.sh)")
        pytest.skip(str(exc))


def child_env(**extra) -> dict:
    env = {**os.environ, **THREADS, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("KERAS_BACKEND", None)
    env.update(extra)
    return env


class ChildFailed(Exception):
    """A child process failed: the message holds the end of its output."""


def run_checks(backend: str, checks: str, work_dir) -> dict:
    """``python -m tests.backends.run_checks BACKEND --checks CHECKS``: its JSON; ChildFailed with the end
    of its output if it fails."""
    out = work_dir / f"{backend}.json"
    command = [sys.executable, "-m", "tests.backends.run_checks", backend, "--checks", checks, "--json", str(out),
               "--work-dir", str(work_dir)]
    try:
        done = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"run_checks {backend} {checks} did not finish in {CHILD_TIMEOUT_S} s") from None
    if done.returncode != 0:
        raise ChildFailed(f"run_checks {backend} {checks} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(out.read_text())


@pytest.fixture(scope="session")
def backend_checks(tmp_path_factory):
    """``backend_checks(backend)``: every check of run_checks.py on ``backend``, run once (a failure too:
    every test that needs them then fails with the child's output, without running it again)."""
    from tests.backends.run_checks import CHECKS

    cache = {}

    def get(backend: str) -> dict:
        require_backend(backend)
        if backend not in cache:
            try:
                cache[backend] = run_checks(backend, ",".join(CHECKS), tmp_path_factory.mktemp(f"checks-{backend}"))
            except ChildFailed as exc:
                cache[backend] = exc
        if isinstance(cache[backend], ChildFailed):
            pytest.fail(str(cache[backend]))
        return cache[backend]

    return get
