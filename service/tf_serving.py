"""TensorFlow Serving's REST API (``/v1/models/...``), so existing TF Serving clients work unchanged.

- ``GET  /v1/models/<name>[/versions/<N>]``               model status (``model_version_status``)
- ``GET  /v1/models/<name>[/versions/<N>]/metadata``      ``model_spec`` + ``signature_def``
- ``POST /v1/models/<name>[/versions/<N>]:predict``       row (``instances`` -> ``predictions``) or
  columnar (``inputs`` -> ``outputs``) format; with one output the output name is omitted, as in
  TF Serving. ``:classify`` / ``:regress`` answer 400 (this model has a predict signature only).

Errors are ``{"error": "..."}``. One deliberate difference: while no version is loaded yet the
service answers 503 (retry) where TF Serving answers 404.
"""

from __future__ import annotations

import re

from flask import Blueprint, request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from .contract import SIGNATURE_NAME
from .errors import RequestError
from .inputs import (check_batch_size, checked_pixels, is_json_content_type, parse_json, require_object,
                     to_pixel_batch)
from .json_rows import instance_rows
from .predictor import ModelVersion
from .metrics import set_route
from .web import (body_has_bools, json_response, read_body, record_predictions, state,
                  version_from_url)

blueprint = Blueprint("tf_serving", __name__)

URL = re.compile(
    r"^(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?$")


@blueprint.route("/v1/models/<path:rest>", methods=["GET", "POST"])
def dispatch(rest: str):
    """One route for TF Serving's URL grammar (``:verb`` suffixes are not Flask path segments)."""
    match = URL.match(rest)
    if not match:
        raise NotFound()
    name, version, label, metadata, verb = match.group("name", "version", "label", "metadata", "verb")
    suffix = "/metadata" if metadata else (f":{verb}" if verb else "")
    set_route("/v1/models/<name>" + ("/versions/<version>" if version else "") + suffix)
    _check_method(verb)
    check_servable(name, label)
    version_number = version_from_url(version, name)
    if verb is None:
        return metadata_response(version_number) if metadata else status_response(version_number)
    if verb != "predict":
        raise RequestError(f"the {SIGNATURE_NAME!r} signature of model {name!r} is a predict signature "
                           f"(tensorflow/serving/predict), it cannot {verb}: use :predict")
    return predict_response(version_number)


def _check_method(verb: str | None) -> None:
    """Verbs (``:predict`` ...) take POST, status and metadata GET; an unknown verb is a 404."""
    if verb is not None:
        if verb not in ("predict", "classify", "regress"):
            raise NotFound()
        if request.method != "POST":
            raise MethodNotAllowed(valid_methods=["POST"])
    elif request.method != "GET":
        raise MethodNotAllowed(valid_methods=["GET"])


def check_servable(name: str, label: str | None) -> None:
    """404 for another model's name or a version label (this server has none)."""
    model_name = state().config.model_name
    if name != model_name:
        raise RequestError(f"Servable not found for request: model {name!r} is not served here; "
                           f"the model is {model_name!r}", status=404)
    if label is not None:
        raise RequestError(f"Servable not found for request: no version label {label!r}; this server "
                           "has no labels: use /versions/<N> or no version", status=404)


def _model(version: int | None) -> ModelVersion:
    return state().predictor.get(version)


def status_response(version: int | None):
    return json_response(status_payload(version))


def status_payload(version: int | None) -> dict:
    """``GetModelStatusResponse`` as JSON (also for gRPC): loaded versions AVAILABLE, broken newer ones END."""
    predictor = state().predictor
    loaded = predictor.loaded_versions()
    failures = {failure.version: failure for failure in predictor.failures()}
    entries = []
    for number in sorted(set(loaded) | set(failures), reverse=True):
        if version is not None and number != version:
            continue
        if number in loaded:
            entries.append({"version": str(number), "state": "AVAILABLE",
                            "status": {"error_code": "OK", "error_message": ""}})
        else:
            entries.append({"version": str(number), "state": "END",
                            "status": {"error_code": "UNKNOWN",
                                       "error_message": failures[number].error}})
    if not entries:
        what = f"version {version} of model" if version is not None else "any version of model"
        reason = "" if predictor.ready else f" ({predictor.not_ready_reason()})"
        raise RequestError(f"Could not find {what} {state().config.model_name!r}{reason}", status=404)
    return {"model_version_status": entries}


def metadata_response(version: int | None):
    return json_response(metadata_payload(version))


def metadata_payload(version: int | None) -> dict:
    """``GetModelMetadataResponse`` as JSON (also for gRPC): the model spec and its signature_def."""
    model = _model(version)
    return {
        "model_spec": {"name": state().config.model_name, "signature_name": "",
                       "version": str(model.version)},
        "metadata": {"signature_def": {"signature_def": model.signature_defs}},
    }


def predict_response(version: int | None):
    """Row format (``instances`` -> ``predictions``) or columnar (``inputs`` -> ``outputs``)."""
    service = state()
    if not is_json_content_type(request.mimetype):
        raise RequestError(f"unsupported Content-Type {request.mimetype!r}; send the request as JSON "
                           "(application/json)", status=415)
    body = read_body()
    rows = instance_rows(body)  # the usual row-format body, straight into NumPy (service/json_rows.py)
    if rows is not None:
        model = _model(version)
        check_batch_size(len(rows), service.config.max_batch)
        pixels, answer_key = checked_pixels(rows, "instance"), "predictions"
    else:
        model, pixels, answer_key = _parsed_request(body, version, service.config.max_batch)
    probabilities = model.predict(pixels)
    record_predictions(probabilities)
    return json_response({answer_key: probabilities})


def _parsed_request(body: bytes, version: int | None, max_batch: int):
    """Any valid request body, parsed in full: ``(model, pixels, "predictions" or "outputs")``."""
    payload = require_object(parse_json(body), '{"instances": [...]} or {"inputs": ...}')
    check_signature_name(payload.get("signature_name", SIGNATURE_NAME))
    rows, columns = "instances" in payload, "inputs" in payload
    if rows == columns:
        raise RequestError("Missing 'inputs' or 'instances' key" if not rows else
                           "Must specify either 'inputs' or 'instances' but not both")
    model = _model(version)
    data = payload["instances" if rows else "inputs"]
    if rows and isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        data = [named_input(item, model.input_name, f"instance {index}")
                for index, item in enumerate(data)]
    elif columns and isinstance(data, dict):
        data = named_input(data, model.input_name, "'inputs'")
    if isinstance(data, list):
        check_batch_size(len(data), max_batch)
    pixels = to_pixel_batch(data, allow_square=False, has_bools=body_has_bools(body))
    return model, pixels, "predictions" if rows else "outputs"


def check_signature_name(signature: str) -> None:
    """The one signature served (``""`` means the default, as in TF Serving)."""
    if signature not in (SIGNATURE_NAME, ""):
        raise RequestError(f"Serving signature name: {signature!r} not found in signature def; "
                           f"this model has {SIGNATURE_NAME!r}")


def named_input(item: dict, input_name: str, where: str):
    """The value of ``{input_name: value}``; any other key, or none, is an error."""
    unknown = sorted(set(item) - {input_name})
    if unknown or input_name not in item:
        raise RequestError(f"{where} must have exactly the input {input_name!r} "
                           f"(got {sorted(item) or 'no keys'})")
    return item[input_name]
