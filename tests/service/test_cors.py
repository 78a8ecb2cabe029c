"""CORS in this process (service/cors.py, flask-cors): preflights and headers on the API for the listed
origins only, on errors too, without a token for the preflight; nothing with CORS_ORIGINS unset. A real
browser on another origin against a real gunicorn: tests/service/test_operator_features.py."""

from __future__ import annotations

import pytest

from .operator_support import TOKENS, bearer, feature_app, write_tokens

PAGE = "http://127.0.0.1:3000"
OTHER = "http://evil.example"
ZEROS = [0.0] * 784
PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


@pytest.fixture(scope="module")
def client(export_base, tmp_path_factory):
    tokens = write_tokens(tmp_path_factory.mktemp("cors") / "tokens", *TOKENS)
    for app in feature_app(export_base, CORS_ORIGINS=f"{PAGE} https://other.example", API_TOKENS_FILE=str(tokens)):
        yield app.test_client()


@pytest.mark.parametrize("path", ["/predict", "/v1/models/mnist:predict", "/v2/models/mnist/infer"])
def test_a_preflight_from_a_listed_origin_is_allowed_without_a_token(client, path):
    response = client.options(path, headers={"Origin": PAGE, **PREFLIGHT})
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_answers_and_errors_carry_the_headers_for_a_listed_origin(client):
    ok = client.post("/predict", json={"instances": [ZEROS]}, headers={"Origin": PAGE, **bearer(TOKENS[0])})
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == PAGE
    assert "x-request-id" in ok.headers["Access-Control-Expose-Headers"].lower()
    refused = client.post("/predict", json={"instances": [ZEROS]}, headers={"Origin": PAGE})
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == PAGE
    bad = client.post("/predict", data=b"{", content_type="application/json", headers={"Origin": PAGE, **bearer(TOKENS[0])})
    assert bad.status_code == 400 and bad.headers["Access-Control-Allow-Origin"] == PAGE
    spec = client.get("/openapi.json", headers={"Origin": PAGE})
    assert spec.headers["Access-Control-Allow-Origin"] == PAGE


def test_other_origins_and_other_routes_get_no_cors_headers(client):
    for response in (client.options("/predict", headers={"Origin": OTHER, **PREFLIGHT}),
                     client.post("/predict", json={"instances": [ZEROS]}, headers={"Origin": OTHER, **bearer(TOKENS[0])}),
                     client.get("/healthz", headers={"Origin": PAGE}),
                     client.get("/metrics", headers={"Origin": PAGE})):
        assert "Access-Control-Allow-Origin" not in response.headers


def test_a_star_allows_any_origin(export_base):
    for app in feature_app(export_base, CORS_ORIGINS="*"):
        response = app.test_client().post("/predict", json={"instances": [ZEROS]}, headers={"Origin": OTHER})
        assert response.status_code == 200 and response.headers["Access-Control-Allow-Origin"] == "*"


def test_off_by_default(app):
    client = app.test_client()
    preflight = client.options("/predict", headers={"Origin": PAGE, **PREFLIGHT})
    answer = client.post("/predict", json={"instances": [ZEROS]}, headers={"Origin": PAGE})
    assert answer.status_code == 200
    for response in (preflight, answer):
        assert not [name for name in response.headers.keys() if name.lower().startswith("access-control-")]


@pytest.mark.parametrize("value", ["https://app.example/", "app.example", "*, https://app.example", "https://a.example/x"])
def test_a_mistyped_origin_stops_the_start(value):
    from service.config import load_config

    with pytest.raises(ValueError, match="CORS_ORIGINS: .* is not an origin like"):
        load_config({"CORS_ORIGINS": value}, environ={})
