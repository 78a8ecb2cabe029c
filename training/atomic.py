"""Write a file so that readers see the old complete file or the new complete file, never a half.

The data goes to a temporary file in the destination's folder (same filesystem), which is then
renamed over the destination: ``os.replace`` is atomic on POSIX.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

TEMP_PREFIX = ".tmp-"
FILE_MODE = 0o644  # what open(path, "w") gives under the usual umask 022


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX + path.name)
    try:
        os.chmod(fd, FILE_MODE)  # mkstemp makes it 0600: others (the service's user) could not read it
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json_atomic(path: str | os.PathLike, data) -> None:
    """Pretty, sorted JSON (NumPy scalars and arrays and paths converted)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"
    write_bytes_atomic(path, text.encode())
