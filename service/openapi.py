"""The OpenAPI 3 description of every endpoint, served at ``GET /openapi.json``."""

from __future__ import annotations

from .config import Config

JSON = "application/json"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {
        400: "Bad input (the message says what was wrong and what is expected)",
        404: "Unknown model, version or route",
        405: "Wrong method",
        413: "Too many instances (MAX_BATCH), body too large (MAX_BODY_BYTES) or image too large",
        415: "Unsupported Content-Type",
        503: "No model loaded yet (retry later)",
    }
    return {str(code): _json(_ref("Error"), text[code]) for code in codes}


def _get(summary: str, ok: dict, *errors: int, tags=("service",), description: str = "") -> dict:
    op = {"summary": summary, "tags": list(tags), "responses": {"200": ok, **_errors(*errors)}}
    if description:
        op["description"] = description
    return {"get": op}


def build_spec(config: Config) -> dict:
    name = config.model_name
    pixels = {"type": "array", "minItems": 784, "maxItems": 784,
              "items": {"type": "number", "minimum": 0, "maximum": 1}}
    square = {"type": "array", "minItems": 28, "maxItems": 28,
              "items": {"type": "array", "minItems": 28, "maxItems": 28,
                        "items": {"type": "number", "minimum": 0, "maximum": 1}}}
    probabilities = {"type": "array", "minItems": 10, "maxItems": 10, "items": {"type": "number"}}
    model_name = {"name": "model", "in": "path", "required": True,
                  "schema": {"type": "string", "enum": [name]}}
    version = {"name": "version", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": "^[0-9]+$"}}
    image_types = ["image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp"]
    binary = {"type": "string", "format": "binary"}

    schemas = {
        "Error": {"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string"}}},
        "Pixels": pixels,
        "Image28x28": square,
        "Base64Image": {"type": "object", "required": ["b64"], "additionalProperties": False,
                        "properties": {"b64": {"type": "string", "description": "base64 image"}}},
        "PredictRequest": {
            "type": "object", "required": ["instances"],
            "properties": {"instances": {
                "type": "array", "minItems": 1, "maxItems": config.max_batch,
                "items": {"oneOf": [_ref("Pixels"), _ref("Image28x28"), _ref("Base64Image")]}}}},
        "Prediction": {"type": "object", "required": ["digit", "confidence", "probabilities"],
                       "properties": {"digit": {"type": "integer", "minimum": 0, "maximum": 9},
                                      "confidence": {"type": "number"},
                                      "probabilities": probabilities}},
        "PredictResponse": {
            "type": "object", "required": ["model", "predictions"],
            "properties": {
                "model": {"type": "object", "properties": {"name": {"type": "string"},
                                                           "version": {"type": "integer"}}},
                "predictions": {"type": "array", "items": _ref("Prediction")}}},
        "TFServingPredictRequest": {
            "type": "object",
            "description": "Row format (instances) or columnar format (inputs), not both",
            "properties": {
                "signature_name": {"type": "string", "enum": ["serving_default", ""]},
                "instances": {"type": "array", "maxItems": config.max_batch, "items": {
                    "oneOf": [_ref("Pixels"), {"type": "object", "properties": {"pixels": _ref("Pixels")}}]}},
                "inputs": {"oneOf": [
                    {"type": "array", "maxItems": config.max_batch, "items": _ref("Pixels")},
                    {"type": "object", "properties": {"pixels": {"type": "array", "items": _ref("Pixels")}}}]}}},
        "TFServingPredictResponse": {
            "type": "object",
            "properties": {"predictions": {"type": "array", "items": probabilities},
                           "outputs": {"type": "array", "items": probabilities}}},
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

    predict_body = {
        "required": True,
        "content": {
            JSON: {"schema": _ref("PredictRequest")},
            **{t: {"schema": binary} for t in image_types},
            "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                               "properties": {"image": binary}}},
        },
    }
    tfs_predict = {"post": {
        "summary": "TensorFlow Serving predict (row or columnar format)", "tags": ["tensorflow-serving"],
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("TFServingPredictRequest")}}},
        "responses": {"200": _json(_ref("TFServingPredictResponse"),
                                   "predictions (row format) or outputs (columnar format)"),
                      **_errors(400, 404, 405, 413, 415, 503)}}}
    v2_infer = {"post": {
        "summary": "Open Inference Protocol inference (FP32 [n, 784] in, FP32 [n, 10] out)",
        "tags": ["kserve-v2"],
        "description": "The body is JSON whatever the Content-Type; Triton's binary tensor data "
                       "extension (Inference-Header-Content-Length) is supported.",
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("V2InferRequest")}}},
        "responses": {"200": _json(_ref("V2InferResponse"), "inference response"),
                      **_errors(400, 404, 405, 413, 503)}}}
    ok = {"type": "object"}
    paths = {
        "/predict": {"post": {
            "summary": "Predict digits from pixels, an image, or base64 images",
            "tags": ["predict"],
            "description": "JSON instances are 784 numbers or 28x28 numbers in [0, 1] (divide 0-255 "
                           "pixels by 255), or {\"b64\": image}; or a raw image body; or a multipart "
                           "form with a file field 'image'. Images are preprocessed like MNIST.",
            "requestBody": predict_body,
            "responses": {"200": _json(_ref("PredictResponse"), "one prediction per instance"),
                          **_errors(400, 405, 413, 415, 503)}}},
        "/healthz": _get("Liveness: the process answers", _json(ok, "alive"), description="Always 200."),
        "/readyz": {"get": {"summary": "Readiness: a model is loaded and warmed up", "tags": ["service"],
                            "responses": {"200": _json(ok, "ready, with the model version"),
                                          **_errors(503)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["service"], "responses": {
            "200": {"description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": _get("This document", _json(ok, "OpenAPI 3 document")),
        "/": {"get": {"summary": "Draw a digit and see the prediction", "tags": ["service"],
                      "responses": {"200": {"description": "HTML page",
                                            "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/v1/models/{model}": {**_get("TensorFlow Serving model status", _json(_ref("TFServingModelStatus"), "status"),
                                      404, tags=("tensorflow-serving",)),
                               "parameters": [model_name]},
        "/v1/models/{model}/versions/{version}": {
            **_get("TensorFlow Serving status of one version",
                   _json(_ref("TFServingModelStatus"), "status"), 404, tags=("tensorflow-serving",)),
            "parameters": [model_name, version]},
        "/v1/models/{model}/metadata": {
            **_get("TensorFlow Serving model metadata (signature)", _json(_ref("TFServingMetadata"), "metadata"),
                   404, 503, tags=("tensorflow-serving",)),
            "parameters": [model_name]},
        "/v1/models/{model}/versions/{version}/metadata": {
            **_get("TensorFlow Serving metadata of a loaded version", _json(_ref("TFServingMetadata"), "metadata"),
                   404, 503, tags=("tensorflow-serving",)),
            "parameters": [model_name, version]},
        "/v1/models/{model}:predict": {**tfs_predict, "parameters": [model_name]},
        "/v1/models/{model}/versions/{version}:predict": {**tfs_predict, "parameters": [model_name, version]},
        "/v2": _get("Open Inference Protocol server metadata", _json(ok, "name, version, extensions"),
                    tags=("kserve-v2",)),
        "/v2/health/live": _get("Server live", _json(ok, '{"live": true}'), tags=("kserve-v2",)),
        "/v2/health/ready": {"get": {"summary": "Server ready", "tags": ["kserve-v2"], "responses": {
            "200": _json(ok, '{"ready": true}'), "503": _json(ok, '{"ready": false}')}}},
        "/v2/models/{model}": {**_get("Model metadata", _json(_ref("V2ModelMetadata"), "metadata"),
                                      404, 503, tags=("kserve-v2",)), "parameters": [model_name]},
        "/v2/models/{model}/versions/{version}": {
            **_get("Model metadata of a loaded version", _json(_ref("V2ModelMetadata"), "metadata"),
                   404, 503, tags=("kserve-v2",)), "parameters": [model_name, version]},
        "/v2/models/{model}/ready": {"get": {
            "summary": "Model ready", "tags": ["kserve-v2"],
            "responses": {"200": _json(ok, '{"name": ..., "ready": true}'),
                          "503": _json(ok, '{"name": ..., "ready": false}'), **_errors(404)}},
            "parameters": [model_name]},
        "/v2/models/{model}/versions/{version}/ready": {"get": {
            "summary": "Model version ready", "tags": ["kserve-v2"],
            "responses": {"200": _json(ok, '{"name": ..., "ready": true}'), **_errors(404)}},
            "parameters": [model_name, version]},
        "/v2/models/{model}/infer": {**v2_infer, "parameters": [model_name]},
        "/v2/models/{model}/versions/{version}/infer": {**v2_infer, "parameters": [model_name, version]},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "MNIST digits prediction service", "version": "1.0.0",
                 "description": f"Serves the newest exported version of model {name!r}: our own "
                                "API, TensorFlow Serving's REST API and the Open Inference Protocol "
                                "(KServe v2). Every error is {\"error\": \"...\"}."},
        "paths": paths,
        "components": {"schemas": schemas},
    }
