"""``CORS_ORIGINS``: a web page on another origin may call the API (Cross-Origin Resource Sharing).

flask-cors does it, as a Flask extension: the worker hands Flask every request whole, preflight
``OPTIONS`` included, so nothing has to happen before Flask. On the prediction routes (``/predict``,
``/v1/models/...``, ``/v2/...``) and ``/openapi.json``, for the origins listed (``*``: any):

- a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered 200 with the allowed
  methods, the request headers a page may send (``Content-Type``, ``Authorization``, ``X-Request-Id``)
  and ``Access-Control-Max-Age`` (:data:`MAX_AGE_SECONDS`), without a token (browsers send none);
- every answer, errors included, carries ``Access-Control-Allow-Origin`` for a listed origin (``*``
  itself with ``CORS_ORIGINS=*``, else the origin, with ``Vary: Origin``), and
  exposes ``X-Request-Id``, ``WWW-Authenticate`` and ``Retry-After`` to the page's script.

Credentials (cookies) are never allowed: the API uses bearer tokens, which a page sends itself. What
CORS does not do: keep anyone from calling the API. It only tells browsers which pages may read the
answers; a token (``API_TOKENS_FILE``) is what refuses strangers. Answers the worker gives before Flask
runs (a body over ``MAX_BODY_BYTES`` or too slow, a malformed request) carry no CORS headers: a page
sees them as a network error.
"""

from __future__ import annotations

from flask import Flask
from flask_cors import CORS

RESOURCES = (r"^/predict$", r"^/v1/models/.+", r"^/v2(/.*)?$", r"^/openapi\.json$")
ALLOWED_HEADERS = ["Content-Type", "Authorization", "X-Request-Id"]
EXPOSED_HEADERS = ["X-Request-Id", "WWW-Authenticate", "Retry-After"]
MAX_AGE_SECONDS = 600


def init_app(app: Flask, origins: tuple[str, ...]) -> None:
    """Answer cross-origin requests from ``origins`` (``("*",)``: any) on the API's routes."""
    CORS(app, resources={pattern: {} for pattern in RESOURCES}, origins=list(origins),
         allow_headers=ALLOWED_HEADERS, expose_headers=EXPOSED_HEADERS, max_age=MAX_AGE_SECONDS,
         supports_credentials=False, send_wildcard=origins == ("*",))
