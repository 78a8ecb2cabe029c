"""The photo generator (bench/photo_*.py): reproducible, and each condition visibly does what it says."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from bench import photo_sheets as sheets
from bench.photo_looks import CONDITIONS, NON_DIGIT_KINDS


def hand_digits() -> list[np.ndarray]:
    """Three MNIST-like digits drawn by hand (no data files needed), each one connected stroke: 1, 0, 7."""
    one = np.zeros((28, 28), np.float32)
    one[5:23, 13:16] = 1.0
    zero = np.zeros((28, 28), np.float32)
    rows, cols = np.indices((28, 28))
    radius = np.sqrt(((rows - 14) / 9.0) ** 2 + ((cols - 14) / 6.0) ** 2)
    zero[(radius > 0.75) & (radius < 1.05)] = 1.0
    seven = np.zeros((28, 28), np.float32)
    seven[5:8, 7:21] = 1.0
    for row in range(8, 23):
        seven[row, 19 - (row - 8) // 2:22 - (row - 8) // 2] = 1.0
    return [one, zero, seven]


@pytest.fixture(scope="module")
def digits():
    return hand_digits()


def test_the_same_seed_gives_the_same_bytes_and_another_seed_differs(digits):
    first = sheets.render_digit(digits[2], "plain", np.random.default_rng([0, 1]))
    again = sheets.render_digit(digits[2], "plain", np.random.default_rng([0, 1]))
    other = sheets.render_digit(digits[2], "plain", np.random.default_rng([0, 2]))
    assert first == again
    assert first != other
    assert first[:3] == b"\xff\xd8\xff"  # a JPEG


# ---- helpers ----------------------------------------------------------------------------------------------
def decoded(data: bytes) -> np.ndarray:
    """The photo's grey levels in [0, 1] as a user's server would decode it."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float32) / 255.0


def sheet_and_grey(digit, condition, seed=0):
    sheet = sheets.digit_sheet(digit, condition, np.random.default_rng([seed, 7]))
    data = sheets.encode(sheet)
    return sheet, data, decoded(data)


def background(grey: np.ndarray, boxes, margin: int = 8) -> np.ma.MaskedArray:
    """The photo with the digits' boxes (grown by ``margin``) masked out."""
    mask = np.zeros(grey.shape, bool)
    for x, y, w, h in boxes:
        mask[max(0, y - margin):y + h + margin, max(0, x - margin):x + w + margin] = True
    return np.ma.masked_array(grey, mask)


