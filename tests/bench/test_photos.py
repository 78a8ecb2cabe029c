"""The photo generator (bench/photo_*.py): reproducible, and each condition visibly does what it says."""

from __future__ import annotations

import numpy as np
import pytest

from bench import photo_sheets as sheets


@pytest.fixture(scope="module")
def digits():
    """A few MNIST-like digits drawn by hand (no data files needed): a '1', a '0' and a '7'."""
    one = np.zeros((28, 28), np.float32)
    one[5:23, 13:16] = 1.0
    zero = np.zeros((28, 28), np.float32)
    rows, cols = np.indices((28, 28))
    radius = np.sqrt(((rows - 14) / 9.0) ** 2 + ((cols - 14) / 6.0) ** 2)
    zero[(radius > 0.75) & (radius < 1.05)] = 1.0
    seven = np.zeros((28, 28), np.float32)
    seven[5:8, 7:21] = 1.0
    for row in range(8, 23):
        seven[row, 19 - (row - 8) // 2:22 - (row - 8) // 2] = 1.0
    return [one, zero, seven]


def test_the_same_seed_gives_the_same_bytes_and_another_seed_differs(digits):
    first = sheets.render_digit(digits[2], "plain", np.random.default_rng([0, 1]))
    again = sheets.render_digit(digits[2], "plain", np.random.default_rng([0, 1]))
    other = sheets.render_digit(digits[2], "plain", np.random.default_rng([0, 2]))
    assert first == again
    assert first != other
    assert first[:3] == b"\xff\xd8\xff"  # a JPEG
