"""The four canonical MNIST files: their names, sizes and published SHA-256 sums, and the check that a
folder holds them intact.

Both ``training/data.py`` (which reads the files) and ``training/download.py`` (which fetches them)
build on this module; it imports neither.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
MNIST_FILES: tuple[str, ...] = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

#: The published SHA-256 sums of the canonical MNIST files.
MNIST_SHA256: dict[str, str] = {
    TRAIN_IMAGES: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    TRAIN_LABELS: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    TEST_IMAGES: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    TEST_LABELS: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
#: Their sizes in bytes: a download that announces or reaches another size is stopped early.
MNIST_SIZES: dict[str, int] = {
    TRAIN_IMAGES: 9_912_422,
    TRAIN_LABELS: 28_881,
    TEST_IMAGES: 1_648_877,
    TEST_LABELS: 4_542,
}

DATA_DIR_ENV = "MNIST_DATA_DIR"
#: The end of every error about MNIST files that could not be found or obtained.
FIX_HINT = (
    "To fix this, either:\n"
    f"  - put the four files ({', '.join(MNIST_FILES)}) in a folder and point the "
    f"{DATA_DIR_ENV} environment variable (or --data-dir) at it;\n"
    "  - or use the offline digits dataset instead (--dataset digits), which needs no download."
)


class DataError(ValueError):
    """A dataset file is missing, corrupt, of the wrong kind, or could not be obtained."""


def mnist_checksums() -> dict[str, str]:
    """File name -> published SHA-256 of the four MNIST files (a copy, e.g. for run metrics)."""
    return dict(MNIST_SHA256)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's contents, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: str | os.PathLike[str], expected_sha256: str | None = None) -> None:
    """Raise DataError (naming the file and both sums) unless the file has the expected SHA-256.

    ``expected_sha256`` defaults to the published sum for the file's name.
    """
    path = Path(path)
    expected = expected_sha256 or MNIST_SHA256.get(path.name)
    if expected is None:
        raise DataError(f"{path}: no known SHA-256 for a file named {path.name!r}")
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(
            f"{path} has the wrong SHA-256 checksum, so it is not used.\n"
            f"  expected: {expected}\n  actual:   {actual}\n"
            "The file is corrupt or not the canonical MNIST file: replace it with a good copy "
            "(or delete it if it is in the download cache, to download it again)."
        )


def missing_files(folder: Path) -> list[str]:
    """The names of ``MNIST_FILES`` that ``folder`` lacks, in that order."""
    return [name for name in MNIST_FILES if not (folder / name).is_file()]


def verify_present(folder: Path, missing: Sequence[str]) -> None:
    """``verify_file`` each of the four files in ``folder`` except the ``missing`` ones."""
    for name in MNIST_FILES:
        if name not in missing:
            verify_file(folder / name)
