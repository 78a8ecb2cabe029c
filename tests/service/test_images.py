"""service/images: each mechanism that reads real-world photos, on pictures made here whose truth is known.

Every test targets one mechanism and fails without it: the light evened out (gradients, hard shadows, fat
strokes), the polarity, the ink channel, lines, specks, edges, the grouping of strokes into digits, the stroke
width brought to MNIST's, large JPEGs decoded at reduced size, touching digits, and the 422s that say what was
found. No MNIST needed: the strokes are drawn here. (Accuracy on realistic photos: tests/service/test_photos.py.)
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image, ImageDraw

from service import images
from service.errors import RequestError
from service.images import decode, marks, mnist, paper
from tests.reliability.strategies import images as images_strategy

PAPER, INK = (235, 232, 225), (25, 25, 30)


def sheet(size=(640, 480), colour=PAPER) -> Image.Image:
    return Image.new("RGB", size, colour)


def seven(draw: ImageDraw.ImageDraw, left: int, top: int, height: int, width: int, colour=INK) -> None:
    """A 7: a bar and a slanted stem, ``width`` pixels thick."""
    right = left + int(0.7 * height)
    draw.line([(left, top), (right, top), (left + int(0.25 * height), top + height)], fill=colour, width=width,
              joint="curve")


def one(draw: ImageDraw.ImageDraw, x: int, top: int, height: int, width: int, colour=INK) -> None:
    draw.line([(x, top), (x - height // 10, top + height)], fill=colour, width=width)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def lit(image: Image.Image, light: np.ndarray) -> Image.Image:
    """The picture under a light field (rows x cols, 1 = full light)."""
    pixels = np.asarray(image, np.float32) * light[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def found(image: Image.Image) -> marks.Found:
    ink = paper.ink_map(image)
    return marks.find_digits(ink.mask, ink.ink, ink.off_sheet)


# ---- the light ------------------------------------------------------------------------------------------------
def test_uneven_light_is_evened_out_before_the_ink_is_measured():
    picture = sheet()
    seven(ImageDraw.Draw(picture), 380, 140, 200, 14)
    rows, cols = 480, 640
    y, x = np.mgrid[0:rows, 0:cols] / np.array([rows, cols])[:, None, None]
    light = (1.0 - 0.6 * x) * (1.0 - 0.4 * ((x - 0.4) ** 2 + (y - 0.5) ** 2))  # fall-off and vignetting
    ink = paper.ink_map(lit(picture, light.astype(np.float32)))
    bare = ~ndimage_dilate(ink.mask, 6)
    assert float(np.percentile(ink.ink[bare], 99)) < 0.08  # the dim side is not ink
    assert float(np.median(ink.ink[ink.mask])) > 0.7  # the strokes are, as strongly on either side
    assert len(found(lit(picture, light.astype(np.float32))).digits) == 1


def test_a_hard_shadow_across_a_digit_leaves_no_false_stroke_along_its_edge():
    picture = sheet()
    seven(ImageDraw.Draw(picture), 260, 150, 200, 12)
    light = np.ones((480, 640), np.float32)
    rows, cols = np.mgrid[0:480, 0:640]
    light[rows < 0.35 * cols + 120] = 0.45  # a straight shadow's edge crossing the 7
    photo = lit(picture, light)
    ink = paper.ink_map(photo)
    away = ~ndimage_dilate(ink.mask & (np.asarray(picture.convert("L")) < 128), 8)
    assert float(np.percentile(ink.ink[away], 99.5)) < 0.15  # nothing along the shadow's edge
    result = found(photo)
    assert len(result.digits) == 1
    top, left, bottom, right = result.digits[0].box
    assert abs(top - 150) < 15 and abs(bottom - 350) < 15  # the whole 7, in shadow and out


def test_a_fat_stroke_is_ink_all_the_way_across():
    picture = sheet((400, 400))
    ImageDraw.Draw(picture).line([(200, 40), (200, 360)], fill=INK, width=90)  # a marker's 1 filling the frame
    ink = paper.ink_map(picture)
    assert float(ink.ink[100:300, 170:230].min()) > 0.7  # the middle too, not only the edges


@pytest.mark.parametrize("darkness", [0.15, 0.2])
def test_the_light_under_a_pale_pencil_stroke_wider_than_the_fine_closing_is_the_papers(darkness):
    """A pencil's stroke lets through 80-85 % of the light: too pale for ``FAT_STROKE``'s switch to the coarse
    light, and 20 px wide, wider than the fine closing's side (13 px here): without the medium closing, the
    light follows the stroke over most of it (65-99 % of its pixels off by more than 5 %) and the stroke is
    lost."""
    outline = Image.new("L", (640, 480), 0)
    seven(ImageDraw.Draw(outline), 200, 120, 240, 20, colour=255)
    stroke = np.asarray(outline) > 0
    channel = (0.9 * (1.0 - darkness * stroke)).astype(np.float32)
    light, _ = paper.sheet_light(channel)
    off = (0.9 - light[stroke]) / 0.9
    assert float(np.mean(off > 0.05)) < 0.1
    assert float(np.percentile(off, 90)) < 0.05


def test_chalk_on_a_board_is_read_as_light_ink_on_a_dark_sheet():
    board = sheet(colour=(40, 60, 50))
    seven(ImageDraw.Draw(board), 250, 120, 220, 16, colour=(230, 230, 225))
    assert paper.is_light_on_dark(board)
    assert not paper.is_light_on_dark(sheet())
    result = found(board)
    assert len(result.digits) == 1 and result.digits[0].height > 200


@pytest.mark.parametrize("colour", [(40, 60, 170), (190, 40, 40), (30, 30, 30)])
def test_blue_red_and_black_ink_are_equally_strong(colour):
    picture = sheet()
    one(ImageDraw.Draw(picture), 320, 100, 250, 14, colour=colour)
    ink = paper.ink_map(picture)
    assert float(np.percentile(ink.ink[ink.mask], 90)) > 0.65  # the darkest channel of each ink


# ---- lines, specks, edges -------------------------------------------------------------------------------------
def test_ruled_lines_are_removed_and_the_strokes_they_crossed_joined_again():
    picture = sheet()
    draw = ImageDraw.Draw(picture)
    for y in range(60, 480, 70):  # ruled paper, slightly tilted
        draw.line([(0, y), (640, y + 12)], fill=(120, 140, 200), width=3)
    one(draw, 320, 95, 260, 14)
    ink = paper.ink_map(picture)
    cleaned, lines = marks.remove_lines(ink.mask)
    assert lines >= 6
    labels, count = ndimage_label(cleaned)
    sizes = np.bincount(labels.ravel())[1:]
    assert count >= 1 and sizes.max() > 0.9 * sizes.sum()  # the 1, whole: the crossings were bridged
    assert not cleaned[:, :200].any()  # no line left away from the digit
    result = marks.find_digits(ink.mask, ink.ink, ink.off_sheet)
    assert len(result.digits) == 1 and result.lines >= 6


def test_lines_seen_in_perspective_and_a_line_along_a_digits_bar_are_removed():
    """A photo's perspective turns the ruled lines by different angles (they meet far away): each angle is
    looked at in turn. A line lying along the 7's bar piles the bar's pixels into its bins, a run too thick
    for a line: the line's own bins, the fullest, are still found."""
    picture = sheet()
    draw = ImageDraw.Draw(picture)
    for k, y in enumerate(range(40, 480, 60)):  # the lines fan out: 1.0 to 2.9 degrees
        draw.line([(0, y), (640, y + 11 + 3 * k)], fill=(120, 140, 200), width=3)
    seven(draw, 250, 175, 220, 14)  # its bar along the line from (0, 160) to (640, 177): y=167 at x=250
    ink = paper.ink_map(picture)
    cleaned, lines = marks.remove_lines(ink.mask)
    assert lines >= 8
    for away in (np.s_[:, :200], np.s_[:, 460:]):  # away from the digit: a few stray pixels of the fringe at most
        assert cleaned[away].sum() < 0.05 * ink.mask[away].sum()
    result = marks.find_digits(ink.mask, ink.ink, ink.off_sheet)
    assert len(result.digits) == 1 and result.lines >= 8
    top, left, bottom, right = result.digits[0].box
    assert 160 <= top <= 180 and bottom - top >= 200  # the 7 kept whole: its bar and its stem


