"""The container checks' gRPC side (smoke.sh, kube.sh; kube_check.py's gRPC probe):

    python -m tests.container.grpc_check calls 127.0.0.1:GRPC_PORT http://127.0.0.1:HTTP_PORT
        health SERVING, server reflection listing every service, and both prediction services called
        through the published gRPC port: TF Serving's Predict and the Open Inference Protocol's
        ModelInfer on 16 images, each equal (within 1e-6) to the same container's HTTP answer
    python -m tests.container.grpc_check probe 127.0.0.1:GRPC_PORT [SERVICE]
        one grpc.health.v1 Check, as Kubernetes' gRPC probe makes it: exit 0 if SERVING

Exit 1 with one line saying what is wrong otherwise. Runs on the host with the project's venv.
"""

from __future__ import annotations

import json
import sys
import urllib.request

import numpy as np

SERVICES = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection", "inference.GRPCInferenceService",
            "tensorflow.serving.ModelService", "tensorflow.serving.PredictionService"}


def fail(message: str) -> None:
    sys.exit(f"grpc_check: {message}")


def health_status(address: str, service: str = "", timeout: float = 5) -> str:
    """The health service's answer for ``service`` ("" = the server), or the error's code name."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(address) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                               timeout=timeout)
    except grpc.RpcError as error:
        return error.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)


def listed_services(address: str) -> set[str]:
    import grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    with grpc.insecure_channel(address) as channel:
        return set(ProtoReflectionDescriptorDatabase(channel).get_services())


def http_predictions(url: str, images: np.ndarray) -> np.ndarray:
    request = urllib.request.Request(url + "/v1/models/mnist:predict", method="POST",
                                     data=json.dumps({"instances": images.tolist()}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return np.asarray(json.loads(response.read())["predictions"])


def calls(address: str, url: str) -> None:
    from tests.service.grpc_support import (Clients, infer_probabilities, infer_request, predict_request,
                                            probabilities)

    status = health_status(address)
    if status != "SERVING":
        fail(f"health Check on {address}: {status}, expected SERVING")
    if listed_services(address) != SERVICES:
        fail(f"reflection lists {sorted(listed_services(address))}, expected {sorted(SERVICES)}")
    images = np.random.default_rng(0).random((16, 784), dtype=np.float32)
    expected = http_predictions(url, images)
    clients = Clients(int(address.rsplit(":", 1)[1]))
    try:
        predicted = probabilities(clients.predictions.Predict(predict_request(images), timeout=30))
        inferred = infer_probabilities(clients.inference.ModelInfer(infer_request(images), timeout=30))
    finally:
        clients.close()
    for name, answer in (("TF Serving Predict", predicted), ("Open Inference Protocol ModelInfer", inferred)):
        difference = float(np.abs(answer - expected).max())
        if answer.shape != expected.shape or difference > 1e-6:
            fail(f"{name} over gRPC differs from HTTP's answer by {difference:g} (shape {answer.shape})")
    print(f"gRPC on {address}: health SERVING, reflection lists {len(SERVICES)} services, Predict and ModelInfer "
          f"of 16 images equal to HTTP's answers (largest difference "
          f"{max(np.abs(predicted - expected).max(), np.abs(inferred - expected).max()):.1e})")


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "calls":
        calls(argv[1], argv[2])
    elif len(argv) in (2, 3) and argv[0] == "probe":
        status = health_status(argv[1], argv[2] if len(argv) == 3 else "")
        print(status)
        sys.exit(0 if status == "SERVING" else 1)
    else:
        fail("usage: grpc_check calls ADDRESS URL | probe ADDRESS [SERVICE]")


if __name__ == "__main__":
    main(sys.argv[1:])
