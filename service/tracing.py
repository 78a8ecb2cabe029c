"""Tracing with OpenTelemetry, on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (its standard variables).

One span per request (HTTP: ``POST /predict``, kind SERVER; gRPC: ``inference.GRPCInferenceService/ModelInfer``)
with a child span for each step that :func:`traced` marks: ``parse`` (the body into numbers:
``inputs.parse_json``, ``json_rows.instance_rows``, a gRPC message), ``preprocess`` (numbers into the
model's pixel batch: ``inputs.to_pixel_batch``, ``inputs.checked_pixels``) and ``model`` (the model
call: ``predictor.ModelVersion.predict``). The request span carries the request ID (``request.id``),
the method, route, path and status (OpenTelemetry's HTTP and RPC attribute names), and continues the
caller's trace when the request brings a W3C ``traceparent``.

Spans go in batches to the OTLP endpoint, over gRPC (``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``, the default
here as in OpenTelemetry's Python distribution) or HTTP (``http/protobuf``); ``OTEL_SERVICE_NAME`` names
the service (``mnist-digits`` unless set), and every other ``OTEL_*`` variable (headers, timeouts,
``OTEL_RESOURCE_ATTRIBUTES``, sampling) is read by OpenTelemetry itself.

OpenTelemetry is an optional extra (``pip install -r requirements-tracing.txt``): the serving image
leaves it out. This module imports it only when tracing is turned on; off, :func:`traced` costs a
function call and one comparison per marked step, and :func:`span` returns a shared no-op context.
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # importing this module costs nothing: inputs.py and json_rows.py mark their steps
    from flask import Flask

    from .request_ids import RequestRecord

INSTALL = "pip install -r requirements-tracing.txt"
DEFAULT_SERVICE_NAME = "mnist-digits"
_NOTHING = contextlib.nullcontext()
_tracer = None  # the worker's tracer once tracing is on (one app per worker process)


def span(name: str):
    """A child span of the current one named ``name``, or nothing with tracing off. A step already inside
    a span of the same name (``to_pixel_batch`` calling ``checked_pixels``) gets no second one."""
    if _tracer is None:
        return _NOTHING
    from opentelemetry import trace

    if getattr(trace.get_current_span(), "name", None) == name:
        return _NOTHING
    return _tracer.start_as_current_span(name)


def traced(name: str) -> Callable:
    """Mark a step of a request: with tracing on, each call runs in a child span ``name``."""
    def decorate(function: Callable) -> Callable:
        @functools.wraps(function)
        def run(*args, **kwargs):
            if _tracer is None:
                return function(*args, **kwargs)
            with span(name):
                return function(*args, **kwargs)
        return run
    return decorate


def init_app(app: Flask, service_name: str = DEFAULT_SERVICE_NAME, exporter=None) -> None:
    """Trace every request of ``app``'s worker: spans batched to the OTLP exporter that the standard
    variables describe, or (tests) sent one by one to ``exporter``."""
    global _tracer
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    if exporter is None:
        provider.add_span_processor(BatchSpanProcessor(otlp_exporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _tracer = provider.get_tracer("service")
    app.extensions["mnist.tracer_provider"] = provider
    from .request_ids import add_around

    add_around(app, request_span)


def disable() -> None:
    """Tracing off again (tests; a worker keeps it for its lifetime)."""
    global _tracer
    _tracer = None


def otlp_exporter():
    """The OTLP span exporter of ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc`` unless set), configured by the
    standard variables (endpoint, headers, timeout, certificate)."""
    import os

    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")) \
            .strip().lower() == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    return OTLPSpanExporter()


@contextlib.contextmanager
def request_span(record: RequestRecord):
    """Around a request (``service/request_ids.py`` enters it): its span, named and labelled from its
    record once it has been answered."""
    from opentelemetry import propagate, trace

    grpc = record.protocol == "grpc"
    name = record.path.lstrip("/") if grpc else f"{record.method} {record.path}"
    context = propagate.extract(record.trace_headers) if record.trace_headers else None
    with _tracer.start_as_current_span(name, context=context, kind=trace.SpanKind.SERVER) as current:
        current.set_attribute("request.id", record.id)
        try:
            yield current
        finally:
            _describe(current, record, grpc)


def _describe(current, record: RequestRecord, grpc: bool) -> None:
    """The request's attributes, and its final name (the route, known once Flask matched it)."""
    from opentelemetry.trace import Status, StatusCode

    if grpc:
        service, _, method = record.path.lstrip("/").partition("/")
        current.set_attributes({"rpc.system": "grpc", "rpc.service": service, "rpc.method": method,
                                "rpc.grpc.status_code": str(record.status)})
        if record.status != "OK":
            current.set_status(Status(StatusCode.ERROR, str(record.status)))
        return
    current.set_attributes({"http.request.method": record.method, "url.path": record.path})
    if record.route:
        current.set_attribute("http.route", record.route)
        current.update_name(f"{record.method} {record.route}")
    if record.status is not None:
        current.set_attribute("http.response.status_code", record.status)
        if record.status >= 500:
            current.set_status(Status(StatusCode.ERROR))
    if record.instances is not None:
        current.set_attribute("mnist.instances", record.instances)
