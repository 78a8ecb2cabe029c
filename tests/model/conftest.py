"""Helpers shared by the Keras-mirror tests (tests/model/test_keras_*.py).

- ``mirror_report``: tests record the largest differences they observed; the lines are printed in a
  "Keras mirror: observed differences" section at the end of the run (the tolerances in the tests
  are then visibly justified, and drift shows before it fails).
- ``train_batches``: real MNIST training batches of 128, in file order.
- ``gradient_sequence``: 50 sets of real gradients of MNIST batches, taken along a NumPy Adam
  trajectory from ``NumpyNetwork(seed=0)`` so that they change as in training.
- ``max_abs_diff``, ``check``: comparisons that cannot pass on NaN (``not (diff <= tol)``).
- ``near_zero_hidden``: whether a batch puts a hidden pre-activation within 1e-5 of zero.
"""

from __future__ import annotations

import numpy as np
import pytest

BATCH = 128
NEAR_ZERO = 1e-5

_REPORT: list[str] = []


@pytest.fixture(scope="session")
def mirror_report():
    return _REPORT.append


def pytest_terminal_summary(terminalreporter):
    if _REPORT:
        terminalreporter.section("Keras mirror: observed differences")
        for line in _REPORT:
            terminalreporter.write_line(line)


def max_abs_diff(a, b) -> float:
    """Largest ``|a - b|`` over lists of arrays (NaN if any element is NaN)."""
    diffs = [np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))) for x, y in zip(a, b)]
    return float(np.max(diffs))


def relative_error(a, b) -> float:
    """``|a - b| / (|a| + |b|)`` in the Frobenius norm (as in test_numpy_network.py)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-30))


def check(value: float, tol: float, what: str) -> None:
    """``value <= tol``, written so that NaN fails."""
    if not (value <= tol):
        pytest.fail(f"{what}: {value:.3e} exceeds {tol:.0e}")


def near_zero_hidden(net, x, tol=NEAR_ZERO) -> bool:
    """True if some hidden pre-activation of ``net`` on ``x`` lies within ``tol`` of zero."""
    zs, _ = net._forward(np.asarray(x, net.dtype))
    return any(bool((np.abs(z) < tol).any()) for z in zs[:-1])


@pytest.fixture(scope="session")
def train_batches(mnist):
    """``[(x, y), ...]``: 200 real MNIST training batches of 128, in file order."""
    (x, y), _ = mnist
    n = 200
    return [(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]) for i in range(n)]


@pytest.fixture(scope="session")
def gradient_sequence(train_batches):
    """``(start_weights, [grads_1 .. grads_50])``: real gradients of 50 MNIST batches along a NumPy
    Adam(1e-3) trajectory from ``NumpyNetwork(seed=0)``."""
    from model import numpy_optimizers
    from model.numpy_network import NumpyNetwork

    net = NumpyNetwork(seed=0)
    start = net.get_weights()
    optimizer = numpy_optimizers.Adam(1e-3)
    sequence = []
    for x, y in train_batches[:50]:
        _, grads = net.loss_and_gradients(x, y)
        sequence.append(grads)
        optimizer.step(net.params, grads)
    return start, sequence
