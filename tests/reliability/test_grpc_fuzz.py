"""Fuzzing the gRPC API of the running service (the shared ``service`` of conftest.py, gRPC on its
GRPC_PORT): Hypothesis draws ``PredictRequest`` and ``ModelInferRequest`` messages with random fields
(names, versions, dtypes, shapes, values in every encoding), and random bytes for every method.

The oracle: a request that is valid by the protocol's rules gets OK with one row of 10 probabilities
summing to 1 per image; anything else gets a client-error code (INVALID_ARGUMENT, NOT_FOUND,
RESOURCE_EXHAUSTED, UNIMPLEMENTED) with a message; never UNKNOWN, INTERNAL or a dropped call. Afterwards
the same workers answer real digits exactly like the model, and nothing unexpected was logged.
"""

from __future__ import annotations

import math
from collections import Counter

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.service.grpc_support import Clients, channel, infer_probabilities, probabilities

from .report import REPORT, histogram, table
from .strategies import MAX_BATCH
from .test_fuzz import OWN_EXAMPLES, SETTINGS, assert_service_still_correct

pytestmark = pytest.mark.reliability

CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED,
                 grpc.StatusCode.UNIMPLEMENTED}
CODES: dict[str, Counter] = {}
SIZES = st.sampled_from([0, 1, 2, 3, 28, 783, 784, 785, MAX_BATCH, MAX_BATCH + 1])
LARGEST = (MAX_BATCH + 1) * 785  # values actually written (a larger shape gets too few: invalid anyway)
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.floats(0, 1, width=32)


@pytest.fixture(scope="module")
def clients(service):
    stubs = Clients(service.grpc_port)
    yield stubs
    stubs.close()


def _call(call, request) -> tuple[grpc.StatusCode, object]:
    try:
        return grpc.StatusCode.OK, call(request, timeout=60)
    except grpc.RpcError as error:
        return error.code(), error.details()


def _judge(name: str, code, answer, valid_rows: int | None, rows_of) -> str | None:
    """A problem with one answer, or None: ``valid_rows`` images expected (None: the request is invalid)."""
    CODES.setdefault(name, Counter())[code.name] += 1
    if valid_rows is None:
        if code == grpc.StatusCode.OK:
            return "an invalid request was answered OK"
        return None if code in CLIENT_ERRORS and answer else f"{code.name}: {answer!r:.200}"
    if code != grpc.StatusCode.OK:
        return f"a valid request of {valid_rows} image(s) got {code.name}: {answer!r:.200}"
    rows = rows_of(answer)
    if rows.shape != (valid_rows, 10) or not np.allclose(rows.sum(1), 1, atol=1e-3):
        return f"OK with probabilities of shape {rows.shape}"
    return None


def _pick(draw, broken: set, field: str, good: list, wrong: list):
    """A right value for ``field`` unless it is one of the ``broken`` ones (then any, right or wrong)."""
    return draw(st.sampled_from(good + wrong if field in broken else good))


def _shape(draw, broken: set) -> list[int]:
    if "shape" in broken:
        return draw(st.lists(SIZES, min_size=0, max_size=3))
    return [draw(st.integers(1, 8) | st.just(MAX_BATCH)), 784]


def _values(draw, broken: set, count: int) -> np.ndarray:
    """``count`` pixel values (one drawn value repeated), or another count when ``count`` is broken."""
    value = draw(FLOATS if "value" in broken else st.floats(0, 1, width=32))
    extra = draw(st.sampled_from([-1, 1])) if "count" in broken and count else 0
    return np.full(min(count, LARGEST) + extra, value, np.float64)


def _in_range(values: np.ndarray, layout: str) -> bool:
    with np.errstate(over="ignore", invalid="ignore"):
        cast = values.astype(layout).astype(np.float64)
    return bool(np.all(np.isfinite(cast)) and np.all((cast >= -1e-6) & (cast <= 1 + 1e-6)))


PREDICT_FIELDS = ["name", "version", "label", "signature", "filter", "dtype", "shape", "value", "count", "input"]


