"""A photo of a sheet -> its *ink map*: how much ink each pixel holds, 0 (bare sheet) to 1, whatever the light.

1. **Polarity.** Dark ink on a light sheet, or light ink (chalk, a white-on-black drawing) on a dark one:
   the side whose extreme departs further from the photo's median brightness (``is_light_on_dark``). From
   then on a light-on-dark photo is handled inverted, as dark ink on a light sheet.
2. **The ink channel** (``ink_channel``): the darkest of R, G, B (the lightest, inverted, for light ink): blue,
   red and black ink all absorb strongly in at least one channel, while white or grey paper is light in all
   three.
3. **The sheet's light** (``sheet_light``): what the channel would be with the marks erased. Two estimates,
   each right where the other is not: an *area closing* (every dark region too small to be a shadow or a
   table filled to the level around it: right under strokes of any width) on a reduced photo, and a fine
   grey-level closing at full size (exact on the bare sheet and along a shadow's straight edge, which the
   reduction blurs), widened to a medium one where it sat on a stroke wider than itself (a pale pencil's).
4. **Ink** = ``(light - channel) / light``: dividing by the light makes a stroke in a shadow or a dim corner as
   strong as one in full light (Beer-Lambert: ink lets through a share of the light), lightly smoothed (a
   pencil's or chalk's grain).
5. **Mask**: hysteresis thresholds above the noise (``HIGH``/``LOW`` noise deviations, at least
   ``MIN_HIGH``/``MIN_LOW`` of ink): pixels clearly ink, and the fainter pixels connected to them (a pencil
   stroke's grainy edge, a thin line's blurred edge), nothing isolated.
6. **Beyond the sheet** (``beyond_sheet``): where the coarse light (the area closing's, right under strokes
   of any width) is below ``OFF_SHEET`` of the brightest sheet's, in a region that comes in from the frame's
   border, there is no paper but a dark table or floor: paper in a hand's shadow keeps a third of the light
   or more, a table beside white paper a fifth or less. Its grain is not ink of a digit (``marks`` drops the
   marks lying there).

Why SciPy (``scipy.ndimage``): its labelling, morphology and filters are what this needs, and the serving image
keeps only the parts it loads; OpenCV's headless wheel is a larger install of its own, and scikit-image depends on
SciPy anyway (docs/deployment.md, "Image size"). One exception, for time: the grey closings run as a few
whole-array NumPy maxima and minima (``extreme_along``), the same pixels as ``ndimage.grey_closing`` (a test
compares them) in a third of its time, which walks the window pixel by pixel. ``python -m bench.photos``
measures the CPU per photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops
from scipy import ndimage

AREA_SIDE = 256  # the area closing runs on the photo reduced to this longer side
LIGHT_AREA = 0.3  # a dark region this large a share of the frame is the light's (a digit's ink: at most ~0.23)
EDGE_AREA, LIGHT_CONTACT = 0.04, 0.25  # ... or this large, along a quarter of a side of the frame (a shadow, a table)
CORNER_AREA, CORNER_CONTACT = 0.005, 0.02  # ... or this large, on two sides of the frame for this share of each
AREA_LEVELS = np.exp(np.linspace(np.log(0.1), np.log(2.0), 32))  # times the median brightness
FAT_STROKE = 0.2  # where the fine closing is this much darker than the coarse one, it sat on a fat stroke
FINE_SHARE = 0.025  # the fine closing's side, of the short side: wider than a pen's stroke on most digits
MEDIUM_SHARE = 0.06  # the medium closing's side, of the short side: wider than most digits' fattest strokes
MEDIUM_STEP = 0.1  # where the medium closing is this much lighter than the fine one, the fine sat on a stroke
POLARITY_SIDE = 192  # the polarity is judged on the photo reduced to this longer side
DARK = 0.02  # grey level added to both sides of a contrast ratio (black is not infinitely darker than 0.01)
LIGHT_EDGE = 0.08  # log-light change per reduced pixel above which the light has an edge (a shadow's: 0.4-1)
LIGHT_EDGE_BAND = 2  # reduced pixels either side of such an edge where the fine closing's light is taken
INK_SMOOTHING = 1.0  # Gaussian sigma, pixels, of the ink map
EDGE_SMOOTHING = 1.5  # Gaussian sigma, pixels, of the photo the light is estimated from
OFF_SHEET = 0.25  # where the paper's light is below this share of the brightest sheet's, there is no paper
FLOOR = 0.2  # the light is never taken below this share of the brightest sheet (noise in near-black areas)
HIGH, LOW = 7.0, 3.5  # hysteresis thresholds, in noise standard deviations above the sheet
MIN_HIGH, MIN_LOW = 0.14, 0.07  # ... and at least this much ink


@dataclass
class InkMap:
    """``ink``: float32 (rows, cols) in [0, 1]; ``mask``: bool, the pixels taken as ink; ``light_on_dark``:
    the polarity found; ``noise``: the standard deviation of ``ink`` on the bare sheet; ``off_sheet``: bool,
    the pixels beyond the sheet (step 6 of the module docstring)."""

    ink: np.ndarray
    mask: np.ndarray
    light_on_dark: bool
    noise: float
    off_sheet: np.ndarray


def ink_map(image: Image.Image) -> InkMap:
    """The ink map of an RGB photo (float32 in [0, 1]) and its mask (see the module docstring)."""
    light_on_dark = is_light_on_dark(image)
    channel = ink_channel(image, light_on_dark)
    light, reduced_light = sheet_light(channel)
    ink, mask, noise = _ink(channel, light)
    return InkMap(ink, mask, light_on_dark, noise, beyond_sheet(reduced_light, channel.shape))


def sheet_light(channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(light, reduced)``: the sheet's light under every pixel, marks erased, and the coarse estimate at the
    reduced size it is made at. Two estimates, each right where the other is not:

    - ``coarse``: an *area closing* (``area_closing``: every dark region too small to be the light's own filled
      to the level of what surrounds it), on the photo reduced to ``AREA_SIDE`` pixels and brought back to full
      size. Right under strokes of any width, wrong by up to one of its levels, and blurred at a hard edge of
      the light (a shadow's) by the reduction;
    - ``fine``: a grey-level closing of side ``FINE_SHARE`` of the short side at full size: exact on the bare
      sheet, along a straight shadow's edge (a closing keeps monotone steps) and under thin strokes, but blind
      to strokes wider than its side. Where a *medium* closing (side ``MEDIUM_SHARE``) is ``MEDIUM_STEP``
      lighter, the fine one sat on a stroke wider than itself, and the medium one is taken instead (not along
      the light's edges): a pale pencil stroke where the pen lingered is too faint for ``FAT_STROKE``, and
      a blotch of the light is wider than the medium side, so it stays the light's.

    The coarse one is taken where the fine one is ``FAT_STROKE`` darker (it sat on a fat stroke, as dark as ink),
    except in a band along the coarse light's own edges; the fine one everywhere else (the coarse one would fill
    the light's shallow dips that are not a shadow's, and its levels show as faint bands)."""
    small, _ = reduced(channel, AREA_SIDE)
    closed = area_closing(small)
    coarse = np.maximum(enlarged(closed, channel.shape), channel)
    band = light_edges(closed)
    edges = (enlarged(band.astype(np.float32), channel.shape) > 0 if band.any()  # (no band: all 0 enlarged)
             else np.zeros(channel.shape, bool))
    smooth = ndimage.gaussian_filter(channel, EDGE_SMOOTHING)
    fine = closing(smooth, odd(FINE_SHARE * min(channel.shape)))
    medium = closing(smooth, odd(MEDIUM_SHARE * min(channel.shape)))
    np.copyto(fine, medium, where=(medium - fine > MEDIUM_STEP * medium) & ~edges)
    np.copyto(coarse, fine, where=(coarse - fine <= FAT_STROKE * coarse) | edges)
    return coarse, np.maximum(closed, small)


