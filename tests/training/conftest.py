"""Fixtures of the MNIST tests (test_data.py, test_download.py): an isolated environment, the real
files' bytes, and a local HTTP "mirror" serving them well or badly. No test uses the internet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import mnist_dir
from tests.support import MirrorServer
from training.mnist_files import MNIST_FILES

#: Images per class (0..9) in the MNIST training and test sets.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

needs_mnist = pytest.mark.skipif(
    mnist_dir() is None,
    reason="real MNIST files not found: set MNIST_DATA_DIR to a folder with the four .gz files "
    "(or provide <repo>/../shared/data/mnist)",
)

@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No MNIST_DATA_DIR / MNIST_MIRRORS, a private cache under tmp_path; returns the cache dir."""
    monkeypatch.delenv("MNIST_DATA_DIR", raising=False)
    monkeypatch.delenv("MNIST_MIRRORS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return tmp_path / "xdg-cache" / "mnist-digits"


@pytest.fixture(scope="module")
def real_bytes() -> dict[str, bytes]:
    """File name -> contents of the four real MNIST files (skips the test when they are absent)."""
    folder = mnist_dir()
    if folder is None:
        pytest.skip("real MNIST files not found (set MNIST_DATA_DIR)")
    return {name: (folder / name).read_bytes() for name in MNIST_FILES}


@pytest.fixture(scope="module")
def mirror(real_bytes: dict[str, bytes]) -> Iterator[MirrorServer]:
    """A MirrorServer serving the real files, shared by the tests of one module."""
    server = MirrorServer(real_bytes)
    yield server
    server.close()

