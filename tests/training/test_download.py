"""Tests for training/download.py: downloads from a local HTTP "mirror" (tests/training/conftest.py),
mirror fallback and resolution, timeouts, the progress bar, and atomic single-file downloads.
No test uses the internet.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support import MirrorServer
from tests.training.conftest import TEST_COUNTS
from training import download
from training.data import load_mnist
from training.download import DownloadError
from training.mnist_files import (MNIST_FILES, MNIST_SHA256, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
                                  DataError)

@pytest.fixture
def silent_server() -> Iterator[str]:
    """A mirror URL whose server accepts connections (via the listen backlog) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/mnist/"
    sock.close()


@pytest.fixture
def dead_port_url() -> str:
    """A mirror URL on a port with nothing listening (connection refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/mnist/"


def cache_listing(cache: Path) -> list[str]:
    """The sorted names in ``cache`` (hidden temporary files included), or [] if it does not exist."""
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_download_falls_back_to_the_good_mirror_and_caches_only_verified_files(
    isolated_env: Path, mirror: MirrorServer, real_bytes: dict[str, bytes]
) -> None:
    mirrors = [mirror.url(kind) for kind in ("missing", "corrupt", "short", "liar", "good")]
    (x_train, y_train), (x_test, y_test) = load_mnist(mirrors=mirrors, timeout=5)

    assert x_train.shape == (60_000, 784) and x_test.shape == (10_000, 784)
    assert np.bincount(y_test, minlength=10).tolist() == TEST_COUNTS
    assert cache_listing(isolated_env) == sorted(MNIST_FILES)
    for name in MNIST_FILES:
        assert (isolated_env / name).read_bytes() == real_bytes[name]
    for kind in ("missing", "corrupt", "short", "liar", "good"):
        assert f"/{kind}/{TRAIN_IMAGES}" in mirror.requests

    # A second load uses the cache: no more requests.
    before = len(mirror.requests)
    load_mnist(mirrors=mirrors, timeout=5)
    assert len(mirror.requests) == before


def test_download_only_fetches_missing_files(
    isolated_env: Path, mirror: MirrorServer, real_bytes: dict[str, bytes]
) -> None:
    isolated_env.mkdir(parents=True)
    for name in (TRAIN_IMAGES, TEST_IMAGES, TRAIN_LABELS):
        (isolated_env / name).write_bytes(real_bytes[name])
    before = len(mirror.requests)
    assert download.download_mnist(mirrors=[mirror.url("good")], timeout=5) == isolated_env
    assert mirror.requests[before:] == [f"/good/{TEST_LABELS}"]
    assert cache_listing(isolated_env) == sorted(MNIST_FILES)


def test_mirrors_come_from_the_environment_variable(
    isolated_env: Path, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_MIRRORS", f" {mirror.url('missing')} , {mirror.base}/good ")
    assert download.resolve_mirrors() == [mirror.url("missing"), mirror.url("good")]
    assert download.resolve_mirrors(["http://x/a"]) == ["http://x/a/"]
    download.download_mnist(timeout=5)
    assert cache_listing(isolated_env) == sorted(MNIST_FILES)
    monkeypatch.delenv("MNIST_MIRRORS")
    assert download.resolve_mirrors() == list(download.DEFAULT_MIRRORS)


def test_all_mirrors_bad_reports_every_url_and_leaves_no_files(
    isolated_env: Path, mirror: MirrorServer
) -> None:
    kinds = ("missing", "corrupt", "short", "liar")
    with pytest.raises(DataError) as info:
        load_mnist(mirrors=[mirror.url(kind) for kind in kinds], timeout=5)
    message = str(info.value)
    for kind in kinds:
        for name in MNIST_FILES:
            assert f"{mirror.url(kind)}{name}" in message
    assert "HTTP 404" in message
    assert "wrong SHA-256" in message
    assert "truncated" in message or "wrong size" in message
    assert "closed early" in message
    assert str(isolated_env) in message, "the cache folder that was tried is named"
    assert "MNIST_DATA_DIR" in message and "--dataset digits" in message
    assert cache_listing(isolated_env) == [], "nothing unverified may land in the cache"


def test_dead_and_silent_servers_fail_clearly_within_the_timeout(
    isolated_env: Path, silent_server: str, dead_port_url: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(DataError) as info:
        load_mnist(mirrors=[dead_port_url, silent_server], timeout=1.0)
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"took {elapsed:.1f} s despite a 1 s timeout"
    message = str(info.value)
    assert f"{dead_port_url}{TRAIN_IMAGES}" in message
    assert f"{silent_server}{TRAIN_IMAGES}" in message
    assert "refused" in message.lower()
    assert "timed out" in message.lower()
    assert "skipped, mirror unreachable" in message, "a dead mirror is not retried for each file"
    assert "--dataset digits" in message
    assert cache_listing(isolated_env) == []


def test_progress_bar_is_drawn_on_stderr_when_asked(
    isolated_env: Path, mirror: MirrorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    download.download_mnist(mirrors=[mirror.url("good")], timeout=5, progress=True)
    err = capsys.readouterr().err
    assert "\r" in err and "100%" in err and TRAIN_IMAGES in err


def test_download_file_never_leaves_temp_files(tmp_path: Path, mirror: MirrorServer) -> None:
    dest = tmp_path / TEST_LABELS
    with pytest.raises(DownloadError, match="wrong SHA-256"):
        download.download_file(
            mirror.url("corrupt") + TEST_LABELS, dest, MNIST_SHA256[TEST_LABELS],
            timeout=5,
        )
    assert list(tmp_path.iterdir()) == []
    download.download_file(
        mirror.url("good") + TEST_LABELS, dest, MNIST_SHA256[TEST_LABELS], timeout=5
    )
    assert [p.name for p in tmp_path.iterdir()] == [TEST_LABELS]
