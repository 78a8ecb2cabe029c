"""The marks of an ink mask -> the digits among them: what is not a digit is named and dropped.

1. **Lines** (ruled or squared paper, a line across the sheet): straight, nearly horizontal or vertical,
   crossing most of the frame. Found as peaks of the mask's projection over a fan of angles (a Hough
   transform restricted to ``LINE_ANGLES``), removed, and the strokes they crossed bridged again
   (``remove_lines``).
2. **Components** (8-connected) are then measured (``Mark``) and sorted out (``classify``):
   - *edges*: the sheet's edge, a table, a shadow: solid marks that follow the frame's border for
     ``EDGE_CONTACT`` of a side, or marks that cross the whole frame (a digit may touch the border too, but
     its strokes fill a small part of its box), or marks lying mostly (``BEYOND_SHEET``) beyond the sheet,
     where the light is a dark table's or floor's (``paper.OFF_SHEET``): its grain, never a digit;
   - *specks*: dirt, dots, noise: below ``MIN_HEIGHT_SHARE`` of the short side, or solid blobs whose
     stroke width is ``BLOB_STROKE`` of their extent or more (a stroke is much thinner than it is long);
   - *faint* marks, with less than ``FAINT`` of the strongest stroke's ink, a peak below ``MIN_PEAK``,
     mostly a faint halo (``HALO``) or no edge (``SHARP``): what is left of the light's unevenness (a dim
     corner fades in, a stroke has an edge), a crease, a faint ruled line, never the pen's strokes, which are alike;
   - the rest are strokes.
3. **Digits** (``group``): strokes whose columns overlap belong to one digit (a 5's flag, a 4 written in two
   strokes, a pencil stroke broken by the paper's grain); groups much smaller than the tallest
   (``MIN_RELATIVE_HEIGHT``) are marks, not digits; the digits are returned left to right.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .paper import closed_along, extent, side_shares

LINE_ANGLES = np.deg2rad(np.arange(-6.0, 6.01, 0.5))  # around horizontal (and, turned, vertical)
LINE_SPAN = 0.5  # a line's pixels cover at least this share of the frame's columns (rows, turned)
LINE_BIN = 0.2  # ... piling at least this share of the columns into each bin of its thickness
LINE_THICKNESS = 0.02  # ... at most this share of the short side thick
LINE_INK = 0.05  # lines are looked for among the pixels with this much ink or more (the mask's threshold is higher)
LINE_SAMPLE = 40_000  # mask pixels used to find the lines' angle
LINE_PASSES = 3  # angles looked at for the lines of one direction (perspective turns them differently)
EDGE_CONTACT = 0.2  # a solid mark along the border for this share of a side is a table, the sheet's edge, a
EDGE_FILL = 0.5  # shadow ... (solid: filling this share of its box; a digit's strokes fill much less of theirs)
BEYOND_SHEET = 0.5  # a mark with more than this share of its pixels beyond the sheet is the table's grain
SPAN_SHARE = 0.96  # a mark this wide or tall (of the frame) is a line or an edge, not a digit
MIN_HEIGHT_SHARE = 0.025  # digits are at least this share of the short side tall ...
MIN_HEIGHT_PX = 7  # ... and this many working pixels
BLOB_STROKE = 0.3  # stroke width / extent of a solid blob (a disk: 0.5) rather than a stroke (a digit: ~0.15)
FAINT = 0.4  # a stroke with less than this share of the strongest stroke's mean ink is the light's, not a pen's
MIN_PEAK = 0.2  # ... and so is a mark whose strongest ink is below this (a pencil's: 0.25 and more)
HALO = 0.3  # ... or whose mean ink is below this share of its peak: a faint halo around a dot
SHARP = 0.1  # ... or whose ink rises by less than this share of its peak per pixel: light fading, not a stroke
MIN_RELATIVE_HEIGHT = 0.45  # a group this much shorter than the tallest is not a digit of the number
STRAIGHT = 0.08  # a mark whose pixels spread across its axis less than this share of along it is straight
LINE_TILT = 50.0  # degrees from vertical beyond which a straight mark is a line, not a 1 (MNIST's lean less)
GROUP_GAP = 0.25  # strokes of one digit are at most this share of its height apart, one above the other
EIGHT = np.ones((3, 3), bool)


@dataclass
class Mark:
    """One connected mark: ``label`` in the label image, its box ``(top, left, bottom, right)`` (exclusive),
    ``area`` in pixels, ``stroke`` its stroke width (2 area / boundary length), ``contact`` the share of one
    side of the frame its pixels lie on (the largest), ``ink`` its mean ink, ``peak`` its strongest ink (of the
    ink map, which is smoothed: one noisy pixel does not make a peak)."""

    label: int
    box: tuple[int, int, int, int]
    area: int
    stroke: float
    contact: float
    ink: float = 1.0  # mean ink over its pixels
    peak: float = 1.0  # its strongest ink
    sharpness: float = 1.0  # its steepest rise of ink per pixel, over its peak: a pen's stroke has an edge
    straightness: float = 1.0  # spread across its main axis / spread along it (0: a straight line)
    tilt: float = 0.0  # angle of its main axis from vertical, degrees (0-90)
    off_sheet: float = 0.0  # share of its pixels beyond the sheet (where the light is a table's, not paper's)
    kind: str = "stroke"

    @property
    def height(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def width(self) -> int:
        return self.box[3] - self.box[1]


@dataclass
class Digit:
    """A digit found on the sheet: its marks, and its box ``(top, left, bottom, right)`` in working pixels."""

    marks: list[Mark]
    box: tuple[int, int, int, int]
    labels: list[int] = field(default_factory=list)

    @property
    def height(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def width(self) -> int:
        return self.box[3] - self.box[1]


@dataclass
class Found:
    """Everything the marks hold: the ``digits`` left to right, the label image, and counts of what was
    dropped (``lines``, ``edges``, ``specks``, ``small``: marks too small beside the digits)."""

    digits: list[Digit]
    labels: np.ndarray
    lines: int = 0
    edges: int = 0
    specks: int = 0
    small: int = 0
    faint: int = 0


# ---- 1. lines ------------------------------------------------------------------------------------------------
def remove_lines(mask: np.ndarray, faint: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """``(mask without its straight lines, number of lines)``: horizontal-ish lines, then vertical-ish ones.
    ``faint``: a more permissive mask to find the lines in (default: ``mask``): a faint ruled or squared
    paper's line can fall below the mask's threshold but where it crosses another line or a stroke, and then
    only those pieces would be left, as little crosses; the whole line is plain in the permissive mask."""
    faint = mask if faint is None else faint
    mask, across = _remove_lines_along(mask, faint)
    turned, down = _remove_lines_along(mask.T, faint.T)
    return turned.T, across + down


def _remove_lines_along(mask: np.ndarray, faint: np.ndarray) -> tuple[np.ndarray, int]:
    """Lines within ``LINE_ANGLES`` of horizontal, found in ``faint`` and removed from ``mask``, one angle at a
    time: a photo's perspective turns the lines of one family by different angles (they meet far away), so
    after the lines at the angle where most pixels pile up, those at the next such angle, ``LINE_PASSES``
    times at most."""
    lines = 0
    for _ in range(LINE_PASSES):
        found = _lines_at_best_angle(mask, faint)
        if found is None:
            break
        on_line, widest, count = found
        mask, faint, lines = _without(mask, on_line, widest), faint & ~on_line(faint), lines + count
    return mask, lines


def _lines_at_best_angle(mask: np.ndarray, faint: np.ndarray):
    """Each pixel's distance ``r = y cos a - x sin a`` to the line through the origin at the angle ``a`` where
    the pixels of ``faint`` pile highest; a line at that angle is a thin run of full bins of ``r`` (at most
    ``LINE_THICKNESS`` of the short side) whose pixels cover ``LINE_SPAN`` of the columns or more. A digit's
    bar is much thicker than a ruled line, or much shorter. None if there is none; else a function that marks
    the pixels of a mask on those lines, the widest line's bins, and how many lines."""
    ys, xs = _coordinates(faint)
    rows, cols = mask.shape
    if len(ys) < LINE_SPAN * cols:
        return None
    angle = _best_angle(ys, xs)
    r = np.round(ys * np.cos(angle) - xs * np.sin(angle)).astype(np.int64)
    offset = r.min()
    r -= offset
    counts = np.bincount(r)
    thickest = max(3, LINE_THICKNESS * min(rows, cols))
    line_bins = np.zeros(r.max() + 2, bool)
    lines = 0
    for (start, stop), (run_start, run_stop) in _thin_runs(counts, LINE_BIN * cols, thickest):
        low, high = max(start - 1, 0), stop + 1  # and the antialiased fringe on either side
        if np.unique(xs[(r >= low) & (r < high)]).size < LINE_SPAN * cols:
            continue
        beside = (r >= run_start) & (r < run_stop) & ((r < low) | (r >= high))
        if np.unique(xs[beside]).size >= LINE_SPAN * cols:
            continue  # what thickens the run spans the frame too: the sheet's edge against a table, not a digit
        line_bins[low:high] = True
        lines += 1
    if not lines:
        return None

    def on_line(pixels: np.ndarray) -> np.ndarray:
        ys, xs = _coordinates(pixels)
        r = np.round(ys * np.cos(angle) - xs * np.sin(angle)).astype(np.int64) - offset
        hit = line_bins[np.clip(r, 0, len(line_bins) - 1)] & (r >= 0) & (r < len(line_bins))
        marked = np.zeros_like(pixels)
        marked[ys[hit], xs[hit]] = True
        return marked

    return on_line, _widest_run(line_bins), lines


