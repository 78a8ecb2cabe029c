"""Fuzzing the HTTP API of the running service: schemathesis from /openapi.json, then our own
Hypothesis strategies (pixel arrays of any shape and value, numbers, random bytes, random images).

The oracle everywhere: never a 5xx or a dropped connection; a 200 matches the documented schema (and
for /predict, one prediction of 10 probabilities per instance); anything else is a 4xx with a JSON
``{"error": "<text>"}``. Afterwards the service still answers real digits exactly like the model.
Examples are derandomised (the same inputs each run, so CI is reproducible) and the example database
is off (nothing is written into the repository).
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections import Counter

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from .report import REPORT, histogram, table
from .strategies import CONTENT_TYPE, JSON_VALUES, MAX_BATCH, images, instances, valid_batch
from .support import error_body_problem

pytestmark = pytest.mark.reliability

# examples per operation and generation mode (about 15 of the 40 operation-modes are not exhausted
# early): about 1,250 requests
FUZZ_EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "70"))
OWN_EXAMPLES = int(os.environ.get("RELIABILITY_OWN_EXAMPLES", "200"))
SETTINGS = dict(deadline=None, database=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))
FUZZ_LOG: dict[str, Counter] = {}


class CountingSession(requests.Session):
    """A requests session that counts what it actually sends, and every status it gets back."""

    def __init__(self, server=None):
        super().__init__()
        self.server = server  # checked now and then: a dead server fails the test at once, with its log
        self.sent = 0
        self.statuses = Counter()

    def send(self, request, **kwargs):
        self.sent += 1
        if self.server is not None and self.sent % 50 == 0:
            self.server.check_alive()
        try:
            response = super().send(request, **kwargs)
        except requests.RequestException:
            self.statuses["connection error"] += 1
            raise
        self.statuses[response.status_code] += 1
        return response


def check_error_body(response) -> str | None:
    """No 5xx; anything but a 200 carries a JSON ``{"error": str}``."""
    if response.status_code >= 500:
        return f"server error {response.status_code}: {response.text[:300]}"
    if response.status_code != 200:
        return error_body_problem(response.status_code, response.content)
    return None


def check_predictions(response, instances: int) -> str | None:
    problem = check_error_body(response)
    if problem or response.status_code != 200:
        return problem
    payload = response.json()
    predictions = payload.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != instances:
        return f"200 with {len(predictions or [])} predictions for {instances} instances"
    for p in predictions:
        probabilities = p.get("probabilities")
        if (not isinstance(probabilities, list) or len(probabilities) != 10
                or not math.isclose(sum(probabilities), 1.0, abs_tol=1e-3)
                or p.get("digit") != int(np.argmax(probabilities)) or not 0 <= p.get("digit", -1) <= 9):
            return f"200 with a malformed prediction: {p}"
    if payload.get("model", {}).get("name") != "mnist":
        return f"200 without the model name: {payload.get('model')}"
    return None


def assert_service_still_correct(service, digits, expected, pids_before, log_from: int) -> None:
    """Real digits still answered exactly like the model, by the same workers, and no error logged
    since ``log_from`` (this test's start: each test judges its own requests)."""
    x, y = digits
    response = requests.post(service.url("/predict"), json={"instances": x[:50].tolist()}, timeout=30)
    assert response.status_code == 200, response.text[:500]
    got = np.array([p["probabilities"] for p in response.json()["predictions"]])
    np.testing.assert_allclose(got, expected[:50], atol=1e-5)
    assert (got.argmax(1) == y[:50]).mean() > 0.85
    assert service.worker_pids() == pids_before, "a worker died (and was replaced) during the fuzzing"
    log = service.log()[log_from:]
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]


# ---- schemathesis ---------------------------------------------------------------------------------
def _fuzz_operation(operation, mode, service, session, checks, failures: list[str]) -> None:
    """Up to ``FUZZ_EXAMPLES`` requests of one operation in one generation mode; what fails goes to ``failures``."""
    from schemathesis import GenerationMode

    # positive cases name the loaded version (1) so they reach the model, not only a 404
    pinned = {"version": "1"} if mode == GenerationMode.POSITIVE and "{version}" in operation.path else None

    @settings(max_examples=FUZZ_EXAMPLES, **SETTINGS)
    @given(case=operation.as_strategy(mode, path_parameters=pinned))
    def run(case):
        try:
            response = case.call(base_url=service.base_url, session=session, timeout=30)
        except requests.RequestException as exc:
            failures.append(f"{operation.label} [{mode.value}]: {type(exc).__name__}: {exc}")
            service.check_alive()  # a dead server: stop here, with its log
            return
        try:
            case.validate_response(response, checks=checks)
        except Exception as exc:  # noqa: BLE001 - schemathesis' FailureGroup, reported below
            failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:1500]}")

    try:
        run()
    except Unsatisfiable:
        pass  # no negative input exists (an operation without parameters or body)


