"""An MNIST digit (28x28 grey levels) -> an ink layer at photo scale: the alpha (coverage in [0, 1]) of the
strokes a pen, a ballpoint, a marker, a pencil or chalk would lay on the sheet.

Three stroke shapes (``bench/photos.py`` measures each as its own row):

- ``"mnist"``: the digit's own strokes. The 28x28 grey levels are scaled up with Lanczos and cut at a level
  (``threshold``) with a soft edge about one photo pixel wide: a photographed stroke has a crisp edge,
  not the 2-pixel blur of MNIST's anti-aliasing blown up twenty times. The level varies the stroke width a
  little, as pens do.
- ``"pen"`` with a ``width`` in photo pixels: strokes of that width along the digit's centre line
  (a thin ballpoint, a thick marker). The centre line is the morphological thinning (hit-or-miss with the
  eight classic structuring elements, Gonzalez & Woods) of the digit at 4x; the distance to it, scaled up,
  gives strokes of any width with the digit's topology.

Sizes are of the *ink box* (the box of the digit's strokes, not of the 28x28 field): ``height`` photo pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

INK_LEVEL = 0.1  # MNIST grey level that counts as ink when finding the digit's box
PAD = 4  # MNIST pixels of margin kept around the ink box: room for thick strokes and rotation
EDGE_PX = 1.0  # width of a stroke's soft edge in photo pixels (the camera blur comes on top)
THIN_SCALE = 4  # strokes are shaped at 4x MNIST's resolution, then scaled to the photo
SMOOTH_MNIST_PX = 0.5  # Gaussian smoothing of the scaled-up digit, in MNIST pixels
SPUR_PX = 10  # centre-line branches shorter than this (at 4x) are thinning artefacts: pruned


# ---- scaling ----------------------------------------------------------------------------------------------
def ink_box(digit: np.ndarray, level: float = INK_LEVEL) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` (bottom and right exclusive) of the pixels above ``level``."""
    rows = np.flatnonzero((digit > level).any(axis=1))
    cols = np.flatnonzero((digit > level).any(axis=0))
    if rows.size == 0:
        raise ValueError("the digit has no ink (no pixel above %.2f)" % level)
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def cropped(digit: np.ndarray) -> np.ndarray:
    """The digit cut to its ink box with ``PAD`` pixels of zeros around it (float32)."""
    top, bottom, left, right = ink_box(digit)
    return np.pad(digit[top:bottom, left:right].astype(np.float32), PAD)


def resize(field: np.ndarray, width: int, height: int, method=Image.Resampling.LANCZOS) -> np.ndarray:
    """A float field resized to ``width`` x ``height`` by Pillow (mode "F": no 8-bit rounding)."""
    image = Image.fromarray(np.ascontiguousarray(field, dtype=np.float32), mode="F")
    return np.array(image.resize((max(1, width), max(1, height)), method), dtype=np.float32)


def scale_of(digit: np.ndarray, height: float) -> float:
    """Photo pixels per MNIST pixel so that the digit's ink box is ``height`` photo pixels tall."""
    top, bottom, _, _ = ink_box(digit)
    return height / (bottom - top)


# ---- stroke shapes ----------------------------------------------------------------------------------------
def smooth_field(digit: np.ndarray) -> np.ndarray:
    """The cropped digit at ``THIN_SCALE`` x resolution, bicubic then a Gaussian of half an MNIST pixel:
    without it the 28x28 pixel grid shows as wobbly stroke edges once cut at a level."""
    field = cropped(digit)
    big = resize(field, field.shape[1] * THIN_SCALE, field.shape[0] * THIN_SCALE, Image.Resampling.BICUBIC)
    return ndimage.gaussian_filter(big, THIN_SCALE * SMOOTH_MNIST_PX)


def mnist_strokes(digit: np.ndarray, height: float, threshold: float) -> np.ndarray:
    """The digit's own strokes at ``height``: smoothed, scaled up, cut at ``threshold`` with a soft edge.

    Near the cut MNIST's grey level changes by about one level per MNIST pixel, i.e. ``1/scale`` per photo
    pixel, so ``(value - threshold) * scale / EDGE_PX`` crosses 0..1 over about ``EDGE_PX`` photo pixels.
    """
    field = smooth_field(digit)
    scale = scale_of(digit, height) / THIN_SCALE
    big = resize(field, round(field.shape[1] * scale), round(field.shape[0] * scale), Image.Resampling.BICUBIC)
    return np.clip((big - threshold) * scale * THIN_SCALE / EDGE_PX + 0.5, 0.0, 1.0)