def test_the_sheets_edge_against_a_table_is_not_a_line_to_remove():
    """Beyond the sheet's edge a dark table's grain fills the bins beside the edge: that run is thick because a
    band crosses the frame, not because a digit crosses a line, so no line is cut out of it (cutting it broke
    the table's grain off the edge into marks taken for digits). Two photos of the photo benchmark's table
    look (bench/photo_sheets.py) where it did."""
    from bench.photo_sheets import render_digit
    from bench.photos import photo_rng

    patch = Image.new("F", (28, 28), 0.0)
    ImageDraw.Draw(patch).line([(7, 6), (21, 6), (11, 23)], fill=1.0, width=3)  # a 7, MNIST-sized
    for index in (6, 55):
        data = render_digit(np.asarray(patch, np.float32), "table_edge", photo_rng(21, "table_edge", index))
        image, _ = decode.decode_image(data, 4096 * 4096)
        assert len(found(image).digits) == 1, f"photo {index}"


def test_beyond_the_sheet_a_tables_grain_is_no_digit_while_a_digit_in_a_deep_shadow_is():
    """Where the paper's light falls below a quarter of the brightest sheet's, in a region that comes in from
    the frame's border, there is no paper but a table: its grain is dropped. Paper in a hand's shadow keeps a
    third of the light, and its digit is read; so is a huge fat digit, as dark but on the sheet. The tables:
    three sheets of the photo benchmark's 'no digit, table edge' row that were read as digits."""
    from bench.photo_sheets import render_non_digit
    from bench.photos import photo_rng

    for index in (33, 58, 73):
        with pytest.raises(RequestError) as info:
            images.read(render_non_digit("table_edge", photo_rng(21, "no_digit_table_edge", index)))
        assert info.value.status == 422 and info.value.message.startswith("no digit found in the image"), index
    picture = sheet()
    seven(ImageDraw.Draw(picture), 260, 150, 200, 16)
    light = np.ones((480, 640), np.float32)
    light[:, :200] = 0.21  # a dark table beyond the sheet's edge (darker still is ink: paper.FLOOR)
    light[:, 200:] = np.where(np.mgrid[0:480, 200:640][0] < 240, 0.33, 1.0)  # the 7's top in a hand's shadow
    ink = paper.ink_map(lit(picture, light))
    assert ink.off_sheet[:, :190].mean() > 0.95 and ink.off_sheet[:, 210:].mean() < 0.01
    assert len(found(lit(picture, light)).digits) == 1
    fat = sheet()  # a marker's 0 as dark and as large as a table (31 % of the frame), but on the sheet
    ImageDraw.Draw(fat).ellipse([150, 40, 490, 440], outline=INK, width=120)
    assert not paper.ink_map(fat).off_sheet.any() and len(found(fat).digits) == 1


