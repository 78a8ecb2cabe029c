"""The generated gRPC modules, the one mapping of errors to gRPC codes, and GRPC_PORT (no server needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.config import load_config
from service.errors import GRPC_CODES, RequestError, error_status, grpc_status
from bench.support import REPO


def test_generated_modules_are_exactly_what_the_generator_writes():
    """No hand edits: a fresh run of service/grpc_api/generate.py reproduces generated/ byte for byte."""
    result = subprocess.run([sys.executable, "-m", "service.grpc_api.generate", "--check"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "generated/ is what the generator writes (17 protos)" in result.stdout


def test_generated_services_match_the_methods_served():
    from service.grpc_api import kserve, tf_serving
    from service.grpc_api.generated import open_inference_grpc_pb2
    from service.grpc_api.generated.tensorflow_serving.apis import model_service_pb2, prediction_service_pb2

    prediction = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]
    assert set(tf_serving.METHODS[prediction.full_name]) == {method.name for method in prediction.methods}
    models = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"]
    assert set(tf_serving.METHODS[models.full_name]) == {"GetModelStatus"}  # not HandleReloadConfigRequest
    inference = open_inference_grpc_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert set(kserve.METHODS[inference.full_name]) == {method.name for method in inference.methods}
    for service in (*tf_serving.METHODS.values(), *kserve.METHODS.values()):
        for name, (request_type, _function) in service.items():
            method = next(m for d in (prediction, models, inference) for m in d.methods if m.name == name)
            assert request_type.DESCRIPTOR is method.input_type


def test_generated_modules_import_tensorflows_messages_not_copies():
    from tensorflow.core.framework import tensor_pb2

    from service.grpc_api.generated.tensorflow_serving.apis import predict_pb2

    field = predict_pb2.PredictRequest.DESCRIPTOR.fields_by_name["inputs"].message_type.fields_by_name["value"]
    assert field.message_type is tensor_pb2.TensorProto.DESCRIPTOR


def test_the_relative_import_rewrite():
    from service.grpc_api.generate import relative_imports

    generated = {"tensorflow_serving.apis.model_pb2", "tensorflow_serving.config.logging_config_pb2", "oip_pb2"}
    source = ("from tensorflow_serving.apis import model_pb2 as a\n"
              "from tensorflow_serving.config import logging_config_pb2 as b\n"
              "from tensorflow.core.framework import tensor_pb2 as c\n"
              "import oip_pb2 as d\nimport grpc\n")
    assert relative_imports(source, "tensorflow_serving.apis.predict_pb2", generated) == (
        "from . import model_pb2 as a\nfrom ..config import logging_config_pb2 as b\n"
        "from tensorflow.core.framework import tensor_pb2 as c\nfrom ... import oip_pb2 as d\nimport grpc\n")
    assert relative_imports("import oip_pb2 as d\n", "oip_pb2_grpc", generated) == "from . import oip_pb2 as d\n"


@pytest.mark.parametrize("status, code", [(400, "INVALID_ARGUMENT"), (404, "NOT_FOUND"), (413, "RESOURCE_EXHAUSTED"),
                                          (415, "INVALID_ARGUMENT"), (501, "UNIMPLEMENTED")])
def test_request_errors_map_to_grpc_codes_with_their_message(status, code):
    assert grpc_status(RequestError("what went wrong", status)) == (code, "what went wrong")


def test_the_predictors_errors_map_as_over_http():
    from service.graph_runner import Overloaded
    from service.predictor import ModelNotReady, VersionNotFound

    assert grpc_status(ModelNotReady("no model loaded: x")) == ("UNAVAILABLE", "no model loaded: x; retry later")
    assert grpc_status(VersionNotFound("version 3 is not loaded")) == ("NOT_FOUND", "version 3 is not loaded")
    assert error_status(Overloaded())[0] == 503 and grpc_status(Overloaded())[0] == "UNAVAILABLE"
    assert grpc_status(ValueError("a bug")) is None  # INTERNAL, logged: never for a client's mistake
    assert set(GRPC_CODES.values()).isdisjoint({"UNKNOWN", "INTERNAL"})


def test_grpc_port_setting():
    assert load_config(environ={}).grpc_port == 8500
    assert load_config(environ={"GRPC_PORT": "0"}).grpc_port == 0
    for value, message in (("70000", "GRPC_PORT must be a port number from 1 to 65535, or 0 for no gRPC"),
                           ("8000", "GRPC_PORT must differ from PORT (8000)"), ("x", "GRPC_PORT='x' is not a valid int")):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_config(environ={"GRPC_PORT": value})


@pytest.mark.parametrize("bind, host", [(["127.0.0.1:8000"], "127.0.0.1"), (["0.0.0.0:8000"], "0.0.0.0"),
                                        (["[::]:8000"], "[::]"), (["unix:/tmp/x.sock"], "0.0.0.0"), ([], "0.0.0.0")])
def test_grpc_listens_on_the_host_gunicorn_binds(bind, host):
    from service.worker import Worker

    worker = Worker.__new__(Worker)
    worker.cfg = type("Cfg", (), {"bind": bind})()
    assert worker._grpc_host() == host