def test_schemathesis_fuzz_of_the_openapi_document(service, digits, expected):
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                   status_code_conformance)

    checks = [not_a_server_error, status_code_conformance, content_type_conformance,
              response_schema_conformance]
    pids, log_from = service.worker_pids(), len(service.log())
    schema = schemathesis.openapi.from_url(service.url("/openapi.json"), timeout=30)
    session = CountingSession(service)
    failures, per_operation, started = [], [], time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    document = requests.get(service.url("/openapi.json"), timeout=30).json()
    documented = {f"{method.upper()} {path}" for path, item in document["paths"].items()
                  for method in item if method != "parameters"}
    # every documented operation but the schema itself (schemathesis leaves out the URL it loaded)
    assert documented - {op.label for op in operations} == {"GET /openapi.json"}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            before = session.sent
            _fuzz_operation(operation, mode, service, session, checks, failures)
            per_operation.append((operation.label, mode.value, session.sent - before))
    seconds = time.monotonic() - started

    REPORT.requests["API fuzzing: schemathesis"] = (session.sent, len(failures))
    REPORT.section("API fuzzing with schemathesis", [
        f"schemathesis {schemathesis.__version__} loaded `GET /openapi.json` from the live service "
        f"({len(operations)} operations) and generated, for each operation, up to {FUZZ_EXAMPLES} "
        "schema-conforming (positive; with the loaded version 1 in `{version}` paths) and up to as many "
        "schema-violating (negative) requests (derandomised). Checks on every response: `not_a_server_error`, `status_code_conformance`, "
        "`content_type_conformance`, `response_schema_conformance`.",
        "",
        *table(["requests sent", "failures", "status codes", "seconds"],
               [[session.sent, len(failures), histogram(session.statuses), f"{seconds:.1f}"]]),
    ])
    FUZZ_LOG["schemathesis"] = session.statuses
    assert not failures, f"{len(failures)} failures; the first ones:\n\n" + "\n\n".join(failures[:5])
    assert session.sent >= 1000, per_operation
    assert_service_still_correct(service, digits, expected, pids, log_from)


# ---- our own strategies (strategies.py) -------------------------------------------------------
@pytest.fixture(scope="module")
def session(service):
    with CountingSession(service) as s:
        yield s


OWN: dict[str, tuple[int, Counter]] = {}


def _record(name: str, session: CountingSession, sent_before: int, statuses_before: Counter) -> None:
    OWN[name] = (session.sent - sent_before, session.statuses - statuses_before)
    REPORT.requests["API fuzzing: our Hypothesis strategies"] = (
        sum(sent for sent, _ in OWN.values()), sum(c.get("connection error", 0) + sum(
            v for k, v in c.items() if isinstance(k, int) and k >= 500) for _, c in OWN.values()))
    rows = [[name, sent, histogram(statuses)] for name, (sent, statuses) in OWN.items()]
    REPORT.section("API fuzzing with our own Hypothesis strategies", [
        "Bodies drawn by Hypothesis (derandomised) and posted to the live service. Oracle: a valid "
        "batch gets 200 with one prediction (10 probabilities summing to 1, `digit` their argmax) per "
        "instance, anything else a 4xx with a JSON `{\"error\": str}`; never a 5xx or a dropped "
        "connection.",
        "",
        *table(["strategy", "requests", "status codes"], rows),
    ])


def test_pixel_arrays_of_any_shape_and_value(service, session, digits, expected):
    pids, sent, statuses = service.worker_pids(), session.sent, session.statuses.copy()
    log_from = len(service.log())
    problems = []

    @settings(max_examples=OWN_EXAMPLES, **SETTINGS)
    @given(value=instances())
    @example(value=[[0.5] * 784] * MAX_BATCH)
    @example(value=[[0.5] * 784] * (MAX_BATCH + 1))
    @example(value=[[[1.0] * 28] * 28, [0.0] * 784])
    @example(value=[[math.nan] * 784])
    def run(value):
        body = json.dumps({"instances": value}, allow_nan=True)  # NaN / Infinity tokens, as some clients send
        response = session.post(service.url("/predict"), data=body,
                                headers={"Content-Type": "application/json"}, timeout=60)
        if valid_batch(value):
            problem = check_predictions(response, len(value))
            if problem is None and response.status_code != 200:
                problem = f"a valid batch of {len(value)} got {response.status_code}: {response.text[:300]}"
        else:
            problem = check_error_body(response)
            if problem is None and response.status_code == 200:
                problem = f"an invalid body was accepted: {body[:300]}"
            elif problem is None and not 400 <= response.status_code < 500:
                problem = f"status {response.status_code}"
        if problem:
            problems.append(problem)

    run()
    _record("pixel arrays: shapes, NaN/Infinity, out of range, booleans, strings (`POST /predict`)",
            session, sent, statuses)
    assert not problems, problems[:5]
    assert_service_still_correct(service, digits, expected, pids, log_from)


