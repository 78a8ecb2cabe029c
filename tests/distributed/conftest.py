"""The distributed tests' report: the largest differences observed per optimizer and mode, printed at
the end of the run (so that the tolerances are visibly justified, and drift shows before it fails)."""

import pytest

_REPORT: list[str] = []


@pytest.fixture(scope="session")
def distributed_report():
    return _REPORT.append


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section("tf.distribute: observed differences and timings")
        for line in _REPORT:
            terminalreporter.write_line(line)
