"""MNIST test digits photographed: one digit, a number (2-6 digits), or a sheet with no digit, rendered
into the bytes of a phone photo (JPEG) or a scan (PNG), from a seeded ``numpy.random.Generator``.

How a photo is made (``compose``), in the order light and a camera act:

1. the sheet: paper colour x a faint texture (or a dark board for chalk);
2. marks on it: ruled lines, a square grid, specks of dirt (``bench/photo_paper.py``), as absorbing ink;
3. the digit(s) (``bench/photo_ink.py``): the MNIST strokes scaled up to 40-600 pixels tall at a random
   place, in the pen's colour, absorbing light (reflected = paper x (1 - a + a x ink)); chalk is laid on;
   camera blur on the ink;
4. a dark table beyond the sheet's edge, if any;
5. the light: exposure x illumination field (gradient, vignetting) x a hard shadow, if any;
6. sensor noise (Gaussian, part grey, part colour), rounded to 8 bits, encoded (JPEG quality 70-90
   unless the condition says otherwise; the 12-megapixel photo is encoded to weigh 4-6 MB).

Each condition of ``CONDITIONS`` starts from the same random "plain photo" and changes what its name says,
so a row of ``bench/photos.py`` differs from the plain row in that one respect. ``CONDITION_NOTES`` says
what each one models. Nothing here is tuned to make the service look good or bad: the ranges are what a
phone, a scanner or a person's pen produce.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from bench import photo_ink as ink
from bench import photo_paper as paper
from bench.photo_looks import CONDITIONS, CONDITION_NOTES, NON_DIGIT_KINDS, Look, look_for  # noqa: F401

NO_DIGIT = "no digit"  # the truth of a sheet without a digit: the service should answer 422
SPECK_INK = (0.25, 0.2, 0.15)  # dark brown dirt
Box = paper.Box


@dataclass
class Sheet:
    """A rendered photo before encoding: ``pixels`` (rows, cols, 3) uint8; ``ink`` the digits' coverage
    (rows, cols) before light and noise (all zero on a sheet without a digit); ``boxes`` each digit's ink
    box ``(x, y, w, h)`` left to right; ``truth`` the label(s) as a string, or ``NO_DIGIT``."""

    pixels: np.ndarray
    ink: np.ndarray
    boxes: list[Box]
    truth: str
    look: Look


# ---- public: bytes ------------------------------------------------------------------------------------------
def render_digit(digit: np.ndarray, condition: str, rng: np.random.Generator) -> bytes:
    """One MNIST digit ((28, 28) or (784,) float in [0, 1]) photographed under ``condition``: JPEG or PNG
    bytes. The truth is the digit's MNIST label."""
    return encode(digit_sheet(digit, condition, rng))


def render_number(digits: np.ndarray, labels, rng: np.random.Generator, touching: bool = False,
                  condition: str = "plain") -> tuple[bytes, str]:
    """2-6 digits written left to right on one sheet: (bytes, truth such as "4027"). ``touching``: each
    digit's ink overlaps its left neighbour's by a few pixels (they touch), as in hurried handwriting."""
    sheet = number_sheet(digits, labels, rng, touching=touching, condition=condition)
    return encode(sheet), sheet.truth


def render_non_digit(kind: str, rng: np.random.Generator) -> bytes:
    """A sheet with no digit on it (``kind`` one of ``NON_DIGIT_KINDS``): the truth is ``NO_DIGIT``."""
    return encode(non_digit_sheet(kind, rng))


# ---- sheets ---------------------------------------------------------------------------------------------------
def digit_sheet(digit: np.ndarray, condition: str, rng: np.random.Generator) -> Sheet:
    look = look_for(condition, rng)
    grain_rng = np.random.default_rng(rng.integers(2 ** 63))  # rng then draws the same, grain or not
    patch = digit_patch(np.asarray(digit, np.float32).reshape(28, 28), look, look.height, look.angle, grain_rng)
    return compose(look, [patch], [place(look, ink.box_of(patch), rng)], "", rng)


