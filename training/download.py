"""Downloading the MNIST files safely: mirrors tried in turn, checked before they get their name.

A download goes to a hidden temporary file next to its destination and is renamed into place only
once its size and SHA-256 are right, so an interrupted or corrupt download cannot poison the cache; a
bad download is deleted and the next mirror is tried. A temporary file left by a download that was
killed midway is deleted by the next download of that file (a live download holds a lock on its own).
Connecting and each read time out (``timeout``, default 30 s), and a mirror that cannot be reached is
not tried again for the remaining files.

Mirrors are the URL prefixes of ``DEFAULT_MIRRORS``, or those of the ``MNIST_MIRRORS`` environment
variable (comma-separated; ``file:///some/folder/`` prefixes work too). Files go to the per-user
cache, ``$XDG_CACHE_HOME/mnist-digits`` (default ``~/.cache/mnist-digits``), unless told otherwise.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import logging
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, TextIO

from training.mnist_files import FIX_HINT, MNIST_SHA256, MNIST_SIZES, DataError, missing_files, verify_present

try:
    import fcntl
except ImportError:  # Windows: temporary files of killed downloads are then left in place
    fcntl = None

log = logging.getLogger(__name__)

#: URL prefixes tried in turn; each must serve the four files under their canonical names.
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
MIRRORS_ENV = "MNIST_MIRRORS"
CACHE_SUBDIR = "mnist-digits"
#: Seconds allowed for connecting and for each read of a download (not for the whole transfer).
DEFAULT_TIMEOUT_S = 30.0
_CHUNK_BYTES = 1 << 16
_USER_AGENT = "mnist-digits/0.1 (python urllib)"


class DownloadError(DataError):
    """One download attempt from one URL failed; the message is the reason."""


# --------------------------------------------------------------------------------------------
# Where from, where to
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
    return [mirror.strip().rstrip("/") + "/" for mirror in mirrors if mirror.strip()]


# --------------------------------------------------------------------------------------------
# Completing a folder
# --------------------------------------------------------------------------------------------


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
    return complete_folder(dest, mirrors=mirrors, timeout=timeout, progress=progress)


def complete_folder(
    folder: Path,
    searched: Sequence[str] = (),
    *,
    label: str = "the folder",
    mirrors: Iterable[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: bool | None = None,
) -> Path:
    """Verify the MNIST files ``folder`` holds, download the ones it lacks, and return ``folder``.

    A file present with the wrong sum raises DataError at once (it is never replaced). If some
    file cannot be downloaded, the DataError lists ``searched`` (places looked at before, one line
    each), then ``label`` and the folder with what it lacked, then every URL tried and why it failed.
    """
    missing = missing_files(folder)
    verify_present(folder, missing)
    failures = _download_files(folder, missing, resolve_mirrors(mirrors), timeout, progress)
    if failures:
        tried = [*searched, f"{label} {folder}: missing {', '.join(missing)}", *failures]
        raise DataError("\n".join(["Could not find or download the MNIST dataset. Tried, in order:",
                                   *(f"  - {item}" for item in tried)]) + "\n" + FIX_HINT)
    return folder


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
    unreachable: dict[str, str] = {}  # mirror -> why it could not be reached
    for name in names:
        failures += _download_from_mirrors(dest / name, mirrors, unreachable, timeout, show_progress)
    # Attempts that failed before another mirror succeeded are only worth reporting on failure.
    return failures if missing_files(dest) else []


def _download_from_mirrors(
    dest: Path, mirrors: Sequence[str], unreachable: dict[str, str], timeout: float, progress: bool,
) -> list[str]:
    """Try each mirror in turn for ``dest``'s file until one works; return the failed attempts.
    Mirrors found unreachable are added to ``unreachable`` and skipped from then on."""
    failures = []
    for mirror in mirrors:
        url = mirror + dest.name
        if mirror in unreachable:
            failures.append(f"{url}: skipped, mirror unreachable ({unreachable[mirror]})")
            continue
        try:
            download_file(url, dest, MNIST_SHA256[dest.name], timeout=timeout,
                          expected_size=MNIST_SIZES[dest.name], progress=progress)
            return failures
        except DownloadError as exc:
            failures.append(f"{url}: {exc}")
            if _is_unreachable(exc):
                unreachable[mirror] = str(exc)
                log.info("MNIST mirror unreachable: %s: %s", url, exc)
            else:
                log.warning("MNIST download failed: %s: %s", url, exc)
    return failures


def _is_unreachable(exc: DownloadError) -> bool:
    """Whether the attempt failed to reach the server at all (as opposed to an HTTP error or bad data)."""
    cause = exc.__cause__
    if isinstance(cause, urllib.error.HTTPError):
        return False
    if isinstance(cause, urllib.error.URLError):
        return True
    return isinstance(cause, (TimeoutError, ConnectionError))


# --------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------


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
    """Stream url into out; return the hex SHA-256 of what was received. Every failure (HTTP
    error, no connection, timeout, wrong size, connection closed early) is a DownloadError."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            total = _content_length(response)
            if expected_size is not None and total is not None and total != expected_size:
                raise DownloadError(
                    f"wrong size: {total} bytes announced, {expected_size} expected")
            log.info("Downloading %s", url)
            bar = _ProgressBar(label, total, sys.stderr) if progress else None
            received, sha256 = _copy_body(response, out, expected_size, bar)
    except DownloadError:
        raise
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot connect ({exc.reason})") from exc
    except (TimeoutError, OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(f"{type(exc).__name__}: {exc or 'no details'}") from exc
    if total is not None and received < total:
        raise DownloadError(f"connection closed early, after {received} of {total} bytes")
    if expected_size is not None and received != expected_size:
        raise DownloadError(f"truncated: received {received} of {expected_size} bytes")
    return sha256


def _copy_body(
    response: http.client.HTTPResponse, out: IO[bytes], expected_size: int | None,
    bar: _ProgressBar | None,
) -> tuple[int, str]:
    """Copy the response body into out in chunks; return (bytes received, their hex SHA-256).
    Stops with DownloadError as soon as more than ``expected_size`` bytes arrive."""
    digest = hashlib.sha256()
    received = 0
    try:
        while chunk := response.read(_CHUNK_BYTES):
            received += len(chunk)
            if expected_size is not None and received > expected_size:
                raise DownloadError(f"wrong size: more than {expected_size} bytes sent")
            out.write(chunk)
            digest.update(chunk)
            if bar:
                bar.update(received)
    except http.client.IncompleteRead as exc:
        raise DownloadError(
            f"connection closed early, after {received + len(exc.partial)} bytes") from exc
    finally:
        if bar:
            bar.close()
    return received, digest.hexdigest()


def _content_length(response: http.client.HTTPResponse) -> int | None:
    """The Content-Length header as an int, or None if absent or not a number."""
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
    """A byte count for people: ``1.6 MB`` or ``28.9 kB``."""
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.1f} kB"
