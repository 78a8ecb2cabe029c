"""Datasets for training: MNIST (checksummed, downloaded safely) and an offline digits fallback.

MNIST
-----
``load_mnist()`` returns the official split, 60,000 training and 10,000 test images, as
``((x_train, y_train), (x_test, y_test))``: ``x`` is float32 of shape ``(n, 784)`` in ``[0, 1]``
(the uint8 pixels divided by 255), ``y`` holds int64 class ids 0..9.

It needs the four canonical files::

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

and looks for them in this order:

1. the ``data_dir`` argument (``--data-dir`` on the command line);
2. the ``MNIST_DATA_DIR`` environment variable;
3. the per-user cache, ``$XDG_CACHE_HOME/mnist-digits`` (default ``~/.cache/mnist-digits``);
4. a download of the missing files into that cache, from each mirror of ``DEFAULT_MIRRORS`` in
   turn (override with the ``MNIST_MIRRORS`` environment variable, comma-separated URL prefixes;
   ``file:///some/folder/`` prefixes work too).

A folder named explicitly (steps 1 and 2) is taken at its word: if it does not exist or lacks a
file, that is an error naming the folder and the missing files, never a silent download elsewhere.

Every file is checked against its published SHA-256 (``MNIST_SHA256``) each time it is used. A local
file with the wrong sum is an error naming the file and both sums; it is never used, and never
replaced behind the user's back. A download goes to a hidden temporary file next to its
destination and is renamed into place only once its size and sum are right, so an interrupted or
corrupt download cannot poison the cache; a bad download is deleted and the next mirror is tried.
A temporary file left by a download that was killed midway is deleted by the next download of that
file (a live download holds a lock on its own).
Connecting and each read time out (``timeout``, default 30 s), and a mirror that cannot be reached
is not tried again for the remaining files.

Working offline
---------------
Without network access, copy the four files into a folder and point ``MNIST_DATA_DIR`` (or
``--data-dir``) at it, or copy them into the cache folder above. Or train on ``load_digits_28()``
(``--dataset digits``): scikit-learn's bundled 8x8 digits, upsampled to MNIST's 28x28, no download.

Nothing is cached in memory: each call reads, verifies and parses the files again (about half a
second for the full dataset), and returns fresh arrays that the caller owns.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import http.client
import logging
import os
import struct
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, TextIO

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: temporary files of killed downloads are then left in place
    fcntl = None

log = logging.getLogger(__name__)

ArrayPair = tuple[np.ndarray, np.ndarray]
Split = tuple[ArrayPair, ArrayPair]

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
#: Number of examples in each split, as (images file, labels file, count).
MNIST_SPLITS: tuple[tuple[str, str, int], ...] = (
    (TRAIN_IMAGES, TRAIN_LABELS, 60_000),
    (TEST_IMAGES, TEST_LABELS, 10_000),
)
IMAGE_SIDE = 28
NUM_CLASSES = 10

#: URL prefixes tried in turn; each must serve the four files under their canonical names.
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
DATA_DIR_ENV = "MNIST_DATA_DIR"
MIRRORS_ENV = "MNIST_MIRRORS"
CACHE_SUBDIR = "mnist-digits"
#: Seconds allowed for connecting and for each read of a download (not for the whole transfer).
DEFAULT_TIMEOUT_S = 30.0
DATASETS: tuple[str, ...] = ("mnist", "digits")

IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_BYTES = 1 << 16
_USER_AGENT = "mnist-digits/0.1 (python urllib)"

_FIX_HINT = (
    "To fix this, either:\n"
    f"  - put the four files ({', '.join(MNIST_FILES)}) in a folder and point the "
    f"{DATA_DIR_ENV} environment variable (or --data-dir) at it;\n"
    "  - or use the offline digits dataset instead (--dataset digits), which needs no download."
)


class DataError(ValueError):
    """A dataset file is missing, corrupt, of the wrong kind, or could not be obtained."""


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------


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


def mnist_cache_dir() -> Path:
    """The per-user download cache: ``$XDG_CACHE_HOME/mnist-digits`` or ``~/.cache/mnist-digits``.

    As the XDG spec asks, a relative ``XDG_CACHE_HOME`` is ignored.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / CACHE_SUBDIR


