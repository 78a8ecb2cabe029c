"""Fixtures shared by every test folder: real MNIST (through MNIST_DATA_DIR) and small slices of it."""

import os

import numpy as np
import pytest

from bench.support import REPO, mnist_dir  # noqa: F401 - REPO: imported from here by tests/training

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("MNIST_DATA_DIR"):
    # The README's `export MNIST_DATA_DIR=../shared/data/mnist` is relative to where pytest starts; tests run
    # code and child processes in other working directories (tmp_path), so every test sees it absolute.
    os.environ["MNIST_DATA_DIR"] = str(mnist_dir())


def pytest_runtest_logreport(report):
    """With ``PYTEST_SKIPPED_FILE`` set (by .ci/run), append each skipped test's id and reason to that file:
    CI installs the optional pieces afterwards and runs exactly those tests again."""
    _record_skip(report)


def pytest_collectreport(report):
    """The same for a whole module skipped at collection (``pytest.skip(..., allow_module_level=True)``)."""
    _record_skip(report)


def _record_skip(report) -> None:
    path = os.environ.get("PYTEST_SKIPPED_FILE")
    if path and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        with open(path, "a", encoding="utf-8") as file:
            file.write(f"{report.nodeid}\t{' '.join(reason.split())}\n")


@pytest.fixture(scope="session")
def mnist():
    """``((x_train, y_train), (x_test, y_test))``: all of real MNIST, float32 in [0, 1]."""
    folder = mnist_dir()
    if folder is None or not folder.is_dir():
        pytest.skip(f"real MNIST not found{f' in {folder}' if folder else ''}: set MNIST_DATA_DIR to a "
                    "folder with the four IDX .gz files")
    from training.data import load_mnist

    return load_mnist(folder)


@pytest.fixture(scope="session")
def mnist_small(mnist):
    """5,000 training and 1,000 test images of real MNIST (the first ones, in file order)."""
    (x, y), (xt, yt) = mnist
    return (x[:5000], y[:5000]), (xt[:1000], yt[:1000])


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
