"""``POST /predict``: the service's own API (JSON pixels, images, or base64 images in JSON).

Response::

    {"model": {"name": "mnist", "version": 3},
     "predictions": [{"digit": 7, "confidence": 0.998, "probabilities": [10 numbers]}, ...]}

With ``?explain=1`` each prediction also holds ``"image"``: the 28x28 image the model read, as base64 PNG.
A photo must hold one digit: none, or several, is a 422 saying what was found (several: use ``/read``).
"""

from __future__ import annotations

import numpy as np
from flask import Blueprint, request

from . import images
from .errors import RequestError
from .image_inputs import b64_image, explain_requested, is_image_request, png_b64, uploaded_image
from .inputs import (check_batch_size, checked_pixels, is_json_content_type, parse_json, require_object,
                     to_pixel_batch, to_pixels)
from .json_rows import instance_rows
from .web import body_has_bools, json_response, read_body, record_predictions, state

blueprint = Blueprint("native", __name__)

EXPECTED = '{"instances": [[784 numbers in [0, 1]], ...]}'
SUPPORTED = ("application/json, an image (image/png, image/jpeg, image/gif, image/bmp, image/webp) "
             "or multipart/form-data with a file field named 'image'")


@blueprint.post("/predict")
def predict():
    service = state()
    mimetype = request.mimetype
    if is_image_request(mimetype):
        pixels = _one_digit(images.read_one(uploaded_image(), service.config.max_image_pixels), service)
    elif is_json_content_type(mimetype):
        pixels = _json_instances(read_body(), service.config)
    else:
        raise RequestError(f"unsupported Content-Type {mimetype!r}; send {SUPPORTED}", status=415)
    model = service.predictor.get()
    probabilities = model.predict(pixels)
    record_predictions(probabilities)
    digits = probabilities.argmax(axis=1).tolist()
    predictions = [{"digit": digit, "confidence": row[digit], "probabilities": row}
                   for digit, row in zip(digits, probabilities)]
    if explain_requested():
        for prediction, image in zip(predictions, pixels):
            prediction["image"] = png_b64(image)
    return json_response({"model": {"name": service.config.model_name, "version": model.version},
                          "predictions": predictions})


def _one_digit(reading: images.Reading, service) -> np.ndarray:
    """``(1, 784)``: the photo's one mark, unless it looks like touching digits and its parts are each read more
    confidently than the whole (then a 422 that points to /read, as for several digits apart)."""
    if reading.parts:
        model = service.predictor.get()
        whole = model.predict(reading.pixels[None, :])[0]
        parts = model.predict(np.stack([part.pixels for part in reading.parts]))
        if images.reads_as_parts(whole, parts):
            raise RequestError(images.several_digits(len(reading.parts), [part.box[0] for part in reading.parts],
                                                     touching=True), status=images.UNPROCESSABLE)
    return reading.pixels[None, :]


def _json_instances(body: bytes, config) -> np.ndarray:
    rows = instance_rows(body)  # the usual body, straight into NumPy; None: the general path below
    if rows is not None:
        check_batch_size(len(rows), config.max_batch)
        return checked_pixels(rows, "instance")
    payload = require_object(parse_json(body), EXPECTED)
    if "instances" not in payload:
        raise RequestError(f"missing key 'instances'; expected {EXPECTED} or "
                           '{"instances": [{"b64": "<base64 image>"}]}')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise RequestError(f"'instances' must be a list; got {type(instances).__name__}; expected {EXPECTED}")
    check_batch_size(len(instances), config.max_batch)
    if not any(isinstance(item, dict) for item in instances):
        return to_pixel_batch(instances, has_bools=body_has_bools(body))
    rows = []
    for index, item in enumerate(instances):
        if isinstance(item, dict):
            rows.append(_b64_digit(item, index, config.max_image_pixels))
        else:
            rows.append(to_pixels(item, f"instance {index}"))
    return np.stack(rows)


def _b64_digit(item: dict, index: int, max_pixels: int) -> np.ndarray:
    where = f"instance {index}"
    data = b64_image(item, where)
    try:
        return images.to_mnist(data, max_pixels)
    except RequestError as exc:
        raise RequestError(f"{where}: {exc.message}", exc.status) from None
