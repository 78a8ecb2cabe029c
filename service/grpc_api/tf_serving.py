"""TensorFlow Serving's gRPC API: ``tensorflow.serving.PredictionService`` and ``ModelService``.

The calls of ``service/tf_serving.py`` (REST) over gRPC, with its checks and messages (run inside the
Flask app's context by ``service/grpc_api/calls.py``, so ``state()`` is the worker's service):

- ``Predict``: the input named as in the signature (``pixels``), a ``TensorProto`` (``tensors.py``),
  ``output_filter``, ``model_spec.version`` (a loaded version) or ``version_label`` (none here),
  ``signature_name`` (``serving_default`` or empty);
- ``GetModelMetadata``: ``signature_def`` only, as in TF Serving (a ``SignatureDefMap`` in an ``Any``);
- ``Classify``, ``Regress``, ``MultiInference``: the signature is a predict signature, so TF Serving's
  own refusal (INVALID_ARGUMENT, "Expected classification signature method_name to be ...");
- ``ModelService.GetModelStatus``; ``HandleReloadConfigRequest`` is not offered (UNIMPLEMENTED: models
  come from MODEL_DIR).
"""

from __future__ import annotations

from google.protobuf import json_format, wrappers_pb2

from .. import tf_serving as rest
from ..contract import SIGNATURE_NAME
from ..errors import RequestError
from ..inputs import check_batch_size, checked_pixels
from ..web import record_predictions, state
from .generated.tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                                get_model_status_pb2, inference_pb2, model_pb2,
                                                model_service_pb2, predict_pb2, prediction_service_pb2,
                                                regression_pb2)
from .tensors import float_tensor, pixel_rows

# the services' descriptors, in protobuf's default pool (what server reflection serves) once imported
PREDICTION_SERVICE = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"].full_name
MODEL_SERVICE = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"].full_name
PREDICT_METHOD = "tensorflow/serving/predict"
METHOD_NAMES = {"classification": "tensorflow/serving/classify", "regression": "tensorflow/serving/regress"}
KINDS = {method: kind for kind, method in METHOD_NAMES.items()}


def _version(spec: model_pb2.ModelSpec) -> int | None:
    """The version a ModelSpec asks for (None: the newest), after checking its name and label."""
    rest.check_servable(spec.name, spec.version_label or None)
    return spec.version.value if spec.HasField("version") else None


def predict(request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    version = _version(request.model_spec)
    rest.check_signature_name(request.model_spec.signature_name)
    model = state().predictor.get(version)
    tensor = rest.named_input(dict(request.inputs), model.input_name, "'inputs'")
    rows = pixel_rows(tensor, model.input_name)
    check_batch_size(len(rows), state().config.max_batch)
    _check_output_filter(request.output_filter, model.output_name)
    probabilities = model.predict(checked_pixels(rows, "instance"))
    record_predictions(probabilities)
    response = predict_pb2.PredictResponse(model_spec=_spec(model.version))
    response.outputs[model.output_name].CopyFrom(float_tensor(probabilities))
    return response


def _check_output_filter(aliases, output_name: str) -> None:
    """TF Serving's checks of ``output_filter``, with its messages."""
    seen = set()
    for alias in aliases:
        if alias != output_name:
            raise RequestError(f"output tensor alias not found in signature: {alias} Outputs expected to be "
                               f"in the set {{{output_name}}}.")
        if alias in seen:
            raise RequestError(f"duplicate output tensor alias: {alias}")
        seen.add(alias)


def _spec(version: int) -> model_pb2.ModelSpec:
    return model_pb2.ModelSpec(name=state().config.model_name, signature_name=SIGNATURE_NAME,
                               version=wrappers_pb2.Int64Value(value=version))


def get_model_metadata(request: get_model_metadata_pb2.GetModelMetadataRequest):
    version = _version(request.model_spec)
    if not request.metadata_field:
        raise RequestError("GetModelMetadataRequest must specify at least one metadata_field")
    for field in request.metadata_field:
        if field != "signature_def":
            raise RequestError(f"Metadata field {field} is not supported")
    payload = rest.metadata_payload(version)
    signatures = json_format.ParseDict(payload["metadata"]["signature_def"],
                                    get_model_metadata_pb2.SignatureDefMap())
    response = get_model_metadata_pb2.GetModelMetadataResponse(
        model_spec=model_pb2.ModelSpec(name=state().config.model_name,
                                       version=wrappers_pb2.Int64Value(value=int(payload["model_spec"]["version"]))))
    response.metadata["signature_def"].Pack(signatures)
    return response


def _not_a_predict_signature(kind: str) -> RequestError:
    """TF Serving's answer to Classify / Regress on a predict signature."""
    return RequestError(f"Expected {kind} signature method_name to be {METHOD_NAMES[kind]}. Was: {PREDICT_METHOD}")


def _refuse(kind: str, spec: model_pb2.ModelSpec):
    _version(spec)  # an unknown model or version is NOT_FOUND first, as in TF Serving
    rest.check_signature_name(spec.signature_name)
    raise _not_a_predict_signature(kind)


def classify(request: classification_pb2.ClassificationRequest):
    _refuse("classification", request.model_spec)


def regress(request: regression_pb2.RegressionRequest):
    _refuse("regression", request.model_spec)


def multi_inference(request: inference_pb2.MultiInferenceRequest):
    if not request.tasks:
        raise RequestError("MultiInferenceRequest must have at least one task")
    for task in request.tasks:
        kind = KINDS.get(task.method_name)
        if kind is None:
            raise RequestError(f"Unsupported signature method_name: {task.method_name}", status=501)
        _refuse(kind, task.model_spec)


def get_model_status(request: get_model_status_pb2.GetModelStatusRequest):
    version = _version(request.model_spec)
    return json_format.ParseDict(rest.status_payload(version), get_model_status_pb2.GetModelStatusResponse())


# service -> method -> (request message, function)
METHODS = {
    PREDICTION_SERVICE: {
        "Predict": (predict_pb2.PredictRequest, predict),
        "GetModelMetadata": (get_model_metadata_pb2.GetModelMetadataRequest, get_model_metadata),
        "Classify": (classification_pb2.ClassificationRequest, classify),
        "Regress": (regression_pb2.RegressionRequest, regress),
        "MultiInference": (inference_pb2.MultiInferenceRequest, multi_inference),
    },
    MODEL_SERVICE: {
        "GetModelStatus": (get_model_status_pb2.GetModelStatusRequest, get_model_status),
    },
}
