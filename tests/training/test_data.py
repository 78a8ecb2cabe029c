"""Tests for training/data.py: the MNIST loader (real files, the search order, local checksums, IDX
validation), the offline digits dataset, and the stratified split. Downloads: test_download.py.

The real MNIST files are found through $MNIST_DATA_DIR (set by CI), else
<repo>/../shared/data/mnist; tests needing them are skipped, with the reason, when neither exists.
No test uses the internet.
"""

from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, mnist_dir
from tests.support import MirrorServer
from tests.training.conftest import TEST_COUNTS, TRAIN_COUNTS, needs_mnist
from training import data
from training.mnist_files import (MNIST_FILES, MNIST_SHA256, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
                                  DataError, sha256_file)

REAL_MNIST = mnist_dir()


# ------------------------------------------------------------------------------------------
# The real files
# ------------------------------------------------------------------------------------------


@needs_mnist
def test_load_mnist_real_files_shapes_dtypes_range_and_label_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MNIST_DATA_DIR", str(REAL_MNIST))
    monkeypatch.setenv("MNIST_MIRRORS", "http://127.0.0.1:9/never-used/")
    (x_train, y_train), (x_test, y_test) = data.load_mnist()

    assert x_train.shape == (60_000, 784) and x_test.shape == (10_000, 784)
    assert x_train.dtype == np.float32 and x_test.dtype == np.float32
    assert y_train.dtype == np.int64 and y_test.dtype == np.int64
    assert y_train.shape == (60_000,) and y_test.shape == (10_000,)
    for x in (x_train, x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    assert np.bincount(y_train, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(y_test, minlength=10).tolist() == TEST_COUNTS
    # pixels are exactly uint8 / 255
    assert np.array_equal(np.round(x_train[:100] * 255), (x_train[:100] * 255).round())
    assert set(np.unique(np.round(x_test * 255))) <= set(range(256))
    # fresh, writable arrays that the caller owns
    x_train[0, 0] = 0.5
    assert data.load_mnist()[0][0][0, 0] == 0.0


@needs_mnist
def test_data_dir_argument_takes_precedence_over_env(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "does-not-exist"))
    assert data.locate_mnist(REAL_MNIST) == REAL_MNIST


@needs_mnist
def test_relative_folders_are_made_absolute_where_they_are_read(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The README's `export MNIST_DATA_DIR=../shared/data/mnist` is relative to the working directory it was
    typed in: read there, it must name the same folder afterwards (in a child process started elsewhere, in
    a resumed run's args.json)."""
    from training.arguments import parse_args

    workdir = tmp_path / "somewhere" / "else"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    relative = Path(os.path.relpath(REAL_MNIST, workdir))
    assert not relative.is_absolute() and relative.parts[0] == ".."
    monkeypatch.setenv("MNIST_DATA_DIR", str(relative))
    assert data.locate_mnist() == REAL_MNIST
    monkeypatch.delenv("MNIST_DATA_DIR")
    assert data.locate_mnist(relative) == REAL_MNIST
    args = parse_args(["--data-dir", str(relative), "--run-dir", str(tmp_path / "run")])
    assert args.data_dir == REAL_MNIST and args.data_dir.is_absolute()
    monkeypatch.setenv("MNIST_DATA_DIR", "missing/folder")
    with pytest.raises(DataError) as info:
        data.locate_mnist()
    assert str(workdir / "missing" / "folder") in str(info.value) and "'missing/folder'" in str(info.value)


# ------------------------------------------------------------------------------------------
# Explicit folders and local checksums
# ------------------------------------------------------------------------------------------


def test_explicit_data_dir_missing_files_is_an_error_without_download(
    isolated_env: Path, tmp_path: Path, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "partial"
    folder.mkdir()
    shutil.copy(REAL_MNIST / TEST_LABELS, folder)
    monkeypatch.setenv("MNIST_MIRRORS", mirror.url("good"))
    before = len(mirror.requests)
    with pytest.raises(DataError) as info:
        data.load_mnist(folder)
    message = str(info.value)
    assert str(folder) in message
    for name in (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES):
        assert name in message
    assert "lacks" in message and TEST_LABELS not in message.split("lacks")[1].split(".gz.")[0]
    assert "MNIST_DATA_DIR" in message and "--dataset digits" in message
    assert len(mirror.requests) == before, "an explicit folder must not trigger downloads"
    assert not isolated_env.exists()


def test_env_var_pointing_at_missing_folder_is_an_error_without_download(
    isolated_env: Path, tmp_path: Path, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("MNIST_DATA_DIR", str(missing))
    monkeypatch.setenv("MNIST_MIRRORS", mirror.url("good"))
    before = len(mirror.requests)
    with pytest.raises(DataError, match="MNIST_DATA_DIR") as info:
        data.load_mnist()
    assert str(missing) in str(info.value)
    assert "does not exist" in str(info.value)
    assert len(mirror.requests) == before
    assert not isolated_env.exists()


@needs_mnist
def test_local_file_with_wrong_sum_names_file_and_both_sums(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in MNIST_FILES:
        (folder / name).symlink_to(REAL_MNIST / name)
    bad = folder / TRAIN_LABELS
    bad.unlink()
    corrupted = bytearray((REAL_MNIST / TRAIN_LABELS).read_bytes())
    corrupted[-20] ^= 0x01
    bad.write_bytes(bytes(corrupted))
    actual = sha256_file(bad)

    with pytest.raises(DataError) as info:
        data.load_mnist(folder)
    message = str(info.value)
    assert str(bad) in message
    assert MNIST_SHA256[TRAIN_LABELS] in message
    assert actual in message
    assert bad.read_bytes() == bytes(corrupted), "a bad local file must be reported, not replaced"


@needs_mnist
def test_cached_file_with_wrong_sum_is_an_error_too(
    isolated_env: Path, mirror: MirrorServer
) -> None:
    isolated_env.mkdir(parents=True)
    (isolated_env / TEST_LABELS).write_bytes(b"\x1f\x8b not really mnist")
    with pytest.raises(DataError, match="wrong SHA-256") as info:
        data.load_mnist(mirrors=[mirror.url("good")], timeout=5)
    assert TEST_LABELS in str(info.value)


# ------------------------------------------------------------------------------------------
# The IDX reader
# ------------------------------------------------------------------------------------------


def idx_bytes(magic: int, dims: tuple[int, ...], payload_len: int | None = None) -> bytes:
    size = int(np.prod(dims)) if payload_len is None else payload_len
    payload = (np.arange(size) % 256).astype(np.uint8).tobytes()
    return struct.pack(f">I{len(dims)}I", magic, *dims) + payload


def write_gz(path: Path, raw: bytes) -> Path:
    path.write_bytes(gzip.compress(raw))
    return path


def test_read_idx_reads_valid_images_and_labels(tmp_path: Path) -> None:
    images = data.read_idx(write_gz(tmp_path / "img.gz", idx_bytes(0x803, (3, 4, 5))))
    assert images.shape == (3, 4, 5) and images.dtype == np.uint8
    assert images.ravel()[:3].tolist() == [0, 1, 2]
    labels = tmp_path / "labels-idx1-ubyte"  # uncompressed works too
    labels.write_bytes(idx_bytes(0x801, (7,)))
    assert data.read_idx(labels).shape == (7,)


@needs_mnist
def test_read_idx_on_real_labels() -> None:
    labels = data.read_idx(REAL_MNIST / TEST_LABELS)
    assert labels.shape == (10_000,)
    assert np.bincount(labels).tolist() == TEST_COUNTS


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (idx_bytes(0x0803 + 0x0100, (2, 2, 2)), r"magic number 0x00000903"),
        (b"<html>not found</html>", r"magic number 0x3c68746d"),
        (idx_bytes(0x803, (10, 28, 28), payload_len=100), r"truncated"),
        (idx_bytes(0x803, (2, 2, 2), payload_len=9), r"trailing bytes"),
        (idx_bytes(0x801, (5,))[:6], r"truncated IDX header"),
        (idx_bytes(0x803, (5,)), r"truncated|dimensions"),  # images magic with label dims
        (b"\x00\x00", r"no header"),
    ],
    ids=["wrong-magic", "html", "truncated-payload", "extra-bytes", "short-header",
         "dims-mismatch", "tiny"],
)
def test_read_idx_rejects_bad_content(tmp_path: Path, raw: bytes, expected: str) -> None:
    path = write_gz(tmp_path / "bad-idx3-ubyte.gz", raw)
    with pytest.raises(DataError, match=expected) as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_a_non_gzip_file(tmp_path: Path) -> None:
    path = tmp_path / "plain-idx3-ubyte.gz"
    path.write_bytes(idx_bytes(0x803, (1, 2, 2)))
    with pytest.raises(DataError, match="not a gzip file") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_read_idx_rejects_truncated_gzip(tmp_path: Path, keep: float) -> None:
    compressed = gzip.compress(idx_bytes(0x803, (50, 28, 28)))
    path = tmp_path / "cut-idx3-ubyte.gz"
    path.write_bytes(compressed[: int(len(compressed) * keep)])
    with pytest.raises(DataError, match="corrupt or truncated gzip") as info:
        data.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_corrupt_gzip(tmp_path: Path) -> None:
    compressed = bytearray(gzip.compress(idx_bytes(0x803, (50, 28, 28))))
    compressed[len(compressed) // 2] ^= 0xFF
    path = tmp_path / "flipped-idx3-ubyte.gz"
    path.write_bytes(bytes(compressed))
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        data.read_idx(path)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        data.read_idx(tmp_path / "absent.gz")


# ------------------------------------------------------------------------------------------
# Offline digits
# ------------------------------------------------------------------------------------------


def test_load_digits_28_shapes_range_classes_and_stratification() -> None:
    (x_train, y_train), (x_test, y_test) = data.load_digits_28(seed=0, test_fraction=0.2)
    assert x_train.shape[1:] == (784,) and x_test.shape[1:] == (784,)
    assert len(x_train) + len(x_test) == 1797
    assert len(x_test) == round(0.2 * 1797)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_test.dtype == np.float32 and y_test.dtype == np.int64
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0 and x_train.max() > 0.9
    assert set(y_train.tolist()) == set(range(10)) == set(y_test.tolist())
    all_counts = np.bincount(np.concatenate([y_train, y_test]))
    assert np.all(np.abs(np.bincount(y_test) - 0.2 * all_counts) <= 1)
    # MNIST-like framing: a 4-pixel empty border
    images = np.concatenate([x_train, x_test]).reshape(-1, 28, 28)
    assert images[:, :4].max() == 0 and images[:, -4:].max() == 0
    assert images[:, :, :4].max() == 0 and images[:, :, -4:].max() == 0


def test_load_digits_28_is_reproducible_by_seed() -> None:
    (x_train, y_train), (x_test, y_test) = data.load_digits_28(seed=3)
    (x_train_again, y_train_again), (x_test_again, y_test_again) = data.load_digits_28(seed=3)
    (x_train_other, _), _ = data.load_digits_28(seed=4)
    assert np.array_equal(x_train, x_train_again) and np.array_equal(y_train, y_train_again)
    assert np.array_equal(x_test, x_test_again) and np.array_equal(y_test, y_test_again)
    assert not np.array_equal(x_train, x_train_other)


def test_importing_the_module_does_not_import_sklearn() -> None:
    code = "import sys, training.data; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr


def test_load_dataset_dispatches_and_rejects_unknown_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    digits = data.load_dataset("digits", seed=1)
    assert np.array_equal(digits[1][1], data.load_digits_28(seed=1)[1][1])
    calls = []
    monkeypatch.setattr(data, "load_mnist", lambda data_dir=None: calls.append(data_dir) or "ok")
    assert data.load_dataset("mnist", data_dir="/some/dir") == "ok"
    assert calls == ["/some/dir"]
    with pytest.raises(ValueError, match="unknown dataset 'fashion'"):
        data.load_dataset("fashion")


# ------------------------------------------------------------------------------------------
# train_validation_split
# ------------------------------------------------------------------------------------------


def _toy(count: int = 1003, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``count`` rows of 3 features and unevenly frequent labels 0..9; row i starts with 3*i."""
    rng = np.random.default_rng(seed)
    y = rng.choice(10, size=count, p=np.linspace(1, 3, 10) / np.linspace(1, 3, 10).sum())
    x = np.arange(count * 3, dtype=np.float32).reshape(count, 3)  # row i starts with 3*i: identifies it
    return x, y.astype(np.int64)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_split_is_stratified_disjoint_and_complete(fraction: float) -> None:
    x, y = _toy()
    (x_tr, y_tr), (x_val, y_val) = train_val = data.train_validation_split(x, y, fraction, seed=0)
    assert len(y_val) == round(fraction * len(y))
    counts = np.bincount(y, minlength=10)
    assert np.all(np.abs(np.bincount(y_val, minlength=10) - fraction * counts) <= 1)
    ids_tr, ids_val = (x_tr[:, 0] // 3).astype(int), (x_val[:, 0] // 3).astype(int)
    assert not set(ids_tr) & set(ids_val)
    assert sorted(np.concatenate([ids_tr, ids_val]).tolist()) == list(range(len(y)))
    assert np.array_equal(y[ids_tr], y_tr) and np.array_equal(y[ids_val], y_val)
    assert x_tr.dtype == x.dtype and y_val.dtype == y.dtype
    assert train_val[0][0].shape[1:] == (3,)


def test_split_is_reproducible_and_depends_on_seed() -> None:
    x, y = _toy()
    first = data.train_validation_split(x, y, 0.2, seed=7)
    again = data.train_validation_split(x, y, 0.2, seed=7)
    other = data.train_validation_split(x, y, 0.2, seed=8)
    for part, part_again in zip((*first[0], *first[1]), (*again[0], *again[1])):
        assert np.array_equal(part, part_again)
    assert not np.array_equal(first[1][0], other[1][0])


def test_split_with_zero_fraction_gives_empty_validation_of_the_right_shape() -> None:
    x, y = _toy(50)
    (x_tr, y_tr), (x_val, y_val) = data.train_validation_split(x, y, 0.0, seed=0)
    assert np.array_equal(x_tr, x) and np.array_equal(y_tr, y)
    assert x_val.shape == (0, 3) and y_val.shape == (0,)
    assert x_val.dtype == x.dtype and y_val.dtype == y.dtype


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan")])
def test_split_rejects_fractions_outside_zero_one(fraction: float) -> None:
    x, y = _toy(20)
    with pytest.raises(ValueError, match="validation_fraction"):
        data.train_validation_split(x, y, fraction, seed=0)


def test_split_rejects_mismatched_lengths() -> None:
    x, y = _toy(20)
    with pytest.raises(ValueError):
        data.train_validation_split(x, y[:-1], 0.2, seed=0)
