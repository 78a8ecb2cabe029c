"""Fixtures shared by every test folder: real MNIST (through MNIST_DATA_DIR) and small slices of it."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def mnist_dir() -> Path | None:
    """The folder with the four MNIST IDX files: $MNIST_DATA_DIR, else ../shared/data/mnist."""
    configured = os.environ.get("MNIST_DATA_DIR")
    if configured:
        return Path(configured)
    return SHARED_MNIST if SHARED_MNIST.is_dir() else None


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
