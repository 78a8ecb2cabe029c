"""The errors a request can end in, and the one writer of their bodies.

- :class:`RequestError`: the client's fault (bad JSON, unknown model or version, body too large,
  unsupported Content-Type, no token ...), raised anywhere while handling a request;
- :func:`error_body`: the body of every HTTP error the service answers, ``{"error": message}`` (plus
  ``"request_id"`` when request IDs are on, service/request_ids.py), whoever answers it: Flask's
  handlers (``service/error_handlers.py`` through ``web.error_response``), the worker's whole-request
  reader (``service/whole_requests.py``: 408, 413) and its HTTP parser (``service/worker.py``: 400,
  408, 414, 431, 501). Changing the error shape is a change here (and in the OpenAPI ``Error`` schema);
- :func:`error_status` / :func:`grpc_status`: the same errors as HTTP statuses and gRPC codes.

Stdlib only, so request validation (``inputs.py``, ``images.py``) can raise errors without importing
Flask or TensorFlow, and the worker can write a body before Flask exists.
"""

from __future__ import annotations

import json


class RequestError(Exception):
    """A request the service refuses: ``message`` says what was wrong and what is expected (or what
    to do instead); ``status`` is the HTTP status (4xx: 400 by default, 404, 413, 415 ...)."""

    def __init__(self, message: str, status: int = 400, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = headers  # e.g. WWW-Authenticate on a 401


ERROR_CONTENT_TYPE = "application/json"


def error_body(message: str, request_id: str | None = None) -> bytes:
    """``{"error": message}``, with ``"request_id"`` when the request has one: every HTTP error's body."""
    payload = {"error": message} if request_id is None else {"error": message, "request_id": request_id}
    return json.dumps(payload, ensure_ascii=False).encode()


def body_too_large_message(size: int | None, limit: int) -> str:
    """What a 413 for a body over ``MAX_BODY_BYTES`` says (``size``: the declared length, if known)."""
    received = f"{size} bytes" if size else "over the limit"
    return (f"request body too large: {received}; at most {limit} bytes (MAX_BODY_BYTES) are "
            "accepted: send fewer instances per request or a smaller image")


# ---- gRPC ----------------------------------------------------------------------------------------
# The gRPC status code of each HTTP status the service answers with (service/grpc_api answers every
# refusal through grpc_status below, with the same message as the HTTP body's "error").
GRPC_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",  # no valid API token (service/auth.py)
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    413: "RESOURCE_EXHAUSTED",  # as gRPC itself answers a message over grpc.max_receive_message_length
    415: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",  # a photo with no digit, or several where one is expected (service/images)
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",  # no version loaded yet, or the batch queue is full: retry later
}
RETRY_LATER = "; retry later"
OVERLOADED_MESSAGE = ("too many predictions are waiting (the batch queue is full: MAX_ENQUEUED_BATCHES); "
                      "retry later")


def error_status(exc: BaseException) -> tuple[int, str] | None:
    """``(HTTP status, message)`` of an error a request can end in, or None for an unexpected one.

    The predictor's errors are matched by name: this module stays standard library only (the
    predictor imports TensorFlow)."""
    if isinstance(exc, RequestError):
        return exc.status, exc.message
    kind = type(exc).__name__
    if kind == "ModelNotReady":
        return 503, f"{exc}{RETRY_LATER}"
    if kind == "VersionNotFound":
        return 404, str(exc)
    if kind == "Overloaded":
        return 503, OVERLOADED_MESSAGE
    return None


def grpc_status(exc: BaseException) -> tuple[str, str] | None:
    """``(gRPC status code name, message)`` of an error a request can end in, or None for an
    unexpected one (which gRPC answers as INTERNAL, logged)."""
    status = error_status(exc)
    return None if status is None else (GRPC_CODES[status[0]], status[1])
