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

from .marks import classify, measure

AREA_SIDE = 256  # the area closing runs on the photo reduced to this longer side
LIGHT_AREA = 0.3  # a dark region this large a share of the frame is the light's (a digit's ink: at most ~0.23)
EDGE_AREA, LIGHT_CONTACT = 0.04, 0.25  # ... or this large, along a quarter of a side of the frame (a shadow, a table)
AREA_LEVELS = np.exp(np.linspace(np.log(0.1), np.log(2.0), 48))  # times the median brightness
FAT_STROKE = 0.2  # where the fine closing is this much darker than the coarse one, it sat on a fat stroke
FINE_SHARE = 0.025  # the fine closing's side, of the short side: wider than a pen's stroke on most digits
NARROW_SHARE = 0.06  # the closing's side, of the short side: wider than a pen's stroke, narrow enough to follow
WIDE_SHARE = 0.22  # a shadow's wedge; for fatter strokes (a marker, a digit filling the frame): wider than those
STROKE_MARGIN = 2.5  # a closing this many stroke widths wide erases the stroke
GRID_CELLS = 48  # cells along the longer side in which the sheet's brightness is sampled for the surface
GRID_PERCENTILE = 90  # of a cell's pixels: its paper (ink covers less than 90 % of a cell but in a fat stroke)
FIT_DROP = 0.15  # cells more than this below the surface (in log brightness) are ink or shadow, not the light
POLARITY_SIDE = 192  # the polarity is judged on the photo reduced to this longer side
DARK = 0.02  # grey level added to both sides of a contrast ratio (black is not infinitely darker than 0.01)
LIGHT_EDGE = 0.04  # log-light change per pixel above which the light has an edge (a shadow's: 0.4-1 over a few px)
LIGHT_EDGE_BAND = 3  # pixels either side of such an edge where ink is not trusted
INK_SMOOTHING = 1.0  # Gaussian sigma, pixels, of the ink map
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
    ink, mask, noise = _ink(channel, sheet_light(channel))
    return InkMap(ink, mask, light_on_dark, noise)


def widest_stroke(mask: np.ndarray, ink: np.ndarray) -> float:
    """The stroke width (2 x area / boundary length) of the widest stroke-like mark of the mask, in pixels (0:
    none): a shadow, the sheet's edge or a speck is not a stroke (``marks.classify``)."""
    labels, found = measure(mask, ink)
    classify(found, mask.shape)
    return max((mark.stroke for mark in found if mark.kind == "stroke"), default=0.0)


def sheet_light(channel: np.ndarray) -> np.ndarray:
    """The sheet's light under every pixel, marks erased. Two estimates, each right where the other is not:

    - ``coarse``: an *area closing* (``area_closing``: every dark region too small to be the light's own filled
      to the level of what surrounds it), on the photo reduced to ``AREA_SIDE`` pixels and brought back to full
      size. Right under strokes of any width, wrong by up to one of its levels, and blurred at a hard edge of
      the light (a shadow's) by the reduction;
    - ``fine``: a grey-level closing of side ``FINE_SHARE`` of the short side at full size: exact on the bare
      sheet, along a straight shadow's edge (a closing keeps monotone steps) and under thin strokes, but blind
      to strokes wider than its side.

    The coarse one is taken where the fine one is ``FAT_STROKE`` darker (it sat on a fat stroke, as dark as ink),
    except in a band along the coarse light's own edges; the fine one everywhere else (the coarse one would fill
    the light's shallow dips that are not a shadow's, and its levels show as faint bands)."""
    small, _ = reduced(channel, AREA_SIDE)
    coarse = ndimage.zoom(area_closing(small), (channel.shape[0] / small.shape[0], channel.shape[1] / small.shape[1]),
                          order=1)[:channel.shape[0], :channel.shape[1]]
    coarse = np.maximum(coarse, channel)
    fine = closing(ndimage.gaussian_filter(channel, EDGE_SMOOTHING), odd(FINE_SHARE * min(channel.shape)))
    take_fine = (coarse - fine <= FAT_STROKE * coarse) | light_edges(coarse)
    return np.where(take_fine, fine, coarse)


def area_closing(values: np.ndarray) -> np.ndarray:
    """Each pixel raised to the lowest of ``AREA_LEVELS`` (relative to the median) at which the dark region
    around it (8-connected, below that level) is part of the sheet's light rather than a mark: it covers
    ``LIGHT_AREA`` of the frame, or ``EDGE_AREA`` while following the frame's border for ``LIGHT_CONTACT`` of a
    side (a shadow or a table comes in from the border; a digit is smaller, and touches the border, if at all,
    with the end of a stroke). Paper stays as it is; a stroke, a digit, a speck take the level of the paper or
    the shadow they lie on; a shadow keeps its own."""
    levels = float(np.median(values)) * AREA_LEVELS
    out = np.full(values.shape, levels[-1], np.float32)
    done = np.zeros(values.shape, bool)
    eight = np.ones((3, 3), bool)
    for level in levels:
        labels, count = ndimage.label(values < level, structure=eight)
        if count == 0:
            continue
        areas = np.bincount(labels.ravel(), minlength=count + 1) / values.size
        contact = np.zeros(count + 1)
        for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
            contact = np.maximum(contact, np.bincount(side, minlength=count + 1) / len(side))
        light = (areas >= LIGHT_AREA) | ((areas >= EDGE_AREA) & (contact >= LIGHT_CONTACT))
        light[0] = False
        settled = light[labels] & ~done
        out[settled] = level
        done |= settled
        if done.all():
            break
    return out


def reduced(values: np.ndarray, side: int) -> tuple[np.ndarray, int]:
    """``values`` block-averaged down to at most ``side`` pixels on the longer side, and the factor."""
    factor = max(1, int(np.ceil(max(values.shape) / side)))
    if factor == 1:
        return values, 1
    rows, cols = values.shape[0] // factor * factor, values.shape[1] // factor * factor
    return values[:rows, :cols].reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3)), factor


def _ink(flat: np.ndarray, light: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(ink, mask, noise)`` of the flattened photo against the sheet's ``light``."""
    light = np.maximum(light, FLOOR * float(np.percentile(light, 95)) + 1e-6)
    # smoothed: a pencil's or chalk's grain breaks a stroke into specks, a blur joins them again
    signed = ndimage.gaussian_filter((light - flat) / light, INK_SMOOTHING)
    ink = np.clip(signed, 0.0, 1.0).astype(np.float32)
    noise, level = robust_spread(signed)
    high = level + max(HIGH * noise, MIN_HIGH)
    low = level + max(LOW * noise, MIN_LOW)
    return ink, hysteresis(ink, low, high), noise


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
