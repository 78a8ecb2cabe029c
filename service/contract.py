"""The export contract: what training writes and serving reads, in one place (standard library only).

An export base holds one folder per version, the TensorFlow Serving layout::

    <export_base>/
        1/                          a complete SavedModel
        2/
            saved_model.pb
            variables/
            assets.extra/metadata.json
        .tmp-3-<random>/            an export in progress: never served, never counted

A folder is a version when its name is a canonical decimal number (``is_version_name``): ``"7"``, not
``"07"`` (two names for one number), ``"²"`` or ``"١"`` (digits to ``str.isdigit``, not numbers to
``int``). Each version's signature ``serving_default`` takes ``pixels``, float32 ``(None, 784)`` in
``[0, 1]``, and returns ``probabilities``, float32 ``(None, 10)``.

Imported by ``training/export.py`` (which writes it), ``service/predictor.py`` (which reads it),
``bench/`` and the tests; ``deploy/check-export.sh`` runs this file as a script in the image build::

    python3 service/contract.py complete-versions EXPORT_BASE     # one complete version per line

It imports neither TensorFlow nor anything of this project, so every one of them can use it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path, PurePosixPath

SIGNATURE_NAME = "serving_default"
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
PIXELS = 784  # 28 x 28
CLASSES = 10
SAVED_MODEL_FILE = "saved_model.pb"
METADATA_PATH = PurePosixPath("assets.extra") / "metadata.json"
TEMP_PREFIX = ".tmp-"  # exports in progress are written under names that start with this
MAX_VERSION_DIGITS = 18  # every such number fits an int64, as TensorFlow Serving requires


def is_version_name(name: str) -> bool:
    """``True`` for ``"0"`` and ``"1"``...``"999999999999999999"`` written without leading zeros."""
    return (0 < len(name) <= MAX_VERSION_DIGITS and name.isascii() and name.isdigit()
            and (name == "0" or name[0] != "0"))


def list_versions(export_base: str | os.PathLike) -> list[int]:
    """The version folders under ``export_base``, ascending (``[]`` if it does not exist).

    Temporary folders, files and other names are never listed; whether a version folder holds a
    loadable SavedModel is for its reader to find out (see ``complete_versions``).
    """
    try:
        entries = list(os.scandir(export_base))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(int(e.name) for e in entries if is_version_name(e.name) and e.is_dir())


def complete_versions(export_base: str | os.PathLike) -> list[int]:
    """The versions whose folder holds a ``saved_model.pb``."""
    base = Path(export_base)
    return [v for v in list_versions(base) if (base / str(v) / SAVED_MODEL_FILE).is_file()]


def next_version(export_base: str | os.PathLike) -> int:
    """The next number after the highest existing version (1 for an empty base)."""
    versions = list_versions(export_base)
    return versions[-1] + 1 if versions else 1


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "complete-versions":
        print("usage: contract.py complete-versions EXPORT_BASE", file=sys.stderr)
        return 2
    for version in complete_versions(argv[1]):
        print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
