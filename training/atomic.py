"""Write a file so that readers see the old complete file or the new complete file, never a half.

The data goes to a temporary file in the destination's folder (same filesystem), which is then
renamed over the destination: ``os.replace`` is atomic on POSIX.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

TEMP_PREFIX = ".tmp-"
FILE_MODE = 0o644  # what open(path, "w") gives under the usual umask 022


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """``data`` to ``path`` (its folder created if needed) via a temporary file renamed over it, mode 0644."""
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


def _plain(value):
    """``value`` with NumPy scalars and arrays, tuples and paths made plain JSON types, and NaN and
    infinities made ``null`` (strict JSON has no NaN; JavaScript and many readers reject it)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json_atomic(path: str | os.PathLike, data) -> None:
    """Pretty, sorted, strict JSON (NumPy types and paths converted, NaN and infinities as null)."""
    text = json.dumps(_plain(data), indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_bytes_atomic(path, text.encode())


def save_keras_atomic(model, path: str | os.PathLike) -> None:
    """``model.save`` (a ``.keras`` file: model, compiled loss and optimizer state) to a temporary
    name beside ``path``, then renamed into place."""
    path = Path(path)
    tmp = path.with_name(TEMP_PREFIX + path.name)
    model.save(tmp)
    os.replace(tmp, path)