def number_sheet(digits: np.ndarray, labels, rng: np.random.Generator, touching: bool = False,
                 condition: str = "plain") -> Sheet:
    digits = np.asarray(digits, np.float32).reshape(-1, 28, 28)
    if not 2 <= len(digits) <= 6 or len(labels) != len(digits):
        raise ValueError(f"a number sheet holds 2-6 digits with one label each; got {len(digits)} digits, "
                         f"{len(labels)} labels")
    look = look_for(condition, rng)
    rows, cols = look.frame[1], look.frame[0]
    height = min(look.height, 0.8 * cols / (0.95 * len(digits)), 0.5 * rows)
    look = replace(look, height=height)
    grain_rng = np.random.default_rng(rng.integers(2 ** 63))
    patches = [digit_patch(d, look, height * rng.uniform(0.9, 1.1), look.angle + rng.uniform(-4, 4), grain_rng)
               for d in digits]
    offsets = line_up(patches, height, touching, rng)
    group = union_box([ink.box_of(p) for p in patches], offsets)
    gx, gy = place(look, group, rng)
    places = [(gx + dx, gy + dy) for dx, dy in offsets]
    truth = "".join(str(int(label)) for label in labels)
    return compose(look, patches, places, truth, rng)


def non_digit_sheet(kind: str, rng: np.random.Generator) -> Sheet:
    if kind not in NON_DIGIT_KINDS:
        raise ValueError(f"unknown non-digit kind {kind!r}; one of {', '.join(NON_DIGIT_KINDS)}")
    look = look_for("plain" if kind == "blank" else kind, rng)
    return compose(look, [], [], NO_DIGIT, rng)


