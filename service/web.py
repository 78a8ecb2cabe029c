"""Small HTTP helpers shared by the route modules (native API, TF Serving, KServe v2)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from flask import Response, current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from .config import Config
from .contract import is_version_name
from .inputs import InputError
from .metrics import Metrics
from .predictor import Predictor


@dataclass
class ServiceState:
    """What the routes need: stored in ``app.extensions["mnist"]`` by ``create_app``."""

    config: Config
    predictor: Predictor
    metrics: Metrics


def state() -> ServiceState:
    return current_app.extensions["mnist"]


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    """Compact JSON (``NaN`` never occurs in what we send)."""
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    return Response(body, status=status, mimetype="application/json", headers=headers)


def error_response(message: str, status: int, headers: dict | None = None) -> Response:
    return json_response({"error": message}, status, headers)


def set_route(label: str) -> None:
    """The route label for metrics when the URL rule itself is too generic."""
    g.route_label = label


def route_label() -> str:
    """The metrics label of this request: ``set_route``'s, else the URL rule, else ``<unmatched>``."""
    return g.get("route_label") or (request.url_rule.rule if request.url_rule else "<unmatched>")


def read_body() -> bytes:
    """The raw request body (413 through ``MAX_CONTENT_LENGTH`` if it is too large)."""
    body = request.get_data(cache=True, as_text=False, parse_form_data=False)
    check_streamed_body_limit(len(body))
    return body


def check_streamed_body_limit(received: int | None = None) -> None:
    """Werkzeug stops reading a body without Content-Length (chunked) at ``MAX_CONTENT_LENGTH`` and
    returns it cut short; make that a 413 instead of a confusing "malformed" error.

    ``received``: bytes read so far, if known (below the limit nothing can have been cut off)."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if request.content_length is not None or limit is None:
        return
    if received is not None and received < limit:
        return
    stream = request.environ.get("wsgi.input")
    if stream is not None and stream.read(1):
        raise RequestEntityTooLarge()


def body_has_bools(body: bytes) -> bool:
    return b"true" in body or b"false" in body


def float32_lists(array: np.ndarray) -> list:
    """float32 values as the shortest decimals that read back to the same float32 (as TF Serving
    prints them): ``0.998`` rather than ``0.9980000257492065``."""
    return array.astype(str).astype(np.float64).tolist()


def record_predictions(probabilities: np.ndarray) -> None:
    digits = probabilities.argmax(axis=1)
    state().metrics.observe_predictions(route_label(), digits)


def version_from_url(text: str | None, model_name: str) -> int | None:
    if text is None:
        return None
    if not is_version_name(text):
        raise InputError(f"model version must be a positive integer; got {text!r} for model "
                         f"{model_name!r}", status=404)
    return int(text)