def beyond_sheet(light: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pixels (bool, ``shape``) beyond the sheet: regions of the reduced coarse ``light`` below
    ``OFF_SHEET`` of the brightest sheet's light that come in from the frame's border along ``LIGHT_CONTACT``
    of a side, as a table beyond the sheet's edge does (a huge fat digit can be as dark and as large, but it
    lies on the sheet)."""
    dark = light < OFF_SHEET * float(np.percentile(light, 95))
    labels, count = ndimage.label(dark, structure=np.ones((3, 3), bool))
    if count == 0:
        return np.zeros(shape, bool)
    beyond = (side_shares(labels, count).max(axis=0) >= LIGHT_CONTACT)[labels].astype(np.float32)
    return enlarged(beyond, shape) > 0.5


def side_shares(labels: np.ndarray, count: int) -> np.ndarray:
    """``(4, count + 1)``: for each side of the frame (top, bottom, left, right), the share of it that each
    label's pixels lie on (label 0, the background, counts for nothing)."""
    shares = np.stack([np.bincount(side, minlength=count + 1) / len(side)
                       for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1])])
    shares[:, 0] = 0
    return shares


def enlarged(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``values`` (float32) resized to ``shape`` (rows, cols) by bilinear interpolation."""
    image = Image.fromarray(values.astype(np.float32), mode="F")
    return np.asarray(image.resize((shape[1], shape[0]), Image.Resampling.BILINEAR), dtype=np.float32)


def area_closing(values: np.ndarray) -> np.ndarray:
    """Each pixel raised to the lowest of ``AREA_LEVELS`` (relative to the median) at which the dark region
    around it (8-connected, below that level) is part of the sheet's light rather than a mark: it covers
    ``LIGHT_AREA`` of the frame, or ``EDGE_AREA`` while following the frame's border for ``LIGHT_CONTACT`` of a
    side (a shadow or a table comes in from the border; a digit is smaller, and touches the border, if at all,
    with the end of a stroke), or ``CORNER_AREA`` across a corner (a dim corner: two sides; a digit near the
    border touches one). Paper stays as it is; a stroke, a digit, a speck take the level of the paper or
    the shadow they lie on; a shadow keeps its own."""
    levels = float(np.median(values)) * AREA_LEVELS
    out = np.full(values.shape, levels[-1], np.float32)
    done = np.zeros(values.shape, bool)
    eight = np.ones((3, 3), bool)
    previous = -1  # how many pixels lay below the previous level
    for level in levels:
        below = values < level
        dark = np.count_nonzero(below)
        if dark == previous:  # the same pixels as at the previous level: the same regions, settled there if light
            continue
        previous = dark
        labels, count = ndimage.label(below, structure=eight, output=np.intp)  # intp: bincount and indexing take it as is
        if count == 0:
            continue
        areas = np.bincount(labels.ravel(), minlength=count + 1) / values.size
        shares = side_shares(labels, count)
        contact, sides = shares.max(axis=0), (shares >= CORNER_CONTACT).sum(axis=0)
        light = ((areas >= LIGHT_AREA) | ((areas >= EDGE_AREA) & (contact >= LIGHT_CONTACT))
                 | ((areas >= CORNER_AREA) & (sides >= 2)))
        light[0] = False
        if not light.any():
            continue
        settled = light[labels] & ~done
        out[settled] = level
        done |= settled
        if done.all():
            break
    return out


def reduced(values: np.ndarray, side: int) -> tuple[np.ndarray, int]:
    """``values`` block-averaged down to at most ``side`` pixels on the longer side, and the factor. A side
    shorter than the factor (a strip of a photo, 300 x 1) is first extended by repeating its last pixels, so that
    it keeps one block."""
    factor = max(1, int(np.ceil(max(values.shape) / side)))
    if factor == 1:
        return values, 1
    values = np.pad(values, [(0, max(0, factor - length)) for length in values.shape], mode="edge")
    rows, cols = values.shape[0] // factor * factor, values.shape[1] // factor * factor
    return values[:rows, :cols].reshape(rows // factor, factor, cols // factor, factor).mean(axis=(1, 3)), factor


def _ink(flat: np.ndarray, light: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(ink, mask, noise)`` of the flattened photo against the sheet's ``light``."""
    light = np.maximum(light, FLOOR * float(np.percentile(light[::4, ::4], 95)) + 1e-6)
    # smoothed: a pencil's or chalk's grain breaks a stroke into specks, a blur joins them again
    ratio = np.subtract(light, flat)
    ratio /= light
    signed = ndimage.gaussian_filter(ratio, INK_SMOOTHING)
    ink = np.clip(signed, 0.0, 1.0).astype(np.float32, copy=False)
    noise, level = robust_spread(signed)
    high = level + max(HIGH * noise, MIN_HIGH)
    low = level + max(LOW * noise, MIN_LOW)
    return ink, hysteresis(ink, low, high), noise


def light_edges(light: np.ndarray) -> np.ndarray:
    """Where the light itself changes abruptly (a hard shadow's or the sheet's edge): a band around the pixels
    whose log-light gradient exceeds ``LIGHT_EDGE`` per pixel of the reduced photo. There the reduced light is
    blurred, and the fine closing is right (the light under a stroke is smooth: the closing erased the stroke)."""
    log_light = np.log(np.maximum(light, 1e-3))
    gradient = np.hypot(ndimage.sobel(log_light, axis=0), ndimage.sobel(log_light, axis=1)) / 8.0
    return ndimage.binary_dilation(gradient > LIGHT_EDGE, iterations=LIGHT_EDGE_BAND)


def closing(flat: np.ndarray, side: int) -> np.ndarray:
    """A grey-level closing of side ``side`` of the photo extended beyond its borders by point reflection
    (``2 f(edge) - f(mirror)``), so that a closing near a border does not take the light of the inside for
    the light there."""
    pad = side // 2 + 1
    extended = np.pad(flat, pad, mode="reflect", reflect_type="odd")
    np.clip(extended, 0.0, 2.0, out=extended)
    return closed_along(extended, side, (0, 1))[pad:-pad, pad:-pad]


def closed_along(values: np.ndarray, size: int, axes: tuple[int, ...]) -> np.ndarray:
    """A closing of ``values`` by a flat window of ``size`` pixels (odd) along each of ``axes``, the array extended
    by its edge values: a dilation, then an erosion (``ndimage.grey_closing``, mode "nearest"), each as
    ``extreme_along`` passes. ``values`` is left as it is."""
    work = [np.empty_like(values) for _ in range(3)]  # each pass reads one and writes another
    closed = values
    for pick in (np.maximum, np.minimum):
        for axis in axes:
            closed = extreme_along(closed, size, axis, pick, [array for array in work if array is not closed][:2])
    return closed


def extreme_along(values: np.ndarray, size: int, axis: int, pick, work: list[np.ndarray]) -> np.ndarray:
    """``pick`` (``np.maximum`` or ``np.minimum``) of ``values`` over the ``size`` pixels (odd) centred on each
    along ``axis``, the array extended by its edge values: ``ndimage.maximum_filter1d`` / ``minimum_filter1d``
    with ``mode="nearest"``, exactly (a maximum rounds nothing), in a few whole-array passes (the window
    doubled at each) rather than pixel by pixel. ``work``: two arrays of ``values``' shape, not ``values``, to
    work in; the result is one of them."""
    length, half = values.shape[axis], size // 2
    if length <= size:  # no window lies wholly inside
        scipy_filter = ndimage.maximum_filter1d if pick is np.maximum else ndimage.minimum_filter1d
        return scipy_filter(values, size, axis=axis, mode="nearest")

    def part(array: np.ndarray, start: int, stop: int) -> np.ndarray:
        return array[start:stop] if axis == 0 else array[:, start:stop]

    acc, width, count = values, 1, length  # acc[i]: pick of values[i:i + width], for i < count
    while 2 * width <= size:
        target = work[0] if acc is not work[0] else work[1]
        count -= width
        pick(part(acc, 0, count), part(acc, width, width + count), out=part(target, 0, count))
        acc, width = target, 2 * width
    out = work[0] if acc is not work[0] else work[1]
    count = length - size + 1  # each window wholly inside: the pick of two windows of width that cover it
    pick(part(acc, 0, count), part(acc, size - width, size - width + count), out=part(out, half, length - half))
    # the first and last half windows reach beyond the edge, whose value repeats: a running pick from the edge
    part(out, 0, half)[...] = part(pick.accumulate(part(values, 0, 2 * half), axis=axis), half, 2 * half)
    tail = np.flip(pick.accumulate(np.flip(part(values, length - 2 * half, length), axis), axis=axis), axis)
    part(out, length - half, length)[...] = part(tail, 0, half)
    return out


def ink_channel(image: Image.Image, light_on_dark: bool) -> np.ndarray:
    """Float32 in [0, 1], ink dark on a light sheet: the darkest of R, G and B, or, for light ink on a dark
    sheet, one minus the lightest."""
    red, green, blue = image.split()
    if light_on_dark:
        return 1.0 - np.asarray(ImageChops.lighter(ImageChops.lighter(red, green), blue), np.float32) / 255.0
    return np.asarray(ImageChops.darker(ImageChops.darker(red, green), blue), np.float32) / 255.0


def is_light_on_dark(image: Image.Image) -> bool:
    """True if the photo's extreme pixels are lighter than its bulk (chalk, light ink on black), False if they
    are darker (ink on paper): the sheet is most of the photo, so its median is the sheet's brightness, and ink
    lets through a share of the light, so contrast is a ratio: ``max / median`` against ``median / min`` of
    the reduced, lightly smoothed grey levels (``DARK`` keeps the ratios finite)."""
    grey = image.convert("L")
    factor = int(np.ceil(max(grey.size) / POLARITY_SIDE))
    if factor > 1:
        grey = grey.reduce(factor)
    values = ndimage.gaussian_filter(np.asarray(grey, np.float32) / 255.0, 1.0)
    median = float(np.median(values))
    lighter = (float(values.max()) + DARK) / (median + DARK)
    darker = (median + DARK) / (float(values.min()) + DARK)
    return lighter > darker


def robust_spread(values: np.ndarray) -> tuple[float, float]:
    """``(sigma, median)`` of ``values`` by the median absolute deviation (1.4826 MAD): the sheet's noise,
    untouched by the few pixels of ink. Taken on about 50,000 evenly spread pixels."""
    flat = values.reshape(-1)
    flat = flat[::max(1, flat.size // 50_000)]
    median = float(np.median(flat))
    return 1.4826 * float(np.median(np.abs(flat - median))), median


def hysteresis(ink: np.ndarray, low: float, high: float) -> np.ndarray:
    """The pixels above ``low`` that are connected (8-neighbourhood) to a pixel above ``high``."""
    weak = ink > low
    rows, cols = extent(weak)  # labelled there only: the same regions
    if rows is None:
        return weak
    labels, count = ndimage.label(weak[rows, cols], structure=np.ones((3, 3), bool), output=np.intp)
    strong = np.zeros(count + 1, bool)
    strong[labels[ink[rows, cols] > high]] = True  # (high >= low: the strong pixels lie in the extent)
    strong[0] = False
    mask = np.zeros_like(weak)
    mask[rows, cols] = strong[labels]
    return mask


def extent(mask: np.ndarray, margin: int = 0) -> tuple[slice | None, slice | None]:
    """The rows and columns holding the mask's pixels, widened by ``margin`` (within the frame); (None, None)
    if the mask is empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None, None
    return (slice(max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, mask.shape[0])),
            slice(max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, mask.shape[1])))


def odd(value: float) -> int:
    """The odd integer nearest ``value``, at least 3 (a filter centred on its pixel)."""
    return max(3, int(round(value)) // 2 * 2 + 1)
