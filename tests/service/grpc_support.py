"""gRPC clients for the tests (and the container check): stubs from service/grpc_api/generated, requests
built the way TensorFlow Serving's and KServe's clients build them, and waiting for a server's workers.

The stubs are the modules the service itself serves with, generated from the same vendored protos as
``tensorflow_serving.apis`` (tests/service/test_grpc_stubs.py compares their descriptors with the real
package); ``grpc_clients.py`` runs the real ``tensorflow-serving-api`` and ``tritonclient`` packages.
"""

from __future__ import annotations

import numpy as np

import grpc

from service.grpc_api.generated import open_inference_grpc_pb2 as oip
from service.grpc_api.generated import open_inference_grpc_pb2_grpc as oip_grpc
from service.grpc_api.generated.tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                                                model_service_pb2_grpc, predict_pb2,
                                                                prediction_service_pb2_grpc)

GRPC_LISTENING = "[{pid}] INFO service.grpc_api.server: gRPC server listening on"  # one line per worker


def channel(port: int, options: list = ()) -> grpc.Channel:
    """A channel of its own (a new TCP connection, so new channels spread over the workers)."""
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1), *options])


def grpc_workers(server) -> set[int]:
    """The live workers of a GunicornServer whose gRPC server is listening."""
    log = server.log()
    return {pid for pid in server.worker_pids() if GRPC_LISTENING.format(pid=pid) in log}


def wait_for_grpc(server, workers: int = 2, timeout: float = 120) -> None:
    server.wait_until(lambda: len(grpc_workers(server)) >= workers, timeout, f"{workers} gRPC servers listening")


class Clients:
    """The three services' stubs on one channel."""

    def __init__(self, port: int, options: list = ()):
        self.channel = channel(port, options)
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.inference = oip_grpc.GRPCInferenceServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def predict_request(images, name: str = "mnist", input_name: str = "pixels", **spec) -> predict_pb2.PredictRequest:
    """``PredictRequest`` as TF Serving's docs build it: ``tf.make_tensor_proto`` of the images."""
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs[input_name].CopyFrom(tf.make_tensor_proto(np.asarray(images)))
    return request


def probabilities(response: predict_pb2.PredictResponse) -> np.ndarray:
    import tensorflow as tf

    return tf.make_ndarray(response.outputs["probabilities"])


def metadata_request(name: str = "mnist", fields=("signature_def",)):
    return get_model_metadata_pb2.GetModelMetadataRequest(model_spec={"name": name}, metadata_field=list(fields))


def status_request(name: str = "mnist", version: int | None = None):
    request = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": name})
    if version is not None:
        request.model_spec.version.value = version
    return request


def infer_request(images, datatype: str = "FP32", raw: bool = True, name: str = "mnist",
                  **fields) -> oip.ModelInferRequest:
    """``ModelInferRequest`` of one ``pixels`` input ``[n, 784]``: raw bytes (as tritonclient sends) or typed."""
    array = np.asarray(images)
    request = oip.ModelInferRequest(model_name=name, **fields)
    tensor = request.inputs.add(name="pixels", datatype=datatype, shape=list(array.shape))
    layout = {"FP32": "<f4", "FP64": "<f8", "FP16": "<f2"}.get(datatype, "<f4")
    if raw:
        request.raw_input_contents.append(array.astype(layout).tobytes())
    elif datatype == "FP64":
        tensor.contents.fp64_contents.extend(array.ravel().tolist())
    else:
        tensor.contents.fp32_contents.extend(array.ravel().tolist())
    return request


def infer_probabilities(response: oip.ModelInferResponse) -> np.ndarray:
    output = response.outputs[0]
    if response.raw_output_contents:
        values = np.frombuffer(response.raw_output_contents[0], "<f4")
    else:
        values = np.asarray(output.contents.fp32_contents, np.float32)
    return values.reshape(list(output.shape))


def refusal(call, request, timeout: float = 10) -> tuple[grpc.StatusCode, str]:
    """``(code, details)`` of a call that must fail (AssertionError if it succeeds)."""
    try:
        call(request, timeout=timeout)
    except grpc.RpcError as error:
        return error.code(), error.details()
    raise AssertionError(f"{request.__class__.__name__} succeeded; a refusal was expected")


def grpc_frame(message: bytes, declared: int | None = None) -> bytes:
    """gRPC's length-prefixed message: flag 0, 4-byte big-endian length (``declared``: another length), bytes."""
    return b"\0" + (len(message) if declared is None else declared).to_bytes(4, "big") + message


class RawCall:
    """One gRPC call written HTTP/2 frame by frame, for what real clients never send: a message cut short,
    a call left half-sent while the server shuts down. h2 writes the frames; the answer's frames are read
    with h2's own parsers (hyperframe, hpack) without h2's connection state machine, which stops at the
    server's GOAWAY while HTTP/2 lets the streams below its last stream id go on (a graceful shutdown)."""

    def __init__(self, port: int, path: str, timeout: float = 15):
        import socket

        import h2.config
        import h2.connection

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(self.stream, [(":method", "POST"), (":scheme", "http"), (":path", path),
                                             (":authority", f"127.0.0.1:{port}"), ("content-type", "application/grpc"),
                                             ("te", "trailers")])
        self.sock.sendall(self.conn.data_to_send())

    def send(self, data: bytes, end: bool = False) -> None:
        self.conn.send_data(self.stream, data, end_stream=end)
        self.sock.sendall(self.conn.data_to_send())

    def answer(self) -> dict:
        """The response's headers and trailers (``grpc-status``, ``grpc-message``) as text, ``goaway`` if the
        server sent one, or ``closed`` / ``reset`` if the stream ended without a status."""
        from hpack import Decoder
        from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

        found, buffer, decoder = {}, b"", Decoder()
        try:
            while "grpc-status" not in found:
                data = self.sock.recv(65536)
                if not data:
                    return {**found, "closed": True}
                buffer += data
                while len(buffer) >= 9:
                    frame, length = Frame.parse_frame_header(memoryview(buffer[:9]))
                    if len(buffer) < 9 + length:
                        break
                    frame.parse_body(memoryview(buffer[9:9 + length]))
                    buffer = buffer[9 + length:]
                    if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                        self.sock.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
                    elif isinstance(frame, GoAwayFrame):
                        found["goaway"] = True
                    elif isinstance(frame, RstStreamFrame) and frame.stream_id == self.stream:
                        return {**found, "reset": frame.error_code}
                    elif isinstance(frame, HeadersFrame) and frame.stream_id == self.stream:
                        found.update((name.decode() if isinstance(name, bytes) else name,
                                      value.decode() if isinstance(value, bytes) else value)
                                     for name, value in decoder.decode(frame.data))
            return found
        finally:
            self.sock.close()