@st.composite
def predict_requests(draw):
    """``(PredictRequest, images if valid else None)``: a valid request with a few fields drawn at random."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    from service.grpc_api.generated.tensorflow_serving.apis import predict_pb2

    broken = draw(st.sets(st.sampled_from(PREDICT_FIELDS), max_size=3))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = _pick(draw, broken, "name", ["mnist"], ["other", ""])
    version = _pick(draw, broken, "version", [None, 1], [0, 7, -3, 2 ** 62])
    if version is not None:
        request.model_spec.version.value = version
    request.model_spec.version_label = _pick(draw, broken, "label", [""], ["stable"])
    request.model_spec.signature_name = _pick(draw, broken, "signature", ["", "serving_default"], ["predict"])
    request.output_filter.extend(_pick(draw, broken, "filter", [[], ["probabilities"]],
                                       [["logits"], ["probabilities", "probabilities"]]))
    dtype = _pick(draw, broken, "dtype", [types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF],
                  [types_pb2.DT_INT32, types_pb2.DT_STRING, 0])
    shape = _shape(draw, broken)
    tensor = tensor_pb2.TensorProto(dtype=dtype)
    tensor.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in shape)
    count = math.prod(shape) if shape else 1
    values = _values(draw, broken, count)
    layout = {types_pb2.DT_FLOAT: "<f4", types_pb2.DT_DOUBLE: "<f8", types_pb2.DT_HALF: "<f2"}.get(dtype, "<f4")
    packed = dtype != types_pb2.DT_FLOAT or draw(st.booleans())  # float_val is DT_FLOAT's field
    with np.errstate(over="ignore", invalid="ignore"):
        if packed:
            tensor.tensor_content = values.astype(layout).tobytes()
        else:
            tensor.float_val.extend(values.astype(np.float32).tolist())
    request.inputs[_pick(draw, broken, "input", ["pixels"], ["image", ""])].CopyFrom(tensor)
    valid = (request.model_spec.name == "mnist" and version in (None, 1) and not request.model_spec.version_label
             and request.model_spec.signature_name != "predict" and list(request.output_filter) in ([], ["probabilities"])
             and "pixels" in request.inputs and dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF)
             and len(shape) == 2 and shape[1] == 784 and 1 <= shape[0] <= MAX_BATCH and len(values) == count
             and _in_range(values, layout))
    return request, shape[0] if valid else None


INFER_FIELDS = ["name", "version", "input", "datatype", "shape", "value", "count", "output", "typed"]


@st.composite
def infer_requests(draw):
    """``(ModelInferRequest, images if valid else None)``: a valid request with a few fields drawn at random."""
    from service.grpc_api.generated import open_inference_grpc_pb2 as oip

    broken = draw(st.sets(st.sampled_from(INFER_FIELDS), max_size=3))
    request = oip.ModelInferRequest(model_name=_pick(draw, broken, "name", ["mnist"], ["other", ""]),
                                    model_version=_pick(draw, broken, "version", ["", "1"], ["9", "x", "-1"]),
                                    id=draw(st.text(max_size=12)))
    datatype = _pick(draw, broken, "datatype", ["FP32", "FP64", "FP16"], ["INT8", "BYTES", ""])
    shape = _shape(draw, broken)
    tensor = request.inputs.add(name=_pick(draw, broken, "input", ["pixels"], ["image"]), datatype=datatype,
                                shape=shape)
    count = math.prod(shape) if shape else 1
    values = _values(draw, broken, count)
    layout = {"FP32": "<f4", "FP64": "<f8", "FP16": "<f2"}.get(datatype, "<f4")
    typed = _pick(draw, broken, "typed", [False] + ([True] if datatype in ("FP32", "FP64") else []), [True])
    with np.errstate(over="ignore", invalid="ignore"):
        if not typed:
            request.raw_input_contents.append(values.astype(layout).tobytes())
        elif datatype == "FP64":
            tensor.contents.fp64_contents.extend(values.tolist())
        else:
            tensor.contents.fp32_contents.extend(values.astype(np.float32).tolist())
    request.outputs.extend(oip.ModelInferRequest.InferRequestedOutputTensor(name=name) for name in
                           _pick(draw, broken, "output", [[], ["probabilities"]], [["logits"]]))
    valid = (request.model_name == "mnist" and request.model_version in ("", "1") and tensor.name == "pixels"
             and datatype in ("FP32", "FP64", "FP16") and len(shape) == 2 and shape[1] == 784
             and 1 <= shape[0] <= MAX_BATCH and len(values) == count and (not typed or datatype != "FP16")
             and _in_range(values, layout)
             and all(item.name == "probabilities" for item in request.outputs))
    return request, shape[0] if valid else None


def test_random_tensorflow_serving_predict_requests(service, clients, digits, expected):
    pids, log_from, problems = service.worker_pids(), len(service.log()), []

    @settings(max_examples=OWN_EXAMPLES, **SETTINGS)
    @given(case=predict_requests())
    def run(case):
        request, rows = case
        code, answer = _call(clients.predictions.Predict, request)
        problem = _judge("PredictionService/Predict", code, answer, rows, probabilities)
        if problem:
            problems.append((problem, str(request)[:300]))

    run()
    _report()
    assert not problems, problems[:5]
    assert_service_still_correct(service, digits, expected, pids, log_from)


def test_random_open_inference_protocol_requests(service, clients, digits, expected):
    pids, log_from, problems = service.worker_pids(), len(service.log()), []

    @settings(max_examples=OWN_EXAMPLES, **SETTINGS)
    @given(case=infer_requests())
    def run(case):
        request, rows = case
        code, answer = _call(clients.inference.ModelInfer, request)
        problem = _judge("GRPCInferenceService/ModelInfer", code, answer, rows, infer_probabilities)
        if problem:
            problems.append((problem, str(request)[:300]))

    run()
    _report()
    assert not problems, problems[:5]
    assert_service_still_correct(service, digits, expected, pids, log_from)


METHODS = ["/tensorflow.serving.PredictionService/" + name
           for name in ("Predict", "GetModelMetadata", "Classify", "Regress", "MultiInference")] + [
    "/tensorflow.serving.ModelService/GetModelStatus", "/tensorflow.serving.ModelService/HandleReloadConfigRequest",
    *("/inference.GRPCInferenceService/" + name for name in ("ServerLive", "ServerReady", "ModelReady",
                                                             "ServerMetadata", "ModelMetadata", "ModelInfer")),
    "/no.Such/Method"]


def test_random_bytes_to_every_method(service, digits, expected):
    pids, log_from, problems = service.worker_pids(), len(service.log()), []
    chan = channel(service.grpc_port)
    calls = {method: chan.unary_unary(method) for method in METHODS}  # bytes in, bytes out

    @settings(max_examples=OWN_EXAMPLES, **SETTINGS)
    @given(method=st.sampled_from(METHODS), body=st.binary(max_size=64))
    def run(method, body):
        code, answer = _call(calls[method], body)
        CODES.setdefault("random bytes, every method", Counter())[code.name] += 1
        if code not in CLIENT_ERRORS | {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE} or (
                code == grpc.StatusCode.UNAVAILABLE and "retry later" not in str(answer)):
            problems.append((method, body, code.name, answer))

    run()
    chan.close()
    _report()
    assert not problems, problems[:5]
    assert_service_still_correct(service, digits, expected, pids, log_from)


def _report() -> None:
    rows = [[name, sum(codes.values()), histogram(codes)] for name, codes in CODES.items()]
    REPORT.requests["gRPC fuzzing"] = (sum(row[1] for row in rows), sum(
        codes.get("UNKNOWN", 0) + codes.get("INTERNAL", 0) for codes in CODES.values()))
    REPORT.section("gRPC fuzzing (Hypothesis)", [
        "Messages drawn by Hypothesis (derandomised) and sent to the live service's gRPC port. Oracle: a "
        "request valid by the protocol gets OK with one row of 10 probabilities per image; anything else a "
        "client-error code (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED, UNIMPLEMENTED) with a message; "
        "never UNKNOWN or INTERNAL.",
        "",
        *table(["messages", "calls", "status codes"], rows),
    ])
