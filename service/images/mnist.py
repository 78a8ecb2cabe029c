"""One digit's ink -> a 28x28 MNIST image, made the way MNIST's were (LeCun et al.): the digit's grey levels,
light on black, its box scaled to fit ``BOX`` x ``BOX`` keeping the aspect ratio (anti-aliased), then placed
in a 28x28 field with its centre of mass at the centre.

Before that, what a pen, a pencil or a marker changes and MNIST's writers did not:

- **contrast**: the ink map's level of the digit's own strokes (its ``STRONG_PERCENTILE``) becomes 1, so a
  pencil's grey is as bright as a pen's black;
- **stroke width**: MNIST's strokes are ``MNIST_STROKE`` of the digit's extent (measured on MNIST's training
  digits, 2 x area / boundary at half intensity). The digit is first drawn at ``STROKE_SIDE`` pixels and its
  stroke measured the same way; a ballpoint's thinner stroke is thickened and a marker's thicker one thinned
  (a grey-level dilation or erosion by a disk) to MNIST's before the final scaling, never so far that a
  thinner part of a stroke vanishes or a loop closes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

FIELD = 28  # output side
BOX = 20  # the digit is scaled to fit this box
CENTRE = 14.0  # MNIST's mean centre of mass (row and column index) is 14.0
STRONG_PERCENTILE = 90  # of the ink on the digit's strokes: becomes 1
MNIST_STROKE = 0.143  # MNIST's median stroke width over the digit's larger extent
STROKE_TOLERANCE = (0.7, 1.45)  # a stroke within these multiples of MNIST's is left alone
STROKE_SIDE = 64  # the larger extent at which the stroke width is measured and changed


def digit_image(ink: np.ndarray, owned: np.ndarray) -> np.ndarray:
    """The 28x28 float32 image in [0, 1] of the ink in a digit's box; ``owned``: which pixels of the box belong
    to the digit (its marks, slightly widened)."""
    patch = np.where(owned, ink, 0.0).astype(np.float32)
    strong = patch[owned & (patch > 0)]
    level = float(np.percentile(strong, STRONG_PERCENTILE)) if strong.size else 1.0
    patch = np.clip(patch / max(level, 1e-3), 0.0, 1.0)
    return centre(fit_box(normalise_stroke(crop_to_ink(patch))))


def crop_to_ink(patch: np.ndarray, floor: float = 0.1) -> np.ndarray:
    """The patch cut to the rows and columns holding ink above ``floor``."""
    rows = np.flatnonzero((patch > floor).any(axis=1))
    cols = np.flatnonzero((patch > floor).any(axis=0))
    if rows.size == 0:
        return patch
    return patch[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def stroke_width(patch: np.ndarray) -> float:
    """2 x area / boundary length of the pixels at half intensity or more: a stroke's width in pixels."""
    mask = patch >= 0.5
    boundary = mask & ~ndimage.binary_erosion(mask, border_value=0)
    return 2.0 * mask.sum() / max(boundary.sum(), 1)


def normalise_stroke(patch: np.ndarray) -> np.ndarray:
    """The patch at ``STROKE_SIDE`` pixels on its larger side, its strokes brought to MNIST's width if they are
    outside ``STROKE_TOLERANCE`` of it (a grey-level dilation or erosion by a disk of the missing or surplus
    half-width)."""
    scaled = resize(patch, STROKE_SIDE / max(patch.shape))
    width = stroke_width(scaled)
    target = MNIST_STROKE * STROKE_SIDE
    low, high = STROKE_TOLERANCE
    if low * target <= width <= high * target:
        return scaled
    radius = int(round(abs(target - width) / 2))
    if width > target:
        radius = min(radius, int(width / 3))  # a stroke thinner than the average one must survive
    holes = _holes(scaled)
    while radius >= 1:
        disk = _disk(radius)
        padded = np.pad(scaled, radius + 1)
        changed = ndimage.grey_dilation(padded, footprint=disk) if width < target else \
            ndimage.grey_erosion(padded, footprint=disk)
        if width > target or _holes(changed) >= holes:  # thickening must not close a loop (a small 9's, 6's)
            return crop_to_ink(changed)
        radius -= 1
    return scaled


def _holes(patch: np.ndarray) -> int:
    """How many loops the strokes close (holes of at least 4 pixels in the half-intensity mask)."""
    mask = patch >= 0.5
    holes, count = ndimage.label(ndimage.binary_fill_holes(mask) & ~mask)
    return int((np.bincount(holes.ravel())[1:] >= 4).sum()) if count else 0


def _disk(radius: int) -> np.ndarray:
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius + radius  # a rounder disk than <= r^2 at small radii


def resize(patch: np.ndarray, factor: float) -> np.ndarray:
    """``patch`` scaled by ``factor`` (Lanczos, anti-aliased), clipped to [0, 1]."""
    height, width = patch.shape
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if size == (width, height):
        return patch.astype(np.float32)
    resized = Image.fromarray(patch.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def fit_box(digit: np.ndarray, box: int = BOX) -> np.ndarray:
    """Scale so the longer side is ``box`` pixels, keeping the aspect ratio (anti-aliased)."""
    return resize(digit, box / max(digit.shape))


def centre(patch: np.ndarray, field: int = FIELD) -> np.ndarray:
    """Place ``patch`` in a ``field`` x ``field`` image with its centre of mass at the centre."""
    height, width = patch.shape
    mass = patch.sum()
    if mass > 0:
        rows, cols = np.indices(patch.shape)
        com_row, com_col = (patch * rows).sum() / mass, (patch * cols).sum() / mass
    else:
        com_row, com_col = (height - 1) / 2, (width - 1) / 2
    top = int(np.clip(round(CENTRE - com_row), 0, field - height))
    left = int(np.clip(round(CENTRE - com_col), 0, field - width))
    out = np.zeros((field, field), dtype=np.float32)
    out[top:top + height, left:left + width] = patch
    return out
