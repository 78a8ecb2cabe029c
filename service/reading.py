"""``POST /read``: every digit of one photo, left to right, as a number.

Request: the same image inputs as ``/predict`` (an image body, a multipart field ``image``, or JSON
``{"b64": "<base64 image>"}``). Response::

    {"model": {"name": "mnist", "version": 3},
     "number": "4027",
     "digits": [{"digit": 4, "confidence": 0.998, "probabilities": [10 numbers], "box": [x, y, w, h]}, ...]}

``box`` is in the photo's pixels (after its EXIF rotation). A mark much wider than tall is likely digits that
touch: it is read both as one digit and cut into the digits it would hold, one reading is kept
(``images.reads_as_parts``; its digits marked ``"touching": true``), and ``"warnings"`` says so, with the other reading, instead of
guessing silently. ``?explain=1`` adds each digit's 28x28 image (``"image"``, base64 PNG). A photo without a digit
is a 422 saying what was found instead.
"""

from __future__ import annotations

import numpy as np
from flask import Blueprint, request

from . import images
from .errors import RequestError
from .image_inputs import b64_image, explain_requested, is_image_request, png_b64, uploaded_image
from .inputs import is_json_content_type, parse_json, require_object
from .web import json_response, read_body, record_predictions, state

blueprint = Blueprint("reading", __name__)

EXPECTED = '{"b64": "<base64 image>"}'
SUPPORTED = ("an image (image/png, image/jpeg, image/gif, image/bmp, image/webp), multipart/form-data with a file "
             f"field named 'image', or JSON {EXPECTED}")


@blueprint.post("/read")
def read():
    service = state()
    readings = images.read(_photo(), service.config.max_image_pixels)
    model = service.predictor.get()
    wholes = model.predict(np.stack([reading.pixels for reading in readings]))
    digits, warnings, explain = [], [], explain_requested()
    for reading, whole in zip(readings, wholes):
        chosen, warning = _weigh(model, reading, whole, explain)
        digits += chosen
        if warning:
            warnings.append(warning)
    record_predictions(np.stack([digit["probabilities"] for digit in digits]))
    answer = {"model": {"name": service.config.model_name, "version": model.version},
              "number": "".join(str(digit["digit"]) for digit in digits), "digits": digits}
    if warnings:
        answer["warnings"] = warnings
    return json_response(answer)


def _photo() -> bytes:
    """The one image of the request."""
    mimetype = request.mimetype
    if is_image_request(mimetype):
        return uploaded_image()
    if is_json_content_type(mimetype):
        payload = require_object(parse_json(read_body()), EXPECTED)
        return b64_image(payload, "the JSON body")
    raise RequestError(f"unsupported Content-Type {mimetype!r}; send {SUPPORTED}", status=415)


def _weigh(model, reading: images.Reading, whole: np.ndarray, explain: bool) -> tuple[list[dict], str | None]:
    """The digit(s) of one mark: the mark read whole, or, if it looks like touching digits and its parts are
    each read more confidently than the whole, its parts; with a warning in either case."""
    if not reading.parts:
        return [_digit(reading, whole, explain)], None
    parts = model.predict(np.stack([part.pixels for part in reading.parts]))
    split = images.reads_as_parts(whole, parts)
    as_one, as_parts = str(int(whole.argmax())), "".join(str(int(p.argmax())) for p in parts)
    x, y, width, height = reading.box
    warning = (f"the mark at x={x}, y={y} is {width / max(height, 1):.1f} times wider than tall: likely "
               f"{len(parts)} digits that touch, read as {as_parts if split else as_one!r} (as "
               f"{'one digit' if split else f'{len(parts)} digits'} it would read {as_one if split else as_parts!r}); "
               "leave a gap between digits for a sure reading")
    if split:
        return [_digit(part, row, explain, touching=True) for part, row in zip(reading.parts, parts)], warning
    return [_digit(reading, whole, explain, touching=True)], warning


def _digit(reading: images.Reading, probabilities: np.ndarray, explain: bool, touching: bool = False) -> dict:
    digit = int(probabilities.argmax())
    answer = {"digit": digit, "confidence": probabilities[digit], "probabilities": probabilities, "box": reading.box}
    if touching:
        answer["touching"] = True
    if explain:
        answer["image"] = png_b64(reading.pixels)
    return answer
