"""gRPC and gunicorn's pre-fork model: a killed worker's replacement serves gRPC on the shared port, and
SIGTERM lets a gRPC call in flight finish (issue 23). Each test runs a gunicorn of its own (2 workers,
gRPC on a free GRPC_PORT, SO_REUSEPORT) on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter

import grpc
import numpy as np
import pytest

from tests.service.grpc_support import (Clients, RawCall, grpc_frame, grpc_workers, predict_request, probabilities,
                                        wait_for_grpc)
from bench.localhost import wait_for
from bench.servers import GunicornServer
from tests.support import established_connections, running_gunicorn

from .conftest import copy_version
from .report import REPORT

pytestmark = pytest.mark.reliability

CHANNELS = 8
CALLS_AFTER = 1000


RETRYING = json.dumps({"methodConfig": [{  # gRPC's retry policy, as a client that follows gRPC's advice sets it
    "name": [{"service": "tensorflow.serving.PredictionService"}],
    "retryPolicy": {"maxAttempts": 5, "initialBackoff": "0.05s", "maxBackoff": "0.5s", "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"]}}]})
# seconds after the SIGKILL within which a plain client may fail: the victim's teardown (~0.03 s), then the
# channel's reconnection backoff, during which gRPC fails calls at once (1 s by default, +-20 % jitter)
KILL_WINDOW = 1.5


class Callers:
    """``CHANNELS`` threads, each with a channel (a connection) of its own, calling Predict until stopped, with
    or without gRPC's retry policy (``RETRYING``); every call's outcome is kept: ``(thread, status code)``, and
    each failure's ``(time.monotonic(), thread, details)``."""

    def __init__(self, port: int, request, retrying: bool = False):
        self.port, self.request = port, request
        self.options = [("grpc.service_config", RETRYING)] if retrying else []
        self.outcomes: list[tuple[int, grpc.StatusCode]] = []
        self.details: list = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(index,), daemon=True) for index in range(CHANNELS)]

    def _run(self, index: int) -> None:
        clients = Clients(self.port, self.options)
        try:
            while not self.stopping.is_set():
                try:
                    clients.predictions.Predict(self.request, timeout=10)
                    self.outcomes.append((index, grpc.StatusCode.OK))
                except grpc.RpcError as error:
                    self.outcomes.append((index, error.code()))
                    self.details.append((time.monotonic(), index, error.details() or ""))
        finally:
            clients.close()

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)


@pytest.fixture
def grpc_service(tmp_path, version_dir):
    base = tmp_path / "exports"
    copy_version(version_dir, base, 1)
    with running_gunicorn(base, tmp_path / "gunicorn.log", workers=2, poll_seconds=1.0) as server:
        wait_for_grpc(server)
        yield server


def test_a_killed_workers_replacement_serves_grpc(grpc_service, digits, expected):
    images = digits[0][:8].astype(np.float32)
    request = predict_request(images)
    before = grpc_workers(grpc_service)
    with Callers(grpc_service.grpc_port, request) as callers, \
            Callers(grpc_service.grpc_port, request, retrying=True) as retrying:
        time.sleep(2.0)
        victim = min(before)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        (newcomer,) = wait_for(lambda: (grpc_workers(grpc_service) - before) or None, 120,
                               "the replacement worker's gRPC server")
        replaced_after = time.monotonic() - killed_at
        time.sleep(1.0)
    # Each worker listens on GRPC_PORT itself (SO_REUSEPORT), so the kernel resets what the victim's dying
    # process had not answered: its calls in flight ("Stream removed (Socket closed)") and, while its exit
    # closes one descriptor after another, a channel's reconnection that landed in its listener's queue
    # ("failed to connect ... Connection reset by peer"); that channel then fails its calls at once until its
    # reconnection backoff ends (KILL_WINDOW). UNAVAILABLE only, the status gRPC's retry policy retries: a
    # client that sets it sees no failure at all.
    failed = [(index, code) for index, code in callers.outcomes if code != grpc.StatusCode.OK]
    assert {code for _, code in failed} <= {grpc.StatusCode.UNAVAILABLE}, failed
    late = [(round(at - killed_at, 3), details) for at, _, details in callers.details if at - killed_at > KILL_WINDOW]
    assert not late, (len(late), late[-1])
    assert retrying.details == [] and len(retrying.outcomes) > 100, retrying.details
    per_channel = Counter(index for index, _ in failed)
    after = calls_from_fresh_channels(grpc_service.grpc_port, request, expected[:8], grpc_workers(grpc_service))
    assert after["failed"] == 0 and after["calls"] == CALLS_AFTER
    assert after["connections"][newcomer] > 0, "the replacement took its share of the new connections"
    REPORT.fault(
        "gRPC: a worker killed with SIGKILL, then 1,000 calls",
        f"{CHANNELS} channels calling Predict, and {CHANNELS} more with gRPC's retry policy (UNAVAILABLE, 5 "
        f"attempts): plain calls fail only UNAVAILABLE and within {KILL_WINDOW} s of the kill (the victim's "
        "connections and listener queue, reset as it exits, then the channel's reconnection backoff), retrying "
        "ones never; the replacement binds GRPC_PORT "
        f"again (SO_REUSEPORT); then {CALLS_AFTER} calls from {CHANNELS} new channels all succeed",
        f"{len(failed)} of {len(callers.outcomes)} plain calls failed during the kill (from {len(per_channel)} "
        f"channel(s), at most {max(per_channel.values(), default=0)} each, the last "
        f"{max((at - killed_at for at, _, _ in callers.details), default=0):.2f} s after it); "
        f"{len(retrying.details)} of {len(retrying.outcomes)} retrying calls failed; afterwards {after['failed']} of "
        f"{after['calls']} failed; new connections per worker {after['connections']}",
        f"replacement serving gRPC after {replaced_after:.1f} s")


