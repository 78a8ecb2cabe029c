"""The reliability report is written only when asked (in the default suite: no server needed)."""

from __future__ import annotations

from types import SimpleNamespace

from . import conftest
from .report import REGENERATE, TARGET_VARIABLE, Report, render, report_target, write_if_asked


def a_report() -> Report:
    """A report as two tests would leave it: one passed, one failed, one fault recorded."""
    report = Report()
    report.outcomes = {"tests/reliability/test_soak.py::test_soak_mixed_traffic": ("passed", 12.5),
                       "tests/reliability/test_faults.py::test_worker_killed": ("failed", 3.25)}
    report.requests = {"soak": (1000, 0), "fault: worker killed under load": (500, 3)}
    report.fault("worker killed", "few failures", "3 of 500 requests failed", "next 200 after 1 ms")
    return report


def test_by_default_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert report_target({}) is None
    assert report_target({TARGET_VARIABLE: "  "}) is None
    assert write_if_asked(a_report(), 10.0, environ={}) is None
    assert list(tmp_path.iterdir()) == []


def test_written_where_the_variable_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    environ = {TARGET_VARIABLE: "docs/reliability.md"}
    assert report_target(environ) == tmp_path / "docs" / "reliability.md"
    written = write_if_asked(a_report(), 10.0, environ=environ)
    assert written == tmp_path / "docs" / "reliability.md"
    text = written.read_text()
    assert REGENERATE in text
    assert "tests: 1 failed, 1 passed" in text  # counted from the outcomes, not assumed
    assert "| `test_faults.py::test_worker_killed` | failed | 3.2 |" in text
    assert "| **all** | **1500** | **3** |" in text
    assert "| worker killed | few failures | 3 of 500 requests failed | next 200 after 1 ms |" in text
    assert sorted(p.name for p in written.parent.iterdir()) == ["reliability.md"]  # no temporary file left


def test_not_written_when_no_reliability_test_ran(tmp_path):
    target = tmp_path / "report.md"
    assert write_if_asked(Report(), 1.0, environ={TARGET_VARIABLE: str(target)}) is None
    assert not target.exists()


def test_rendering_leaves_out_what_was_not_measured():
    report = Report()
    report.outcomes = {"tests/reliability/test_fuzz.py::test_a": ("passed", 1.0)}
    text = render(report, 1.0)
    assert "## Summary" not in text and "## Faults" not in text
    assert "| `test_fuzz.py::test_a` | passed | 1.0 |" in text



def test_the_session_hook_writes_only_when_asked(tmp_path, monkeypatch):
    """conftest.pytest_sessionfinish, as pytest calls it at the end of a session, both ways."""
    monkeypatch.setattr(conftest, "REPORT", a_report())
    session = SimpleNamespace(config=SimpleNamespace())
    target = tmp_path / "reliability.md"
    monkeypatch.delenv(TARGET_VARIABLE, raising=False)
    conftest.pytest_sessionfinish(session, 0)
    assert not target.exists()
    monkeypatch.setenv(TARGET_VARIABLE, str(target))
    conftest.pytest_sessionfinish(session, 0)
    assert "tests: 1 failed, 1 passed" in target.read_text()
