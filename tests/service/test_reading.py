"""``POST /read`` (every digit of a photo), the 422s of ``/predict`` and ``?explain=1``, through the app.

The photos are sheets made here from scikit-learn's digits (the ``digits_data`` fixture: no MNIST needed),
laid as dark ink on light paper; the answers are checked against the exported signature called directly on
what ``service.images`` prepared (``reference``), and against where each digit was laid.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from service import images

BLANK_422 = ("no digit found in the image: it holds nothing: it is blank. Photograph or draw a digit, dark on light "
             "or light on dark, at least a fortieth of the picture's height")


def sheet_with(digits: list[np.ndarray], lefts: list[int], size=(900, 400), height=200, top=100) -> bytes:
    """A PNG sheet: each 28x28 digit (light on black, in [0, 1]) scaled to ``height`` and laid as dark ink with
    its left edge at ``lefts[i]``."""
    paper = np.full((size[1], size[0]), 235.0)
    for digit, left in zip(digits, lefts):
        glyph = Image.fromarray((digit.reshape(28, 28) * 255).astype(np.uint8)).resize((height, height),
                                                                                      Image.Resampling.BICUBIC)
        ink = np.asarray(glyph, np.float32) / 255.0
        region = paper[top:top + height, left:left + height]
        paper[top:top + height, left:left + height] = np.minimum(region, 235.0 * (1 - 0.9 * ink))
    out = io.BytesIO()
    Image.fromarray(paper.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def clear_digits(digits_data, count: int, reference) -> list[np.ndarray]:
    """``count`` test digits the model reads right and surely (so the tests are about /read, not the model)."""
    _, (x, y) = digits_data
    chosen = []
    for image, label in zip(x, y):
        probabilities = reference(image[None, :])[0]
        if probabilities.argmax() == label and probabilities.max() > 0.9 and label not in [d[1] for d in chosen]:
            chosen.append((image, int(label)))
        if len(chosen) == count:
            return chosen
    raise AssertionError("not enough clear digits")


def test_read_gives_every_digit_left_to_right_with_its_box(client, digits_data, reference):
    chosen = clear_digits(digits_data, 3, reference)
    lefts = [60, 340, 620]
    photo = sheet_with([image for image, _ in chosen], lefts)
    response = client.post("/read", data=photo, content_type="image/png")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"model", "number", "digits"}  # no warnings: nothing touched
    readings = images.read(photo)
    expected = reference(np.stack([reading.pixels for reading in readings]))
    assert body["number"] == "".join(str(int(row.argmax())) for row in expected)
    assert [digit["digit"] for digit in body["digits"]] == [int(row.argmax()) for row in expected]
    for digit, left, row in zip(body["digits"], lefts, expected):
        x, y, width, height = digit["box"]
        assert left - 5 <= x <= left + 60 and 100 <= y <= 160 and 0 < width <= 200 and 40 < height <= 200
        np.testing.assert_array_equal(np.float32(digit["probabilities"]), row)
        assert "image" not in digit and "touching" not in digit


def test_read_takes_the_same_image_inputs_as_predict(client, digits_data, reference):
    chosen = clear_digits(digits_data, 2, reference)
    photo = sheet_with([image for image, _ in chosen], [60, 400])
    as_body = client.post("/read", data=photo, content_type="image/png").get_json()
    as_form = client.post("/read", data={"image": (io.BytesIO(photo), "number.png")},
                          content_type="multipart/form-data").get_json()
    as_json = client.post("/read", json={"b64": base64.b64encode(photo).decode()}).get_json()
    assert as_body == as_form == as_json and len(as_body["digits"]) == 2


def test_explain_adds_the_28x28_image_each_digit_was_read_from(client, digits_data, reference):
    chosen = clear_digits(digits_data, 2, reference)
    photo = sheet_with([image for image, _ in chosen], [60, 400])
    body = client.post("/read?explain=1", data=photo, content_type="image/png").get_json()
    readings = images.read(photo)
    for digit, reading in zip(body["digits"], readings):
        seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(digit["image"]))))
        assert seen.shape == (28, 28) and seen.dtype == np.uint8
        np.testing.assert_array_equal(seen, np.round(reading.pixels.reshape(28, 28) * 255).astype(np.uint8))
    one = sheet_with([chosen[0][0]], [300])
    prediction = client.post("/predict?explain=1", data=one, content_type="image/png").get_json()["predictions"][0]
    seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(prediction["image"]))))
    np.testing.assert_array_equal(seen, np.round(images.to_mnist(one).reshape(28, 28) * 255).astype(np.uint8))
    plain = client.post("/predict", data=one, content_type="image/png").get_json()["predictions"][0]
    assert "image" not in plain


def test_a_blank_photo_is_an_exact_422_on_both_routes(client):
    blank = sheet_with([], [])
    for route in ("/predict", "/read"):
        response = client.post(route, data=blank, content_type="image/png")
        assert response.status_code == 422
        assert response.get_json() == {"error": BLANK_422}


def test_predict_with_several_digits_says_so_and_points_to_read(client, digits_data, reference):
    chosen = clear_digits(digits_data, 2, reference)
    photo = sheet_with([image for image, _ in chosen], [60, 500])
    response = client.post("/predict", data=photo, content_type="image/png")
    assert response.status_code == 422
    boxes = [reading.box[0] for reading in images.read(photo)]
    assert response.get_json() == {"error": f"the image holds 2 digits (from the left, at x={boxes[0]}, "
                                            f"x={boxes[1]}): POST it to /read to read them as a number, or send "
                                            "one digit per image"}
    as_b64 = client.post("/predict", json={"instances": [{"b64": base64.b64encode(photo).decode()}]})
    assert as_b64.status_code == 422 and as_b64.get_json()["error"].startswith("instance 0: the image holds 2 digits")


def test_touching_digits_are_weighed_and_the_answer_says_so(client, digits_data, reference):
    chosen = clear_digits(digits_data, 2, reference)
    photo = sheet_with([image for image, _ in chosen], [100, 175])  # the second's strokes run into the first's
    (reading,) = images.read(photo)
    assert reading.parts, "one mark, wider than tall"
    body = client.post("/read", data=photo, content_type="image/png").get_json()
    (warning,) = body["warnings"]
    assert warning.startswith(f"the mark at x={reading.box[0]}, y={reading.box[1]} is ")
    assert "digits that touch" in warning and "leave a gap between digits" in warning
    assert all(digit.get("touching") is True for digit in body["digits"])
    whole = reference(reading.pixels[None, :])[0]
    parts = reference(np.stack([part.pixels for part in reading.parts]))
    split = images.reads_as_parts(whole, parts)
    assert body["number"] == ("".join(str(int(row.argmax())) for row in parts) if split else str(int(whole.argmax())))


@pytest.mark.parametrize("body,content_type,status,message", [
    (b"\x89PNG\r\n\x1a\n broken", "image/png", 400, "the data is not an image in a supported format"),
    (b'{"instances": [[0.5]]}', "application/json", 400, 'the JSON body must be {"b64": "<base64 image>"}'),
    (b"pixels", "text/csv", 415, "unsupported Content-Type 'text/csv'"),
])
def test_read_refuses_what_is_not_one_image(client, body, content_type, status, message):
    response = client.post("/read", data=body, content_type=content_type)
    assert response.status_code == status and message in response.get_json()["error"]
