"""The data of one training epoch: a seeded shuffle plus light augmentation (random shifts).

Shifting each digit by up to ``max_shift`` pixels in x and y is the cheapest augmentation that helps
an MLP on MNIST (it has no translation invariance of its own): with a cosine learning-rate schedule
it is what takes the 784-128-64-10 network from about 97.9 % to about 98.5 % test accuracy.

Everything is a pure function of ``(seed, epoch)``, so an interrupted run resumed at epoch ``e`` sees
exactly the data an uninterrupted run saw, and both training engines see the same batches.
"""

from __future__ import annotations

import numpy as np

from training.data import IMAGE_SIDE


def random_shift(x: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each row of ``x`` (n, 784), seen as a 28x28 image, moved by (dy, dx) in [-max_shift, max_shift],
    filling with zeros (the MNIST background). Vectorised: one copy per distinct offset."""
    if max_shift <= 0:
        return x
    count = x.shape[0]
    images = x.reshape(count, IMAGE_SIDE, IMAGE_SIDE)
    pad = max_shift  # zeros around each image, so that every shifted window stays inside
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
    shift_y = rng.integers(-max_shift, max_shift + 1, count)
    shift_x = rng.integers(-max_shift, max_shift + 1, count)
    out = np.empty_like(images)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            rows = np.flatnonzero((shift_y == dy) & (shift_x == dx))
            out[rows] = padded[rows, pad - dy:pad - dy + IMAGE_SIDE, pad - dx:pad - dx + IMAGE_SIDE]
    return out.reshape(count, IMAGE_SIDE * IMAGE_SIDE)


def epoch_data(x: np.ndarray, y: np.ndarray, epoch: int, seed: int, max_shift: int = 0):
    """``(x, y)`` for epoch ``epoch`` (0-based): shuffled and shifted with a generator seeded by
    ``(seed, epoch)``. Images must be 28x28 (784 columns) when ``max_shift > 0``."""
    rng = np.random.default_rng((seed, epoch))
    order = rng.permutation(x.shape[0])
    x, y = x[order], y[order]
    if max_shift > 0:
        if x.shape[1] != IMAGE_SIDE * IMAGE_SIDE:
            raise ValueError(f"shift augmentation needs 28x28 images (784 columns), got {x.shape[1]}")
        x = random_shift(x, max_shift, rng)
    return x, y