# ---- ink patches and where they go -----------------------------------------------------------------------------
def digit_patch(digit: np.ndarray, look: Look, height: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """The digit's ink coverage as a patch: stroke shape, rotation, grain, camera blur."""
    if look.stroke == "pen":
        alpha = ink.pen_strokes(digit, height, max(look.width_px or 0.0, look.width_ratio * height))
    else:
        alpha = ink.mnist_strokes(digit, height, look.threshold)
    alpha = ink.rotated(alpha, angle)
    alpha = ink.grainy(alpha, look.grain, rng)
    return ink.blurred(alpha, look.blur)


def line_up(patches: list[np.ndarray], height: float, touching: bool,
            rng: np.random.Generator) -> list[tuple[int, int]]:
    """Top-left offsets of each patch so the digits stand left to right on a wavy baseline.

    Each digit goes as far left as its ink allows: for every row the two digits share, the gap between
    the right-most ink so far and this digit's left-most ink; the smallest gap is set to 12-45 % of the
    digit height, or to -1..-8 % (``touching``: the inks overlap by that much in at least one row, so the
    two digits form one connected blob; in no row more).
    """
    offsets: list[tuple[int, int]] = []
    right_edge: dict[int, int] = {}  # canvas row -> right-most ink column so far
    for patch in patches:
        box = ink.box_of(patch)
        top = round(-box[1] - box[3] + height * (1 + rng.uniform(-0.05, 0.05)))  # baseline near `height`
        rows = np.flatnonzero((patch > 0.5).any(axis=1))
        left_of = {int(r): int(np.flatnonzero(patch[r] > 0.5)[0]) for r in rows}
        gap = -rng.uniform(0.01, 0.08) * height if touching else rng.uniform(0.12, 0.45) * height
        shared = [right_edge[top + r] - left_of[r] for r in left_of if top + r in right_edge]
        if not offsets:
            left = 0
        elif shared:
            left = round(max(shared) + 1 + gap)
        else:  # no row in common (a very high or low digit): from the previous box
            left = round(max(right_edge.values()) + 1 + gap - box[0])
        for r in left_of:
            right = left + int(np.flatnonzero(patch[r] > 0.5)[-1])
            right_edge[top + r] = max(right_edge.get(top + r, right), right)
        offsets.append((left, top))
    return offsets


def union_box(boxes: list[Box], offsets: list[tuple[int, int]]) -> Box:
    left = min(dx + b[0] for b, (dx, _) in zip(boxes, offsets))
    top = min(dy + b[1] for b, (_, dy) in zip(boxes, offsets))
    right = max(dx + b[0] + b[2] for b, (dx, _) in zip(boxes, offsets))
    bottom = max(dy + b[1] + b[3] for b, (_, dy) in zip(boxes, offsets))
    return left, top, right - left, bottom - top


def place(look: Look, box: Box, rng: np.random.Generator) -> tuple[int, int]:
    """Where the patch's top-left goes so that its ink ``box`` lies in the usable area of the frame:
    anywhere, or (``look.placement == "edge"``) within 0-3 % of one side."""
    left, top, width, height = look.usable
    margin = round(0.02 * min(look.frame))
    span_x = max(0, width - box[2] - 2 * margin)
    span_y = max(0, height - box[3] - 2 * margin)
    x, y = left + margin + rng.uniform(0, span_x), top + margin + rng.uniform(0, span_y)
    if look.placement == "edge":
        side, near = rng.integers(4), rng.uniform(0, 0.03) * min(look.frame)
        x = {0: left + near, 2: left + width - box[2] - near}.get(side, x)
        y = {1: top + near, 3: top + height - box[3] - near}.get(side, y)
    return round(x) - box[0], round(y) - box[1]


# ---- the photo ------------------------------------------------------------------------------------------------
def compose(look: Look, patches: list[np.ndarray], places: list[tuple[int, int]], truth: str,
            rng: np.random.Generator) -> Sheet:
    """Sheet, marks, ink, table, light, noise (the module's steps 1-6 but the encoding)."""
    width, height = look.frame
    shape = (height, width)
    ink_layer = np.zeros(shape, np.float32)
    boxes = []
    for patch, (left, top) in zip(patches, places):
        paste_max(ink_layer, patch, left, top)
        x, y, w, h = ink.box_of(patch)
        boxes.append((left + x, top + y, w, h))
    scene = sheet_colour(look, shape, rng)
    for alpha, colour in marks(look, shape, boxes, rng):
        absorb(scene, alpha, colour)
    if look.chalk:
        scene += (np.asarray(look.ink, np.float32) - scene) * ink_layer[..., None]
    else:
        absorb(scene, ink_layer, look.ink)
    if look.table_seed is not None:
        sheet, _ = paper.sheet_region(shape, np.random.default_rng(look.table_seed))
        scene = scene * sheet[..., None] + paper.table(shape, rng) * (1.0 - sheet[..., None])
    scene *= light(look, shape, rng)[..., None]
    add_noise(scene, look.noise, rng)
    pixels = np.clip(scene * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Sheet(pixels, ink_layer, boxes, truth, look)


def paste_max(layer: np.ndarray, patch: np.ndarray, left: int, top: int) -> None:
    """layer = max(layer, patch) where the patch, its top-left at (left, top), overlaps the frame."""
    rows, cols = layer.shape
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(rows, top + patch.shape[0]), min(cols, left + patch.shape[1])
    if y1 > y0 and x1 > x0:
        region = layer[y0:y1, x0:x1]
        np.maximum(region, patch[y0 - top:y1 - top, x0 - left:x1 - left], out=region)


def sheet_colour(look: Look, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Paper (or board) colour x texture: rows x cols x 3 float32. A board also carries chalk dust."""
    texture = paper.paper_texture(shape, 0.04 if look.chalk else look.texture, rng)
    scene = texture[..., None] * np.asarray(look.paper, np.float32)
    if look.chalk:
        scene += 0.03 * np.clip(paper.smooth_noise(shape, max(shape) / 6, rng), 0, None)[..., None]
    return scene.astype(np.float32)


def absorb(scene: np.ndarray, alpha: np.ndarray, colour) -> None:
    """Ink on paper: reflected = paper x (1 - alpha + alpha x colour), colour = share let through."""
    scene *= 1.0 - alpha[..., None] * (1.0 - np.asarray(colour, np.float32))


def marks(look: Look, shape: tuple[int, int], boxes: list[Box], rng: np.random.Generator):
    """(alpha, colour) of what the paper carries besides the digit: lines, a grid, specks."""
    found = []
    line_rng = np.random.default_rng(look.line_seed)
    edge = max(1.0, look.blur)
    if look.lines == "line":
        width = line_rng.uniform(1.5, 4) * max(1.0, min(shape) / 1200)
        across = line_rng.uniform(0.1, 0.9) * shape[0]
        found.append((paper.one_line(shape, line_rng.uniform(-3, 3), across, width, edge),
                      tuple(line_rng.uniform([0.35, 0.4, 0.55], [0.6, 0.65, 0.85]))))
    elif look.lines in ("ruled", "squared"):
        ratio = (0.9, 1.4) if look.lines == "ruled" else (0.3, 0.7)
        spacing = max(12.0, look.height * line_rng.uniform(*ratio))
        angle, width = line_rng.uniform(-3, 3), line_rng.uniform(1.0, 2.5)
        alpha = paper.parallel_lines(shape, angle, spacing, line_rng.uniform(0, spacing), width, edge)
        if look.lines == "squared":
            alpha = np.maximum(alpha, paper.parallel_lines(shape, angle + 90, spacing, line_rng.uniform(0, spacing),
                                                           width, edge))
        found.append((alpha, tuple(line_rng.uniform([0.55, 0.65, 0.85], [0.75, 0.85, 1.0]))))
    if look.specks:
        avoid = union_box(boxes, [(0, 0)] * len(boxes)) if boxes else None
        if avoid is not None:
            grow = round(0.1 * look.height)
            avoid = (avoid[0] - grow, avoid[1] - grow, avoid[2] + 2 * grow, avoid[3] + 2 * grow)
        size = (0.004 * max(shape), 0.015 * max(shape))
        found.append((paper.specks(shape, look.specks, size, avoid, rng), SPECK_INK))
    return found


def light(look: Look, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Exposure x illumination (gradient, vignetting) x shadow: rows x cols float32."""
    field = paper.illumination(shape, look.gradient, look.vignette, look.blotch, rng) * np.float32(look.exposure)
    if look.shadow:
        field *= paper.hard_shadow(shape, look.shadow, rng)
    return field


def add_noise(scene: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
    """Sensor noise: Gaussian, 80 % shared by the three channels (grey), 20 % per channel (colour)."""
    grey = rng.standard_normal(scene.shape[:2], dtype=np.float32)
    for channel in range(3):
        colour = rng.standard_normal(scene.shape[:2], dtype=np.float32)
        scene[..., channel] += np.float32(sigma) * (0.8 * grey + 0.6 * colour)


def encode(sheet: Sheet) -> bytes:
    """JPEG at the look's quality (PNG for ``fmt == "PNG"``). With ``size_bytes`` the quality moves (from
    the look's, by 2, within 60-98) until the file weighs that much, as a phone's encoder ends up doing."""
    image = Image.fromarray(sheet.pixels, "RGB")
    if sheet.look.fmt == "PNG":
        return _save(image, "PNG")
    quality = sheet.look.quality
    data = _save(image, "JPEG", quality=quality)
    low, high = sheet.look.size_bytes or (0, float("inf"))
    while not low <= len(data) <= high and 60 < quality < 98:
        quality += 2 if len(data) < low else -2
        data = _save(image, "JPEG", quality=quality)
    return data


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()
