"""The ecosystem's real gRPC clients, each run in a process of its own (tests/service/test_grpc_clients.py):

    VENV/bin/python tests/service/grpc_clients.py triton PORT IMAGES.npy        # tritonclient[grpc]
    PYTHONPATH=TFS_API python tests/service/grpc_clients.py tfserving PORT IMAGES.npy   # tensorflow_serving.apis

Each prints one JSON object with what the client got: the probabilities of IMAGES ((n, 784) float32) and
the other calls' answers, as the client library returns them. Processes of their own because the two
packages cannot share one with the service's code: tritonclient needs protobuf < 7 (its own venv), and
tensorflow-serving-api 2.21's ``predict.proto`` differs from the vendored 2.20 one by one optional field
(protobuf refuses two definitions of one file in a process). Only numpy, grpc and the client imported here.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def triton(port: int, images: np.ndarray) -> dict:
    import tritonclient.grpc as triton_grpc

    client = triton_grpc.InferenceServerClient(url=f"127.0.0.1:{port}")
    answers = {"live": client.is_server_live(), "ready": client.is_server_ready(),
               "model_ready": client.is_model_ready("mnist"),
               "metadata": client.get_model_metadata("mnist", as_json=True)}
    for datatype in ("FP32", "FP16"):
        tensor = triton_grpc.InferInput("pixels", list(images.shape), datatype)
        tensor.set_data_from_numpy(images.astype(np.float16 if datatype == "FP16" else np.float32))
        result = client.infer("mnist", [tensor], request_id=f"{datatype}-1",
                              outputs=[triton_grpc.InferRequestedOutput("probabilities")])
        answers[datatype] = {"id": result.get_response().id,
                             "probabilities": result.as_numpy("probabilities").tolist()}
    try:
        client.get_model_metadata("other")
    except triton_grpc.InferenceServerException as error:
        answers["unknown_model"] = {"status": error.status(), "message": error.message()}
    return answers


def tfserving(port: int, images: np.ndarray) -> dict:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "mnist"
    request.model_spec.signature_name = "serving_default"
    request.inputs["pixels"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.float32))
    response = stub.Predict(request, timeout=30)
    metadata = stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "mnist"}, metadata_field=["signature_def"]), timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        get_model_status_pb2.GetModelStatusRequest(model_spec={"name": "mnist"}), timeout=30)
    serving = signatures.signature_def["serving_default"]
    return {"probabilities": tf.make_ndarray(response.outputs["probabilities"]).tolist(),
            "version": response.model_spec.version.value,
            "signature_inputs": {name: tensor.name for name, tensor in serving.inputs.items()},
            "signature_outputs": sorted(serving.outputs), "method_name": serving.method_name,
            "status": [(entry.version, get_model_status_pb2.ModelVersionStatus.State.Name(entry.state))
                       for entry in status.model_version_status]}


if __name__ == "__main__":
    kind, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    print(json.dumps({"triton": triton, "tfserving": tfserving}[kind](port, np.load(path))))
