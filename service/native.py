"""``POST /predict``: the service's own API (JSON pixels, images, or base64 images in JSON).

Response::

    {"model": {"name": "mnist", "version": 3},
     "predictions": [{"digit": 7, "confidence": 0.998, "probabilities": [10 numbers]}, ...]}
"""

from __future__ import annotations

import base64
import binascii

import numpy as np
from flask import Blueprint, request

from . import images
from .errors import RequestError
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
    if images.is_image_content_type(mimetype):
        pixels = images.to_mnist(read_body(), service.config.max_image_pixels)[None, :]
    elif mimetype == "multipart/form-data":
        pixels = _multipart_image(service.config.max_image_pixels)
    elif is_json_content_type(mimetype):
        pixels = _json_instances(read_body(), service.config)
    else:
        raise RequestError(f"unsupported Content-Type {mimetype!r}; send {SUPPORTED}", status=415)
    model = service.predictor.get()
    probabilities = model.predict(pixels)
    record_predictions(probabilities)
    digits = probabilities.argmax(axis=1).tolist()
    return json_response({
        "model": {"name": service.config.model_name, "version": model.version},
        "predictions": [
            {"digit": digit, "confidence": row[digit], "probabilities": row}
            for digit, row in zip(digits, probabilities)
        ],
    })


def _multipart_image(max_pixels: int) -> np.ndarray:
    upload = request.files.get("image")
    if upload is None:
        # a part whose name Werkzeug cannot parse (e.g. name="\") is listed under None: leave it out
        fields = sorted(str(name) for name in set(request.files) | set(request.form) if name is not None)
        raise RequestError("the multipart form has no file field named 'image'"
                           + (f" (it has: {', '.join(fields)})" if fields else ""))
    return images.to_mnist(upload.read(), max_pixels)[None, :]


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
            rows.append(_b64_image(item, index, config.max_image_pixels))
        else:
            rows.append(to_pixels(item, f"instance {index}"))
    return np.stack(rows)


def _b64_image(item: dict, index: int, max_pixels: int) -> np.ndarray:
    if set(item) != {"b64"} or not isinstance(item["b64"], str):
        raise RequestError(f'instance {index} is an object, so it must be {{"b64": "<base64 image>"}}; '
                           f"got keys {sorted(item)}")
    text = item["b64"].strip()
    if text.startswith("data:") and "," in text:  # a data: URL, e.g. from canvas.toDataURL()
        text = text.split(",", 1)[1]
    try:
        data = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4),
                                validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"instance {index}: 'b64' is not valid base64") from None
    try:
        return images.to_mnist(data, max_pixels)
    except RequestError as exc:
        raise RequestError(f"instance {index}: {exc.message}", exc.status) from None
