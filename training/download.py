"""Downloading the MNIST files: ``pooch.retrieve`` from each mirror in turn, checked before they get their name.

pooch does the transfer (``requests``; ``timeout`` bounds connecting and each read, default 30 s), the
progress bar (tqdm, on stderr) and the move into place, which happens only once the file's SHA-256 is
right: an interrupted or corrupt download cannot poison the cache. What pooch lacks is kept here,
each because a test needs it:

- mirrors tried in turn for each file, and a mirror that cannot be reached not tried again for the
  remaining files (tests/training/test_download.py);
- the size checked as the bytes arrive, and every failure said in one line with the URL, the file and
  (for a wrong file) both checksums: a truncated file is reported as truncated, not only as a wrong
  checksum (test_all_mirrors_bad_reports_every_url_and_leaves_no_files);
- a download killed midway (SIGKILL, out of memory, power loss) cannot delete its temporary file, which
  pooch would leave in the cache for good. So each download runs in a staging folder of its own beside
  the destination, ``.NAME.XXXXXXXX.part/``, locked (``flock``) while its process lives: the kernel
  drops the lock when the process dies, however it dies, and the next download of that file deletes
  the staging folders no live download holds (tests/reliability/test_faults.py,
  test_download_killed_midway_leaves_no_partial_file_for_long).

Mirrors are the URL prefixes of ``DEFAULT_MIRRORS``, or those of the ``MNIST_MIRRORS`` environment
variable (comma-separated). Files go to the per-user cache, ``$XDG_CACHE_HOME/mnist-digits`` (default
``~/.cache/mnist-digits``), unless told otherwise.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import pooch
import requests
from tqdm import tqdm

from training.mnist_files import FIX_HINT, MNIST_SHA256, MNIST_SIZES, DataError, missing_files, verify_present

try:
    import fcntl
except ImportError:  # Windows: staging folders of killed downloads are then left in place
    fcntl = None

log = logging.getLogger(__name__)
pooch.get_logger().setLevel(logging.WARNING)  # its "Downloading data from..." names the staging folder

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
_USER_AGENT = "mnist-digits/0.1 (pooch)"


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
# Completing a folder: the mirror loop
# --------------------------------------------------------------------------------------------
def download_mnist(dest_dir: str | os.PathLike[str] | None = None, *, mirrors: Iterable[str] | None = None,
                   timeout: float = DEFAULT_TIMEOUT_S, progress: bool | None = None) -> Path:
    """Download whichever of the four files ``dest_dir`` (default: the cache) lacks; return it.

    ``progress`` shows a bar on stderr; by default only when stderr is a terminal. Files already
    present are verified, not downloaded again. See ``complete_folder``.
    """
    dest = Path(dest_dir) if dest_dir is not None else mnist_cache_dir()
    return complete_folder(dest, mirrors=mirrors, timeout=timeout, progress=progress)


def complete_folder(folder: Path, searched: Sequence[str] = (), *, label: str = "the folder",
                    mirrors: Iterable[str] | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                    progress: bool | None = None) -> Path:
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


def _download_files(dest: Path, names: Sequence[str], mirrors: Sequence[str], timeout: float,
                    progress: bool | None) -> list[str]:
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


def _download_from_mirrors(dest: Path, mirrors: Sequence[str], unreachable: dict[str, str], timeout: float,
                           progress: bool) -> list[str]:
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
            if isinstance(exc.__cause__, (requests.ConnectionError, requests.Timeout)):
                unreachable[mirror] = str(exc)  # refused, unknown, or stopped answering: not asked again
                log.info("MNIST mirror unreachable: %s: %s", url, exc)
            else:
                log.warning("MNIST download failed: %s: %s", url, exc)
    return failures


# --------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------
def download_file(url: str, dest: str | os.PathLike[str], expected_sha256: str, *,
                  timeout: float = DEFAULT_TIMEOUT_S, expected_size: int | None = None,
                  progress: bool = False) -> None:
    """Download ``url`` to ``dest`` with ``pooch.retrieve``, in a locked staging folder beside it, and
    rename it into place only once its size and SHA-256 are right. On any failure the staging folder
    is deleted and DownloadError, whose message is the reason, is raised (``dest`` is left untouched)."""
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_staging(dest)
        staging, lock = _locked_staging_folder(dest)
    except OSError as exc:
        raise DownloadError(f"cannot write to the folder {dest.parent} ({exc})") from exc
    downloader = _CheckedDownloader(timeout, expected_sha256, expected_size, progress, dest.name)
    try:
        fetched = pooch.retrieve(url, known_hash=f"sha256:{expected_sha256}", fname=dest.name, path=staging,
                                 downloader=downloader)
        os.replace(fetched, dest)  # while still locked: the staging folder is not abandoned yet
    except DownloadError:
        raise
    except requests.HTTPError as exc:
        raise DownloadError(f"HTTP {exc.response.status_code} {exc.response.reason}") from exc
    except (requests.RequestException, OSError, ValueError) as exc:
        raise DownloadError(downloader.reason(exc)) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if lock is not None:
            os.close(lock)


class _CheckedDownloader:
    """pooch's ``HTTPDownloader`` writing through a counter: the size is checked as the bytes arrive
    and the SHA-256 at the end, each failure raised as a DownloadError that says which and by how much
    (pooch then checks the checksum once more before it moves the file)."""

    def __init__(self, timeout: float, expected_sha256: str, expected_size: int | None, progress: bool, label: str):
        self.expected_sha256, self.expected_size, self.timeout = expected_sha256, expected_size, timeout
        # tqdm is true only with a total (pooch then sets the announced one): the expected size, else no bar
        self.progress = (tqdm(desc=label, total=expected_size, unit="B", unit_scale=True, file=sys.stderr)
                         if progress and expected_size else None)
        self.http = pooch.HTTPDownloader(progressbar=self.progress or False, chunk_size=_CHUNK_BYTES,
                                         timeout=timeout, headers={"User-Agent": _USER_AGENT})
        self.received, self.digest = 0, hashlib.sha256()

    def __call__(self, url: str, output_file: str, pooch_instance) -> None:
        with open(output_file, "w+b") as out:
            self.out = out
            try:
                self.http(url, self, pooch_instance)
            finally:
                if self.progress is not None:
                    self.progress.close()
        if self.expected_size is not None and self.received != self.expected_size:
            raise DownloadError(f"truncated: received {self.received} of {self.expected_size} bytes")
        actual = self.digest.hexdigest()
        if actual != self.expected_sha256:
            raise DownloadError(f"wrong SHA-256 checksum (expected {self.expected_sha256}, got {actual}); discarded")

    def write(self, chunk: bytes) -> None:
        """Called by ``HTTPDownloader`` for each chunk of the body."""
        self.received += len(chunk)
        if self.expected_size is not None and self.received > self.expected_size:
            raise DownloadError(f"wrong size: more than {self.expected_size} bytes sent")
        self.digest.update(chunk)
        self.out.write(chunk)

    def flush(self) -> None:
        self.out.flush()

    def reason(self, exc: Exception) -> str:
        """One line for a failed transfer: closed early, timed out, refused (the OS's words), or the error."""
        text = str(exc)
        if isinstance(exc, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in text:
            return f"connection closed early, after {self.received} bytes"
        if isinstance(exc, requests.Timeout) or "timed out" in text.lower():
            return f"timed out (nothing received for {self.timeout:g} s)"
        if isinstance(exc, requests.ConnectionError):
            found = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
            return f"cannot connect ({found[0] if found else text})"
        return f"{type(exc).__name__}: {text or 'no details'}"


def _locked_staging_folder(dest: Path) -> tuple[Path, int | None]:
    """A new ``.NAME.XXXXXXXX.part`` folder beside dest and a descriptor holding an exclusive lock on it
    while this process lives, so that another run can tell a download in progress from one abandoned
    by a killed process."""
    for _ in range(3):
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"))
        if fcntl is None:
            return staging, None
        lock = os.open(staging, os.O_RDONLY)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:  # still ours? (another run may have taken it for abandoned before the lock)
            if os.path.samestat(os.fstat(lock), os.stat(staging)):
                return staging, lock
        except FileNotFoundError:
            pass
        os.close(lock)
    raise OSError(f"could not create a staging folder for {dest.name}")


def _remove_abandoned_staging(dest: Path) -> None:
    """Delete the staging folders of dest (``.NAME.*.part``) that no live download holds locked: what a
    download killed midway left behind."""
    if fcntl is None:
        return
    for staging in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
        try:
            probe = os.open(staging, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            shutil.rmtree(staging, ignore_errors=True)
            log.info("removed %s, left by an interrupted download", staging)
        except BlockingIOError:
            continue  # a download in progress
        finally:
            os.close(probe)
