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

CLOSING_SHARE = 0.3  # the closing's side, of the short side: wider than any stroke of a digit that fits the frame
POLARITY_SIDE = 192  # the polarity is judged on the photo reduced to this longer side
DARK = 0.02  # grey level added to both sides of a contrast ratio (black is not infinitely darker than 0.01)
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
    """The ink map of an RGB photo (float32 in [0, 1])."""
    light_on_dark = is_light_on_dark(rgb)
    channel = 1.0 - rgb.max(axis=2) if light_on_dark else rgb.min(axis=2)
    light = sheet_light(channel)
    light = np.maximum(light, FLOOR * float(np.percentile(light, 95)) + 1e-6)
    signed = (light - channel) / light
    ink = np.clip(signed, 0.0, 1.0).astype(np.float32)
    noise, level = robust_spread(signed)
    high = level + max(HIGH * noise, MIN_HIGH)
    low = level + max(LOW * noise, MIN_LOW)
    return InkMap(ink, hysteresis(ink, low, high), light_on_dark, noise)


def sheet_light(channel: np.ndarray) -> np.ndarray:
    """The sheet's brightness under every pixel, marks erased: a grey-level closing of side ``CLOSING_SHARE``
    of the short side. The photo is first extended beyond its borders by point reflection (``2 f(edge) -
    f(mirror)``): a closing near a border sees light from one side only, and on a photo whose light falls
    off towards that border it would take the brighter inside for the sheet's light there; the reflected
    extension continues the fall-off, so the closing keeps it."""
    side = odd(CLOSING_SHARE * min(channel.shape))
    pad = side // 2 + 1
    extended = np.pad(channel, pad, mode="reflect", reflect_type="odd")
    closed = ndimage.grey_closing(np.clip(extended, 0.0, 1.5), size=(side, side), mode="nearest")
    return closed[pad:-pad, pad:-pad]


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
