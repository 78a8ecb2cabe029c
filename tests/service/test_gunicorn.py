"""The real thing: gunicorn with 2 workers on 127.0.0.1, started from an empty export base.

The tests of this module share one server and run in order: first no model (503), then version 1
appears (200), concurrent requests, version 2 appears under load, a worker is killed.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .conftest import copy_version
from bench.localhost import wait_for
from tests.support import running_gunicorn

ZEROS = [0.0] * 784


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gunicorn")
    with running_gunicorn(folder / "exports", folder / "gunicorn.log", workers=2, poll_seconds=0.5) as gunicorn:
        yield gunicorn


def workers_serving(server, version: int) -> set[int]:
    """Worker pids whose ``mnist_model_version`` gauge says ``version`` (multiprocess metrics)."""
    metrics = requests.get(server.url("/metrics"), timeout=5).text
    return {int(pid) for pid in re.findall(rf'mnist_model_version{{pid="(\d+)"}} {version}.0', metrics)}


def all_workers_agree(server, path: str, check, tries: int = 12) -> bool:
    """``check`` holds for ``tries`` fresh connections in a row (they spread over the workers)."""
    for _ in range(tries):
        try:
            if not check(requests.get(server.url(path), timeout=5)):
                return False
        except requests.RequestException:
            return False
    return True


def test_readyz_goes_from_503_to_200_when_a_model_appears(server, version_dir):
    response = requests.get(server.url("/readyz"), timeout=5)
    assert response.status_code == 503
    assert "no model loaded" in response.json()["error"]
    assert requests.get(server.url("/healthz"), timeout=5).status_code == 200
    predict = requests.post(server.url("/predict"), json={"instances": [ZEROS]}, timeout=5)
    assert predict.status_code == 503 and "error" in predict.json()
    copy_version(version_dir, server.export_base, 1)
    wait_for(lambda: workers_serving(server, 1) == server.worker_pids(), 60,
             "both workers to load version 1")
    assert all_workers_agree(server, "/readyz", lambda response: response.status_code == 200)
    assert requests.get(server.url("/readyz"), timeout=5).json()["model"] == {"name": "mnist", "version": 1}


def test_master_imports_tensorflow_but_starts_no_runtime_and_workers_stay_lean(server):
    master = server.process.pid
    assert "libtensorflow" in open(f"/proc/{master}/maps").read(), "imported before the fork, to be shared"
    status = open(f"/proc/{master}/status").read()
    assert "\nThreads:\t1\n" in status, "a TensorFlow runtime in the master (its thread pools) hangs the workers"
    for pid in server.worker_pids():
        worker_maps = open(f"/proc/{pid}/maps").read()
        assert "libtensorflow" in worker_maps
        for kept_out in ("/sklearn/", "/jaxlib/", "/torch/"):  # service/lean.py
            assert kept_out not in worker_maps


def test_concurrent_requests_all_succeed(server, digits_data):
    _, (test_images, test_labels) = digits_data
    images = test_images[:40].tolist()

    def client(offset: int):
        results = []
        with requests.Session() as session:
            for request in range(25):
                index = (offset + request) % 40
                response = session.post(server.url("/predict"), json={"instances": [images[index]]}, timeout=30)
                results.append((response.status_code, response.json()["predictions"][0]["digit"], index))
        return results

    with ThreadPoolExecutor(8) as pool:
        results = [result for batch in pool.map(client, range(8)) for result in batch]
    assert len(results) == 200
    assert all(status == 200 for status, _, _ in results)
    accuracy = sum(digit == test_labels[index] for _, digit, index in results) / len(results)
    assert accuracy > 0.85
    metrics = requests.get(server.url("/metrics"), timeout=5).text
    served = re.search(r'mnist_http_requests_total\{method="POST",protocol="http",route="/predict",status="200"\} (\d+)',
                       metrics)
    assert served and int(served.group(1)) >= 200  # counted across both workers (multiprocess)
    assert len(re.findall(r'mnist_model_version\{pid="\d+"\} 1.0', metrics)) == 2


def test_new_export_is_served_without_a_failed_request(server, version_dir):
    failures, versions, stop = [], [], threading.Event()

    def hammer():
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    response = session.post(server.url("/predict"), json={"instances": [ZEROS]}, timeout=30)
                    if response.status_code != 200:
                        failures.append(response.status_code)
                    else:
                        versions.append(response.json()["model"]["version"])
                except requests.RequestException as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        copy_version(version_dir, server.export_base, 2)
        wait_for(lambda: versions[-30:].count(2) == 30, 60, "30 answers in a row from version 2")
        wait_for(lambda: workers_serving(server, 2) == server.worker_pids(), 30,
                 "both workers to serve version 2")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert versions[0] == 1 and 1 in versions and versions[-1] == 2
    metrics = requests.get(server.url("/metrics"), timeout=5).text
    assert 'mnist_model_reloads_total{outcome="success"} 2.0' in metrics  # once in each worker
    # the previous version stays loaded beside the new one: TF Serving clients can pin it
    pinned = requests.post(server.url("/v1/models/mnist/versions/1:predict"),
                           json={"instances": [ZEROS]}, timeout=5)
    assert pinned.status_code == 200 and len(pinned.json()["predictions"][0]) == 10


def test_broken_export_is_skipped_and_serving_continues(server):
    broken = server.export_base / "3"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"garbage")
    time.sleep(1.5)  # three poll intervals
    for _ in range(6):
        response = requests.post(server.url("/predict"), json={"instances": [ZEROS]}, timeout=5)
        assert response.status_code == 200 and response.json()["model"]["version"] == 2
    assert "model version 3" in server.log() and "broken" in server.log()
    status = requests.get(server.url("/v1/models/mnist/versions/3"), timeout=5).json()
    assert status["model_version_status"][0]["state"] == "END"


def test_oversized_body_gets_a_json_413_not_a_broken_pipe(server):
    body = b'{"instances": [' + b"0.5, " * (2_000_000) + b'0.5]}'  # ~10 MB > the 8 MiB default
    response = requests.post(server.url("/predict"), data=body,
                             headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413
    assert "MAX_BODY_BYTES" in response.json()["error"]

    def chunks():  # no Content-Length: the limit still holds while streaming
        for _ in range(200):
            yield b"0.5, " * 10_000
    response = requests.post(server.url("/predict"), data=chunks(),
                             headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413 and "error" in response.json()
    ok = requests.post(server.url("/predict"), json={"instances": [ZEROS]}, timeout=5)
    assert ok.status_code == 200


def test_killed_worker_is_replaced_and_service_keeps_answering(server):
    before = server.worker_pids()
    assert len(before) == 2
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    statuses = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        response = requests.post(server.url("/predict"), json={"instances": [ZEROS]}, timeout=30)
        statuses.append(response.status_code)
        pids = server.worker_pids()
        if len(pids) == 2 and victim not in pids and len(statuses) >= 20:
            break
        time.sleep(0.05)
    assert set(statuses) == {200}, statuses
    after = server.worker_pids()
    assert victim not in after and len(after) == 2
    (newcomer,) = after - before

    # the new worker loads the newest good version before it accepts a connection; the dead
    # worker's gauge is gone (child_exit -> mark_process_dead)
    wait_for(lambda: workers_serving(server, 2) == after, 90, f"the new worker {newcomer} to load version 2")
    assert f"worker {newcomer} ready to accept requests" in server.log()
    assert all_workers_agree(server, "/readyz", lambda response: response.json()["model"]["version"] == 2,
                             tries=12)
