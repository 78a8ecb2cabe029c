"""Datasets for training: MNIST (found, checksummed and read) and an offline digits fallback.

MNIST
-----
``load_mnist()`` returns the official split, 60,000 training and 10,000 test images, as
``((x_train, y_train), (x_test, y_test))``: ``x`` is float32 of shape ``(n, 784)`` in ``[0, 1]``
(the uint8 pixels divided by 255), ``y`` holds int64 class ids 0..9.

It needs the four canonical files (``training/mnist_files.py``)::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

and looks for them in this order:

1. the ``data_dir`` argument (``--data-dir`` on the command line);
2. the ``MNIST_DATA_DIR`` environment variable;
3. the per-user cache, ``$XDG_CACHE_HOME/mnist-digits`` (default ``~/.cache/mnist-digits``);
4. a download of the missing files into that cache, from each mirror in turn
   (``training/download.py``: ``MNIST_MIRRORS`` overrides the mirrors).

A folder named explicitly (steps 1 and 2) is taken at its word: if it does not exist or lacks a
file, that is an error naming the folder and the missing files, never a silent download elsewhere.

Every file is checked against its published SHA-256 (``MNIST_SHA256``) each time it is used. A local
file with the wrong sum is an error naming the file and both sums; it is never used, and never
replaced behind the user's back. Downloads are atomic and checked before they get their name (see
``training/download.py``), so an interrupted or corrupt download cannot poison the cache.

Working offline
---------------
Without network access, copy the four files into a folder and point ``MNIST_DATA_DIR`` (or
``--data-dir``) at it, or copy them into the cache folder above. Or train on ``load_digits_28()``
(``--dataset digits``): scikit-learn's bundled 8x8 digits, upsampled to MNIST's 28x28, no download.

Nothing is cached in memory: each call reads, verifies and parses the files again (about half a
second for the full dataset), and returns fresh arrays that the caller owns.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from training.download import DEFAULT_TIMEOUT_S, complete_folder, mnist_cache_dir
from training.mnist_files import (DATA_DIR_ENV, FIX_HINT, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
                                  DataError, missing_files, verify_present)

ArrayPair = tuple[np.ndarray, np.ndarray]
Split = tuple[ArrayPair, ArrayPair]

#: Number of examples in each split, as (images file, labels file, count).
MNIST_SPLITS: tuple[tuple[str, str, int], ...] = (
    (TRAIN_IMAGES, TRAIN_LABELS, 60_000),
    (TEST_IMAGES, TEST_LABELS, 10_000),
)
IMAGE_SIDE = 28
NUM_CLASSES = 10
DATASETS: tuple[str, ...] = ("mnist", "digits")

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_GZIP_MAGIC = b"\x1f\x8b"


# --------------------------------------------------------------------------------------------
# IDX parsing
# --------------------------------------------------------------------------------------------


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an unsigned-byte IDX file (gzip-compressed if its name ends in ``.gz``).

    Accepts image files (magic 0x00000803, shape ``(n, rows, cols)``) and label files (magic
    0x00000801, shape ``(n,)``). Returns a read-only uint8 array. Any problem -- missing file,
    not gzip, truncated gzip, wrong magic, short header, payload length not matching the
    dimensions -- raises DataError naming the file.
    """
    path = Path(path)
    raw = _read_bytes(path)
    return _parse_idx(raw, path)


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped if its name ends in ``.gz``; DataError if unreadable or bad gzip."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if path.suffix != ".gz":
        return data
    if not data.startswith(_GZIP_MAGIC):
        raise DataError(f"{path}: not a gzip file (it does not start with the gzip magic bytes)")
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip data ({exc})") from exc