def resolve_mirrors(mirrors: Iterable[str] | None = None) -> list[str]:
    """The mirrors to try: ``mirrors`` if given, else ``$MNIST_MIRRORS``, else DEFAULT_MIRRORS.

    Each is a URL prefix; a trailing slash is added if missing.
    """
    if mirrors is None:
        env = os.environ.get(MIRRORS_ENV, "")
        mirrors = env.split(",") if env.strip() else DEFAULT_MIRRORS
    return [m.strip().rstrip("/") + "/" for m in mirrors if m.strip()]


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
        return _require_complete(Path(data_dir), "the data_dir argument")
    env_dir = os.environ.get(DATA_DIR_ENV, "")
    if env_dir:
        return _require_complete(Path(env_dir), f"the {DATA_DIR_ENV} environment variable")

    cache = mnist_cache_dir()
    missing = _missing_files(cache)
    _verify_present(cache, missing)
    if not missing:
        return cache
    tried = [
        "the data_dir argument (--data-dir): not given",
        f"the {DATA_DIR_ENV} environment variable: not set",
        f"the cache folder {cache}: missing {', '.join(missing)}",
    ]
    failures = _download_files(cache, missing, resolve_mirrors(mirrors), timeout, progress)
    if failures:
        raise _unavailable_error(tried + failures)
    return cache


def _missing_files(folder: Path) -> list[str]:
    return [name for name in MNIST_FILES if not (folder / name).is_file()]


def _verify_present(folder: Path, missing: Sequence[str]) -> None:
    for name in MNIST_FILES:
        if name not in missing:
            verify_file(folder / name)


def _require_complete(folder: Path, source: str) -> Path:
    if not folder.is_dir():
        raise DataError(
            f"MNIST folder {folder} (from {source}) does not exist or is not a folder.\n"
            + _FIX_HINT
        )
    missing = _missing_files(folder)
    if missing:
        raise DataError(
            f"MNIST folder {folder} (from {source}) lacks {', '.join(missing)}. "
            "A folder given explicitly is never completed by downloading.\n" + _FIX_HINT
        )
    _verify_present(folder, missing)
    return folder


def _unavailable_error(tried: Sequence[str]) -> DataError:
    lines = ["Could not find or download the MNIST dataset. Tried, in order:"]
    lines += [f"  - {item}" for item in tried]
    return DataError("\n".join(lines) + "\n" + _FIX_HINT)


# --------------------------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------------------------


class DownloadError(DataError):
    """One download attempt from one URL failed; the message is the reason."""


