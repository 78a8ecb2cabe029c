"""Open Inference Protocol (KServe v2) over HTTP, so KServe and Triton clients work too.

- ``GET  /v2``                                            server metadata
- ``GET  /v2/health/live``, ``GET /v2/health/ready``      200 ``{"live"|"ready": true}`` (503 when not)
- ``GET  /v2/models/<name>[/versions/<N>]``               model metadata (inputs/outputs, FP32)
- ``GET  /v2/models/<name>[/versions/<N>]/ready``         200 ``{"name", "ready": true}`` (503 when not)
- ``POST /v2/models/<name>[/versions/<N>]/infer``         one FP32 input ``[n, 784]`` ->
  one FP32 output ``[n, 10]`` (``data`` flattened, row-major)

The body is read as JSON whatever the Content-Type (Triton's HTTP client sends none). Triton's
binary tensor data extension is supported both ways (``Inference-Header-Content-Length``), because
Triton's client uses it by default.
"""

from __future__ import annotations

import json

import numpy as np
from flask import Blueprint, Response, request

from .contract import CLASSES, PIXELS
from .errors import RequestError
from .inputs import check_batch_size, checked_pixels, numeric_array, parse_json, require_object
from .predictor import ModelNotReady, ModelVersion
from .web import (body_has_bools, json_response, read_body, record_predictions, state,
                  version_from_url)

blueprint = Blueprint("kserve", __name__)

SERVER_NAME = "mnist-digits"
SERVER_VERSION = "0.1.0"
HEADER_LENGTH = "Inference-Header-Content-Length"
DTYPES = {"FP32": "<f4", "FP64": "<f8", "FP16": "<f2"}  # accepted input datatypes (JSON or binary)
EXPECTED = ('{"inputs": [{"name": "pixels", "shape": [n, 784], "datatype": "FP32", '
            '"data": [n*784 numbers in [0, 1]]}]}')


@blueprint.get("/v2")
def server_metadata():
    return json_response({"name": SERVER_NAME, "version": SERVER_VERSION,
                          "extensions": ["binary_tensor_data"]})


@blueprint.get("/v2/health/live")
def live():
    return json_response({"live": True})


@blueprint.get("/v2/health/ready")
def ready():
    is_ready = state().predictor.ready
    return json_response({"ready": is_ready}, 200 if is_ready else 503)


def find_model(name: str, version: str | None) -> ModelVersion:
    """The loaded model version a URL names (404 for another model or a version not loaded)."""
    service = state()
    if name != service.config.model_name:
        raise RequestError(f"unknown model {name!r}; this server serves {service.config.model_name!r}",
                           status=404)
    return service.predictor.get(version_from_url(version, name))


