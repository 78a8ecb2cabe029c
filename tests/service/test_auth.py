"""API tokens in this process (service/auth.py): missing, wrong, right and revoked tokens on the API;
the page, the API description and the probes open (the probes closed with AUTH_PROBES=1); tokens never
in a log line, a metric or an error. Over a real gunicorn and gRPC: tests/service/test_operator_features.py."""

from __future__ import annotations

import hmac
import logging
import os
from types import SimpleNamespace

import pytest

from service.auth import INVALID, MISSING, TokenFile, parse_tokens

from .operator_support import TOKENS, bearer, feature_app, write_tokens

ZEROS = [0.0] * 784
PREDICT = {"instances": [ZEROS]}


@pytest.fixture
def tokens_file(tmp_path):
    return write_tokens(tmp_path / "tokens", *TOKENS)


@pytest.fixture
def client(export_base, tokens_file):
    for app in feature_app(export_base, API_TOKENS_FILE=str(tokens_file)):
        yield app.test_client()


@pytest.mark.parametrize("path, body", [("/predict", PREDICT), ("/v1/models/mnist:predict", PREDICT),
                                        ("/v2/models/mnist/infer", {"inputs": [{"name": "pixels", "shape": [1, 784],
                                                                               "datatype": "FP32", "data": ZEROS}]})])
def test_predictions_need_a_valid_token(client, path, body):
    missing = client.post(path, json=body)
    assert missing.status_code == 401 and missing.get_json() == {"error": MISSING}
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="mnist-digits"'
    wrong = client.post(path, json=body, headers=bearer("token-alpha-7f3a9d"))
    assert wrong.status_code == 401 and wrong.get_json() == {"error": INVALID}
    assert wrong.headers["WWW-Authenticate"] == 'Bearer realm="mnist-digits", error="invalid_token"'
    assert client.post(path, json=body, headers={"Authorization": f"Basic {TOKENS[0]}"}).status_code == 401
    for token in TOKENS:
        assert client.post(path, json=body, headers=bearer(token)).status_code == 200


def test_model_metadata_needs_a_token_the_page_and_probes_do_not(client):
    assert client.get("/v1/models/mnist").status_code == 401
    assert client.get("/v2/models/mnist").status_code == 401
    assert client.get("/v1/models/mnist", headers=bearer(TOKENS[1])).status_code == 200
    for path in ("/", "/openapi.json", "/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"):
        assert client.get(path).status_code == 200, path
    assert client.get("/nowhere").status_code == 404  # an unknown route is not a secret


def test_a_revoked_token_stops_working_at_the_next_request(client, tokens_file):
    assert client.post("/predict", json=PREDICT, headers=bearer(TOKENS[0])).status_code == 200
    write_tokens(tokens_file, TOKENS[1])
    assert client.post("/predict", json=PREDICT, headers=bearer(TOKENS[0])).status_code == 401
    assert client.post("/predict", json=PREDICT, headers=bearer(TOKENS[1])).status_code == 200
    tokens_file.write_text("rotated-token-99\n")  # edited in place, same second: read again all the same
    assert client.post("/predict", json=PREDICT, headers=bearer(TOKENS[1])).status_code == 401
    assert client.post("/predict", json=PREDICT, headers=bearer("rotated-token-99")).status_code == 200


def test_a_tokens_file_that_cannot_be_read_lets_nobody_in(client, tokens_file, caplog):
    os.rename(tokens_file, tokens_file.with_name("moved"))
    with caplog.at_level(logging.ERROR, logger="service.auth"):
        assert client.post("/predict", json=PREDICT, headers=bearer(TOKENS[0])).status_code == 401
        assert client.post("/predict", json=PREDICT, headers=bearer(TOKENS[0])).status_code == 401
    assert len([r for r in caplog.records if "cannot be read" in r.getMessage()]) == 1  # logged once
    os.rename(tokens_file.with_name("moved"), tokens_file)
    assert client.post("/predict", json=PREDICT, headers=bearer(TOKENS[0])).status_code == 200