def _coordinates(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero(pixels)`` of a 2-D array, the same arrays in the same order, by the flat indices (several
    times faster than ``np.nonzero``'s 2-D path on a photo)."""
    return np.divmod(np.flatnonzero(pixels), pixels.shape[1])


def _thin_runs(counts: np.ndarray, least: float, thickest: float) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Runs of bins holding ``least`` pixels or more, at most ``thickest`` bins wide: a thin line spreads over
    one to three bins. Where a line crosses a digit, the digit's pixels fill the bins beside it and the run
    grows thick: then the bins holding half its fullest bin or more, the line's own, if they are thin (the
    caller checks that what is beside them is a digit's width, not a band across the frame). Each as
    ``((start, stop), (start, stop) of its whole run)``."""
    found = []
    runs, _ = ndimage.label(counts >= least)
    for (run,) in ndimage.find_objects(runs):
        whole = (run.start, run.stop)
        if run.stop - run.start <= thickest:
            found.append((whole, whole))
            continue
        part = counts[run]
        cores, _ = ndimage.label(part >= part.max() / 2)
        found += [((run.start + core.start, run.start + core.stop), whole)
                  for (core,) in ndimage.find_objects(cores) if core.stop - core.start <= thickest]
    return found


def _without(mask: np.ndarray, on_line, widest: int) -> np.ndarray:
    """``mask`` without the lines' pixels (``widest``: the widest line's bins), but where a stroke crossed a
    line: it joins again across it."""
    removed = on_line(mask)
    kept = mask & ~removed
    return kept | (removed & _closed_across(kept, 2 * widest + 3))


def _closed_across(kept: np.ndarray, size: int) -> np.ndarray:
    """``ndimage.binary_closing(kept, structure=np.ones((size, 1), bool))`` (``size`` odd: across a line),
    computed as a running maximum then minimum down the columns (``paper.closed_along``): the same pixels,
    a fraction of the time. The erosion counts what lies beyond the top and bottom as empty, as
    ``binary_closing``'s ``border_value=0`` does."""
    closed = closed_along(kept, size, (0,))
    half = size // 2
    closed[:half] = False
    closed[max(closed.shape[0] - half, 0):] = False
    return closed


def _best_angle(ys: np.ndarray, xs: np.ndarray) -> float:
    """The angle at which the pixels pile highest into one bin of ``r``: the best of ``LINE_ANGLES``, then of
    tenths of a degree around it (across a frame, half a degree moves a line by several pixels)."""
    step = max(1, len(ys) // LINE_SAMPLE)
    ys, xs = ys[::step].astype(np.float64), xs[::step].astype(np.float64)  # converted once, not per angle
    coarse = _highest(ys, xs, LINE_ANGLES)
    return _highest(ys, xs, coarse + np.deg2rad(np.arange(-0.4, 0.41, 0.1)))


def _highest(ys: np.ndarray, xs: np.ndarray, angles) -> float:
    best, best_peak = 0.0, -1
    r, across = np.empty_like(ys), np.empty_like(ys)
    for angle in angles:  # r = round(y cos a - x sin a), as in _lines_at_best_angle, in place
        np.multiply(ys, np.cos(angle), out=r)
        r -= np.multiply(xs, np.sin(angle), out=across)
        np.rint(r, out=r)
        r -= r.min()  # whole numbers: exact
        peak = np.bincount(r.astype(np.int64)).max()
        if peak > best_peak:
            best, best_peak = float(angle), peak
    return best


def _widest_run(flags: np.ndarray) -> int:
    """The length of the longest run of True in ``flags``."""
    labels, count = ndimage.label(flags)
    return int(np.bincount(labels.ravel())[1:].max()) if count else 1


# ---- 2. components -----------------------------------------------------------------------------------------
def measure(mask: np.ndarray, ink: np.ndarray, off_sheet: np.ndarray) -> tuple[np.ndarray, list[Mark]]:
    """The label image of the mask's 8-connected components and a ``Mark`` for each (``off_sheet``: the
    pixels beyond the sheet, ``paper.InkMap.off_sheet``).

    Everything is measured on the mask's extent and a pixel around it (a digit's box is a few % of the
    photo), with the same results as on the whole photo: labels are numbered in the same raster order, each
    label's sums add its pixels in the same order, and the erosion and the Sobel filter at a mask pixel see
    its 3x3 neighbourhood, inside the extent or beyond the photo's border as on the whole photo."""
    rows, cols = extent(mask, margin=1)
    if rows is None:
        return np.zeros(mask.shape, np.int32), []
    part, part_ink = mask[rows, cols], ink[rows, cols]
    part_labels, count = ndimage.label(part, structure=EIGHT)
    labels = np.zeros(mask.shape, part_labels.dtype)
    labels[rows, cols] = part_labels
    flat_labels = part_labels.ravel()
    areas = np.bincount(flat_labels, minlength=count + 1)
    areas[0] = mask.size - areas[1:].sum()  # the background, as on the whole photo
    boundary = part & ~ndimage.binary_erosion(part, structure=EIGHT, border_value=0)
    edges = np.bincount(part_labels[boundary], minlength=count + 1)
    inks = np.bincount(flat_labels, weights=part_ink.ravel(), minlength=count + 1) / np.maximum(areas, 1)
    part_boxes = ndimage.find_objects(part_labels)
    # per pixel; the extent's outer ring (wrong: the filter reflects there) holds no mask pixel
    slope = np.hypot(ndimage.sobel(part_ink, axis=0), ndimage.sobel(part_ink, axis=1)) / 8.0
    peaks, steepest = np.zeros(count + 1), np.zeros(count + 1)
    for label, box in enumerate(part_boxes, 1):  # per box: no sort of the pixels by label
        if box is not None:
            own = part_labels[box] == label
            peaks[label], steepest[label] = part_ink[box][own].max(), slope[box][own].max()
    straightness, tilt = _shape_axes(part_labels, count, areas, (rows.start, cols.start))
    contact = side_shares(labels, count).max(axis=0)  # the largest share of one side its pixels lie on
    beyond = (np.bincount(flat_labels, weights=off_sheet[rows, cols].ravel(), minlength=count + 1)
              / np.maximum(areas, 1))
    marks = []
    for label, box in enumerate(part_boxes, 1):
        if box is None:
            continue
        top, left = box[0].start + rows.start, box[1].start + cols.start
        bottom, right = box[0].stop + rows.start, box[1].stop + cols.start
        marks.append(Mark(label, (top, left, bottom, right), int(areas[label]),
                          2.0 * areas[label] / max(edges[label], 1), contact[label], float(inks[label]),
                          float(peaks[label]), float(steepest[label] / max(peaks[label], 1e-6)),
                          float(straightness[label]), float(tilt[label]), float(beyond[label])))
    return labels, marks


def _shape_axes(labels: np.ndarray, count: int, areas: np.ndarray,
                origin: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """Per label, from the covariance of its pixels' coordinates: ``sqrt(minor / major)`` eigenvalue (how far
    from a straight line) and the major axis's angle from vertical in degrees (``labels``: a part of the label
    image whose first pixel is at ``origin`` of the photo)."""
    ys, xs = _coordinates(labels)
    which = labels[ys, xs]
    ys, xs = ys + origin[0], xs + origin[1]
    n = np.maximum(areas, 1).astype(np.float64)

    def mean(values):
        return np.bincount(which, weights=values, minlength=count + 1) / n

    my, mx = mean(ys.astype(np.float64)), mean(xs.astype(np.float64))
    dy, dx = ys - my[which], xs - mx[which]
    syy, sxx, sxy = mean(dy * dy), mean(dx * dx), mean(dx * dy)
    half_trace, root = (syy + sxx) / 2, np.sqrt(((syy - sxx) / 2) ** 2 + sxy ** 2)
    major, minor = half_trace + root, np.maximum(half_trace - root, 0)
    straightness = np.sqrt(minor / np.maximum(major, 1e-9))
    tilt = np.degrees(np.abs(np.arctan2(2 * sxy, syy - sxx) / 2))  # 0: along the rows' axis (vertical)
    return straightness, tilt


def classify(marks: list[Mark], shape: tuple[int, int]) -> None:
    """Set each mark's ``kind``: "edge", "speck", "faint" or "stroke" (see the module docstring)."""
    rows, cols = shape
    min_height = max(MIN_HEIGHT_PX, MIN_HEIGHT_SHARE * min(shape))
    for mark in marks:
        fill = mark.area / max(mark.width * mark.height, 1)
        spans = mark.width >= SPAN_SHARE * cols or mark.height >= SPAN_SHARE * rows
        at_border = mark.box[0] == 0 or mark.box[1] == 0 or mark.box[2] == rows or mark.box[3] == cols
        thin = mark.stroke <= LINE_THICKNESS * min(shape)
        if mark.straightness < STRAIGHT and (mark.tilt > LINE_TILT or spans or (at_border and thin)):
            mark.kind = "line"  # straight, and far from upright, across the frame, or a thin piece cut by the border
        elif (mark.contact >= EDGE_CONTACT and fill >= EDGE_FILL) or spans or mark.off_sheet > BEYOND_SHEET:
            mark.kind = "edge"
        elif max(mark.height, mark.width) < min_height or mark.stroke >= BLOB_STROKE * max(mark.height, mark.width):
            mark.kind = "speck"
    strongest = max((mark.ink for mark in marks if mark.kind == "stroke"), default=0.0)
    for mark in marks:
        if mark.kind == "stroke" and (mark.ink < FAINT * strongest or mark.peak < MIN_PEAK
                                      or mark.ink < HALO * mark.peak or mark.sharpness < SHARP):
            mark.kind = "faint"


# ---- 3. digits ---------------------------------------------------------------------------------------------
def group(strokes: list[Mark]) -> list[Digit]:
    """Strokes whose columns overlap (by half the narrower one's width) and that lie within a digit's height of
    each other, as digits, left to right."""
    digits: list[Digit] = []
    for mark in sorted(strokes, key=lambda m: -m.area):  # the big strokes first: fragments join them
        for digit in digits:
            if _belongs(mark, digit):
                digit.marks.append(mark)
                digit.box = _union(digit.box, mark.box)
                break
        else:
            digits.append(Digit([mark], mark.box))
    merged = True
    while merged:  # a fragment may have made two digits overlap
        merged = False
        for i, a in enumerate(digits):
            for b in digits[i + 1:]:
                if _overlap(a.box, b.box) >= 0.5 and _vertical_gap(a.box, b.box) <= GROUP_GAP * max(a.height, b.height):
                    a.marks += b.marks
                    a.box = _union(a.box, b.box)
                    digits.remove(b)
                    merged = True
                    break
            if merged:
                break
    for digit in digits:
        digit.labels = [mark.label for mark in digit.marks]
    return sorted(digits, key=lambda d: (d.box[1] + d.box[3]) / 2)


def _belongs(mark: Mark, digit: Digit) -> bool:
    return (_overlap(mark.box, digit.box) >= 0.5
            and _vertical_gap(mark.box, digit.box) <= GROUP_GAP * max(digit.height, mark.height))


def _vertical_gap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> int:
    return max(a[0] - b[2], b[0] - a[2], 0)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """The columns two boxes share, as a share of the narrower box's width."""
    shared = min(a[3], b[3]) - max(a[1], b[1])
    return max(shared, 0) / max(min(a[3] - a[1], b[3] - b[1]), 1)


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def find_digits(mask: np.ndarray, ink: np.ndarray, off_sheet: np.ndarray) -> Found:
    """Lines removed, marks sorted out, strokes grouped into digits: what the mask of the ink map holds
    (``off_sheet``: the pixels beyond the sheet, where no mark is a digit)."""
    mask, lines = remove_lines(mask, ink > LINE_INK)
    labels, marks = measure(mask, ink, off_sheet)
    classify(marks, mask.shape)
    digits = group([mark for mark in marks if mark.kind == "stroke"])
    tallest = max((digit.height for digit in digits), default=0)
    kept = [digit for digit in digits if digit.height >= MIN_RELATIVE_HEIGHT * tallest]
    return Found(kept, labels, lines=lines + sum(m.kind == "line" for m in marks),
                 edges=sum(m.kind == "edge" for m in marks),
                 specks=sum(m.kind == "speck" for m in marks), small=len(digits) - len(kept),
                 faint=sum(m.kind == "faint" for m in marks))