def _parse_idx(raw: bytes, path: Path) -> np.ndarray:
    """The uint8 array of an IDX file's bytes: big-endian magic, one uint32 per dimension, then the
    payload, which must be exactly the product of the dimensions in bytes. DataError otherwise."""
    if len(raw) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(raw)} bytes, no header)")
    (magic,) = struct.unpack(">I", raw[:4])
    ndim_by_magic = {IDX_IMAGES_MAGIC: 3, IDX_LABELS_MAGIC: 1}
    if magic not in ndim_by_magic:
        raise DataError(
            f"{path}: not an MNIST IDX file: magic number 0x{magic:08x}, expected "
            f"0x{IDX_IMAGES_MAGIC:08x} (images) or 0x{IDX_LABELS_MAGIC:08x} (labels)"
        )
    ndim = ndim_by_magic[magic]
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header_len})")
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    expected_len = header_len + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected_len:
        problem = "truncated" if len(raw) < expected_len else "has trailing bytes"
        raise DataError(
            f"{path}: IDX payload {problem}: the header declares dimensions {dims}, "
            f"i.e. {expected_len} bytes in all, but the data has {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


# --------------------------------------------------------------------------------------------
# Where the files are
# --------------------------------------------------------------------------------------------


def locate_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    mirrors: Iterable[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: bool | None = None,
) -> Path:
    """Return a folder holding the four verified MNIST files, downloading into the cache if needed.

    Follows the search order of the module docstring. Raises DataError if a named folder is
    missing or incomplete, if a file has the wrong checksum, or if nothing worked; the last
    error lists every folder and mirror URL tried, with the reason each failed.
    """
    if data_dir is not None:
        return _require_complete(absolute(data_dir), "the data_dir argument")
    env_dir = os.environ.get(DATA_DIR_ENV, "")
    if env_dir:
        return _require_complete(absolute(env_dir), f"the {DATA_DIR_ENV} environment variable ({env_dir!r})")
    searched = ["the data_dir argument (--data-dir): not given", f"the {DATA_DIR_ENV} environment variable: not set"]
    return complete_folder(mnist_cache_dir(), searched, label="the cache folder", mirrors=mirrors,
                           timeout=timeout, progress=progress)


def absolute(folder: str | os.PathLike[str]) -> Path:
    """``folder`` as an absolute path (``~`` expanded; a relative one taken from the current working
    directory, once): it then names the same folder in a subprocess with another working directory, in
    a resumed run's ``args.json`` and in an error message."""
    return Path(os.path.abspath(Path(folder).expanduser()))


def _require_complete(folder: Path, source: str) -> Path:
    """``folder`` if it holds the four files with their published sums, else DataError naming
    ``source`` (where the folder came from) and what is wrong. Never downloads."""
    if not folder.is_dir():
        raise DataError(
            f"MNIST folder {folder} (from {source}) does not exist or is not a folder.\n"
            + FIX_HINT
        )
    missing = missing_files(folder)
    if missing:
        raise DataError(
            f"MNIST folder {folder} (from {source}) lacks {', '.join(missing)}. "
            "A folder given explicitly is never completed by downloading.\n" + FIX_HINT
        )
    verify_present(folder, missing)
    return folder


# --------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    mirrors: Iterable[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: bool | None = None,
) -> Split:
    """The official MNIST split: ``((x_train, y_train), (x_test, y_test))``.

    ``x`` is float32 ``(n, 784)`` in [0, 1] (pixels / 255), ``y`` int64 in 0..9, with n = 60,000
    and 10,000. Files are found (or downloaded) as the module docstring describes; a folder
    given as ``data_dir`` or ``$MNIST_DATA_DIR`` must hold all four files, else DataError.
    ``mirrors``, ``timeout`` and ``progress`` are passed on to the download, if one happens.
    """
    folder = locate_mnist(data_dir, mirrors=mirrors, timeout=timeout, progress=progress)
    train, test = (
        _load_mnist_split(folder, images, labels, count) for images, labels, count in MNIST_SPLITS
    )
    return train, test


def _load_mnist_split(folder: Path, images_name: str, labels_name: str, count: int) -> ArrayPair:
    """``(x, y)`` from an images and a labels file holding ``count`` examples: x float32 (count, 784)
    = pixels / 255, y int64. DataError if the shapes or labels are not MNIST's."""
    images = read_idx(folder / images_name)
    labels = read_idx(folder / labels_name)
    if images.shape != (count, IMAGE_SIDE, IMAGE_SIDE) or labels.shape != (count,):
        raise DataError(
            f"{folder}: {images_name} / {labels_name} hold shapes {images.shape} / {labels.shape}, "
            f"expected ({count}, {IMAGE_SIDE}, {IMAGE_SIDE}) / ({count},)"
        )
    if labels.max() >= NUM_CLASSES:
        raise DataError(f"{folder / labels_name}: labels outside 0..{NUM_CLASSES - 1}")
    x = images.reshape(count, IMAGE_SIDE * IMAGE_SIDE).astype(np.float32)
    x /= np.float32(255.0)
    return x, labels.astype(np.int64)


