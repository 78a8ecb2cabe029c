"""The error a request can end in through the client's fault: :class:`RequestError`.

Raised anywhere while handling a request (bad JSON, unknown model or version, body too large,
unsupported Content-Type ...); ``service/error_handlers.py`` turns it into ``{"error": message}``
with its ``status``. Stdlib only, so request validation (``inputs.py``, ``images.py``) can raise it
without importing Flask or TensorFlow.
"""

from __future__ import annotations


class RequestError(Exception):
    """A request the service refuses: ``message`` says what was wrong and what is expected (or what
    to do instead); ``status`` is the HTTP status (4xx: 400 by default, 404, 413, 415 ...)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def body_too_large_message(size: int | None, limit: int) -> str:
    """What a 413 for a body over ``MAX_BODY_BYTES`` says (``size``: the declared length, if known)."""
    received = f"{size} bytes" if size else "over the limit"
    return (f"request body too large: {received}; at most {limit} bytes (MAX_BODY_BYTES) are "
            "accepted: send fewer instances per request or a smaller image")
