"""Photos, scans and drawings -> MNIST-style 28x28 digits (``(784,)`` float32 in [0, 1], light ink on black).

The one place that knows what a digit looks like on paper. A photo goes through, in order:

1. ``decode``   bytes -> RGB at a working size (a JPEG decoded at reduced size in its DCT); limits checked;
2. ``paper``    the sheet's light evened out, the ink separated from it, whatever its colour or polarity,
                and thresholded above the noise;
3. ``marks``    ruled and squared lines removed, the sheet's edge, shadows' borders and specks dropped, the
                remaining strokes grouped into digits, left to right;
4. ``mnist``    each digit drawn as MNIST's were: contrast, stroke width, 20x20 box, centre of mass.

Public: :func:`read` (every digit of a photo: ``/read``), :func:`read_one` / :func:`to_mnist` (the one digit
of a photo: ``/predict``), :func:`png` (a 28x28 image as PNG: what the model saw). A photo with no digit, or with several
where one is expected, is a ``RequestError`` with status 422 saying what was found.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import RequestError
from .decode import CONTENT_TYPES, FORMATS, decode_image, is_image_content_type  # noqa: F401
from .marks import Digit, Found, find_digits
from .mnist import FIELD, digit_image
from .paper import ink_map

UNPROCESSABLE = 422
TOUCHING_ASPECT = 1.2  # a digit this much wider than tall is likely two or more digits that touch
DIGIT_ASPECT = 0.75
SURE = 0.8  # a wide mark read whole with this confidence or more is one digit  # a digit's usual width / height, to guess how many touch
OWNED_MARGIN = 2  # working pixels around a digit's marks that still belong to it (the strokes' soft edges)


@dataclass
class Reading:
    """One digit read from a photo: ``pixels`` (784,) float32 as the model sees it, ``box`` ``[x, y, w, h]`` in
    the photo's pixels; ``parts``: if the mark is much wider than tall (``TOUCHING_ASPECT``), the digits it
    holds if it is several that touch, cut apart (the caller weighs both readings), else empty."""

    pixels: np.ndarray
    box: list[int]
    parts: list["Reading"] = field(default_factory=list)


def read(data: bytes, max_pixels: int = 4096 * 4096) -> list[Reading]:
    """Every digit in the photo, left to right; RequestError 422 if there is none (saying what was found)."""
    image, scale = decode_image(data, max_pixels)
    ink, found = _digits_on(image)
    if not found.digits:
        raise RequestError(nothing_found(found), status=UNPROCESSABLE)
    readings = []
    for digit in found.digits:
        parts = [Reading(pixels.reshape(-1), _photo_box(box, scale))
                 for pixels, box in split_touching(digit, ink.ink, found.labels)]
        readings.append(Reading(digit_pixels(digit, ink.ink, found.labels).reshape(-1),
                                _photo_box(digit.box, scale), parts))
    return readings


def read_one(data: bytes, max_pixels: int = 4096 * 4096) -> Reading:
    """The one digit of the photo; RequestError 422 if there is none or several."""
    readings = read(data, max_pixels)
    if len(readings) > 1:
        raise RequestError(several_digits(len(readings), [reading.box[0] for reading in readings]),
                           status=UNPROCESSABLE)
    return readings[0]


def to_mnist(data: bytes, max_pixels: int = 4096 * 4096) -> np.ndarray:
    """The one digit of the photo as ``(784,)`` float32; RequestError 422 if there is none or several."""
    return read_one(data, max_pixels).pixels


def _digits_on(image: Image.Image):
    """The ink map and the digits found on it."""
    ink = ink_map(image)
    return ink, find_digits(ink.mask, ink.ink, ink.off_sheet)


def reads_as_parts(whole: np.ndarray, parts: np.ndarray) -> bool:
    """Whether a wide mark is better read as the digits it was cut into than as one: the model is unsure of it
    whole (below ``SURE``) and surer of every part than of the whole (``whole``: its 10 probabilities;
    ``parts``: one row per part). A wide but clear 2 or 4 stays one digit."""
    return float(whole.max()) < SURE and float(parts.max(axis=1).min()) > float(whole.max())


def digit_pixels(digit: Digit, ink: np.ndarray, labels: np.ndarray, columns: slice | None = None) -> np.ndarray:
    """The 28x28 image of ``digit`` (of its ``columns`` only, if given: one of touching digits)."""
    top, left, bottom, right = digit.box
    if columns is not None:
        left, right = columns.start, columns.stop
    box = (slice(max(top - OWNED_MARGIN, 0), bottom + OWNED_MARGIN),
           slice(max(left - OWNED_MARGIN, 0), right + OWNED_MARGIN))
    own = np.isin(labels[box], digit.labels)
    others = (labels[box] > 0) & ~own
    owned = ndimage.binary_dilation(own, iterations=OWNED_MARGIN) & ~others
    if columns is not None:  # only this part's columns (the margin is not taken from a neighbour)
        cut = np.zeros_like(owned)
        cut[:, left - box[1].start:right - box[1].start] = True
        owned &= cut
    return digit_image(ink[box], owned)


def split_touching(digit: Digit, ink: np.ndarray, labels: np.ndarray) -> list[tuple[np.ndarray, tuple]]:
    """``[(28x28 image, box)]`` of the digits a mark ``TOUCHING_ASPECT`` times wider than tall likely holds,
    cut at the columns of least ink near equal shares of its width; ``[]`` for a mark of a digit's shape."""
    top, left, bottom, right = digit.box
    if digit.width < TOUCHING_ASPECT * digit.height:
        return []
    count = max(2, int(round(digit.width / (DIGIT_ASPECT * digit.height))))
    own = np.isin(labels[top:bottom, left:right], digit.labels)
    column_ink = (ink[top:bottom, left:right] * own).sum(axis=0)
    cuts = [left]
    for i in range(1, count):
        centre, reach = i * digit.width // count, digit.width // (4 * count)
        window = column_ink[centre - reach:centre + reach + 1]
        cuts.append(left + centre - reach + int(np.argmin(window)))
    cuts.append(right)
    return [(digit_pixels(digit, ink, labels, slice(a, b)), (top, a, bottom, b)) for a, b in zip(cuts, cuts[1:])]