def load_digits_28(seed: int = 0, test_fraction: float = 0.2) -> Split:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), shaped like MNIST.

    Each 8x8 image is scaled to 20x20 by bilinear interpolation and centred in a 28x28 frame
    with a 4-pixel border, as MNIST digits are; values 0..16 become [0, 1]. Returns
    ``((x_train, y_train), (x_test, y_test))`` with load_mnist's dtypes and shapes, split
    stratified by class and reproducibly by ``seed`` (see ``train_validation_split``).
    """
    from sklearn.datasets import load_digits  # lazy: serving must never import sklearn

    digits = load_digits()
    images = np.asarray(digits.images, dtype=np.float64)
    x = _upsample_to_mnist(images / 16.0).reshape(len(images), -1)
    y = np.asarray(digits.target, dtype=np.int64)
    return train_validation_split(x, y, test_fraction, seed)


def _upsample_to_mnist(images: np.ndarray, inner: int = 20) -> np.ndarray:
    """(n, h, w) in [0, 1] -> (n, 28, 28) float32: bilinear to inner x inner, centred."""
    rows = _linear_resize_matrix(images.shape[1], inner)
    cols = _linear_resize_matrix(images.shape[2], inner)
    scaled = np.einsum("ij,njk,lk->nil", rows, images, cols)
    border = (IMAGE_SIDE - inner) // 2
    out = np.zeros((len(images), IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    out[:, border:border + inner, border:border + inner] = np.clip(scaled, 0.0, 1.0)
    return out


def _linear_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D linear interpolation with pixel centres aligned (as Pillow)."""
    centres = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    centres = np.clip(centres, 0, n_in - 1)
    left = np.floor(centres).astype(int)
    right = np.minimum(left + 1, n_in - 1)
    weight_right = centres - left
    matrix = np.zeros((n_out, n_in))
    matrix[np.arange(n_out), left] += 1.0 - weight_right
    matrix[np.arange(n_out), right] += weight_right
    return matrix


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, seed: int = 0) -> Split:
    """Load a dataset by name: "mnist" (``load_mnist(data_dir)``) or "digits"
    (``load_digits_28(seed)``; ``data_dir`` is ignored). Other names raise ValueError.
    """
    if name == "mnist":
        return load_mnist(data_dir)
    if name == "digits":
        return load_digits_28(seed=seed)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


# --------------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------------


def train_validation_split(
    x: np.ndarray, y: np.ndarray, validation_fraction: float, seed: int
) -> Split:
    """Split into ``(x_train, y_train), (x_val, y_val)``, stratified and reproducible.

    Each class contributes ``validation_fraction`` of its examples to validation, rounded
    down or up so that the total is ``round(validation_fraction * len(y))`` (so every class's
    share is within one example of exact). Which examples go where is drawn from ``seed``;
    both parts keep the input's order. A fraction of 0 gives empty validation arrays with the
    right trailing shape and dtype. Fractions outside [0, 1) raise ValueError.
    """
    x, y = np.asarray(x), np.asarray(y)
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    if y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"need y of shape (n,) matching x; got x {x.shape}, y {y.shape}")
    val_mask = _stratified_mask(y, validation_fraction, np.random.default_rng(seed))
    return (x[~val_mask], y[~val_mask]), (x[val_mask], y[val_mask])


def _stratified_mask(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask choosing fraction of each class (largest-remainder rounding)."""
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = fraction * counts
    per_class = np.floor(exact).astype(int)
    shortfall = int(round(fraction * len(y))) - int(per_class.sum())
    if shortfall > 0:
        by_remainder = np.argsort(-(exact - per_class), kind="stable")
        per_class[by_remainder[:shortfall]] += 1
    mask = np.zeros(len(y), dtype=bool)
    for class_index in range(len(classes)):
        members = np.flatnonzero(inverse == class_index)
        mask[rng.permutation(members)[:per_class[class_index]]] = True
    return mask