def test_specks_and_dots_are_not_digits():
    picture = sheet()
    draw = ImageDraw.Draw(picture)
    seven(draw, 300, 130, 220, 14)
    for x, y, r in ((60, 60, 6), (580, 400, 9), (120, 420, 4), (560, 80, 7)):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(60, 50, 40))
    result = found(picture)
    assert len(result.digits) == 1 and result.specks >= 4
    assert result.digits[0].box[1] >= 290  # the 7's box, not stretched to the specks


def test_a_table_at_the_sheets_edge_is_not_a_digit_but_a_digit_touching_the_border_is():
    picture = sheet()
    draw = ImageDraw.Draw(picture)
    draw.polygon([(0, 0), (90, 0), (60, 480), (0, 480)], fill=(50, 40, 35))  # the table beyond the sheet
    one(draw, 420, 0, 300, 16)  # a 1 starting at the top border
    result = found(picture)
    assert result.edges >= 1
    assert len(result.digits) == 1 and result.digits[0].box[1] > 350


def test_strokes_of_one_digit_are_grouped_and_digits_apart_are_not():
    picture = sheet()
    draw = ImageDraw.Draw(picture)
    draw.line([(100, 165), (100, 240), (170, 240), (170, 330), (100, 330)], fill=INK, width=12)  # a 5's body
    draw.line([(115, 140), (180, 140)], fill=INK, width=12)  # ... and its flag, written apart
    one(draw, 400, 140, 190, 12)
    result = found(picture)
    assert len(result.digits) == 2
    assert len(result.digits[0].marks) == 2 and result.digits[0].box[2] - result.digits[0].box[0] > 180