def test_auth_probes_closes_the_probes_too(export_base, tokens_file):
    for app in feature_app(export_base, API_TOKENS_FILE=str(tokens_file), AUTH_PROBES=1):
        client = app.test_client()
        for path in ("/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=bearer(TOKENS[0])).status_code == 200, path
        assert client.get("/").status_code == 200


def test_tokens_never_reach_logs_metrics_or_errors(client, caplog):
    with caplog.at_level(logging.DEBUG):
        client.post("/predict", json=PREDICT, headers=bearer(TOKENS[0]))
        wrong = client.post("/predict", json=PREDICT, headers=bearer("secret-guess-123"))
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'status="401"' in metrics and 'status="200"' in metrics
    for text in (caplog.text, metrics, wrong.get_data(as_text=True)):
        assert TOKENS[0] not in text and "secret-guess-123" not in text


def test_every_token_is_compared_in_constant_time(tmp_path, monkeypatch):
    """hmac.compare_digest against every token, also when the first one matches."""
    tokens = TokenFile(str(write_tokens(tmp_path / "tokens", *TOKENS, "token-gamma")))
    compared, compare_digest = [], hmac.compare_digest

    def counting(a, b):
        compared.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr("service.auth.hmac.compare_digest", counting)
    assert tokens.allows(TOKENS[0].encode()) is True
    assert len(compared) == 3 and all(given == TOKENS[0].encode() for _, given in compared)
    assert tokens.allows(b"nope") is False and len(compared) == 6


def test_the_file_format():
    text = b"# comment\n\n  spaced-out-ok  \r\nwith space inside\ncaf\xc3\xa9\nlast"
    assert parse_tokens(text) == [b"spaced-out-ok", b"last"]


def test_bad_settings_stop_the_start(tmp_path):
    from service.config import load_config

    with pytest.raises(ValueError, match="API_TOKENS_FILE='/nonexistent/tokens' cannot be read"):
        load_config({"API_TOKENS_FILE": "/nonexistent/tokens"}, environ={})
    with pytest.raises(ValueError, match="AUTH_PROBES=1 needs API_TOKENS_FILE"):
        load_config({"AUTH_PROBES": "1"}, environ={})


def test_the_file_is_read_only_when_it_changed_or_may_have(tmp_path, monkeypatch):
    """One stat per check; the file is read again when its stat changes, and also while it is recent (a
    file system whose clock ticks coarsely can keep the same times for a quick second edit)."""
    path = write_tokens(tmp_path / "tokens", "token-aaaa")
    hour_ago = os.stat(path).st_mtime - 3600
    os.utime(path, (hour_ago, hour_ago))
    opened = []
    real_open = open
    monkeypatch.setattr("service.auth.open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k), raising=False)
    tokens = TokenFile(str(path))
    assert tokens.allows(b"token-aaaa") and tokens.allows(b"token-aaaa") and len(opened) == 1  # settled: stat only
    old = os.stat(path)
    path.write_text("# API tokens, one a line\ntoken-bbbb\n")  # same size, same inode
    monkeypatch.setattr("service.auth.os", SimpleNamespace(stat=lambda p: old))  # as if the clock had not ticked
    assert tokens.allows(b"token-aaaa") is True  # the old times are an hour old: nothing to suspect
    os.utime(path, None)
    recent = os.stat(path)
    monkeypatch.setattr("service.auth.os", SimpleNamespace(stat=lambda p: recent))
    assert tokens.allows(b"token-bbbb") is True and tokens.allows(b"token-aaaa") is False
    assert len(opened) == 3  # recent: read at each of the two checks, until it settles


def test_the_image_healthcheck_carries_a_token_when_the_probes_need_one(tokens_file, monkeypatch):
    """service/healthcheck.py with AUTH_PROBES=1 sends the first token of the file (checked on a stand-in)."""
    from service import healthcheck
    from service.config import load_config

    sent = {}

    class Connection:
        def __init__(self, host, port, timeout):
            sent["where"] = (host, port)

        def request(self, method, path, headers):
            sent["request"] = (method, path, headers)

        def getresponse(self):
            return SimpleNamespace(status=200, read=lambda: b"")

        def close(self):
            pass

    monkeypatch.setattr(healthcheck.http.client, "HTTPConnection", Connection)
    config = load_config({"PORT": 8123, "API_TOKENS_FILE": str(tokens_file), "AUTH_PROBES": 1}, environ={})
    assert healthcheck.check(config, "/readyz") == 200
    assert sent == {"where": ("127.0.0.1", 8123), "request": ("GET", "/readyz", {"Authorization": f"Bearer {TOKENS[0]}"})}


def test_the_api_description_says_which_operations_need_a_token(client):
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").get_json()
    validate(spec)
    assert spec["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    assert spec["security"] == [{"bearer": []}]
    assert spec["paths"]["/healthz"]["get"]["security"] == [] and spec["paths"]["/"]["get"]["security"] == []
    assert "401" in spec["paths"]["/predict"]["post"]["responses"]
    assert "security" not in spec["paths"]["/predict"]["post"]