def block_medians(grey: np.ma.MaskedArray, blocks: int = 6) -> np.ndarray:
    rows, cols = grey.shape
    return np.array([np.ma.median(grey[r * rows // blocks:(r + 1) * rows // blocks,
                                       c * cols // blocks:(c + 1) * cols // blocks])
                     for r in range(blocks) for c in range(blocks)])


def ink_contrast(sheet, grey) -> float:
    """Background median minus the median grey level under solid ink (coverage > 0.9)."""
    return float(np.ma.median(background(grey, sheet.boxes)) - np.median(grey[sheet.ink > 0.9]))


def stroke_width(sheet) -> float:
    """Mean stroke width in pixels: ink area over half the ink's perimeter (a long thin stroke)."""
    solid = sheet.ink > 0.5
    perimeter = (solid ^ ndimage.binary_erosion(solid)).sum()
    return 2 * solid.sum() / perimeter


def dark_marks(sheet, grey) -> float:
    """Share of the frame, away from the digit, darker than its neighbourhood by 0.06: lines, specks."""
    local = ndimage.median_filter(grey[::4, ::4], size=9)
    local = np.kron(local, np.ones((4, 4), np.float32))[:grey.shape[0], :grey.shape[1]]
    dark = background(grey < local - 0.06, sheet.boxes, margin=int(0.15 * sheet.look.height) + 8)
    return float(dark.filled(False).mean())


def light_ratio(sheet, grey) -> float:
    """Darkest over brightest of the 6x6 blocks' background medians (1: evenly lit)."""
    medians = block_medians(background(grey, sheet.boxes))
    medians = medians[np.isfinite(medians)]
    return float(medians.min() / medians.max())


# ---- each condition does what it says ----------------------------------------------------------------------
SEEDS = (0, 1, 2)


@pytest.mark.parametrize("seed", SEEDS)
def test_plain_is_a_phone_jpeg_with_the_digit_40_to_600_pixels_tall_and_even_light(digits, seed):
    sheet, data, grey = sheet_and_grey(digits[seed], "plain", seed)
    assert data[:3] == b"\xff\xd8\xff"
    assert Image.open(io.BytesIO(data)).size == sheet.look.frame
    assert 640 * 480 <= grey.size <= 1600 * 1200
    assert len(sheet.boxes) == 1 and 40 <= sheet.boxes[0][3] <= 620
    assert light_ratio(sheet, grey) > 0.7
    assert dark_marks(sheet, grey) < 1e-4
    assert ink_contrast(sheet, grey) > 0.45


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("condition", ["uneven_light", "shadow"])
def test_uneven_light_and_shadow_darken_part_of_the_sheet(digits, condition, seed):
    plain, _, plain_grey = sheet_and_grey(digits[seed], "plain", seed)
    sheet, _, grey = sheet_and_grey(digits[seed], condition, seed)
    assert light_ratio(sheet, grey) < 0.6 < 0.7 < light_ratio(plain, plain_grey)
    assert sheet.boxes == plain.boxes  # paired: the same digit at the same place


@pytest.mark.parametrize("seed", SEEDS)
def test_specks_ruled_and_squared_paper_leave_marks_beside_the_digit(digits, seed):
    shares = {condition: dark_marks(*sheet_and_grey(digits[seed], condition, seed)[::2])
              for condition in ("plain", "specks", "ruled", "squared")}
    assert shares["plain"] < 1e-4
    assert shares["specks"] > 3e-4
    assert shares["ruled"] > 1e-3
    assert shares["squared"] > max(1e-2, shares["ruled"])


@pytest.mark.parametrize("seed", SEEDS)
def test_small_digit_in_a_large_frame_and_large_digit_at_the_edge(digits, seed):
    small, _, grey = sheet_and_grey(digits[seed], "small", seed)
    x, y, w, h = small.boxes[0]
    assert grey.size >= 1280 * 960 and w * h < 0.005 * grey.size and h >= 38
    large, _, grey = sheet_and_grey(digits[seed], "large_edge", seed)
    x, y, w, h = large.boxes[0]
    rows, cols = grey.shape
    assert h >= 0.55 * min(rows, cols)
    assert min(x, y, cols - x - w, rows - y - h) <= 0.03 * min(rows, cols) + 2


@pytest.mark.parametrize("seed", SEEDS)
def test_pencil_is_faint_and_blue_and_red_inks_have_their_colour(digits, seed):
    plain, _, plain_grey = sheet_and_grey(digits[seed], "plain", seed)
    pencil, _, grey = sheet_and_grey(digits[seed], "pencil", seed)
    assert ink_contrast(pencil, grey) < 0.5 * ink_contrast(plain, plain_grey)
    for condition, (strong, weak) in {"blue_ink": (2, 0), "red_ink": (0, 2)}.items():
        sheet = sheets.digit_sheet(digits[seed], condition, np.random.default_rng([seed, 7]))
        rgb = np.asarray(Image.open(io.BytesIO(sheets.encode(sheet))).convert("RGB"), np.float32) / 255
        under_ink = rgb[sheet.ink > 0.9].mean(axis=0)
        assert under_ink[strong] > under_ink[weak] + 0.1, (condition, under_ink)


@pytest.mark.parametrize("seed", SEEDS)
def test_ballpoint_strokes_are_thin_and_marker_strokes_thick(digits, seed):
    widths = {condition: stroke_width(sheets.digit_sheet(digits[seed], condition, np.random.default_rng([seed, 7])))
              for condition in ("plain", "ballpoint", "marker")}
    assert widths["ballpoint"] < 0.5 * widths["plain"] < widths["plain"] * 1.25 / 2 < widths["marker"] / 2


def orientation(ink: np.ndarray) -> float:
    """The ink's principal axis, degrees counter-clockwise from the vertical (image moments)."""
    rows, cols = np.nonzero(ink > 0.5)
    rows, cols = rows - rows.mean(), cols - cols.mean()
    return float(np.degrees(0.5 * np.arctan2(2 * (rows * cols).mean(), (rows ** 2).mean() - (cols ** 2).mean())))


@pytest.mark.parametrize("seed", SEEDS)
def test_rotation_turns_the_digit_by_5_to_15_degrees(digits, seed):
    plain = sheets.digit_sheet(digits[0], "plain", np.random.default_rng([seed, 7]))  # the upright '1'
    turned = sheets.digit_sheet(digits[0], "rotated", np.random.default_rng([seed, 7]))
    assert 5 <= abs(turned.look.angle) <= 15
    assert orientation(turned.ink) - orientation(plain.ink) == pytest.approx(turned.look.angle, abs=1.5)


def test_strong_jpeg_uses_coarser_quantisation(digits):
    plain = Image.open(io.BytesIO(sheets.render_digit(digits[1], "plain", np.random.default_rng(3))))
    strong = Image.open(io.BytesIO(sheets.render_digit(digits[1], "jpeg_strong", np.random.default_rng(3))))
    assert np.mean(strong.quantization[0]) > 2 * np.mean(plain.quantization[0])


@pytest.mark.parametrize("seed", SEEDS)
def test_chalk_is_light_on_a_dark_board(digits, seed):
    sheet, _, grey = sheet_and_grey(digits[seed], "chalk", seed)
    assert np.ma.median(background(grey, sheet.boxes)) < 0.35
    assert ink_contrast(sheet, grey) < -0.3  # the strokes are brighter than the board


@pytest.mark.parametrize("seed", SEEDS)
def test_table_edge_shows_a_dark_band_at_a_side_of_the_frame(digits, seed):
    sheet, _, grey = sheet_and_grey(digits[seed], "table_edge", seed)
    paper = np.ma.median(background(grey, sheet.boxes))
    sides = [grey[:, :4], grey[:4, :], grey[:, -4:], grey[-4:, :]]
    assert min(np.median(side) for side in sides) < 0.6 * paper


def test_the_12_megapixel_photo_is_4000x3000_and_weighs_4_to_6_mb(digits):
    data = sheets.render_digit(digits[2], "photo_12mp", np.random.default_rng(5))
    assert sorted(Image.open(io.BytesIO(data)).size) == [3000, 4000]
    assert 4_000_000 <= len(data) <= 6_000_000


def test_scan_and_canvas_are_pngs_and_the_canvas_is_the_draw_pages(digits):
    scan = sheets.render_digit(digits[1], "scan", np.random.default_rng(1))
    assert scan[:8] == b"\x89PNG\r\n\x1a\n"
    canvas = Image.open(io.BytesIO(sheets.render_digit(digits[1], "canvas", np.random.default_rng(1))))
    grey = np.asarray(canvas.convert("L"))
    assert canvas.format == "PNG" and canvas.size == (280, 280)
    assert np.median(grey) == 255 and grey.min() == 0  # white pad, black strokes, no noise


def test_every_condition_renders_and_an_unknown_one_is_refused_by_name(digits):
    for condition in CONDITIONS:
        if condition != "photo_12mp":
            assert len(sheets.render_digit(digits[0], condition, np.random.default_rng(0))) > 1000
    with pytest.raises(ValueError, match="unknown condition 'fog'; one of plain, uneven_light"):
        sheets.render_digit(digits[0], "fog", np.random.default_rng(0))


# ---- numbers and sheets without a digit -----------------------------------------------------------------
def components(sheet) -> int:
    return ndimage.label(sheet.ink > 0.5, structure=np.ones((3, 3)))[1]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_number_sheet_holds_the_labels_left_to_right_apart_or_touching(digits, seed):
    labels = [7, 1, 0, 1]
    stack = np.stack([digits[2], digits[0], digits[1], digits[0]])
    apart = sheets.number_sheet(stack, labels, np.random.default_rng(seed))
    assert apart.truth == "7101"
    assert [box[0] for box in apart.boxes] == sorted(box[0] for box in apart.boxes)
    assert components(apart) == 4  # each hand-drawn digit is one stroke: four separate blobs
    touching = sheets.number_sheet(stack, labels, np.random.default_rng(seed), touching=True)
    assert touching.truth == "7101" and components(touching) == 1
    data, truth = sheets.render_number(stack[:2], labels[:2], np.random.default_rng(seed))
    assert truth == "71" and data[:3] == b"\xff\xd8\xff"
    with pytest.raises(ValueError, match="2-6 digits"):
        sheets.number_sheet(stack[:1], labels[:1], np.random.default_rng(seed))


@pytest.mark.parametrize("kind", NON_DIGIT_KINDS)
def test_sheets_without_a_digit_carry_no_mnist_ink(kind):
    sheet = sheets.non_digit_sheet(kind, np.random.default_rng(11))
    assert sheet.truth == sheets.NO_DIGIT and sheet.boxes == [] and sheet.ink.max() == 0


def test_a_blank_sheet_has_no_dark_pixel_but_the_same_sheet_with_a_digit_has(digits):
    blank = decoded(sheets.render_non_digit("blank", np.random.default_rng(4)))
    written = decoded(sheets.render_digit(digits[2], "plain", np.random.default_rng(4)))
    local = ndimage.gaussian_filter(blank, 25)
    assert (blank < local - 0.15).sum() == 0
    assert (written < ndimage.gaussian_filter(written, 25) - 0.15).sum() > 100
