"""The peers benchmark over gRPC (issue 23): the Open Inference Protocol's ``ModelInfer`` with raw FP32
input (what ``tritonclient.grpc`` sends), the same message for every server that speaks it.

- ``predict``: a real gRPC client (grpcio, the stubs in service/grpc_api/generated: protobuf only, no
  TensorFlow) on a fresh channel, for the readiness check and the correctness gate;
- the load: ``h2load`` (Debian's nghttp2-client) replaying one pre-serialised gRPC frame (the 5-byte
  prefix and the message) as the body of every POST, ``-m 1`` (one call at a time per connection),
  ``--log-file`` for each call's latency. h2load counts HTTP statuses, and a refused gRPC call is an
  HTTP 200 too (its status is in the trailers): so the answers' bytes are counted as well, and a level
  whose DATA bytes fall short of one full answer per call is flagged (``grpc_errors``).

h2load against KServe's gRPC server at one connection completes next to no call (measured: 52 calls/s
once, none in 10 s another time) where a plain client gets hundreds: ``plain_client_rps`` runs a
sequential grpcio client for the same seconds, and the report shows those figures (and their ratios) as
the c=1 check. A level where h2load completed no call is flagged.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import numpy as np

from bench.localhost import LOCALHOST

INFER_PATH = "/inference.GRPCInferenceService/ModelInfer"


def infer_request(images):
    from service.grpc_api.generated import open_inference_grpc_pb2 as oip

    array = np.asarray(images, dtype="<f4")
    request = oip.ModelInferRequest(model_name="mnist", id="bench")
    request.inputs.add(name="pixels", datatype="FP32", shape=list(array.shape))
    request.raw_input_contents.append(array.tobytes())
    return request


def answer_rows(response) -> np.ndarray:
    """The ``[n, 10]`` FP32 output of a ModelInferResponse, raw or typed."""
    output = response.outputs[0]
    data = (np.frombuffer(response.raw_output_contents[0], "<f4") if response.raw_output_contents
            else np.asarray(output.contents.fp32_contents, np.float32))
    return data.reshape(list(output.shape))


def frame(message: bytes) -> bytes:
    """gRPC's length-prefixed message: flag 0, 4-byte big-endian length, the bytes."""
    return b"\0" + len(message).to_bytes(4, "big") + message


class GrpcInfer:
    """``ModelInfer`` over gRPC; the port a spec's launcher receives is its gRPC port."""

    def predict(self, spec, port: int, images: list, timeout: float = 60) -> tuple[int, object]:
        import grpc

        from service.grpc_api.generated import open_inference_grpc_pb2_grpc

        with grpc.insecure_channel(f"{LOCALHOST}:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as chan:
            stub = open_inference_grpc_pb2_grpc.GRPCInferenceServiceStub(chan)
            try:
                response = stub.ModelInfer(infer_request(images), timeout=timeout)
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.UNAVAILABLE:
                    raise ConnectionError(f"gRPC UNAVAILABLE: {error.details()}") from None
                return 500, f"gRPC {error.code().name}: {error.details()}"
        return 200, answer_rows(response).tolist()

    def write_load(self, spec, images, batch: int, folder: Path) -> Path:
        """The frame h2load sends, and beside it the size of one full answer (for the check of the bytes)."""
        path = folder / f"{spec.name}-{batch}.grpc"
        path.write_bytes(frame(infer_request(images[:batch]).SerializeToString()))
        return path

    def run_load(self, spec, port: int, load_file: Path, connections: int, seconds: int) -> dict:
        log = load_file.with_suffix(f".c{connections}.log")
        command = ["h2load", f"-c{connections}", "-m1", "-t1", f"-D{seconds}", "-d", str(load_file),
                   "-H", "content-type: application/grpc", "-H", "te: trailers", f"--log-file={log}",
                   f"http://{LOCALHOST}:{port}{spec.path}"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
        if done.returncode != 0:
            raise RuntimeError(f"h2load failed ({done.returncode}): {done.stderr[-2000:]}{done.stdout[-2000:]}")
        batch = int(re.search(r"-(\d+)\.grpc$", load_file.name).group(1))
        return parse_h2load(done.stdout, log.read_text(), answer_bytes(batch))

    def plain_client_rps(self, port: int, images, seconds: float) -> float:
        """Calls per second of one sequential grpcio client (``ModelInfer`` of ``images``) for ``seconds``:
        the check of h2load's c=1 level."""
        import grpc

        from service.grpc_api.generated import open_inference_grpc_pb2_grpc

        request = infer_request(images)
        with grpc.insecure_channel(f"{LOCALHOST}:{port}", options=[("grpc.use_local_subchannel_pool", 1)]) as chan:
            stub = open_inference_grpc_pb2_grpc.GRPCInferenceServiceStub(chan)
            stub.ModelInfer(request, timeout=30)
            calls, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                stub.ModelInfer(request, timeout=30)
                calls += 1
        return calls / (time.perf_counter() - started)


def answer_bytes(batch: int) -> int:
    """The DATA bytes of one successful ModelInfer answer for ``batch`` images: the frame prefix, the
    output's description and ``batch`` x 10 raw float32s (servers differ by a few bytes of names and ids:
    the check allows 10 %)."""
    return 5 + batch * 10 * 4


def parse_h2load(stdout: str, log: str, least_answer_bytes: int) -> dict:
    """The figures of one h2load run: from its summary and its per-call log (start us, status, us)."""
    def number(pattern: str) -> float:
        match = re.search(pattern, stdout)
        if match is None:
            raise ValueError(f"h2load's output has no {pattern!r}:\n{stdout[-2000:]}")
        return float(match.group(1))

    seconds = number(r"finished in ([\d.]+)s")
    done = int(number(r"requests: \d+ total, \d+ started, (\d+) done"))
    failed = int(number(r"requests: .* (\d+) failed"))
    errored = int(number(r"(\d+) errored"))
    timeouts = int(number(r"(\d+) timeout"))
    non_2xx = done - failed - int(number(r"status codes: (\d+) 2xx"))
    data = number(r"traffic: .*?, \S+ \((\d+)\) data")
    latencies = np.array([int(line.split("\t")[2]) for line in log.splitlines() if line.count("\t") == 2]) / 1e3
    short = done and data < 0.9 * least_answer_bytes * done
    percentiles = np.percentile(latencies, [50, 90, 99]) if len(latencies) else [0.0, 0.0, 0.0]
    return {"requests": done - failed, "seconds": seconds, "rps": (done - failed) / seconds if seconds else 0.0,
            "p50_ms": float(percentiles[0]), "p90_ms": float(percentiles[1]), "p99_ms": float(percentiles[2]),
            "max_ms": float(latencies.max()) if len(latencies) else 0.0,
            "mean_ms": float(latencies.mean()) if len(latencies) else 0.0,
            "non_2xx": max(non_2xx, 0), "socket_errors": failed + errored + timeouts, "grpc_errors": bool(short),
            "flagged": bool(non_2xx > 0 or failed or errored or timeouts or short or done == 0),
            "data_bytes": int(data)}


GRPC_INFER = GrpcInfer()