ENDPOINTS = ["/predict", "/v1/models/mnist:predict", "/v1/models/mnist/versions/1:predict",
             "/v2/models/mnist/infer", "/v2/models/mnist/versions/1/infer"]


def test_arbitrary_json_and_numbers_on_every_prediction_endpoint(service, session, digits, expected):
    pids, sent, statuses = service.worker_pids(), session.sent, session.statuses.copy()
    log_from = len(service.log())
    problems = []

    @settings(max_examples=OWN_EXAMPLES, **SETTINGS)
    @given(path=st.sampled_from(ENDPOINTS), value=JSON_VALUES,
           key=st.sampled_from(["instances", "inputs", "data", "b64", "shape"]),
           wrap=st.booleans(), content_type=st.sampled_from(["application/json", "text/plain", "", None]))
    @example(path="/v2/models/mnist/infer", value=[{"name": "pixels", "shape": [1, 784], "datatype": "FP32",
                                                    "data": [1e39] * 784}], key="inputs", wrap=True,
             content_type="application/json")
    @example(path="/v2/models/mnist/infer", value=[{"name": "pixels", "shape": [-1, 784], "datatype": "FP16",
                                                    "data": []}], key="inputs", wrap=True,
             content_type="application/json")
    @example(path="/v1/models/mnist:predict", value={"pixels": [[0.5] * 784] * 2}, key="inputs", wrap=True,
             content_type="application/json")
    def run(path, value, key, wrap, content_type):
        body = json.dumps({key: value} if wrap else value, allow_nan=True)
        headers = {} if content_type is None else {"Content-Type": content_type}
        response = session.post(service.url(path), data=body.encode(), headers=headers, timeout=60)
        problem = check_error_body(response)
        if problem:
            problems.append(f"POST {path} {body[:200]}: {problem}")

    run()
    _record("arbitrary JSON values under `instances`/`inputs`/... on all 5 prediction endpoints",
            session, sent, statuses)
    assert not problems, problems[:5]
    assert_service_still_correct(service, digits, expected, pids, log_from)


def test_random_images_and_random_bytes(service, session, digits, expected):
    import base64

    pids, sent, statuses = service.worker_pids(), session.sent, session.statuses.copy()
    log_from = len(service.log())
    problems = []

    @settings(max_examples=OWN_EXAMPLES, **SETTINGS)
    @given(picture=images() | st.tuples(st.sampled_from(list(CONTENT_TYPE)), st.binary(max_size=2000)),
           how=st.sampled_from(["raw", "multipart", "b64"]),
           truncate=st.sampled_from([None, None, None, 0.5, 0.9]))
    def run(picture, how, truncate):
        fmt, data = picture
        if truncate:
            data = data[:int(len(data) * truncate)]
        if how == "raw":
            response = session.post(service.url("/predict"), data=data,
                                    headers={"Content-Type": CONTENT_TYPE[fmt]}, timeout=60)
        elif how == "multipart":
            response = session.post(service.url("/predict"), files={"image": ("x", data, CONTENT_TYPE[fmt])},
                                    timeout=60)
        else:
            response = session.post(service.url("/predict"),
                                    json={"instances": [{"b64": base64.b64encode(data).decode()}]}, timeout=60)
        problem = check_predictions(response, 1)
        if problem is None and response.status_code == 422:  # a picture without one digit says what it holds
            error = response.json()["error"]
            if "no digit found in the image" not in error and "the image holds" not in error:
                problem = f"422 that does not say what the image holds: {error[:200]}"
        elif problem is None and response.status_code not in (200, 400, 413):
            problem = f"status {response.status_code}: {response.text[:200]}"
        if problem:
            problems.append(f"{fmt} {how} {len(data)} bytes: {problem}")

    run()
    _record("random images (Pillow: sizes 1-300 px, every mode each format stores, 5 formats, truncated) and random bytes "
            "as raw, multipart and base64 bodies", session, sent, statuses)
    assert not problems, problems[:5]
    assert_service_still_correct(service, digits, expected, pids, log_from)


def test_a_decompression_bomb_is_refused_before_decoding(service, session):
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (5000, 4000), 255).save(out, format="PNG")  # 20 Mpixel, ~20 KB: over MAX_IMAGE_PIXELS
    response = session.post(service.url("/predict"), data=out.getvalue(),
                            headers={"Content-Type": "image/png"}, timeout=60)
    assert response.status_code == 413 and "MAX_IMAGE_PIXELS" in response.json()["error"]
