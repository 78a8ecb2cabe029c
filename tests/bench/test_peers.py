"""bench/peers.py without servers, network or wrk: levels, wrk's Lua JSON, /proc accounting, the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench import peers
from bench.peers import Level, ProcStat


# ---- levels --------------------------------------------------------------------------------------------
def test_levels_are_images_per_request_and_connections():
    assert peers.parse_levels("1:1, 1:8,64:8") == [Level(1, 1), Level(1, 8), Level(64, 8)]
    assert Level(64, 8).name == "64 img c=8"
    for bad in ("0:8", "1:0", "8", "a:b"):
        with pytest.raises(ValueError):
            peers.parse_levels(bad)


# ---- wrk -----------------------------------------------------------------------------------------------
WRK_STDOUT = """Running 3s test @ http://127.0.0.1:4242/predict
  1 threads and 8 connections
  Latency Distribution
     50%    4.33ms
  4462 requests in 3.00s, 3.1MB read
Requests/sec:   1487.33
WRK_JSON {"requests":4462,"duration_us":3000000,"bytes":3250000,"connect_errors":0,"read_errors":0,\
"write_errors":0,"timeouts":0,"non_2xx":0,"latency_us":{"mean":5012.5,"p50":4330,"p90":8000,"p99":13860,\
"max":20123}}
"""


def test_wrk_json_gives_rate_latencies_and_no_flag():
    figures = peers.parse_wrk_json(WRK_STDOUT)
    assert figures["requests"] == 4462 and figures["seconds"] == 3.0
    assert figures["rps"] == pytest.approx(4462 / 3)
    assert (figures["p50_ms"], figures["p99_ms"], figures["max_ms"]) == (4.33, 13.86, 20.123)
    assert figures["non_2xx"] == 0 and figures["socket_errors"] == 0 and not figures["flagged"]


def test_wrk_errors_flag_the_level():
    stdout = WRK_STDOUT.replace('"read_errors":0', '"read_errors":2').replace('"timeouts":0', '"timeouts":1')
    figures = peers.parse_wrk_json(stdout)
    assert figures["socket_errors"] == 3 and figures["flagged"]
    figures = peers.parse_wrk_json(WRK_STDOUT.replace('"non_2xx":0', '"non_2xx":5'))
    assert figures["non_2xx"] == 5 and figures["flagged"]


def test_wrk_output_without_the_json_line_is_an_error():
    with pytest.raises(ValueError, match="WRK_JSON"):
        peers.parse_wrk_json("Running 3s test\nRequests/sec: 12\n")


def test_lua_script_sets_the_request_and_prints_json(tmp_path):
    body = tmp_path / "kserve-64.json"
    script = peers.LUA_TEMPLATE.format(name="kserve", path="/v1/models/mnist:predict", batch=64, body=body)
    assert 'wrk.method = "POST"' in script and 'wrk.headers["Content-Type"] = "application/json"' in script
    assert f'io.open("{body}", "rb")' in script
    # done()'s format string, filled in as Lua's string.format would, is the line parse_wrk_json reads
    call = script.split("string.format(", 1)[1].split("summary.requests")[0]
    pattern = "".join(re.findall(r"'([^']*)'", call)).replace("\\n", "\n")
    line = pattern % (10, 2e6, 999, 0, 1, 0, 0, 3, 1234.5, 1000, 2000, 3000, 4000)
    figures = peers.parse_wrk_json(line)
    assert figures["rps"] == 5.0 and figures["p99_ms"] == 3.0 and figures["mean_ms"] == 1.2345
    assert figures["socket_errors"] == 1 and figures["non_2xx"] == 3


# ---- /proc: CPU time and memory ------------------------------------------------------------------------
def stat_line(pid: int, ppid: int, utime: int, stime: int = 0, cutime: int = 0, cstime: int = 0,
              start: int = 100, comm: str = "python") -> str:
    """A /proc/PID/stat line with the fields parse_stat reads (the others zero)."""
    fields = ["S", ppid] + [0] * 9 + [utime, stime, cutime, cstime, 20, 0, 1, 0, start, 0, 0]
    return f"{pid} ({comm}) " + " ".join(map(str, fields)) + "\n"


def fake_proc(root: Path, lines: dict[int, str], pss_kib: dict[int, int] | None = None) -> Path:
    """A folder laid out like /proc: PID/stat and PID/smaps_rollup."""
    for pid, line in lines.items():
        (root / str(pid)).mkdir(parents=True)
        (root / str(pid) / "stat").write_text(line)
        if pss_kib and pid in pss_kib:
            (root / str(pid) / "smaps_rollup").write_text(
                f"00400000-7fff [rollup]\nRss:  {pss_kib[pid] * 2} kB\nPss:  {pss_kib[pid]} kB\n"
                f"Pss_Anon:  1 kB\n")
    (root / "self").mkdir(exist_ok=True)  # not a pid: skipped
    return root


def test_stat_with_spaces_and_parentheses_in_the_name():
    stat = peers.parse_stat(stat_line(42, 7, utime=5, stime=6, cutime=7, cstime=8, start=999,
                                      comm="uvicorn (worker) 1"))
    assert stat == ProcStat(pid=42, ppid=7, start=999, ticks=26)


def test_process_tree_is_the_root_and_its_descendants(tmp_path):
    root = fake_proc(tmp_path, {1: stat_line(1, 0, 1), 10: stat_line(10, 1, 1), 11: stat_line(11, 10, 1),
                                12: stat_line(12, 11, 1), 20: stat_line(20, 1, 1)})
    tree = peers.process_tree(peers.read_procs(root), 10)
    assert sorted(pid for pid, _ in tree) == [10, 11, 12]
    assert peers.process_tree(peers.read_procs(root), 99) == {}


def tree_of(*stats: ProcStat) -> dict:
    return {stat.key: stat for stat in stats}


def test_cpu_of_processes_that_stay_start_and_end():
    before = tree_of(ProcStat(10, 1, 100, 50),   # the server: stays
                     ProcStat(11, 10, 100, 30),  # a worker: stays
                     ProcStat(12, 10, 100, 20),  # a worker that ends, reaped by 10
                     ProcStat(14, 13, 100, 9))   # ends, and its parent 13 is gone: nothing carries it
    after = tree_of(ProcStat(10, 1, 100, 50 + 5 + 20 + 4),  # 5 of its own; 24 of 12 (20 before + 4)
                    ProcStat(11, 10, 100, 30 + 7),
                    ProcStat(15, 10, 200, 3))                # started in between: counts whole
    assert peers.tree_cpu_ticks(before, after) == 5 + 4 + 7 + 3


def test_a_reused_pid_is_another_process():
    before = tree_of(ProcStat(10, 1, 100, 50), ProcStat(11, 10, 100, 40))
    after = tree_of(ProcStat(10, 1, 100, 50 + 40 + 2), ProcStat(11, 10, 300, 6))  # 11 ended, reaped; a new 11
    assert peers.tree_cpu_ticks(before, after) == 2 + 6


def test_pss_is_summed_over_the_processes_in_mib(tmp_path):
    root = fake_proc(tmp_path, {10: stat_line(10, 1, 0), 11: stat_line(11, 10, 0)},
                     pss_kib={10: 1024, 11: 3072})
    assert peers.parse_pss_kib((root / "10" / "smaps_rollup").read_text()) == 1024
    assert peers.parse_pss_kib("Rss: 5 kB\n") == 0
    assert peers.tree_pss_mib([10, 11, 99], root) == 4.0  # 99 has ended: skipped


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


def column(table: str, label: str) -> peers.Column:
    return next(c for c in dict(peers.report_tables([C8, B64]))[table] if c.label == label)


def test_cells_are_median_and_spread_with_flags():
    rows = peers.summarise(RESULTS, [column("requests/s", C8.name), column("requests/s", B64.name)])
    assert rows["ours"] == ["1100.0 (1000.0-1200.0)", "110.0 (100.0-120.0)"]
    assert rows["kserve"][0] == "800.0 (500.0-2000.0)!"  # one repeat had failed requests
    assert rows["baseline"][0] == "5000.0"  # no spread
    assert rows["mlflow"] == ["gate failed", ""]


def test_ratio_is_ours_over_the_best_peer_within_each_repeat():
    stats, names = peers.ours_vs_best_peer(RESULTS, column("requests/s", C8.name))
    # repeat 1: 1000/500 (kserve); 2: 1200/800 (kserve); 3: kserve's level flagged, so 1100/550 (litserve)
    assert stats == {"median": 2.0, "min": 1.5, "max": 2.0} and names == ["kserve", "litserve"]
    stats, names = peers.ours_vs_best_peer(RESULTS, column("resources", "PSS MiB after load"))
    assert stats == pytest.approx({"median": 710 / 900, "min": 700 / 900, "max": 720 / 900})  # lower wins
    assert names == ["kserve"]
    stats, _ = peers.ours_vs_best_peer(RESULTS, column("resources", "CPU ms/request (1 img c=8)"))
    # 1.0/2.0, 1.2/2.0, and 1.1/4.0: kserve flagged
    assert stats == pytest.approx({"median": 0.5, "min": 1.1 / 4.0, "max": 0.6})


def test_markdown_and_text_tables():
    markdown = peers.render_report(RESULTS, [C8, B64], markdown=True)
    assert "| server | 1 img c=8 | 64 img c=8 |" in markdown
    assert "| ours / best peer | 2.00 (1.50-2.00) vs kserve/litserve |" in markdown
    assert "| mlflow | gate failed |  |" in markdown
    text = peers.render_report(RESULTS, [C8, B64], markdown=False)
    assert text.splitlines()[0] == "requests/s" and "ours / best peer" in text and "|" not in text


def test_summary_skips_missing_figures_and_raw_figures_are_json():
    assert peers.summary_of_present([3.0, None, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert peers.summary_of_present([None]) is None
    json.dumps(RESULTS)


def test_a_pin_change_makes_another_venv_folder(tmp_path):
    requirements = tmp_path / "requirements-kserve.txt"
    requirements.write_text("kserve==0.21.0\n")
    first = peers.venv_dir(requirements, tmp_path / "cache")
    requirements.write_text("kserve==0.20.0\n")
    second = peers.venv_dir(requirements, tmp_path / "cache")
    assert first.name.startswith("kserve-") and first != second and first.parent == tmp_path / "cache"


def test_the_newest_version_is_the_newest_the_service_would_serve(tmp_path):
    for name in ("1", "2", "10", "07", ".tmp-11-x"):
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a version")
    assert peers.newest_version(tmp_path) == tmp_path / "10"
    assert peers.newest_version(tmp_path / "missing") is None
