"""The Open Inference Protocol (KServe v2) over gRPC: ``inference.GRPCInferenceService``.

The calls of ``service/kserve.py`` (REST) over gRPC, with its checks and messages (run inside the Flask
app's context by ``service/grpc_api/calls.py``):

- ``ServerLive``, ``ServerReady``, ``ModelReady``, ``ServerMetadata``, ``ModelMetadata``;
- ``ModelInfer``: one input ``[n, 784]`` FP32, FP64 or FP16, its values either typed (``contents``:
  ``fp32_contents`` / ``fp64_contents``; FP16 has no typed field) or in ``raw_input_contents``
  (row-major little-endian bytes; then ``contents`` must be empty, as the protocol says). The output
  ``[n, 10]`` FP32 comes the same way: raw for a raw request (what ``tritonclient.grpc`` sends and
  reads), typed otherwise. ``id`` is echoed.
"""

from __future__ import annotations

import numpy as np
from google.protobuf import json_format

from .. import kserve as rest
from ..contract import PIXELS
from ..errors import RequestError
from ..inputs import check_batch_size, checked_pixels
from ..predictor import ModelNotReady
from ..web import record_predictions, state
from .generated import open_inference_grpc_pb2 as oip

SERVICE = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
TYPED = {"FP32": "fp32_contents", "FP64": "fp64_contents"}  # FP16: raw only (no typed field in the protocol)


def server_live(request: oip.ServerLiveRequest) -> oip.ServerLiveResponse:
    return oip.ServerLiveResponse(live=True)


def server_ready(request: oip.ServerReadyRequest) -> oip.ServerReadyResponse:
    return oip.ServerReadyResponse(ready=state().predictor.ready)


def model_ready(request: oip.ModelReadyRequest) -> oip.ModelReadyResponse:
    try:
        rest.find_model(request.name, request.version or None)
    except ModelNotReady:
        return oip.ModelReadyResponse(ready=False)
    return oip.ModelReadyResponse(ready=True)


def server_metadata(request: oip.ServerMetadataRequest) -> oip.ServerMetadataResponse:
    return oip.ServerMetadataResponse(name=rest.SERVER_NAME, version=rest.SERVER_VERSION)


def model_metadata(request: oip.ModelMetadataRequest) -> oip.ModelMetadataResponse:
    payload = rest.metadata_payload(request.name, request.version or None)
    return json_format.ParseDict(payload, oip.ModelMetadataResponse())


def model_infer(request: oip.ModelInferRequest) -> oip.ModelInferResponse:
    model = rest.find_model(request.model_name, request.model_version or None)
    described = [{"name": item.name, "datatype": item.datatype, "shape": list(item.shape)} for item in request.inputs]
    tensor = rest.input_tensor({"inputs": described}, model)
    count = tensor["shape"][0]
    check_batch_size(count, state().config.max_batch)
    values = _raw_values(request, tensor) if request.raw_input_contents else _typed_values(request.inputs[0], tensor)
    pixels = checked_pixels(values.reshape(count, PIXELS), "instance")
    rest.requested_outputs({"outputs": [{"name": item.name} for item in request.outputs]}, model)
    probabilities = model.predict(pixels)
    record_predictions(probabilities)
    response = oip.ModelInferResponse(model_name=state().config.model_name, model_version=str(model.version),
                                      id=request.id)
    output = response.outputs.add(name=model.output_name, datatype="FP32", shape=list(probabilities.shape))
    if request.raw_input_contents:
        response.raw_output_contents.append(probabilities.astype("<f4").tobytes())
    else:
        output.contents.fp32_contents.extend(probabilities.ravel().tolist())
    return response


def _raw_values(request: oip.ModelInferRequest, tensor: dict) -> np.ndarray:
    """The input's values from ``raw_input_contents[0]`` (then its typed ``contents`` must be empty)."""
    if len(request.raw_input_contents) != 1:
        raise RequestError(f"raw_input_contents has {len(request.raw_input_contents)} entries; the model has "
                           "one input")
    if request.inputs[0].HasField("contents"):
        raise RequestError("input 'contents' must be empty when raw_input_contents is used")
    raw = request.raw_input_contents[0]
    layout = np.dtype(rest.DTYPES[tensor["datatype"]])
    needed = tensor["shape"][0] * PIXELS * layout.itemsize
    if len(raw) != needed:
        raise RequestError(f"raw_input_contents[0] has {len(raw)} bytes; shape {tensor['shape']} "
                           f"{tensor['datatype']} needs {needed}")
    return np.frombuffer(raw, dtype=layout).astype(np.float64)


def _typed_values(item: oip.ModelInferRequest.InferInputTensor, tensor: dict) -> np.ndarray:
    """The input's values from its typed ``contents`` (the field of its datatype)."""
    field = TYPED.get(tensor["datatype"])
    if field is None:
        raise RequestError(f"{tensor['datatype']} input data must be sent in raw_input_contents (the protocol "
                           "has no typed contents for it)")
    values = getattr(item.contents, field)
    needed = tensor["shape"][0] * PIXELS
    if len(values) != needed:
        raise RequestError(f"'contents.{field}' has {len(values)} values; shape {tensor['shape']} needs {needed}")
    return np.asarray(values, dtype=np.float64)


# service -> method -> (request message, function)
METHODS = {
    SERVICE: {
        "ServerLive": (oip.ServerLiveRequest, server_live),
        "ServerReady": (oip.ServerReadyRequest, server_ready),
        "ModelReady": (oip.ModelReadyRequest, model_ready),
        "ServerMetadata": (oip.ServerMetadataRequest, server_metadata),
        "ModelMetadata": (oip.ModelMetadataRequest, model_metadata),
        "ModelInfer": (oip.ModelInferRequest, model_infer),
    },
}
