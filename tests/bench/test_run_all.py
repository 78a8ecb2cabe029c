"""bench/run_all.py: rerunning one stage into a saved run (``--only NAME --merge``)."""

from __future__ import annotations

import copy
import json

import pytest

from bench.run_all import merged, parse_args, render
from bench.support import REPO

SAVED = REPO / "docs" / "benchmarks" / "results.json"


def rerun_of(previous: dict, name: str) -> dict:
    stage = copy.deepcopy(previous["stages"][name])
    stage["seconds"] = 123.0
    return {"machine": {**previous["machine"], "commit": "abc1234"}, "finished_utc": "2030-01-02 03:04 UTC",
            "load_average": [[0.5, 0.4, 0.3], [1.5, 1.0, 0.5]], "stages": {name: stage}}


def test_merge_replaces_only_the_rerun_stage_and_says_when_it_ran():
    previous = json.loads(SAVED.read_text())
    result = merged(copy.deepcopy(previous), rerun_of(previous, "serving"))
    assert set(result["stages"]) == set(previous["stages"])
    assert result["stages"]["serving"]["seconds"] == 123.0
    assert result["stages"]["serving"]["rerun"] == ("2030-01-02 03:04 UTC, commit abc1234, load average "
                                                    "0.50 at the start, 1.50 at the end")
    for name in set(previous["stages"]) - {"serving"}:
        assert result["stages"][name] == previous["stages"][name]
    assert result["finished_utc"] == previous["finished_utc"]  # the header still describes the full run


def test_the_document_marks_the_rerun_section_only(tmp_path):
    previous = json.loads(SAVED.read_text())
    output = tmp_path / "benchmarks.md"
    render(merged(copy.deepcopy(previous), rerun_of(previous, "serving")), output, SAVED.parent)
    text = output.read_text()
    assert text.count("Rerun on its own") == 1
    serving = text.index("## Serving: the service vs the tutorial's Flask")
    assert text.index("Rerun on its own (`--only serving --merge`): 2030-01-02 03:04 UTC, commit abc1234") > serving
    assert text.index("Rerun on its own") < text.index("\n## ", serving + 1)


def test_merge_needs_a_saved_run(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--only", "serving", "--merge", "--plots-dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "results.json does not exist: run without --merge/--render-only first" in capsys.readouterr().err
