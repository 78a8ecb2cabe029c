"""Existing clients work unchanged over gRPC: ``tritonclient.grpc`` and TensorFlow Serving's own
``tensorflow_serving.apis`` stubs, each in a process of its own (tests/service/grpc_clients.py says why),
against the gunicorn of ``grpc_server``; their answers equal the HTTP routes' (probabilities within 1e-6).

The clients come from .ci/setup.d/40-grpc-clients.sh (not requirements.txt: see that script); without
them these tests skip, naming it, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import requests

from service.contract import list_versions
from bench.localhost import wait_for
from bench.support import REPO

from .conftest import copy_version

CLIENTS = REPO / ".cache" / "grpc-clients"
TRITON_PYTHON = CLIENTS / "venv" / "bin" / "python"
TFS_API = CLIENTS / "tensorflow-serving-api"
SCRIPT = REPO / "tests" / "service" / "grpc_clients.py"


def require(path, what: str) -> None:
    if not path.exists():
        message = f"{what} is not installed: run `bash .ci/setup.d/40-grpc-clients.sh` (it makes {path})"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI runs it")
        pytest.skip(message)


@pytest.fixture(scope="module")
def server(grpc_server, version_dir):
    """The shared gRPC server with a version loaded (test_grpc.py loaded some, unless run alone)."""
    if not list_versions(grpc_server.export_base):
        copy_version(version_dir, grpc_server.export_base, 1)
    wait_for(lambda: requests.get(grpc_server.url("/readyz"), timeout=5).status_code == 200, 60, "a loaded version")
    return grpc_server


@pytest.fixture(scope="module")
def images(digits_data, tmp_path_factory):
    array = digits_data[1][0][:16].astype(np.float32)
    path = tmp_path_factory.mktemp("grpc-clients") / "images.npy"
    np.save(path, array)
    return array, path


def run_client(python, kind: str, port: int, path, env=None) -> dict:
    result = subprocess.run([str(python), str(SCRIPT), kind, str(port), str(path)], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def http_predictions(server, images) -> np.ndarray:
    answer = requests.post(server.url("/v1/models/mnist:predict"), json={"instances": images.tolist()}, timeout=10)
    return np.asarray(answer.json()["predictions"])


def test_tritonclient_grpc(server, images):
    require(TRITON_PYTHON, "tritonclient[grpc]")
    array, path = images
    answers = run_client(TRITON_PYTHON, "triton", server.grpc_port, path)
    assert answers["live"] and answers["ready"] and answers["model_ready"]
    http_metadata = requests.get(server.url("/v2/models/mnist"), timeout=10).json()
    metadata = answers["metadata"]
    assert metadata["name"] == "mnist" and metadata["versions"] == http_metadata["versions"]
    assert metadata["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": ["-1", "784"]}]
    assert metadata["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": ["-1", "10"]}]
    np.testing.assert_allclose(answers["FP32"]["probabilities"], http_predictions(server, array), atol=1e-6)
    assert answers["FP32"]["id"] == "FP32-1" and answers["FP16"]["id"] == "FP16-1"
    half = array.astype(np.float16).astype(np.float32)  # the same pixels, rounded as FP16 rounds them
    np.testing.assert_allclose(answers["FP16"]["probabilities"], http_predictions(server, half), atol=1e-6)
    assert answers["unknown_model"] == {"status": "StatusCode.NOT_FOUND",
                                        "message": "unknown model 'other'; this server serves 'mnist'"}


def test_tensorflow_serving_apis(server, images):
    require(TFS_API / "tensorflow_serving", "tensorflow-serving-api (--no-deps)")
    array, path = images
    answers = run_client(sys.executable, "tfserving", server.grpc_port, path, env={"PYTHONPATH": str(TFS_API)})
    np.testing.assert_allclose(answers["probabilities"], http_predictions(server, array), atol=1e-6)
    http_status = requests.get(server.url("/v1/models/mnist"), timeout=10).json()["model_version_status"]
    assert answers["status"] == [[int(entry["version"]), entry["state"]] for entry in http_status]
    assert answers["version"] == int(http_status[0]["version"])
    assert answers["signature_inputs"] == {"pixels": "serving_default_pixels:0"}
    assert answers["signature_outputs"] == ["probabilities"]
    assert answers["method_name"] == "tensorflow/serving/predict"
