"""Request IDs (``REQUEST_IDS=1``; on by itself with ``ACCESS_LOG=json`` or tracing, which record them):
one id per request, to follow it from the client through the logs.

- The id is the request's own ``X-Request-Id`` when it has one, sanitised: only letters, digits and
  ``- _ . : / + = @`` are kept (no newline, quote or space can forge a log line or a header), at most
  :data:`MAX_LENGTH` characters; otherwise (none, or nothing left) a new one, 32 random hex digits.
- It is echoed in the response's ``X-Request-Id``, written into every error body
  (``service/errors.py``: ``"request_id"``), added to every log line written while the request runs
  (:class:`LogFilter`: ``[request <id>]``), and recorded in the access log line and the trace.

:class:`RequestIds` is the ASGI middleware that does it for every HTTP request the worker reads,
including those refused before Flask runs (408, 413): ``service/asgi.py`` puts it outermost. It keeps
a :class:`RequestRecord` per request in the ASGI scope and the WSGI environ (:data:`RECORD_KEY`): the
Flask side fills in the route and the instance count (:func:`init_app`), the access log
(``service/access_log.py``) and the trace (``service/tracing.py``) read it. gRPC calls get theirs from
the ``x-request-id`` metadata (``service/grpc_api/calls.py``). With everything off nothing here runs:
the middleware is not installed.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Callable, ContextManager

from flask import Flask, g, request

HEADER = "X-Request-Id"
MAX_LENGTH = 128
RECORD_KEY = "mnist.request"  # the RequestRecord, in the ASGI scope and the WSGI environ
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/+=@-]")
CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def request_id(incoming: str | bytes | None = None) -> str:
    """``incoming`` (a client's ``X-Request-Id``) sanitised and bounded, or a new id if nothing is left."""
    if incoming:
        if isinstance(incoming, bytes):
            incoming = incoming[:4 * MAX_LENGTH].decode("latin-1")
        kept = _UNSAFE.sub("", incoming[:4 * MAX_LENGTH])[:MAX_LENGTH]
        if kept:
            return kept
    return os.urandom(16).hex()  # as random as uuid4().hex, without building a UUID object


@dataclass(slots=True)
class RequestRecord:
    """What is known of one request, for its error body, access log line and trace."""

    id: str
    method: str
    path: str
    client: str | None = None
    protocol: str = "http"
    started: float = 0.0  # time.perf_counter() when its headers had been read
    wall_time: float = 0.0  # time.time() then
    status: int | str | None = None
    route: str | None = None  # the route template, once Flask matched it
    instances: int | None = None  # images predicted, for prediction routes
    bytes_in: int = 0
    bytes_out: int = 0
    trace_headers: dict | None = None  # W3C traceparent/tracestate, when the request brings them

    def seconds(self) -> float:
        return time.perf_counter() - self.started


TRACE_HEADERS = (b"traceparent", b"tracestate")


def new_record(scope) -> RequestRecord:
    """The record of an ASGI HTTP request, its id from its ``X-Request-Id`` header (or new)."""
    incoming, trace_headers = None, None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            incoming = value
        elif name in TRACE_HEADERS:
            trace_headers = {**(trace_headers or {}), name.decode(): value.decode("latin-1")}
    client = scope.get("client")
    return RequestRecord(request_id(incoming), scope["method"], scope["path"], client[0] if client else None,
                         started=time.perf_counter(), wall_time=time.time(), trace_headers=trace_headers)


Around = Callable[[RequestRecord], ContextManager]
AROUND = "mnist.around"  # app.extensions key: the Around of each feature that is on (access log, tracing)


def arounds(app: Flask) -> list[Around]:
    """What the features that are on want entered around every request of ``app``."""
    return app.extensions.get(AROUND, [])


def add_around(app: Flask, around: Around) -> None:
    """A feature's ``init_app``: enter ``around(record)`` around every request (HTTP and gRPC)."""
    app.extensions.setdefault(AROUND, []).append(around)


class RequestIds:
    """``RequestIds(asgi_app, around=[...])``: an ASGI middleware giving every HTTP request its
    :class:`RequestRecord` (id, status, bytes in and out), the ``X-Request-Id`` response header and
    the id in its log lines. ``around``: context managers entered around each request, given its
    record (the access log writes its line on the way out; tracing holds the request's span)."""

    def __init__(self, app, around: list[Around] = ()):
        self.app = app
        self.around = list(around)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        record = new_record(scope)
        scope[RECORD_KEY] = record
        header = (b"x-request-id", record.id.encode("latin-1"))

        async def counted_receive():
            message = await receive()
            record.bytes_in += len(message.get("body", b""))
            return message

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            elif message["type"] == "http.response.body":
                record.bytes_out += len(message.get("body", b""))
            await send(message)

        with recording(record, self.around):
            await self.app(scope, counted_receive, send_with_id)


@contextlib.contextmanager
def recording(record: RequestRecord, around: list[Around]):
    """While a request runs: its id in the log lines, and each feature's ``around`` entered."""
    token = CURRENT.set(record.id)
    try:
        with contextlib.ExitStack() as stack:
            for enter in around:
                stack.enter_context(enter(record))
            yield record
    finally:
        CURRENT.reset(token)


ID_METADATA = "x-request-id"  # gRPC: the id comes in this metadata and goes back in the trailing one


def grpc_record(route: str, metadata: dict, peer: str | None, raw) -> RequestRecord:
    """The record of a gRPC call of ``route`` (its method's path) with its ``metadata``; ``peer`` is
    gRPC's ``ipv4:1.2.3.4:567``."""
    client = None
    if peer and ":" in peer:
        client = peer.split(":", 1)[1].rsplit(":", 1)[0].strip("[]")
    trace_headers = {name: metadata[name] for name in ("traceparent", "tracestate") if name in metadata}
    return RequestRecord(request_id(metadata.get(ID_METADATA)), "POST", route, client, protocol="grpc",
                         route=route, started=time.perf_counter(), wall_time=time.time(),
                         bytes_in=len(raw) if isinstance(raw, bytes) else 0, trace_headers=trace_headers or None)


def current_record() -> RequestRecord | None:
    """The record of the Flask request being handled (None with request IDs off)."""
    return request.environ.get(RECORD_KEY)


def init_app(app: Flask) -> None:
    """Flask's part: after each request, the route it matched and the images it predicted go into
    its record (the route label is the metrics' one: ``service/metrics.py``)."""
    # imported here, not above: the gunicorn master imports this module (through service/worker.py) before
    # it sets PROMETHEUS_MULTIPROC_DIR, which prometheus_client reads when it is imported
    from .metrics import route_label

    @app.after_request
    def _note_route(response):
        record = current_record()
        if record is not None:
            record.route = route_label()
            record.instances = g.get("instances")
        return response


# ---- log lines --------------------------------------------------------------------------------------
LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s%(request)s"


class LogFilter(logging.Filter):
    """Gives every log record ``request``: `` [request <id>]`` while a request runs, else empty."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = CURRENT.get()
        record.request = f" [request {current}]" if current else ""
        return True


def install_log_filter(handlers: list[logging.Handler], *, set_format: bool) -> None:
    """Add :class:`LogFilter` to ``handlers``; with ``set_format``, also give them :data:`LOG_FORMAT`."""
    for handler in handlers:
        if not any(isinstance(existing, LogFilter) for existing in handler.filters):
            handler.addFilter(LogFilter())
        if set_format:
            handler.setFormatter(logging.Formatter(LOG_FORMAT))
