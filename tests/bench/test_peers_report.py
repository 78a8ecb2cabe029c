"""bench/peers_report.py: medians and spreads per server, flags for failed requests, ours against the best
framework peer within each repeat, as Markdown and as text."""

from __future__ import annotations

import json

import pytest

from bench.peers_load import Level
from bench.peers_report import Column, ours_vs_best_peer, render_report, report_tables, summarise, summary_of_present


# ---- the report ----------------------------------------------------------------------------------------
C8, B64 = Level(1, 8), Level(64, 8)


def run(rps8: float, rps64: float, cpu: float, pss: float, flagged8: bool = False) -> dict:
    return {"status": "measured", "pss_mib": pss, "levels": {
        C8.name: {"rps": rps8, "p50_ms": 1000 / rps8, "p99_ms": 3000 / rps8, "cpu_ms_per_request": cpu,
                  "flagged": flagged8},
        B64.name: {"rps": rps64, "p50_ms": 1000 / rps64, "p99_ms": 2000 / rps64, "cpu_ms_per_request": None,
                   "flagged": False}}}


RESULTS = {
    "ours": [run(1000, 100, 1.0, 700), run(1200, 120, 1.2, 710), run(1100, 110, 1.1, 720)],
    "baseline": [run(5000, 500, 0.1, 10)] * 3,  # the tutorial baseline is not a peer
    "kserve": [run(500, 50, 2.0, 900), run(800, 40, 2.0, 900), run(2000, 80, 2.0, 900, flagged8=True)],
    "litserve": [run(400, 100, 4.0, 1400), run(600, 60, 4.0, 1400), run(550, 55, 4.0, 1400)],
    "mlflow": [{"status": "gate failed", "levels": {}}] * 3,
}


def column(table: str, label: str) -> Column:
    return next(c for c in dict(report_tables([C8, B64]))[table] if c.label == label)


def test_cells_are_median_and_spread_with_flags():
    rows = summarise(RESULTS, [column("requests/s", C8.name), column("requests/s", B64.name)])
    assert rows["ours"] == ["1100.0 (1000.0-1200.0)", "110.0 (100.0-120.0)"]
    assert rows["kserve"][0] == "800.0 (500.0-2000.0)!"  # one repeat had failed requests
    assert rows["baseline"][0] == "5000.0"  # no spread
    assert rows["mlflow"] == ["gate failed", ""]


def test_ratio_is_ours_over_the_best_peer_within_each_repeat():
    stats, names = ours_vs_best_peer(RESULTS, column("requests/s", C8.name))
    # repeat 1: 1000/500 (kserve); 2: 1200/800 (kserve); 3: kserve's level flagged, so 1100/550 (litserve)
    assert stats == {"median": 2.0, "min": 1.5, "max": 2.0} and names == ["kserve", "litserve"]
    stats, names = ours_vs_best_peer(RESULTS, column("resources", "PSS MiB after load"))
    assert stats == pytest.approx({"median": 710 / 900, "min": 700 / 900, "max": 720 / 900})  # lower wins
    assert names == ["kserve"]
    stats, _ = ours_vs_best_peer(RESULTS, column("resources", "CPU ms/request (1 img c=8)"))
    # 1.0/2.0, 1.2/2.0, and 1.1/4.0: kserve flagged
    assert stats == pytest.approx({"median": 0.5, "min": 1.1 / 4.0, "max": 0.6})


def test_markdown_and_text_tables():
    markdown = render_report(RESULTS, [C8, B64], markdown=True)
    assert "| server | 1 img c=8 | 64 img c=8 |" in markdown
    assert "| ours / best peer | 2.00 (1.50-2.00) vs kserve/litserve |" in markdown
    assert "| mlflow | gate failed |  |" in markdown
    text = render_report(RESULTS, [C8, B64], markdown=False)
    assert text.splitlines()[0] == "requests/s" and "ours / best peer" in text and "|" not in text


def test_summary_skips_missing_figures_and_raw_figures_are_json():
    assert summary_of_present([3.0, None, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert summary_of_present([None]) is None
    json.dumps(RESULTS)
