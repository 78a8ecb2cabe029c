"""The export contract (service/contract.py): which folders are versions, for every reader and writer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.contract import complete_versions, is_version_name, list_versions, next_version

from ..conftest import REPO


@pytest.mark.parametrize("name", ["0", "1", "12", "999999999999999999"])
def test_canonical_decimal_names_are_versions(name):
    assert is_version_name(name)


@pytest.mark.parametrize("name", [
    "", "07", "00", "-1", "+1", " 1", "1 ", "1.0", "v5", "2a", ".tmp-4-abc",
    "\u00b2",  # superscript two: str.isdigit() is True, int() raises
    "\u0661",  # Arabic-Indic one: str.isdigit() is True, int() gives 1
    "1" * 19,  # more than an int64 holds for sure
])
def test_other_names_are_not_versions(name):
    assert not is_version_name(name)


def test_list_versions_ignores_temporary_folders_files_and_other_names(tmp_path):
    for name in ("1", "3", "12", "012", ".tmp-4-abc", "tmp", "v5", "2a", "\u00b2", "\u0661", "9" * 40):
        (tmp_path / name).mkdir()
    (tmp_path / "7").write_text("a file, not a version")
    assert list_versions(tmp_path) == [1, 3, 12]
    assert list_versions(tmp_path / "missing") == []
    assert list_versions(tmp_path / "7") == []  # a file given as the base


def test_versions_order_numerically_and_next_version_follows_the_highest(tmp_path):
    for name in ("9", "10", "1000", "999"):
        (tmp_path / name).mkdir()
    assert list_versions(tmp_path) == [9, 10, 999, 1000]
    assert next_version(tmp_path) == 1001
    assert next_version(tmp_path / "empty") == 1


def test_complete_versions_need_a_saved_model_and_the_script_prints_them(tmp_path):
    for name in ("1", "2", "3", "\u00b2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    (tmp_path / "2" / "saved_model.pb").unlink()
    assert complete_versions(tmp_path) == [1, 3]
    script = REPO / "service" / "contract.py"
    # as deploy/check-export.sh runs it: a plain file, with python3 and nothing of this project installed
    done = subprocess.run([sys.executable, "-I", str(script), "complete-versions", str(tmp_path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.split() == ["1", "3"]
    usage = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "usage: contract.py complete-versions EXPORT_BASE" in usage.stderr


def test_check_export_stages_exactly_the_complete_versions(tmp_path):
    """deploy/check-export.sh (the image build's first step) copies what the contract calls complete."""
    src, dest = tmp_path / "exports", tmp_path / "models"
    for name in ("2", "10", "\u00b2", "07", ".tmp-11-x"):
        (src / name).mkdir(parents=True)
        (src / name / "saved_model.pb").write_bytes(b"pb")
    (src / "3").mkdir()  # no saved_model.pb: an incomplete export
    script = REPO / "deploy" / "check-export.sh"
    done = subprocess.run(["sh", str(script), str(src), str(dest), str(REPO / "service" / "contract.py")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["10", "2"]
    assert "baking 2 model version(s)" in done.stdout
    empty = subprocess.run(["sh", str(script), str(tmp_path / "none"), str(tmp_path / "out"),
                            str(REPO / "service" / "contract.py")], capture_output=True, text=True, timeout=30)
    assert empty.returncode == 1 and "no model export in exports/mnist/" in empty.stderr
