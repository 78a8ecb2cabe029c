"""The distributed tests' report: the largest differences observed per optimizer and mode, printed at
the end of the run (so that the tolerances are visibly justified, and drift shows before it fails)."""

import pytest

from tests.support import EndOfRunReport

REPORT = EndOfRunReport("tf.distribute: observed differences and timings")


@pytest.fixture(scope="session")
def distributed_report():
    return REPORT.add


def pytest_terminal_summary(terminalreporter):
    REPORT.print_to(terminalreporter)
