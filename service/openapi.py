"""The OpenAPI 3 description of every endpoint, served at ``GET /openapi.json``.

:func:`build_spec` assembles it from one function per API family (our ``/predict``, the service's
own endpoints, TensorFlow Serving, the Open Inference Protocol), each giving its schemas and paths.
"""

from __future__ import annotations

from .config import Config
from .contract import CLASSES, PIXELS

JSON = "application/json"
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp")
BINARY = {"type": "string", "format": "binary"}
OBJECT = {"type": "object"}
VERSION_PARAMETER = {"name": "version", "in": "path", "required": True,
                     "schema": {"type": "string", "pattern": "^[0-9]+$"}}
ERROR_MEANINGS = {
    400: "Bad input (the message says what was wrong and what is expected)",
    401: "No valid API token (Authorization: Bearer <token>; with API_TOKENS_FILE)",
    404: "Unknown model, version or route",
    405: "Wrong method",
    413: "Too many instances (MAX_BATCH), body too large (MAX_BODY_BYTES) or image too large",
    415: "Unsupported Content-Type",
    422: "The photo holds no digit, or several where one is expected (the message says what was found)",
    503: "No model loaded yet (retry later)",
}


def build_spec(config: Config) -> dict:
    """The whole document for this configuration (model name, MAX_BATCH, API tokens)."""
    model_parameter = {"name": "model", "in": "path", "required": True,
                       "schema": {"type": "string", "enum": [config.model_name]}}
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "MNIST digits prediction service", "version": "1.0.0",
                 "description": f"Serves the newest exported version of model {config.model_name!r}: "
                                "our own API, TensorFlow Serving's REST API and the Open Inference "
                                "Protocol (KServe v2). Every error is {\"error\": \"...\"}."},
        "paths": {**_predict_paths(), **_read_paths(), **_service_paths(),
                  **_tf_serving_paths(model_parameter), **_kserve_paths(model_parameter)},
        "components": {"schemas": {**_predict_schemas(config.max_batch), **_read_schemas(),
                                   **_tf_serving_schemas(config.max_batch), **_kserve_schemas()}},
    }
    if config.api_tokens_file:
        _require_tokens(spec, probes=bool(config.auth_probes))
    return spec


OPEN_PATHS = ("/", "/openapi.json")
PROBE_PATHS = ("/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready")


def _require_tokens(spec: dict, probes: bool) -> None:
    """With API_TOKENS_FILE (service/auth.py): a bearer token on every operation but the open ones, and
    their 401."""
    spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    spec["security"] = [{"bearer": []}]
    open_paths = OPEN_PATHS if probes else OPEN_PATHS + PROBE_PATHS
    for path, item in spec["paths"].items():
        for operation in (item[method] for method in ("get", "post") if method in item):
            if path in open_paths:
                operation["security"] = []
            else:
                operation["responses"].update(_errors(401))


# ---- building blocks ------------------------------------------------------------------------------
def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*codes: int) -> dict:
    return {str(code): _json(_ref("Error"), ERROR_MEANINGS[code]) for code in codes}


def _get(summary: str, ok: dict, *errors: int, tags=("service",), description: str = "") -> dict:
    operation = {"summary": summary, "tags": list(tags), "responses": {"200": ok, **_errors(*errors)}}
    if description:
        operation["description"] = description
    return {"get": operation}


def _numbers(count: int, items: dict) -> dict:
    return {"type": "array", "minItems": count, "maxItems": count, "items": items}


PIXEL = {"type": "number", "minimum": 0, "maximum": 1}
PROBABILITIES = _numbers(CLASSES, {"type": "number"})
SEEN = {"type": "string", "format": "byte",
        "description": "with ?explain=1: the 28x28 image the model read (light ink on black), base64 PNG"}
EXPLAIN = {"name": "explain", "in": "query", "required": False, "schema": {"type": "string", "enum": ["0", "1"]},
           "description": "1: add each digit's 28x28 image as the model saw it (\"image\", base64 PNG)"}