def download_mnist(
    dest_dir: str | os.PathLike[str] | None = None,
    *,
    mirrors: Iterable[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: bool | None = None,
) -> Path:
    """Download whichever of the four files ``dest_dir`` (default: the cache) lacks; return it.

    Mirrors are tried in turn for each file (see ``resolve_mirrors``); a mirror that cannot be
    reached is not tried again for the remaining files. ``timeout`` bounds the connection and
    each read, in seconds. ``progress`` shows a bar on stderr; by default only when stderr is a
    terminal. Files already present are verified, not downloaded again. Only files whose size
    and SHA-256 are right ever get their final name. Raises DataError listing every URL tried
    and why it failed if some file could not be obtained.
    """
    dest = Path(dest_dir) if dest_dir is not None else mnist_cache_dir()
    missing = _missing_files(dest)
    _verify_present(dest, missing)
    failures = _download_files(dest, missing, resolve_mirrors(mirrors), timeout, progress)
    if failures:
        raise _unavailable_error([f"the folder {dest}: missing {', '.join(missing)}"] + failures)
    return dest


def _download_files(
    dest: Path, names: Sequence[str], mirrors: Sequence[str], timeout: float,
    progress: bool | None,
) -> list[str]:
    """Download each name into dest; return the description of every failed attempt."""
    if not names:
        return []
    if not mirrors:
        return [f"downloading: no mirrors configured (set {MIRRORS_ENV} or pass mirrors=)"]
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [f"downloading: cannot create the folder {dest} ({exc})"]
    show_progress = sys.stderr.isatty() if progress is None else progress
    failures: list[str] = []
    unreachable: dict[str, str] = {}
    for name in names:
        for mirror in mirrors:
            url = mirror + name
            if mirror in unreachable:
                failures.append(f"{url}: skipped, mirror unreachable ({unreachable[mirror]})")
                continue
            try:
                download_file(url, dest / name, MNIST_SHA256[name], timeout=timeout,
                              expected_size=MNIST_SIZES[name], progress=show_progress)
                break
            except DownloadError as exc:
                failures.append(f"{url}: {exc}")
                if _is_unreachable(exc):
                    unreachable[mirror] = str(exc)
                    log.info("MNIST mirror unreachable: %s: %s", url, exc)
                else:
                    log.warning("MNIST download failed: %s: %s", url, exc)
    # Attempts that failed before another mirror succeeded are only worth reporting on failure.
    return failures if _missing_files(dest) else []


def _is_unreachable(exc: DownloadError) -> bool:
    cause = exc.__cause__
    if isinstance(cause, urllib.error.HTTPError):
        return False
    if isinstance(cause, urllib.error.URLError):
        return True
    return isinstance(cause, (TimeoutError, ConnectionError))


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    expected_sha256: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    expected_size: int | None = None,
    progress: bool = False,
) -> None:
    """Download url to dest atomically: via a temporary file in dest's folder, renamed only
    once the size and SHA-256 are right. On any failure the temporary file is deleted and
    DownloadError, whose message is the reason, is raised (the destination is left untouched).
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_parts(dest)
        handle = _locked_part_file(dest)
    except OSError as exc:
        raise DownloadError(f"cannot write to the folder {dest.parent} ({exc})") from exc
    tmp_path = Path(handle.name)
    try:
        with handle:  # renamed while still open: the lock holds until the file has its name
            actual = _fetch(url, handle, timeout, expected_size, progress, dest.name)
            handle.flush()
            os.fsync(handle.fileno())
            if actual != expected_sha256:
                raise DownloadError(
                    f"wrong SHA-256 checksum (expected {expected_sha256}, got {actual}); discarded"
                )
            os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)


def _locked_part_file(dest: Path) -> IO[bytes]:
    """A new hidden ``.NAME.*.part`` file next to dest, exclusively locked while this process lives
    (the kernel drops the lock when it dies, however it dies), so another run can tell a download in
    progress from one abandoned by a killed process."""
    for _ in range(3):
        handle = tempfile.NamedTemporaryFile(
            dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False
        )
        if fcntl is None:
            return handle
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:  # still ours? (another run may have taken it for abandoned before the lock)
            if os.path.samestat(os.fstat(handle.fileno()), os.stat(handle.name)):
                return handle
        except FileNotFoundError:
            pass
        handle.close()
    raise OSError(f"could not create a temporary file for {dest.name}")


def _remove_abandoned_parts(dest: Path) -> None:
    """Delete temporary ``.NAME.*.part`` files of dest that no live download holds locked: what a
    download killed midway (SIGKILL, out of memory, power loss) left behind."""
    if fcntl is None:
        return
    for part in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
        try:
            with open(part, "rb") as probe:
                fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                part.unlink()
                log.info("removed %s, left by an interrupted download", part)
        except (BlockingIOError, FileNotFoundError):
            continue  # a download in progress, or already gone


def _fetch(
    url: str, out: IO[bytes], timeout: float, expected_size: int | None, progress: bool,
    label: str,
) -> str:
    """Stream url into out; return the hex SHA-256 of what was received."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    digest = hashlib.sha256()
    received = 0
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = _content_length(response)
            if expected_size is not None and total is not None and total != expected_size:
                raise DownloadError(
                    f"wrong size: {total} bytes announced, {expected_size} expected")
            log.info("Downloading %s", url)
            bar = _ProgressBar(label, total, sys.stderr) if progress else None
            try:
                while chunk := response.read(_CHUNK_BYTES):
                    received += len(chunk)
                    if expected_size is not None and received > expected_size:
                        raise DownloadError(f"wrong size: more than {expected_size} bytes sent")
                    out.write(chunk)
                    digest.update(chunk)
                    if bar:
                        bar.update(received)
            finally:
                if bar:
                    bar.close()
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot connect ({exc.reason})") from exc
    except http.client.IncompleteRead as exc:
        raise DownloadError(
            f"connection closed early, after {received + len(exc.partial)} bytes") from exc
    except (TimeoutError, OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(f"{type(exc).__name__}: {exc or 'no details'}") from exc
    if total is not None and received < total:
        raise DownloadError(f"connection closed early, after {received} of {total} bytes")
    if expected_size is not None and received != expected_size:
        raise DownloadError(f"truncated: received {received} of {expected_size} bytes")
    return digest.hexdigest()


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class _ProgressBar:
    """A one-line ``\\r`` progress bar, redrawn at most ten times a second."""

    WIDTH = 30

    def __init__(self, label: str, total: int | None, stream: TextIO) -> None:
        self.label, self.total, self.stream = label, total, stream
        self.last_draw = 0.0
        self.done = 0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last_draw >= 0.1:
            self.last_draw = now
            self._draw()

    def close(self) -> None:
        self._draw()
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self) -> None:
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * self.WIDTH)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            text = f"{self.label} [{bar}] {fraction:4.0%} {_size(self.done)} / {_size(self.total)}"
        else:
            text = f"{self.label} {_size(self.done)}"
        self.stream.write("\r" + text)
        self.stream.flush()


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.1f} kB"


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
    for k in range(len(classes)):
        members = np.flatnonzero(inverse == k)
        mask[rng.permutation(members)[:per_class[k]]] = True
    return mask