def _photo_box(box: tuple[int, int, int, int], scale: float) -> list[int]:
    """``(top, left, bottom, right)`` in working pixels -> ``[x, y, w, h]`` in the photo's pixels."""
    top, left, bottom, right = box
    return [round(left * scale), round(top * scale), round((right - left) * scale), round((bottom - top) * scale)]


def nothing_found(found: Found) -> str:
    """What a 422 for a photo without a digit says: what was found instead."""
    seen = []
    if found.lines:
        seen.append(f"{found.lines} straight line{'s' * (found.lines > 1)} (ruled or squared paper)")
    if found.edges:
        seen.append("the edge of the sheet or of a shadow")
    if found.faint:
        seen.append("faint marks (uneven light, a crease)")
    if found.specks or found.small:
        count = found.specks + found.small
        seen.append(f"{count} speck{'s' * (count > 1)} or dot{'s' * (count > 1)} too small to be a digit")
    what = "only " + ", ".join(seen) if seen else "nothing: it is blank"
    return (f"no digit found in the image: it holds {what}. Photograph or draw a digit, dark on light or "
            "light on dark, at least a fortieth of the picture's height")


def several_digits(count: int, lefts: list[int], touching: bool = False) -> str:
    """What a 422 says when /predict gets a photo of several digits (``lefts``: where each starts)."""
    where = ", ".join(f"x={left}" for left in lefts)
    what = f"{count} digits that touch" if touching else f"{count} digits"
    return (f"the image holds {what} (from the left, at {where}): POST it to /read to read them as a number, "
            "or send one digit per image")


def png(pixels: np.ndarray) -> bytes:
    """A 28x28 image in [0, 1] as PNG bytes (8-bit grey, light ink on black): what the model saw."""
    image = Image.fromarray(np.round(np.asarray(pixels).reshape(FIELD, FIELD) * 255).astype(np.uint8), mode="L")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