IMAGE_CONTENT = {**{image_type: {"schema": BINARY} for image_type in IMAGE_TYPES},
                 "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                                    "properties": {"image": BINARY}}}}


# ---- POST /predict --------------------------------------------------------------------------------
def _predict_schemas(max_batch: int) -> dict:
    return {
        "Error": {"type": "object", "required": ["error"],  # service/errors.py: error_body
                  "properties": {"error": {"type": "string"},
                                 "request_id": {"type": "string",
                                                "description": "with REQUEST_IDS=1: the request's id"}}},
        "Pixels": _numbers(PIXELS, PIXEL),
        "Image28x28": _numbers(28, _numbers(28, PIXEL)),
        "Base64Image": {"type": "object", "required": ["b64"], "additionalProperties": False,
                        "properties": {"b64": {"type": "string", "description": "base64 image"}}},
        "PredictRequest": {
            "type": "object", "required": ["instances"],
            "properties": {"instances": {
                "type": "array", "minItems": 1, "maxItems": max_batch,
                "items": {"oneOf": [_ref("Pixels"), _ref("Image28x28"), _ref("Base64Image")]}}}},
        "Prediction": {"type": "object", "required": ["digit", "confidence", "probabilities"],
                       "properties": {"digit": {"type": "integer", "minimum": 0, "maximum": 9},
                                      "confidence": {"type": "number"},
                                      "probabilities": PROBABILITIES,
                                      "image": SEEN}},
        "PredictResponse": {
            "type": "object", "required": ["model", "predictions"],
            "properties": {
                "model": {"type": "object", "properties": {"name": {"type": "string"},
                                                           "version": {"type": "integer"}}},
                "predictions": {"type": "array", "items": _ref("Prediction")}}},
    }


def _predict_paths() -> dict:
    body = {"required": True, "content": {JSON: {"schema": _ref("PredictRequest")}, **IMAGE_CONTENT}}
    return {"/predict": {"post": {
        "summary": "Predict digits from pixels, an image, or base64 images",
        "tags": ["predict"],
        "description": "JSON instances are 784 numbers or 28x28 numbers in [0, 1] (divide 0-255 "
                       "pixels by 255), or {\"b64\": image}; or a raw image body; or a multipart "
                       "form with a file field 'image'. A photo, scan or drawing is read like MNIST was "
                       "made (light evened out, lines, specks and the sheet's edge left out, the digit "
                       "centred); it must hold one digit: none, or several, is a 422 (several: use /read).",
        "parameters": [EXPLAIN],
        "requestBody": body,
        "responses": {"200": _json(_ref("PredictResponse"), "one prediction per instance"),
                      **_errors(400, 405, 413, 415, 422, 503)}}}}


# ---- POST /read -----------------------------------------------------------------------------------
def _read_schemas() -> dict:
    return {
        "DigitReading": {"type": "object", "required": ["digit", "confidence", "probabilities", "box"],
                         "properties": {"digit": {"type": "integer", "minimum": 0, "maximum": 9},
                                        "confidence": {"type": "number"},
                                        "probabilities": PROBABILITIES,
                                        "box": {**_numbers(4, {"type": "integer", "minimum": 0}),
                                                "description": "[x, y, width, height] in the photo's pixels"},
                                        "touching": {"type": "boolean",
                                                     "description": "part of a mark that looked like digits "
                                                                    "that touch (see warnings)"},
                                        "image": SEEN}},
        "ReadResponse": {"type": "object", "required": ["model", "number", "digits"],
                         "properties": {
                             "model": {"type": "object", "properties": {"name": {"type": "string"},
                                                                        "version": {"type": "integer"}}},
                             "number": {"type": "string", "pattern": "^[0-9]+$",
                                        "description": "the digits, left to right"},
                             "digits": {"type": "array", "minItems": 1, "items": _ref("DigitReading")},
                             "warnings": {"type": "array", "items": {"type": "string"},
                                          "description": "marks that looked like digits that touch, how "
                                                         "they were read and how else they could be"}}},
    }


def _read_paths() -> dict:
    body = {"required": True, "content": {JSON: {"schema": _ref("Base64Image")}, **IMAGE_CONTENT}}
    return {"/read": {"post": {
        "summary": "Read every digit of a photo, left to right, as a number",
        "tags": ["predict"],
        "description": "The same image inputs as /predict (an image body, a multipart field 'image', or "
                       "JSON {\"b64\": image}). Digits that touch may be read as one: a mark much wider "
                       "than tall is weighed as one digit and as the digits it would hold, and the answer "
                       "says so in 'warnings'. A photo without a digit is a 422 saying what was found.",
        "parameters": [EXPLAIN],
        "requestBody": body,
        "responses": {"200": _json(_ref("ReadResponse"), "the number and each digit"),
                      **_errors(400, 405, 413, 415, 422, 503)}}}}


# ---- probes, metrics, pages -----------------------------------------------------------------------
def _service_paths() -> dict:
    return {
        "/healthz": _get("Liveness: the process answers", _json(OBJECT, "alive"), description="Always 200."),
        "/readyz": {"get": {"summary": "Readiness: a model is loaded and warmed up", "tags": ["service"],
                            "responses": {"200": _json(OBJECT, "ready, with the model version"),
                                          **_errors(503)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["service"], "responses": {
            "200": {"description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": _get("This document", _json(OBJECT, "OpenAPI 3 document")),
        "/": {"get": {"summary": "Draw a digit and see the prediction", "tags": ["service"],
                      "responses": {"200": {"description": "HTML page",
                                            "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    }


# ---- TensorFlow Serving ---------------------------------------------------------------------------
def _tf_serving_schemas(max_batch: int) -> dict:
    named_pixels = {"type": "object", "properties": {"pixels": _ref("Pixels")}}
    return {
        "TFServingPredictRequest": {
            "type": "object",
            "description": "Row format (instances) or columnar format (inputs), not both",
            "properties": {
                "signature_name": {"type": "string", "enum": ["serving_default", ""]},
                "instances": {"type": "array", "maxItems": max_batch,
                              "items": {"oneOf": [_ref("Pixels"), named_pixels]}},
                "inputs": {"oneOf": [
                    {"type": "array", "maxItems": max_batch, "items": _ref("Pixels")},
                    {"type": "object",
                     "properties": {"pixels": {"type": "array", "items": _ref("Pixels")}}}]}}},
        "TFServingPredictResponse": {
            "type": "object",
            "properties": {"predictions": {"type": "array", "items": PROBABILITIES},
                           "outputs": {"type": "array", "items": PROBABILITIES}}},
        "TFServingModelStatus": {
            "type": "object", "properties": {"model_version_status": {"type": "array", "items": {
                "type": "object", "properties": {
                    "version": {"type": "string"},
                    "state": {"type": "string", "enum": ["AVAILABLE", "END"]},
                    "status": {"type": "object", "properties": {
                        "error_code": {"type": "string"}, "error_message": {"type": "string"}}}}}}}},
        "TFServingMetadata": {
            "type": "object", "properties": {
                "model_spec": {"type": "object", "properties": {
                    "name": {"type": "string"}, "signature_name": {"type": "string"},
                    "version": {"type": "string"}}},
                "metadata": {"type": "object", "properties": {"signature_def": {
                    "type": "object", "properties": {"signature_def": {"type": "object"}}}}}}},
    }


def _tf_serving_paths(model: dict) -> dict:
    tags = ("tensorflow-serving",)
    status = _json(_ref("TFServingModelStatus"), "status")
    metadata = _json(_ref("TFServingMetadata"), "metadata")
    predict = {"post": {
        "summary": "TensorFlow Serving predict (row or columnar format)", "tags": list(tags),
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("TFServingPredictRequest")}}},
        "responses": {"200": _json(_ref("TFServingPredictResponse"),
                                   "predictions (row format) or outputs (columnar format)"),
                      **_errors(400, 404, 405, 413, 415, 503)}}}
    version = VERSION_PARAMETER
    return {
        "/v1/models/{model}": {**_get("TensorFlow Serving model status", status, 404, tags=tags),
                               "parameters": [model]},
        "/v1/models/{model}/versions/{version}": {
            **_get("TensorFlow Serving status of one version", status, 404, tags=tags),
            "parameters": [model, version]},
        "/v1/models/{model}/metadata": {
            **_get("TensorFlow Serving model metadata (signature)", metadata, 404, 503, tags=tags),
            "parameters": [model]},
        "/v1/models/{model}/versions/{version}/metadata": {
            **_get("TensorFlow Serving metadata of a loaded version", metadata, 404, 503, tags=tags),
            "parameters": [model, version]},
        "/v1/models/{model}:predict": {**predict, "parameters": [model]},
        "/v1/models/{model}/versions/{version}:predict": {**predict, "parameters": [model, version]},
    }


# ---- Open Inference Protocol (KServe v2) ----------------------------------------------------------
def _kserve_schemas() -> dict:
    return {
        "V2Tensor": {"type": "object", "required": ["name", "shape", "datatype"], "properties": {
            "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string", "enum": ["FP32", "FP64", "FP16"]},
            "parameters": {"type": "object"},
            "data": {"type": "array", "items": {}}}},
        "V2InferRequest": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"}, "parameters": {"type": "object"},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": _ref("V2Tensor")},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "parameters": {"type": "object"}}}}}},
        "V2InferResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"},
            "id": {"type": "string"}, "parameters": {"type": "object"},
            "outputs": {"type": "array", "items": _ref("V2Tensor")}}},
        "V2ModelMetadata": {"type": "object", "required": ["name", "platform"], "properties": {
            "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("V2TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("V2TensorMetadata")}}},
        "V2TensorMetadata": {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
            "name": {"type": "string"}, "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}}}},
    }


