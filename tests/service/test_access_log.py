"""ACCESS_LOG=json in this process (service/access_log.py), through the worker's ASGI layers: one JSON
line per request with its id, route, status, sizes and client; refusals before Flask too; never the body,
the query or a header. Over a real gunicorn (every line of its log parsed): test_operator_features.py."""

from __future__ import annotations

import json
import logging

import pytest

from service.access_log import LOGGER_NAME
from service.asgi import asgi_app

from .asgi_client import call
from .operator_support import TOKENS, bearer, feature_app, write_tokens

ZEROS = [0.0] * 784
KEYS = ["time", "id", "protocol", "method", "route", "path", "status", "duration_ms", "instances", "bytes_in",
        "bytes_out", "client"]


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def served(export_base, tmp_path_factory):
    tokens = write_tokens(tmp_path_factory.mktemp("access") / "tokens", *TOKENS)
    for app in feature_app(export_base, ACCESS_LOG="json", API_TOKENS_FILE=str(tokens)):
        yield asgi_app(app, app.extensions["mnist"].config)[0]


@pytest.fixture
def lines():
    handler = Lines()
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


def test_one_line_per_request_with_what_an_operator_needs(served, lines):
    body = json.dumps({"instances": [ZEROS, ZEROS]}).encode()
    answer = call(served, "POST", "/predict", body, client=("10.1.2.3", 4444),
                  headers={"Content-Type": "application/json", "X-Request-Id": "req-1", **bearer(TOKENS[0])})
    assert answer.status == 200 and len(lines) == 1
    line = json.loads(lines[0])
    assert list(line) == KEYS
    assert line["time"].endswith("Z") and len(line["time"]) == len("2026-12-07T05:08:11.168Z")
    assert {key: line[key] for key in KEYS[1:7]} == {
        "id": "req-1", "protocol": "http", "method": "POST", "route": "/predict", "path": "/predict", "status": 200}
    assert line["instances"] == 2 and line["bytes_in"] == len(body) and line["bytes_out"] == len(answer.body)
    assert line["client"] == "10.1.2.3" and line["duration_ms"] > 0


def test_refusals_have_their_lines_and_nothing_secret_is_written(served, lines):
    call(served, "POST", "/v1/models/mnist:predict", b'{"secret-body": 1}',
         headers={"Content-Type": "application/json", **bearer("a-guessed-token")})
    call(served, "POST", "/predict", b"x" * (2 * 1024 * 1024), headers={"Content-Type": "application/json"})
    call(served, "GET", "/v1/models/mnist/versions/7", headers=bearer(TOKENS[0]))
    first, second, third = (json.loads(line) for line in lines)
    assert (first["status"], first["route"], first["instances"]) == (401, "/v1/models/<path:rest>", None)
    assert (second["status"], second["route"], second["path"]) == (413, None, "/predict")  # the worker's: no Flask
    assert second["bytes_out"] > 0 and second["instances"] is None
    assert third["status"] == 404 and third["path"] == "/v1/models/mnist/versions/7"
    text = "\n".join(lines)
    assert "a-guessed-token" not in text and TOKENS[0] not in text and "secret-body" not in text


def test_access_log_turns_request_ids_on_and_takes_only_off_or_json():
    from service.config import load_config

    assert load_config({"ACCESS_LOG": "JSON"}, environ={}).request_ids_on
    assert not load_config({}, environ={}).request_ids_on
    with pytest.raises(ValueError, match="ACCESS_LOG must be off or json; got 'text'"):
        load_config({"ACCESS_LOG": "text"}, environ={})
