"""The README's generated tables (bench/readme_tables.py) are what the saved runs give, and they follow the runs."""

from __future__ import annotations

import copy
import json

import pytest

from bench.readme_tables import README, SAVED, peers_block, photos_block, rendered


def test_the_readme_blocks_are_current():
    text = README.read_text()
    assert "<!-- generated: peers" in text
    assert rendered(text) == text, "README.md's generated blocks are stale or edited by hand: python -m bench.readme_tables"


def test_a_block_is_rewritten_from_its_json_and_nothing_else_moves(tmp_path):
    peers = json.loads((SAVED / "peers.json").read_text())
    for run in peers["results"]["ours"]:
        run["levels"]["1 img c=1"]["rps"] = 12345.0
    (tmp_path / "peers.json").write_text(json.dumps(peers))
    readme = "intro\n<!-- generated: peers (x) -->\nold figures\n<!-- end generated: peers -->\noutro\n"
    out = rendered(readme, tmp_path)
    assert out.startswith("intro\n<!-- generated: peers (x) -->\n| server |")
    assert out.endswith("<!-- end generated: peers -->\noutro\n") and "old figures" not in out
    assert "**12,345**" in out


def test_ratios_are_computed_within_each_repeat():
    peers = json.loads((SAVED / "peers.json").read_text())
    data = copy.deepcopy(peers)
    for repeat, run in enumerate(data["results"]["kserve"]):  # ours 2x, 4x, 8x KServe's rate in the repeats
        run["levels"]["1 img c=1"]["rps"] = 100.0
        data["results"]["ours"][repeat]["levels"]["1 img c=1"]["rps"] = 100.0 * 2 ** (repeat + 1)
    for name in ("litserve", "mlflow", "bentoml"):
        for run in data["results"][name]:
            run["levels"]["1 img c=1"]["rps"] = 1.0
    assert "4.00x at 1 img c=1 (worst repeat 2.00x, vs kserve)" in peers_block(data)


def test_photo_rows_say_whether_the_goal_is_met():
    data = {"seed": 21, "created": "2026-12-07T13:58:30+00:00", "machine": {"commit": "abc1234"},
            "rows": [{"name": "clean", "group": "clean", "count": 10, "success": 0.9, "cpu_ms": {"median": 0.41}},
                     {"name": "plain", "group": "digit", "count": 10, "success": 0.8, "ratio": 0.889, "meets_goal": False,
                      "cpu_ms": {"median": 94.26}},
                     {"name": "numbers", "group": "number", "available": False}]}
    lines = photos_block(data).splitlines()
    assert lines[2:4] == ["| clean | 10 | 90.0% | 1 | 0.4 |  |", "| plain | 10 | 80.0% | 0.889 | 94.3 | **not met** |"]
    assert lines[-1].endswith("Seed 21, run of 2026-12-07, commit abc1234.")


def test_an_unknown_block_name_is_refused():
    with pytest.raises(SystemExit, match="unknown generated block 'nope'"):
        rendered("<!-- generated: nope -->\n<!-- end generated: nope -->\n")