def _kserve_paths(model: dict) -> dict:
    tags = ("kserve-v2",)
    version = VERSION_PARAMETER
    metadata = _json(_ref("V2ModelMetadata"), "metadata")
    infer = {"post": {
        "summary": "Open Inference Protocol inference (FP32 [n, 784] in, FP32 [n, 10] out)",
        "tags": list(tags),
        "description": "The body is JSON whatever the Content-Type; Triton's binary tensor data "
                       "extension (Inference-Header-Content-Length) is supported.",
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("V2InferRequest")}}},
        "responses": {"200": _json(_ref("V2InferResponse"), "inference response"),
                      **_errors(400, 404, 405, 413, 503)}}}
    ready = _json(OBJECT, '{"name": ..., "ready": true}')
    return {
        "/v2": _get("Open Inference Protocol server metadata", _json(OBJECT, "name, version, extensions"),
                    tags=tags),
        "/v2/health/live": _get("Server live", _json(OBJECT, '{"live": true}'), tags=tags),
        "/v2/health/ready": {"get": {"summary": "Server ready", "tags": list(tags), "responses": {
            "200": _json(OBJECT, '{"ready": true}'), "503": _json(OBJECT, '{"ready": false}')}}},
        "/v2/models/{model}": {**_get("Model metadata", metadata, 404, 503, tags=tags),
                               "parameters": [model]},
        "/v2/models/{model}/versions/{version}": {
            **_get("Model metadata of a loaded version", metadata, 404, 503, tags=tags),
            "parameters": [model, version]},
        "/v2/models/{model}/ready": {"get": {
            "summary": "Model ready", "tags": list(tags),
            "responses": {"200": ready, "503": _json(OBJECT, '{"name": ..., "ready": false}'),
                          **_errors(404)}},
            "parameters": [model]},
        "/v2/models/{model}/versions/{version}/ready": {"get": {
            "summary": "Model version ready", "tags": list(tags),
            "responses": {"200": ready, **_errors(404)}},
            "parameters": [model, version]},
        "/v2/models/{model}/infer": {**infer, "parameters": [model]},
        "/v2/models/{model}/versions/{version}/infer": {**infer, "parameters": [model, version]},
    }