# ---- MNIST's normalisation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("width", [3, 60])
def test_thin_and_thick_strokes_are_brought_to_mnists_width(width):
    patch = Image.new("F", (160, 200), 0.0)
    ImageDraw.Draw(patch).line([(40, 20), (130, 20), (60, 190)], fill=1.0, width=width)
    before = mnist.stroke_width(mnist.resize(np.asarray(patch), mnist.STROKE_SIDE / 200))
    after = mnist.stroke_width(mnist.normalise_stroke(np.asarray(patch)))
    target = mnist.MNIST_STROKE * mnist.STROKE_SIDE
    low, high = mnist.STROKE_TOLERANCE
    assert not low * target <= before <= high * target  # it needed a change
    assert abs(after - target) < abs(before - target) and 0.6 * target <= after <= 1.6 * target


def test_a_digit_is_centred_by_its_centre_of_mass_in_a_20_pixel_box():
    picture = sheet()
    one(ImageDraw.Draw(picture), 80, 30, 120, 10)  # small, in a corner
    pixels = images.to_mnist(png(picture)).reshape(28, 28)
    rows = np.flatnonzero(pixels.max(axis=1) > 0.1)
    assert rows[-1] - rows[0] + 1 in (19, 20, 21)
    mass = pixels.sum()
    centre = ((pixels.sum(axis=1) * np.arange(28)).sum() / mass, (pixels.sum(axis=0) * np.arange(28)).sum() / mass)
    assert abs(centre[0] - 14) < 1 and abs(centre[1] - 14) < 1


# ---- decoding -------------------------------------------------------------------------------------------------
def test_a_12_megapixel_jpeg_is_decoded_at_reduced_size_in_its_dct(monkeypatch):
    big = sheet((4000, 3000))
    one(ImageDraw.Draw(big), 2000, 800, 1400, 90)
    data = jpeg(big)
    sizes = []
    original = Image.Image.load

    def load(self):
        result = original(self)
        sizes.append(self.size)
        return result

    monkeypatch.setattr(Image.Image, "load", load)
    image, scale = decode.decode_image(data, 20_000_000)
    assert sizes[0] == (1000, 750)  # the JPEG decoded at 1/4 scale: Image.draft, not 4000x3000 then resized
    assert max(image.size) == decode.WORKING_SIDE and scale == pytest.approx(4000 / decode.WORKING_SIDE)
    reading = images.read(data, 20_000_000)
    assert len(reading) == 1 and reading[0].box[3] > 1200  # the box in the photo's own pixels


def test_an_image_over_max_image_pixels_is_refused_before_decoding():
    with pytest.raises(RequestError) as info:
        decode.decode_image(jpeg(sheet((1200, 1000))), 1_000_000)
    assert info.value.status == 413 and "1200x1000 = 1200000 pixels" in info.value.message


@pytest.mark.parametrize("shape", [(1, 1), (1, 300), (300, 1), (2, 600), (3, 4000), (4000, 3)])
def test_a_strip_one_to_a_few_pixels_thin_is_a_422_not_a_crash(shape):
    # a strip thinner than the reduction's block (300 x 1 at a block of 2) once reduced to nothing: IndexError, 500
    rng = np.random.default_rng(7)
    for pixels in (np.full(shape, 255, np.uint8), rng.integers(0, 256, shape, dtype=np.uint8)):
        with pytest.raises(RequestError) as info:
            images.read(png(Image.fromarray(pixels)))
        assert info.value.status == 422 and info.value.message.startswith("no digit found in the image")


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(picture=images_strategy(), keep=st.sampled_from([1.0, 1.0, 0.9, 0.5]))
def test_random_pictures_are_read_or_refused_with_a_request_error(picture, keep):
    # the reliability suite sends these through gunicorn; here, in-process, every exception shows its traceback
    _, data = picture
    try:
        readings = images.read(data[:int(len(data) * keep)])
    except RequestError as error:
        assert 400 <= error.status < 500
    else:
        assert readings and all(reading.pixels.shape == (784,) for reading in readings)

# ---- touching digits and honest answers -----------------------------------------------------------------------
def test_a_mark_much_wider_than_tall_is_also_cut_into_the_digits_it_likely_holds():
    picture = sheet()
    draw = ImageDraw.Draw(picture)
    seven(draw, 150, 150, 200, 14)
    seven(draw, 280, 150, 200, 14)  # the second 7's bar runs into the first's
    (reading,) = images.read(png(picture))
    assert len(reading.parts) == 2
    assert reading.parts[0].box[0] < reading.parts[1].box[0]
    assert abs(reading.parts[1].box[0] - 280) < 50  # cut near where the second 7 begins


