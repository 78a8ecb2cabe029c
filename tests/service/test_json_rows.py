"""service/json_rows.py: the usual body parsed straight into NumPy gives exactly what the general path
gives, and every other body is left to the general path (None)."""

from __future__ import annotations

import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
import pytest

from service.json_rows import instance_rows

ROW = ",".join(["0.5"] * 783)


def body_with(last: str, template: str = '{"instances":[[%s,%s]]}') -> bytes:
    """One 784-number row whose last number is written as ``last``."""
    return (template % (ROW, last)).encode()


def general_path(body: bytes) -> np.ndarray:
    return np.asarray(orjson.loads(body)["instances"], dtype=np.float64)


def random_rows(rows: int, seed: int) -> np.ndarray:
    """Pixels as clients write them: mostly 0, float32 ink values, some exact 0/1."""
    rng = np.random.default_rng(seed)
    pixels = rng.random((rows, 784)).astype(np.float32)
    pixels[pixels < 0.6] = 0
    pixels[pixels > 0.98] = 1
    return pixels


@pytest.mark.parametrize("rows", [1, 3, 64])
def test_usual_bodies_give_the_same_doubles_as_orjson_and_numpy(rows):
    pixels = random_rows(rows, seed=rows)
    for body in (json.dumps({"instances": pixels.tolist()}).encode(),  # repr of float32 as a double
                 orjson.dumps({"instances": pixels.tolist()}),
                 orjson.dumps({"instances": pixels}, option=orjson.OPT_SERIALIZE_NUMPY),  # shortest float32
                 json.dumps({"instances": (pixels * 255).round().astype(int).tolist()}).encode()):  # ints
        fast = instance_rows(body)
        assert fast is not None and fast.shape == (rows, 784) and fast.dtype == np.float64
        assert np.array_equal(fast, general_path(body))


@pytest.mark.parametrize("last", ["1", "-2", "0.0", "-0", "1e-3", "2.5E+2", "1e-400", "18446744073709551615",
                                  "0.1000000000000000055511151231257827"])
def test_every_json_number_form_matches_the_general_path(last):
    body = body_with(last)
    fast = instance_rows(body)
    assert fast is not None
    assert np.array_equal(fast, general_path(body))


@pytest.mark.parametrize("body", [
    body_with("1", '{"instances":[[%s,%s]],"signature_name":"serving_default"}'),  # another key
    body_with("1", '{"instances":[[%s,%s]],"instances":[]}'),  # a repeated key
    body_with("true"), body_with("null"), body_with('"1"'), body_with("[]"), body_with("[1]"),
    body_with("NaN"), body_with("1e309"), body_with("123456789012345678901234567890"),  # beyond 64 bits
    body_with("01"), body_with("1."), body_with("+1"), body_with("1,"),  # not JSON numbers
    b"\xef\xbb\xbf" + body_with("1"),  # a byte-order mark: simdjson would skip it, JSON does not
    body_with("1") + b"\xff", body_with("1") + b"x", body_with("1")[:-1],
    json.dumps({"instances": np.zeros((2, 28, 28)).tolist()}).encode(),  # 28x28 rows
    json.dumps({"instances": [[0.5] * 783]}).encode(), json.dumps({"instances": [[0.5] * 785]}).encode(),
    json.dumps({"instances": [[0.5] * 784, [0.5] * 783]}).encode(),  # ragged
    json.dumps({"instances": [0.5] * 784}).encode(),  # one row, not a list of rows
    json.dumps({"instances": [[0.5] * 784, [[0.5] * 784]]}).encode(),  # a row nested once more
    json.dumps({"instances": [[[]] + [0.5] * 782 + [[0.5]]]}).encode(),  # 784 elements, 783 numbers + 1
    json.dumps({"instances": [{"b64": "iVBORw0KGgo="}]}).encode(), json.dumps({"instances": []}).encode(),
    json.dumps({"inputs": [[0.5] * 784]}).encode(), json.dumps([[0.5] * 784]).encode(), b"", b"{",
], ids=lambda body: body[-40:].decode("utf-8", "replace"))
def test_any_other_body_is_left_to_the_general_path(body):
    assert instance_rows(body) is None


def test_a_failed_parse_leaves_the_next_request_a_working_parser():
    assert instance_rows(body_with("123456789012345678901234567890")) is None  # simdjson's RuntimeError
    assert instance_rows(body_with("1"))[0, -1] == 1.0


def test_threads_parse_at_the_same_time_each_with_its_own_parser():
    bodies = [orjson.dumps({"instances": random_rows(rows, seed=rows).tolist()}) for rows in range(1, 9)]
    expected = [general_path(body) for body in bodies]
    start = threading.Barrier(len(bodies))

    def parse_repeatedly(index: int) -> bool:
        start.wait()
        return all(np.array_equal(instance_rows(bodies[index]), expected[index]) for _ in range(200))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns as often as Python lets them: mid-parse too
    try:
        with ThreadPoolExecutor(len(bodies)) as pool:
            assert all(pool.map(parse_repeatedly, range(len(bodies))))
    finally:
        sys.setswitchinterval(interval)


# ---- through the routes: the fast path and the general path answer alike ---------------------------
@pytest.fixture
def fast_path_taken(monkeypatch):
    """A list that gets, for each request, whether ``instance_rows`` took it (routes spied on)."""
    import service.native
    import service.tf_serving

    taken = []

    def spy(body):
        rows = instance_rows(body)
        taken.append(rows is not None)
        return rows

    for module in (service.native, service.tf_serving):
        monkeypatch.setattr(module, "instance_rows", spy)
    return taken


def general_twin(body: dict) -> dict:
    """The same request with a key the routes ignore, so that it takes the general path."""
    return {**body, "note": "general path"}


@pytest.mark.parametrize("instances", [
    random_rows(3, seed=7).tolist(),
    [[0.5] * 783 + [1.5]],  # out of range: 400 naming the instance
    [[0.0] * 784] * 65,  # over MAX_BATCH=64 of the test app: 413
])
def test_predict_answers_the_same_on_both_paths(client, fast_path_taken, instances):
    fast = client.post("/predict", json={"instances": instances})
    general = client.post("/predict", json=general_twin({"instances": instances}))
    assert fast_path_taken == [True, False]
    assert fast.status_code == general.status_code
    assert fast.get_json() == general.get_json()


def test_tf_serving_rows_answer_as_the_columnar_format_does(client, fast_path_taken, reference):
    pixels = random_rows(4, seed=3)
    rows = client.post("/v1/models/mnist:predict", json={"instances": pixels.tolist()})
    columns = client.post("/v1/models/mnist:predict", json={"inputs": pixels.tolist()})
    assert fast_path_taken == [True, False]
    assert rows.status_code == columns.status_code == 200
    assert rows.get_json()["predictions"] == columns.get_json()["outputs"]
    np.testing.assert_allclose(rows.get_json()["predictions"], reference(pixels), atol=1e-6)
