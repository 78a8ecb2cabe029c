"""Tests for training/mnist_files.py: the published sizes and sums measured on the real files, and the
checks of a file and a folder against them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import mnist_dir
from tests.training.conftest import needs_mnist
from training.mnist_files import (MNIST_FILES, MNIST_SHA256, MNIST_SIZES, TEST_LABELS, TRAIN_IMAGES, DataError,
                                  mnist_checksums, missing_files, sha256_file, verify_file, verify_present)


@needs_mnist
def test_the_real_files_have_the_published_sizes_and_sums() -> None:
    folder = mnist_dir()
    for name in MNIST_FILES:
        assert (folder / name).stat().st_size == MNIST_SIZES[name], name
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == mnist_checksums()[name], name
    verify_present(folder, missing=[])


def test_the_published_sums_agree_with_the_data_folders_SHA256SUMS() -> None:
    listing = (mnist_dir() or Path("/nonexistent")) / "SHA256SUMS"
    if not listing.is_file():
        pytest.skip(f"{listing} not found (the shared data folder lists the sums it was checked with)")
    listed = {name: digest for digest, name in (line.split() for line in listing.read_text().splitlines() if line)}
    assert listed == mnist_checksums()


def test_mnist_checksums_returns_a_copy_of_the_four_sums() -> None:
    sums = mnist_checksums()
    assert sorted(sums) == sorted(MNIST_FILES)
    sums[TRAIN_IMAGES] = "tampered"
    assert mnist_checksums()[TRAIN_IMAGES] == MNIST_SHA256[TRAIN_IMAGES] != "tampered"


def test_sha256_file_reads_the_file_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "two-megabytes"
    content = bytes(range(256)) * (2 * 4096 + 3)  # more than one 1 MiB chunk, not a multiple of it
    path.write_bytes(content)
    assert sha256_file(path) == hashlib.sha256(content).hexdigest()
    (tmp_path / "abc").write_bytes(b"abc")  # the FIPS 180-2 test vector
    assert sha256_file(tmp_path / "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_verify_file_names_the_file_and_both_sums(tmp_path: Path) -> None:
    path = tmp_path / TEST_LABELS
    path.write_bytes(b"not the MNIST labels")
    actual = hashlib.sha256(b"not the MNIST labels").hexdigest()
    with pytest.raises(DataError) as info:
        verify_file(path)
    assert str(path) in str(info.value)
    assert MNIST_SHA256[TEST_LABELS] in str(info.value) and actual in str(info.value)
    verify_file(path, expected_sha256=actual)  # the sum given explicitly: accepted
    with pytest.raises(DataError, match="no known SHA-256 for a file named 'notes.txt'"):
        verify_file(tmp_path / "notes.txt")


def test_missing_files_lists_absent_names_in_canonical_order(tmp_path: Path) -> None:
    assert missing_files(tmp_path) == list(MNIST_FILES)
    (tmp_path / TEST_LABELS).write_bytes(b"")
    (tmp_path / TRAIN_IMAGES).mkdir()  # a folder is not the file
    assert missing_files(tmp_path) == [name for name in MNIST_FILES if name != TEST_LABELS]
