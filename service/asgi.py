"""What a gunicorn worker serves over HTTP: the Flask app as an ASGI app, in layers, outermost first.

1. :class:`~service.request_ids.RequestIds`, only when request IDs are on (``REQUEST_IDS=1``,
   ``ACCESS_LOG=json`` or tracing): every request's id, ``X-Request-Id`` header and record, with the
   access log and the request's trace span around it (each feature's ``init_app`` listed its part:
   ``request_ids.add_around``);
2. :class:`~service.whole_requests.WholeRequests`: the body read whole within its limits, then Flask.

With everything off the worker serves ``WholeRequests`` itself: not one call more per request.
"""

from __future__ import annotations

from flask import Flask

from .config import Config
from .request_ids import RequestIds, arounds
from .whole_requests import WholeRequests


def asgi_app(flask_app: Flask, config: Config) -> tuple[object, WholeRequests]:
    """The ASGI app to serve, and its ``WholeRequests`` layer (whose thread pool gRPC shares)."""
    threads = config.threads if config.enable_batching else 0  # see WholeRequests
    whole = WholeRequests(flask_app, threads=threads, max_body_bytes=config.max_body_bytes,
                          body_timeout=config.body_timeout_seconds)
    if not config.request_ids_on:
        return whole, whole
    return RequestIds(whole, arounds(flask_app)), whole
