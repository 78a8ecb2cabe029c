"""A photo of a sheet -> its *ink map*: how much ink each pixel holds, 0 (bare sheet) to 1, whatever the light.

1. **Polarity.** Dark ink on a light sheet, or light ink (chalk, a white-on-black drawing) on a dark one:
   the side whose extreme departs further from the photo's median brightness (``is_light_on_dark``). From
   then on a light-on-dark photo is handled inverted, as dark ink on a light sheet.
2. **The ink channel.** The darkest of R, G, B (the lightest, inverted, for light ink): blue, red and black
   ink all absorb strongly in at least one channel, while white or grey paper is light in all three.
3. **The sheet's light** (``background``): a grey-level *closing* (a maximum filter, then a minimum filter,
   of side ``k``) erases every dark mark narrower than ``k`` and keeps the paper's brightness, gradients,
   vignetting and the straight edge of a hard shadow as they are (a closing leaves monotone steps alone).
   ``k`` is ``CLOSING_SHARE`` of the short side: wider than a marker's stroke on a digit that fills the frame.
4. **Ink** = ``(background - channel) / background``: dividing by the light makes a stroke in a shadow or a
   dim corner as strong as one in full light (Beer-Lambert: ink lets through a share of the light).
5. **Mask**: hysteresis thresholds above the noise (``HIGH``/``LOW`` noise deviations, at least
   ``MIN_HIGH``/``MIN_LOW`` of ink): pixels clearly ink, and the fainter pixels connected to them (a pencil
   stroke's grainy edge, a thin line's blurred edge), nothing isolated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

CLOSING_SHARE = 0.22  # the wide closing's side, of the short side: wider than any stroke of a digit that fits
NARROW_SHARE = 0.06  # the narrow closing's: wider than a pen's stroke, narrow enough to follow a shadow's wedge
GRID_CELLS = 48  # cells along the longer side in which the sheet's brightness is sampled for the surface
GRID_PERCENTILE = 90  # of a cell's pixels: its paper (ink covers less than 90 % of a cell but in a fat stroke)
FIT_DROP = 0.15  # cells more than this below the surface (in log brightness) are ink or shadow, not the light
POLARITY_SIDE = 192  # the polarity is judged on the photo reduced to this longer side
DARK = 0.02  # grey level added to both sides of a contrast ratio (black is not infinitely darker than 0.01)
LIGHT_EDGE = 0.04  # log-light change per pixel above which the light has an edge (a shadow's: 0.4-1 over a few px)
LIGHT_EDGE_BAND = 3  # pixels either side of such an edge where ink is not trusted
EDGE_SMOOTHING = 1.5  # Gaussian sigma, pixels, of the photo the light is estimated from
FLOOR = 0.2  # the light is never taken below this share of the brightest sheet (noise in near-black areas)
HIGH, LOW = 7.0, 3.5  # hysteresis thresholds, in noise standard deviations above the sheet
MIN_HIGH, MIN_LOW = 0.14, 0.07  # ... and at least this much ink


@dataclass
class InkMap:
    """``ink``: float32 (rows, cols) in [0, 1]; ``mask``: bool, the pixels taken as ink; ``light_on_dark``:
    the polarity found; ``noise``: the standard deviation of ``ink`` on the bare sheet."""

    ink: np.ndarray
    mask: np.ndarray
    light_on_dark: bool
    noise: float


def ink_map(rgb: np.ndarray) -> InkMap:
    """The ink map of an RGB photo (float32 in [0, 1]) and its mask (see the module docstring)."""
    light_on_dark = is_light_on_dark(rgb)
    channel = 1.0 - rgb.max(axis=2) if light_on_dark else rgb.min(axis=2)
    smooth = smooth_light(channel)
    flat = channel / smooth
    wide, wide_mask, _, wide_light = _ink(flat, CLOSING_SHARE)
    ink, mask, noise, _ = _ink(flat, NARROW_SHARE)
    mask &= ~light_edges(wide_light)
    inside = wide_mask & ndimage.binary_fill_holes(mask) & ~mask  # a fat stroke's middle, ringed by its edges
    ink[inside] = wide[inside]
    return InkMap(ink, mask | inside, light_on_dark, noise)


def _ink(flat: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """``(ink, mask, noise, light)`` against the light of a closing of side ``share`` of the short side."""
    # the light from a lightly smoothed photo: noise makes a hard shadow's edge jagged, and a closing fills the
    # jags on its dark side, which would leave a thin false stroke along every such edge
    light = closing(ndimage.gaussian_filter(flat, EDGE_SMOOTHING), odd(share * min(flat.shape)))
    light = np.maximum(light, FLOOR * float(np.percentile(light, 95)) + 1e-6)
    signed = (light - flat) / light
    ink = np.clip(signed, 0.0, 1.0).astype(np.float32)
    noise, level = robust_spread(signed)
    high = level + max(HIGH * noise, MIN_HIGH)
    low = level + max(LOW * noise, MIN_LOW)
    return ink, hysteresis(ink, low, high), noise, light


def light_edges(light: np.ndarray) -> np.ndarray:
    """Where the light itself changes abruptly (a hard shadow's or the sheet's edge): a band around the pixels
    whose log-light gradient exceeds ``LIGHT_EDGE`` per pixel. Ink found there is the edge's jaggedness, not a
    stroke (the light under a stroke is smooth: the closing erased the stroke)."""
    log_light = np.log(light)
    gradient = np.hypot(ndimage.sobel(log_light, axis=0), ndimage.sobel(log_light, axis=1)) / 8.0
    return ndimage.binary_dilation(gradient > LIGHT_EDGE, iterations=LIGHT_EDGE_BAND)


def closing(flat: np.ndarray, side: int) -> np.ndarray:
    """A grey-level closing of side ``side`` of the photo extended beyond its borders by point reflection
    (``2 f(edge) - f(mirror)``), so that a closing near a border does not take the light of the inside for
    the light there."""
    pad = side // 2 + 1
    extended = np.pad(flat, pad, mode="reflect", reflect_type="odd")
    closed = ndimage.grey_closing(np.clip(extended, 0.0, 2.0), size=(side, side), mode="nearest")
    return closed[pad:-pad, pad:-pad]


def smooth_light(channel: np.ndarray) -> np.ndarray:
    """A quadratic surface ``exp(a + b x + c y + d x^2 + e x y + f y^2)`` fitted to the sheet's brightness: to the
    logarithm of the ``GRID_PERCENTILE`` of each of about ``GRID_CELLS`` cells along the longer side (the paper
    between the strokes), by least squares, twice more without the cells far below the fit (ink, shadow)."""
    rows, cols = channel.shape
    cell = max(1, max(rows, cols) // GRID_CELLS)
    grid_rows, grid_cols = rows // cell, cols // cell
    if grid_rows < 3 or grid_cols < 3:
        return np.full_like(channel, max(float(np.percentile(channel, GRID_PERCENTILE)), 1e-3))
    blocks = channel[:grid_rows * cell, :grid_cols * cell].reshape(grid_rows, cell, grid_cols, cell)
    values = np.percentile(blocks.transpose(0, 2, 1, 3).reshape(grid_rows, grid_cols, -1), GRID_PERCENTILE, axis=2)
    y, x = np.mgrid[0:grid_rows, 0:grid_cols]
    x, y = (x.ravel() + 0.5) * cell / cols - 0.5, (y.ravel() + 0.5) * cell / rows - 0.5
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    target = np.log(np.maximum(values.ravel(), 1e-3))
    keep = np.ones(len(target), bool)
    for _ in range(3):
        coefficients = np.linalg.lstsq(design[keep], target[keep], rcond=None)[0]
        keep = target > design @ coefficients - FIT_DROP
        if keep.sum() < 6:
            break
    xs = (np.arange(cols) + 0.5) / cols - 0.5
    ys = (np.arange(rows) + 0.5) / rows - 0.5
    a, b, c, d, e, f = coefficients
    surface = a + b * xs[None, :] + c * ys[:, None] + d * xs[None, :] ** 2 + e * ys[:, None] * xs[None, :] \
        + f * ys[:, None] ** 2
    return np.exp(surface).astype(np.float32)


def is_light_on_dark(rgb: np.ndarray) -> bool:
    """True if the photo's extreme pixels are lighter than its bulk (chalk, light ink on black), False if they
    are darker (ink on paper): the sheet is most of the photo, so its median is the sheet's brightness, and ink
    lets through a share of the light, so contrast is a ratio: ``max / median`` against ``median / min`` of
    the reduced, lightly smoothed grey levels (``DARK`` keeps the ratios finite)."""
    grey = ndimage.gaussian_filter(reduced_grey(rgb, POLARITY_SIDE), 1.0)
    median = float(np.median(grey))
    lighter = (float(grey.max()) + DARK) / (median + DARK)
    darker = (median + DARK) / (float(grey.min()) + DARK)
    return lighter > darker


def reduced_grey(rgb: np.ndarray, side: int) -> np.ndarray:
    """The mean of R, G and B, block-averaged down to at most ``side`` pixels on the longer side."""
    grey = rgb.mean(axis=2)
    factor = max(1, int(np.ceil(max(grey.shape) / side)))
    if factor == 1:
        return grey
    rows, cols = grey.shape[0] // factor * factor, grey.shape[1] // factor * factor
    if rows == 0 or cols == 0:
        return grey
    return grey[:rows, :cols].reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3))


def robust_spread(values: np.ndarray) -> tuple[float, float]:
    """``(sigma, median)`` of ``values`` by the median absolute deviation (1.4826 MAD): the sheet's noise,
    untouched by the few pixels of ink. Taken on at most ~250,000 evenly spread pixels."""
    flat = values.reshape(-1)
    flat = flat[::max(1, flat.size // 250_000)]
    median = float(np.median(flat))
    return 1.4826 * float(np.median(np.abs(flat - median))), median


def hysteresis(ink: np.ndarray, low: float, high: float) -> np.ndarray:
    """The pixels above ``low`` that are connected (8-neighbourhood) to a pixel above ``high``."""
    weak = ink > low
    labels, count = ndimage.label(weak, structure=np.ones((3, 3), bool))
    if count == 0:
        return weak
    strong = np.zeros(count + 1, bool)
    strong[np.unique(labels[ink > high])] = True
    strong[0] = False
    return strong[labels]


def odd(value: float) -> int:
    """The odd integer nearest ``value``, at least 3 (a filter centred on its pixel)."""
    return max(3, int(round(value)) // 2 * 2 + 1)