THINNING_ELEMENTS = [  # (hits, misses): a boundary pixel that these match is peeled off
    (np.array([[0, 0, 0], [0, 1, 0], [1, 1, 1]]), np.array([[1, 1, 1], [0, 0, 0], [0, 0, 0]])),
    (np.array([[0, 0, 0], [1, 1, 0], [0, 1, 0]]), np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]])),
]


def thinned(mask: np.ndarray, max_rounds: int = 200) -> np.ndarray:
    """Morphological thinning to a one-pixel centre line: peel boundary pixels with the eight rotations
    of ``THINNING_ELEMENTS`` until nothing changes (topology and line ends are kept)."""
    elements = [(np.rot90(hits, k), np.rot90(misses, k)) for hits, misses in THINNING_ELEMENTS for k in range(4)]
    mask = mask.astype(bool).copy()
    for _ in range(max_rounds):
        before = mask.copy()
        for hits, misses in elements:
            mask &= ~ndimage.binary_hit_or_miss(mask, structure1=hits, structure2=misses)
        if np.array_equal(before, mask):
            break
    return mask


def line_ends(line: np.ndarray) -> np.ndarray:
    """Pixels of a one-pixel line with exactly one 8-neighbour on the line."""
    neighbours = ndimage.convolve(line.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant") - line
    return line & (neighbours == 1)


def pruned(line: np.ndarray, length: int = SPUR_PX) -> np.ndarray:
    """The line without branches shorter than ``length`` (Gonzalez & Woods' pruning): peel the ends
    ``length`` times, then regrow the surviving ends along the original line as far."""
    core = line.copy()
    for _ in range(length):
        core &= ~line_ends(core)
    grown = line_ends(core)
    for _ in range(length):
        grown = ndimage.binary_dilation(grown, np.ones((3, 3), bool)) & line
    return core | grown


def centre_line(digit: np.ndarray) -> np.ndarray:
    """The digit's centre line at ``THIN_SCALE`` x MNIST resolution (bool), of the cropped field."""
    mask = smooth_field(digit) > 0.4
    line = pruned(thinned(mask))
    return line if line.any() else mask


def pen_strokes(digit: np.ndarray, height: float, width: float) -> np.ndarray:
    """Strokes ``width`` photo pixels wide along the digit's centre line, the ink box ``height`` tall.

    alpha = clip(width/2 - d + 1/2), d = distance (photo pixels) to the centre line: the distance is taken
    at 4x MNIST resolution, smoothed (else the centre line's pixel steps show as a staircase on the
    stroke's edge) and scaled up (bilinear), so it costs the same for a 40 or a 600 pixel digit.
    """
    line = centre_line(digit)
    distance = ndimage.gaussian_filter(ndimage.distance_transform_edt(~line).astype(np.float32), 1.5)
    scale = scale_of(digit, height) / THIN_SCALE
    big = resize(distance, round(line.shape[1] * scale), round(line.shape[0] * scale), Image.Resampling.BILINEAR)
    big *= scale
    return np.clip(width / 2.0 - big + 0.5, 0.0, 1.0)


# ---- after the shape ---------------------------------------------------------------------------------------
def rotated(alpha: np.ndarray, degrees: float) -> np.ndarray:
    """The ink turned by ``degrees`` (counter-clockwise), the patch grown to hold it."""
    if degrees == 0:
        return alpha
    return np.clip(ndimage.rotate(alpha, degrees, reshape=True, order=1, mode="constant"), 0.0, 1.0)


def grainy(alpha: np.ndarray, grain: float, rng: np.random.Generator) -> np.ndarray:
    """Pencil or chalk: the ink's coverage broken by the paper's tooth: alpha x (1 - grain x u), u a
    slightly smoothed uniform noise in [0, 1]."""
    if grain <= 0:
        return alpha
    noise = ndimage.gaussian_filter(rng.random(alpha.shape, dtype=np.float32), 0.7)
    noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    return alpha * (1.0 - grain * noise)


def blurred(alpha: np.ndarray, sigma: float) -> np.ndarray:
    """Camera blur of the ink (Gaussian, ``sigma`` photo pixels), with room for the spread."""
    if sigma <= 0:
        return alpha
    margin = int(np.ceil(3 * sigma))
    return ndimage.gaussian_filter(np.pad(alpha, margin), sigma)


def box_of(alpha: np.ndarray, level: float = 0.5) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the pixels whose coverage is above ``level`` (the ink box of a patch)."""
    rows = np.flatnonzero((alpha > level).any(axis=1))
    cols = np.flatnonzero((alpha > level).any(axis=0))
    if rows.size == 0:
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)