def calls_from_fresh_channels(port: int, request, expected: np.ndarray, workers: set[int]) -> dict:
    """``CALLS_AFTER`` Predict calls from ``CHANNELS`` new channels at once, each answer checked; and the
    TCP connections each of ``workers`` holds then (the channels' connections, spread by the kernel)."""
    channels = [Clients(port) for _ in range(CHANNELS)]
    failures, lock = [], threading.Lock()

    def run(clients: Clients) -> None:
        for _ in range(CALLS_AFTER // CHANNELS):
            try:
                answer = probabilities(clients.predictions.Predict(request, timeout=10))
                assert np.abs(answer - expected).max() <= 1e-6
            except (grpc.RpcError, AssertionError) as error:
                with lock:
                    failures.append(error)

    threads = [threading.Thread(target=run, args=(clients,)) for clients in channels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    connections = {pid: established_connections(pid) for pid in workers}  # the channels are still open
    for clients in channels:
        clients.close()
    return {"calls": CALLS_AFTER, "failed": len(failures), "connections": connections}


def test_sigterm_lets_a_grpc_call_in_flight_finish(tmp_path, version_dir, digits, expected):
    base = tmp_path / "exports"
    copy_version(version_dir, base, 1)
    server = GunicornServer(base, tmp_path / "gunicorn.log", workers=1)
    try:
        server.wait_until_up(workers=1)
        wait_for_grpc(server, workers=1)
        frame = grpc_frame(predict_request(digits[0][:4].astype(np.float32)).SerializeToString())
        call = RawCall(server.grpc_port, "/tensorflow.serving.PredictionService/Predict", timeout=40)
        call.send(frame[:len(frame) // 2])  # the call is in flight: its message is half sent
        time.sleep(1.0)
        server.process.send_signal(signal.SIGTERM)
        wait_for(lambda: "Handling signal: term" in server.log(), 10, "gunicorn to handle SIGTERM")
        time.sleep(1.0)
        with pytest.raises(grpc.RpcError) as refused:  # a new call is not accepted any more
            Clients(server.grpc_port).predictions.Predict(predict_request(digits[0][:1]), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        call.send(frame[len(frame) // 2:], end=True)
        answer = call.answer()
        assert answer.get("grpc-status") == "0", answer
        assert server.process.wait(40) == 0
    finally:
        server.stop()
    REPORT.fault("gRPC: SIGTERM while a call is in flight",
                 "a Predict call whose message is half sent when gunicorn gets SIGTERM: new calls are refused "
                 "(UNAVAILABLE), the call in flight completes (OK) within graceful_timeout, exit status 0",
                 f"the call in flight answered grpc-status {answer.get('grpc-status')}; new call "
                 f"{refused.value.code().name}; exit status 0", "")