@blueprint.get("/v2/models/<name>")
@blueprint.get("/v2/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None):
    return json_response(metadata_payload(name, version))


def metadata_payload(name: str, version: str | None) -> dict:
    """Model metadata (also for gRPC's ``ModelMetadata``): inputs and outputs, FP32."""
    model = find_model(name, version)
    return {
        "name": state().config.model_name,
        "versions": [str(v) for v in state().predictor.loaded_versions()],
        "platform": "tensorflow_savedmodel",
        "inputs": [{"name": model.input_name, "datatype": "FP32", "shape": [-1, PIXELS]}],
        "outputs": [{"name": model.output_name, "datatype": "FP32", "shape": [-1, CLASSES]}],
    }


@blueprint.get("/v2/models/<name>/ready")
@blueprint.get("/v2/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):
    try:
        find_model(name, version)
    except ModelNotReady:
        return json_response({"name": name, "ready": False}, 503)
    return json_response({"name": name, "ready": True})


@blueprint.post("/v2/models/<name>/infer")
@blueprint.post("/v2/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None):
    config = state().config
    model = find_model(name, version)
    header, binary = _split_body(read_body())
    payload = require_object(parse_json(header), EXPECTED)
    _check_request_id(payload)
    tensor = input_tensor(payload, model)
    pixels = _pixels(tensor, binary, config.max_batch, body_has_bools(header))
    outputs = requested_outputs(payload, model)
    probabilities = model.predict(pixels)
    record_predictions(probabilities)
    response = {"model_name": config.model_name, "model_version": str(model.version)}
    if "id" in payload:
        response["id"] = payload["id"]
    output = {"name": model.output_name, "datatype": "FP32", "shape": list(probabilities.shape)}
    if _binary_output(payload, outputs):
        return _binary_response(response, output, probabilities)
    output["data"] = probabilities.reshape(-1)
    response["outputs"] = [output]
    return json_response(response)


def _split_body(body: bytes) -> tuple[bytes, bytes]:
    """``(JSON header, binary tensor data)``: split at ``Inference-Header-Content-Length`` if given."""
    header_length = request.headers.get(HEADER_LENGTH)
    if header_length is None:
        return body, b""
    try:
        split = int(header_length)
        if not 0 < split <= len(body):
            raise ValueError
    except ValueError:
        raise RequestError(f"{HEADER_LENGTH} must be the length of the JSON header (1 to "
                           f"{len(body)}); got {header_length!r}") from None
    return body[:split], body[split:]


def _check_request_id(payload: dict) -> None:
    """The ``id`` is echoed in the response, so it must be valid JSON (no NaN or Infinity)."""
    if "id" not in payload:
        return
    try:
        json.dumps(payload["id"], allow_nan=False)
    except ValueError:
        raise RequestError("'id' must be a string identifying the request; got a NaN or "
                           "Infinity") from None


def _binary_response(response: dict, output: dict, probabilities: np.ndarray) -> Response:
    """The JSON header (``binary_data_size`` in the output's parameters), then the raw float32s."""
    raw = probabilities.astype("<f4").tobytes()
    output["parameters"] = {"binary_data_size": len(raw)}
    response["outputs"] = [output]
    head = json.dumps(response, separators=(",", ":")).encode()
    return Response(head + raw, mimetype="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(head))})


def input_tensor(payload: dict, model: ModelVersion) -> dict:
    """The one input tensor of ``payload`` (name, datatype, shape checked; also for gRPC's ModelInfer)."""
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError(f"'inputs' must be a non-empty list of input tensors; expected {EXPECTED}")
    if len(inputs) != 1:
        raise RequestError(f"the model has one input, {model.input_name!r}; got {len(inputs)} inputs")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise RequestError(f"each input must be an object with name, shape, datatype and data; "
                           f"expected {EXPECTED}")
    missing = [key for key in ("name", "shape", "datatype") if key not in tensor]
    if missing:
        raise RequestError(f"input is missing {', '.join(repr(key) for key in missing)}; expected {EXPECTED}")
    if tensor["name"] != model.input_name:
        raise RequestError(f"unknown input {tensor['name']!r}; the model's input is {model.input_name!r}")
    if not isinstance(tensor["datatype"], str) or tensor["datatype"] not in DTYPES:
        raise RequestError(f"input datatype must be FP32 (got {tensor['datatype']!r})")
    shape = tensor["shape"]
    if (not isinstance(shape, list) or len(shape) != 2 or shape[1] != PIXELS
            or not all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape)):
        raise RequestError(f"input shape must be [n, {PIXELS}] (n images of 784 pixels); got {shape!r}")
    return tensor


def _pixels(tensor: dict, binary: bytes, max_batch: int, has_bools: bool) -> np.ndarray:
    """The input tensor's values (binary or JSON ``data``) as checked ``(n, 784)`` float32 pixels."""
    count = tensor["shape"][0]
    check_batch_size(count, max_batch)
    params = _parameters(tensor, "input 'parameters'")
    if "binary_data_size" in params:
        values = _binary_values(tensor, params["binary_data_size"], binary)
    else:
        values = _json_values(tensor, has_bools)
    return checked_pixels(values.reshape(count, PIXELS), "instance")


def _binary_values(tensor: dict, declared: object, binary: bytes) -> np.ndarray:
    """The tensor's values from the binary data after the JSON header (Triton's extension)."""
    size = tensor["shape"][0] * PIXELS
    itemsize = np.dtype(DTYPES[tensor["datatype"]]).itemsize
    if (not isinstance(declared, int) or isinstance(declared, bool) or declared != size * itemsize
            or len(binary) < declared):
        raise RequestError(f"binary_data_size must be {size * itemsize} bytes for shape "
                           f"{tensor['shape']} {tensor['datatype']}, and that many bytes must follow "
                           f"the JSON header; got {declared} declared, {len(binary)} sent")
    return np.frombuffer(binary[:declared], dtype=DTYPES[tensor["datatype"]]).astype(np.float64)


def _json_values(tensor: dict, has_bools: bool) -> np.ndarray:
    """The tensor's values from its JSON ``data`` (flat or nested, any nesting, row-major)."""
    if "data" not in tensor:
        raise RequestError(f"input is missing 'data'; expected {EXPECTED}")
    array = numeric_array(tensor["data"], has_bools)
    if array is None:
        raise RequestError("'data' must be a flat or nested list of numbers in [0, 1] "
                           "(non-numeric or ragged values found)")
    size = tensor["shape"][0] * PIXELS
    if array.size != size:
        raise RequestError(f"'data' has {array.size} values; shape {tensor['shape']} needs {size}")
    return array


def requested_outputs(payload: dict, model: ModelVersion) -> list:
    outputs = payload.get("outputs") or []
    if not isinstance(outputs, list):
        raise RequestError("'outputs' must be a list of {\"name\": ...} objects")
    for item in outputs:
        if not isinstance(item, dict) or item.get("name") != model.output_name:
            name = item.get("name") if isinstance(item, dict) else item
            raise RequestError(f"unknown output {name!r}; the model's output is {model.output_name!r}")
    return outputs


def _parameters(owner: dict, where: str) -> dict:
    params = owner.get("parameters") or {}
    if not isinstance(params, dict):
        raise RequestError(f"{where} must be an object of name: value pairs")
    return params


def _binary_output(payload: dict, outputs: list) -> bool:
    default = bool(_parameters(payload, "'parameters'").get("binary_data_output", False))
    for item in outputs:
        params = _parameters(item, "output 'parameters'")
        if "binary_data" in params:
            return bool(params["binary_data"])
    return default
