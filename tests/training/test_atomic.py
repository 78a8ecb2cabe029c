"""Atomic writes: the new file appears whole, readable like a file written with open()."""

import json
import stat

from training.atomic import write_json_atomic


def test_written_file_is_complete_and_readable_by_others(tmp_path):
    # The service runs as another user (UID 10001 in the image) and reads metadata.json from a
    # mounted export: a 0600 file (mkstemp's mode) would be unreadable there.
    path = tmp_path / "sub" / "metadata.json"
    write_json_atomic(path, {"version": 1})
    assert json.loads(path.read_text()) == {"version": 1}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["metadata.json"]  # no temporary file left
