"""The worker's HTTP layers in this process (service/asgi.py, driven as gunicorn's protocol drives them):
the one place that enforces the body limits (service/whole_requests.py), and request IDs
(service/request_ids.py): kept or made, echoed, in every error body and in the log lines of the request.
The same through a real gunicorn: tests/service/test_operator_features.py."""

from __future__ import annotations

import json
import logging
import re

import pytest

from service.asgi import asgi_app
from service.request_ids import LOG_FORMAT, MAX_LENGTH

from .asgi_client import call
from .conftest import APP_CONFIG

ZEROS = [0.0] * 784
PREDICT = json.dumps({"instances": [ZEROS]}).encode()
JSON = {"Content-Type": "application/json"}
NEW_ID = re.compile(r"^[0-9a-f]{32}$")
LIMIT = APP_CONFIG["MAX_BODY_BYTES"]


@pytest.fixture(scope="module")
def plain(app):
    """The worker's app as shipped by default: every operator feature off."""
    return asgi_app(app, app.extensions["mnist"].config)[0]


@pytest.fixture(scope="module")
def with_ids(export_base):
    from service.app import create_app

    flask_app = create_app({"MODEL_DIR": str(export_base), **APP_CONFIG, "REQUEST_IDS": 1})
    yield flask_app, asgi_app(flask_app, flask_app.extensions["mnist"].config)[0]
    flask_app.extensions["mnist"].predictor.stop_polling()


def test_body_over_max_body_bytes_is_413(plain):
    """Refused by the worker before Flask runs, declared or found while reading chunks."""
    body = json.dumps({"instances": [[0.123456789] * 784] * 120}).encode()  # ~ 1.2 MB > 1 MiB
    assert len(body) > LIMIT
    declared = call(plain, "POST", "/predict", body, headers=JSON)
    assert declared.status == 413 and declared.headers["content-type"] == "application/json"
    assert declared.json() == {"error": f"request body too large: {len(body)} bytes; at most {LIMIT} bytes "
                                        "(MAX_BODY_BYTES) are accepted: send fewer instances per request or a "
                                        "smaller image"}
    chunked = call(plain, "POST", "/predict", chunks=[body[:600_000], body[600_000:]], headers=JSON)
    assert chunked.status == 413 and "over the limit" in chunked.json()["error"]
    assert call(plain, "POST", "/predict", PREDICT, headers=JSON).status == 200


def test_with_request_ids_off_nothing_changes(plain):
    ok = call(plain, "POST", "/predict", PREDICT, headers={**JSON, "X-Request-Id": "abc"})
    assert ok.status == 200 and "x-request-id" not in ok.headers
    refused = call(plain, "POST", "/predict", b"{", headers=JSON)
    assert refused.status == 400 and list(refused.json()) == ["error"] and "x-request-id" not in refused.headers


def test_every_request_gets_a_new_id_when_it_brings_none(with_ids):
    _, app = with_ids
    first, second = (call(app, "POST", "/predict", PREDICT, headers=JSON) for _ in range(2))
    assert first.status == second.status == 200
    assert NEW_ID.match(first.headers["x-request-id"]) and NEW_ID.match(second.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    assert [name for name, _ in first.header_list].count("x-request-id") == 1


@pytest.mark.parametrize("sent, kept", [
    ("checkout-7f3a.b_2:9/x+y=z@host", "checkout-7f3a.b_2:9/x+y=z@host"),
    ('a b"c\\d<e>\r\nInjected: 1', "abcdeInjected:1"),
    ("x" * 1000, "x" * MAX_LENGTH),
])
def test_the_clients_id_is_kept_sanitised_and_bounded(with_ids, sent, kept):
    answer = call(with_ids[1], "GET", "/healthz", headers={"X-Request-Id": sent})
    assert answer.status == 200 and answer.headers["x-request-id"] == kept


def test_an_id_with_nothing_safe_in_it_is_replaced(with_ids):
    answer = call(with_ids[1], "GET", "/healthz", headers={"X-Request-Id": '" "\t'})
    assert NEW_ID.match(answer.headers["x-request-id"])


@pytest.mark.parametrize("what, method, path, body, status", [
    ("Flask's handlers", "POST", "/predict", b'{"instances": [[2.0]]}', 400),
    ("an unknown route", "GET", "/nowhere", b"", 404),
    ("the worker's body limit", "POST", "/predict", b"[" * (LIMIT + 1), 413),
])
def test_every_error_body_carries_the_id(with_ids, what, method, path, body, status):
    answer = call(with_ids[1], method, path, body, headers={**JSON, "X-Request-Id": "trace-me-42"})
    assert answer.status == status, what
    payload = answer.json()
    assert list(payload) == ["error", "request_id"] and payload["request_id"] == "trace-me-42"
    assert answer.headers["x-request-id"] == "trace-me-42"


def test_log_lines_about_a_request_name_it(with_ids, monkeypatch, caplog):
    flask_app, app = with_ids
    model = flask_app.extensions["mnist"].predictor.current

    def explode(pixels):
        raise RuntimeError("boom")

    monkeypatch.setattr(model, "predict", explode)
    with caplog.at_level(logging.ERROR, logger="service"):
        answer = call(app, "POST", "/predict", PREDICT, headers={**JSON, "X-Request-Id": "log-me"})
    assert answer.status == 500 and answer.json()["request_id"] == "log-me"
    record = next(record for record in caplog.records if "unexpected error" in record.getMessage())
    assert logging.Formatter(LOG_FORMAT).format(record).splitlines()[0].endswith(
        "unexpected error on POST /predict [request log-me]")
    logging.getLogger("service").info("between requests")
    assert caplog.records[-1].request == ""


def test_request_ids_must_be_0_or_1():
    from service.config import load_config

    with pytest.raises(ValueError, match="REQUEST_IDS must be 0 or 1; got 2"):
        load_config({"REQUEST_IDS": "2"}, environ={})
