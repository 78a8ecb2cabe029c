"""Tracing (service/tracing.py) with OpenTelemetry's in-memory exporter, through the worker's ASGI
layers in this process: one SERVER span per request, named after its route, with the request ID and the
HTTP attributes, continuing the caller's trace, and child spans parse, preprocess and model. Needs the
optional extra (requirements-tracing.txt): skips without it, fails without it in CI."""

from __future__ import annotations

import importlib.util
import json

import pytest

from service.asgi import asgi_app

from .asgi_client import call
from .operator_support import feature_app, require

require(importlib.util.find_spec("opentelemetry") is not None and importlib.util.find_spec("opentelemetry.sdk") is not None, "OpenTelemetry (the tracing extra)",
        "pip install -r requirements-tracing.txt")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from service import tracing  # noqa: E402

JSON = {"Content-Type": "application/json"}
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def traced(export_base):
    exporter = InMemorySpanExporter()
    for app in feature_app(export_base, REQUEST_IDS=1):
        tracing.init_app(app, "mnist-test", exporter=exporter)
        try:
            yield asgi_app(app, app.extensions["mnist"].config)[0], exporter
        finally:
            tracing.disable()


@pytest.fixture
def spans(traced):
    traced[1].clear()
    return traced[1]


def by_name(finished) -> dict:
    return {span.name: span for span in finished}


def test_a_prediction_is_one_server_span_with_parse_preprocess_and_model(traced, spans):
    body = json.dumps({"instances": [[0.0] * 784]}).encode()
    answer = call(traced[0], "POST", "/predict", body, headers={**JSON, "X-Request-Id": "trace-1",
                                                               "traceparent": TRACEPARENT})
    assert answer.status == 200
    named = by_name(spans.get_finished_spans())
    assert sorted(named) == ["POST /predict", "model", "parse", "preprocess"]
    root = named["POST /predict"]
    assert root.kind == SpanKind.SERVER and format(root.context.trace_id, "032x") == TRACE_ID
    assert root.parent.span_id == int("00f067aa0ba902b7", 16)  # the caller's span
    assert dict(root.attributes) == {"request.id": "trace-1", "http.request.method": "POST", "url.path": "/predict",
                                     "http.route": "/predict", "http.response.status_code": 200, "mnist.instances": 1}
    assert root.resource.attributes["service.name"] == "mnist-test"
    for child in ("parse", "preprocess", "model"):
        assert named[child].parent.span_id == root.context.span_id, child
        assert named[child].context.trace_id == root.context.trace_id
    assert named["parse"].start_time < named["preprocess"].start_time < named["model"].start_time


def test_the_general_path_has_one_preprocess_span(traced, spans):
    """28x28 rows: the fast parser declines (a parse span), orjson parses (another), then to_pixel_batch
    prepares them, calling checked_pixels inside its own span (no second preprocess span)."""
    rows = [[[0.0] * 28] * 28]
    answer = call(traced[0], "POST", "/predict", json.dumps({"instances": rows}).encode(), headers=JSON)
    assert answer.status == 200
    assert sorted(span.name for span in spans.get_finished_spans()) == [
        "POST /predict", "model", "parse", "parse", "preprocess"]


def test_the_span_is_named_after_the_route_template(traced, spans):
    answer = call(traced[0], "POST", "/v1/models/mnist:predict", json.dumps({"instances": [[0.0] * 784]}).encode(),
                  headers=JSON)
    assert answer.status == 200
    assert "POST /v1/models/<name>:predict" in {span.name for span in spans.get_finished_spans()}  # the metrics' label


def test_a_refused_request_has_its_status_and_no_model_span(traced, spans):
    answer = call(traced[0], "POST", "/predict", b'{"instances": [[7]]}', headers=JSON)
    assert answer.status == 400
    named = by_name(spans.get_finished_spans())
    assert "model" not in named and named["POST /predict"].attributes["http.response.status_code"] == 400
    assert named["POST /predict"].attributes["request.id"] == answer.headers["x-request-id"]


def test_a_grpc_call_is_named_after_its_method(traced, spans):
    from service.request_ids import grpc_record

    record = grpc_record("/inference.GRPCInferenceService/ModelInfer", {"x-request-id": "g-1"}, "ipv4:10.0.0.1:5",
                         b"raw")
    with tracing.request_span(record):
        record.status = "INVALID_ARGUMENT"
    (span,) = spans.get_finished_spans()
    assert span.name == "inference.GRPCInferenceService/ModelInfer" and span.kind == SpanKind.SERVER
    assert dict(span.attributes) == {"request.id": "g-1", "rpc.system": "grpc", "rpc.service": "inference.GRPCInferenceService",
                                     "rpc.method": "ModelInfer", "rpc.grpc.status_code": "INVALID_ARGUMENT"}
    assert not span.status.is_ok


@pytest.mark.parametrize("protocol, module", [("", "grpc"), ("grpc", "grpc"), ("http/protobuf", "http")])
def test_the_exporter_follows_otel_exporter_otlp_protocol(monkeypatch, protocol, module):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol or "grpc")
    exporter = tracing.otlp_exporter()
    assert type(exporter).__module__ == f"opentelemetry.exporter.otlp.proto.{module}.trace_exporter"
    exporter.shutdown()


def test_tracing_turns_request_ids_on_and_needs_the_extra(monkeypatch):
    from service.config import load_config

    assert load_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, environ={}).request_ids_on
    monkeypatch.setattr("service.config.importlib.util.find_spec", lambda name: None)
    with pytest.raises(ValueError, match="OpenTelemetry is not installed: pip install -r requirements-tracing.txt"):
        load_config({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, environ={})
