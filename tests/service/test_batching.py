"""Server-side batching (ENABLE_BATCHING=1): TensorFlow's batch scheduler merges concurrent predictions.

Concurrent calls give fewer executions than calls and the outputs of unbatched calls; a request larger
than a batch is a 413 before the batcher; a full queue is a 503 with Retry-After; the metrics count
the batches.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest

from service.app import create_app
from service.config import load_config
from service.graph_runner import BatchSettings, Overloaded
from service.predictor import Runtime, load_version

THREADS = 16


def predict_concurrently(model, rows: np.ndarray) -> list[np.ndarray]:
    """``model.predict`` of each row from its own thread, all started together."""
    results = [None] * len(rows)
    start = threading.Barrier(len(rows))

    def call(index):
        start.wait()
        results[index] = model.predict(rows[index:index + 1])

    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(rows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_concurrent_calls_are_merged_and_give_the_unbatched_outputs(version_dir, digits_data):
    rows = digits_data[1][0][:THREADS]
    batches = []
    settings = BatchSettings(max_batch_size=THREADS, batch_timeout_micros=200_000, max_enqueued_batches=10)
    batched = load_version(version_dir, runtime=Runtime(batching=settings, on_batch=batches.append))
    unbatched = load_version(version_dir)
    results = predict_concurrently(batched, rows)
    assert batched.runs_as == "frozen graph"
    assert sum(batches) == THREADS, "every row executed exactly once"
    assert len(batches) < THREADS, f"{THREADS} calls were not merged: batch sizes {batches}"
    difference = max(float(np.abs(result - unbatched.predict(rows[index:index + 1])).max())
                     for index, result in enumerate(results))
    assert difference <= 1e-6


def test_a_full_queue_refuses_the_call(version_dir):
    """One batch may wait (MAX_ENQUEUED_BATCHES=1): a call that needs a second one is refused."""
    settings = BatchSettings(max_batch_size=2, batch_timeout_micros=3_000_000, max_enqueued_batches=1)
    model = load_version(version_dir, runtime=Runtime(batching=settings))
    assert model.runs_as == "frozen graph"
    waiting = threading.Thread(target=model.predict, args=(np.zeros((1, 784), np.float32),))
    waiting.start()  # opens a batch that waits up to 3 s for a second row
    time.sleep(0.5)
    with pytest.raises(Overloaded):
        model.predict(np.zeros((2, 784), np.float32))  # does not fit in it: a second batch
    waiting.join(10)


@pytest.fixture
def batching_app(export_base):
    app = create_app({"MODEL_DIR": str(export_base), "MODEL_POLL_SECONDS": 0, "ENABLE_BATCHING": 1,
                      "MAX_BATCH": 4, "MAX_BATCH_SIZE": 4, "BATCH_TIMEOUT_MICROS": 2_000_000,
                      "MAX_ENQUEUED_BATCHES": 1})
    yield app
    app.extensions["mnist"].predictor.stop_polling()


def batch_count(client) -> float:
    metrics = client.get("/metrics").get_data(as_text=True)
    return float(re.search(r"^mnist_batch_size_count (\S+)$", metrics, re.M).group(1))


def test_over_size_request_is_a_413_before_the_batcher(batching_app):
    client = batching_app.test_client()
    response = client.post("/predict", json={"instances": [[0.0] * 784] * 5})
    assert response.status_code == 413
    assert "at most 4 per request (MAX_BATCH)" in response.get_json()["error"]
    assert batch_count(client) == 0


def test_full_queue_is_a_503_with_retry_after_and_batches_are_counted(batching_app):
    first = batching_app.test_client()
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(first.post("/predict", json={"instances": [[0.0] * 784]})))
    waiting.start()  # its batch waits up to 2 s for more rows
    time.sleep(0.5)
    refused = batching_app.test_client().post("/predict", json={"instances": [[0.0] * 784] * 4})
    waiting.join(10)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
    assert "the batch queue is full" in refused.get_json()["error"]
    assert answers[0].status_code == 200
    assert batch_count(first) == 1


def test_batching_needs_every_request_to_fit_in_a_batch():
    with pytest.raises(ValueError, match=r"MAX_BATCH \(256\) must not exceed MAX_BATCH_SIZE \(64\)"):
        load_config({"ENABLE_BATCHING": 1, "MAX_BATCH_SIZE": 64}, environ={})
    assert load_config({"ENABLE_BATCHING": 1, "MAX_BATCH": 64, "MAX_BATCH_SIZE": 64}, environ={}).max_batch == 64
