"""How the gRPC server lives in a gunicorn worker: it refuses to start on a port it cannot bind, and with
ENABLE_BATCHING=1 its calls run in the worker's thread pool, where TensorFlow's batch scheduler merges them."""

from __future__ import annotations

import re
import socket
import threading

import numpy as np
import requests

from bench.servers import GunicornServer
from tests.support import running_gunicorn

from .conftest import copy_version
from .grpc_support import Clients, predict_request, probabilities, wait_for_grpc


def test_a_grpc_port_taken_stops_gunicorn_with_a_clear_error(tmp_path):
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: nobody can share its port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = GunicornServer(tmp_path / "exports", tmp_path / "gunicorn.log", workers=1,
                                extra_env={"GRPC_PORT": str(port)})
        try:
            assert server.process.wait(120) == 3  # gunicorn's "worker failed to boot": it halts
        finally:
            server.stop()
    log = server.log()
    assert f"gRPC could not bind 127.0.0.1:{port} (GRPC_PORT)" in log and "Worker failed to boot" in log


def test_with_batching_grpc_calls_are_merged_into_batches(tmp_path, version_dir):
    copy_version(version_dir, tmp_path / "exports", 1)
    batching = {"ENABLE_BATCHING": "1", "BATCH_TIMEOUT_MICROS": "100000", "MAX_BATCH_SIZE": "64",
                "MAX_BATCH": "64", "GUNICORN_THREADS": "8"}
    with running_gunicorn(tmp_path / "exports", tmp_path / "gunicorn.log", workers=1, extra_env=batching) as server:
        wait_for_grpc(server, workers=1)
        answers = []

        def call() -> None:
            clients = Clients(server.grpc_port)
            answers.append(probabilities(clients.predictions.Predict(predict_request(np.zeros((1, 784), np.float32)),
                                                                     timeout=30)))
            clients.close()

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert len(answers) == 8 and all(answer.shape == (1, 10) for answer in answers)
        metrics = requests.get(server.url("/metrics"), timeout=10).text
        batches = float(re.search(r"^mnist_batch_size_count (\S+)$", metrics, re.M).group(1))
        assert batches < 8, f"8 concurrent gRPC calls ran as {batches:g} batches: none was merged"