def test_no_digit_is_a_422_that_says_what_was_found():
    blank = sheet()
    with pytest.raises(RequestError) as info:
        images.to_mnist(jpeg(blank))
    assert info.value.status == 422
    assert info.value.message == ("no digit found in the image: it holds nothing: it is blank. Photograph or draw a "
                                  "digit, dark on light or light on dark, at least a fortieth of the picture's height")
    lined = sheet()
    ImageDraw.Draw(lined).line([(0, 200), (640, 210)], fill=(90, 100, 160), width=3)
    with pytest.raises(RequestError) as info:
        images.to_mnist(png(lined))
    assert info.value.message.startswith("no digit found in the image: it holds only 1 straight line")


def test_several_digits_where_one_is_expected_is_a_422_pointing_to_read():
    picture = sheet()
    draw = ImageDraw.Draw(picture)
    one(draw, 150, 120, 220, 14)
    seven(draw, 350, 120, 220, 14)
    with pytest.raises(RequestError) as info:
        images.to_mnist(png(picture))
    assert info.value.status == 422
    assert info.value.message.startswith("the image holds 2 digits (from the left, at x=")
    assert info.value.message.endswith("POST it to /read to read them as a number, or send one digit per image")


# ---- the fast paths match the SciPy operations they stand for -------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 9), (7, 40), (61, 33), (200, 151)])
@pytest.mark.parametrize("size", [3, 5, 13, 35, 63])
def test_extreme_along_is_scipys_maximum_and_minimum_filter(shape, size):
    from scipy import ndimage

    values = np.random.default_rng(size).random(shape, dtype=np.float32)
    for axis in (0, 1):
        for pick, scipy_filter in ((np.maximum, ndimage.maximum_filter1d), (np.minimum, ndimage.minimum_filter1d)):
            work = [np.empty_like(values), np.empty_like(values)]
            got = paper.extreme_along(values, size, axis, pick, work)
            np.testing.assert_array_equal(got, scipy_filter(values, size, axis=axis, mode="nearest"))


@pytest.mark.parametrize("side", [3, 13, 35])
def test_the_closing_is_scipys_grey_closing_of_the_reflected_photo(side):
    from scipy import ndimage

    flat = np.random.default_rng(side).random((90, 120), dtype=np.float32) * 1.2
    pad = side // 2 + 1
    extended = np.clip(np.pad(flat, pad, mode="reflect", reflect_type="odd"), 0.0, 2.0)
    expected = ndimage.grey_closing(extended, size=(side, side), mode="nearest")[pad:-pad, pad:-pad]
    np.testing.assert_array_equal(paper.closing(flat, side), expected)


@pytest.mark.parametrize("size", [3, 7, 21])
def test_the_bridge_across_a_removed_line_is_scipys_binary_closing(size):
    from scipy import ndimage

    kept = np.random.default_rng(size).random((80, 50)) < 0.3
    expected = ndimage.binary_closing(kept, structure=np.ones((size, 1), bool))
    np.testing.assert_array_equal(marks._closed_across(kept, size), expected)


def test_marks_measured_on_the_inks_extent_are_those_of_the_whole_photo():
    """``measure`` labels and measures only the rows and columns the mask covers (plus a pixel): the label image
    is the whole photo's own labelling, and each mark's box is where its pixels are."""
    from scipy import ndimage

    rng = np.random.default_rng(5)
    mask = np.zeros((300, 400), bool)
    mask[60:240, 90:330] = ndimage.binary_opening(rng.random((180, 240)) < 0.55)
    ink = rng.random(mask.shape).astype(np.float32) * mask
    labels, found_marks = marks.measure(mask, ink, np.zeros(mask.shape, bool))
    expected, count = ndimage.label(mask, structure=np.ones((3, 3), bool))
    np.testing.assert_array_equal(labels, expected)
    assert len(found_marks) == count > 10
    for mark in found_marks:
        rows, cols = np.nonzero(expected == mark.label)
        assert mark.box == (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        assert mark.area == rows.size
        assert mark.peak == pytest.approx(float(ink[rows, cols].max()))
        assert mark.ink == pytest.approx(float(ink[rows, cols].mean()), rel=1e-5)


# ---- helpers --------------------------------------------------------------------------------------------------
def ndimage_dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=iterations)


def ndimage_label(mask: np.ndarray):
    from scipy import ndimage

    return ndimage.label(mask, structure=np.ones((3, 3), bool))
