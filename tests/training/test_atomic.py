"""Atomic writes: the new file appears whole, readable like a file written with open()."""

import json
import stat
from pathlib import Path

import numpy as np

from training.atomic import write_json_atomic


def test_written_file_is_complete_and_readable_by_others(tmp_path):
    # The service runs as another user (UID 10001 in the image) and reads metadata.json from a
    # mounted export: a 0600 file (mkstemp's mode) would be unreadable there.
    path = tmp_path / "sub" / "metadata.json"
    write_json_atomic(path, {"version": 1})
    assert json.loads(path.read_text()) == {"version": 1}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["metadata.json"]  # no temporary file left


def test_json_is_strict_nan_becomes_null_and_numpy_types_are_plain(tmp_path):
    # metrics.json holds NaN where there is no validation set or a class has no test image; strict
    # JSON readers (and JavaScript) reject a bare NaN token.
    path = tmp_path / "metrics.json"
    write_json_atomic(path, {"val_loss": float("nan"), "per_class": [np.float32(0.5), np.nan, float("inf")],
                             "sizes": (784, 10), "count": np.int64(3), "dir": Path("runs/x"),
                             "matrix": np.eye(2, dtype=np.int64)})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"val_loss": None, "per_class": [0.5, None, None], "sizes": [784, 10],
                                "count": 3, "dir": "runs/x", "matrix": [[1, 0], [0, 1]]}
