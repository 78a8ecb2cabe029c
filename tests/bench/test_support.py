"""bench/support.py: the export a benchmark serves, Markdown tables, and a stage that was not measured."""

from __future__ import annotations

from bench.support import failed_stage, markdown_table, newest_version, spread


def test_the_newest_version_is_the_newest_the_service_would_serve(tmp_path):
    for name in ("1", "2", "10", "07", ".tmp-11-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a version")
    assert newest_version(tmp_path) == tmp_path / "10"
    assert newest_version(tmp_path / "missing") is None


def test_markdown_table_and_spread():
    assert markdown_table(["a", "b"], [[1, "x"], [2.5, ""]]) == ["| a | b |", "|---|---|", "| 1 | x |", "| 2.5 |  |"]
    assert spread([1.0, 3.0, 2.0], ".1f", " s") == "2.0 s (1.0-3.0)"
    assert spread([4.0]) == "4.00" and spread([]) == "n/a"


def test_a_failed_stage_shows_its_error_and_the_end_of_its_log():
    lines = failed_stage({"error": "timed out after 400 s", "log_tail": "x" * 2000 + "Traceback: boom"})
    assert lines[0] == "**Not measured: the command timed out after 400 s.** Last lines of its output:"
    assert lines[2:] == ["```text", ("x" * 2000 + "Traceback: boom")[-1500:], "```"]
