"""How failures become responses: ``init_app(app)`` answers every error with ``web.error_response``.

- :class:`~service.errors.RequestError`: its own status (400, 404, 413, 415) and message.
- ``ModelNotReady`` (no version loaded yet): 503 with ``Retry-After``.
- ``Overloaded`` (batching on, its queue full): 503 with ``Retry-After``.
- ``VersionNotFound`` (a version that is not loaded): 404.
- Werkzeug's HTTP errors (unknown route, wrong method): their status, with a message that says what
  to do instead.
- Anything else: 500, logged with its traceback; the client sees only the exception's type.

Bodies over ``MAX_BODY_BYTES`` never get here: the worker refuses them before Flask runs
(``service/whole_requests.py``, the one place that enforces the body limits).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .errors import RequestError, error_status
from .graph_runner import Overloaded
from .predictor import ModelNotReady, VersionNotFound
from .web import error_response, retry_later_response

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Register the handlers of every kind of failure on ``app``."""
    app.register_error_handler(RequestError, _request_error)
    app.register_error_handler(ModelNotReady, _model_not_ready)
    app.register_error_handler(Overloaded, _overloaded)
    app.register_error_handler(VersionNotFound, _version_not_found)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def _request_error(exc: RequestError) -> Response:
    return error_response(exc.message, exc.status, exc.headers)


def _model_not_ready(exc: ModelNotReady) -> Response:
    return retry_later_response(error_status(exc)[1])


def _overloaded(exc: Overloaded) -> Response:
    return retry_later_response(error_status(exc)[1])


def _version_not_found(exc: VersionNotFound) -> Response:
    return error_response(str(exc), 404)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 404:
        return error_response(f"no such endpoint: {request.method} {request.path}; "
                              "see GET /openapi.json for the API", 404)
    if status == 405:
        return _method_not_allowed(exc)
    return error_response(f"{exc.name}: {exc.description}", status)


def _method_not_allowed(exc: HTTPException) -> Response:
    """405 naming the methods the path does accept (HEAD and OPTIONS go without saying)."""
    valid = getattr(exc, "valid_methods", None) or []
    allowed = sorted(set(valid) - {"HEAD", "OPTIONS"})
    message = (f"method {request.method} is not allowed on {request.path}; "
               f"use {' or '.join(allowed) or 'another method'}")
    return error_response(message, 405, {"Allow": ", ".join(valid or allowed)})


def _unexpected_error(exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.path)
    return error_response(f"internal server error ({type(exc).__name__}); it was logged", 500)
