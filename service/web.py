"""Small HTTP helpers shared by the route modules (native API, TF Serving, KServe v2)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
from flask import Response, current_app, g, request

from .config import Config
from .contract import is_version_name
from .errors import ERROR_CONTENT_TYPE, RequestError, error_body
from .metrics import Metrics, route_label
from .predictor import Predictor
from .request_ids import RECORD_KEY

RETRY_AFTER_SECONDS = "5"  # how long a 503 (no model loaded yet) asks clients to wait


@dataclass
class ServiceState:
    """What the routes need: stored in ``app.extensions["mnist"]`` by ``create_app``."""

    config: Config
    predictor: Predictor
    metrics: Metrics


def state() -> ServiceState:
    """The current app's configuration, predictor and metrics."""
    return current_app.extensions["mnist"]


def json_response(payload, status: int = 200, headers: dict | None = None) -> Response:
    """Compact JSON by orjson. NumPy arrays and scalars go in as they are: float32 values come out as
    the shortest decimals that read back to the same float32 (``0.998``, not ``0.9980000257492065``),
    as TensorFlow Serving prints them. (``NaN`` never occurs in what we send.)"""
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status=status, mimetype="application/json", headers=headers)


def error_response(message: str, status: int, headers: dict | None = None) -> Response:
    """The response of every error Flask answers: ``errors.error_body`` (with the request's id, if any)."""
    record = request.environ.get(RECORD_KEY)
    body = error_body(message, None if record is None else record.id)
    return Response(body, status=status, mimetype=ERROR_CONTENT_TYPE, headers=headers)


def retry_later_response(message: str) -> Response:
    """503 with ``Retry-After``: no model is loaded yet (a client or load balancer should wait)."""
    return error_response(message, 503, {"Retry-After": RETRY_AFTER_SECONDS})


def read_body() -> bytes:
    """The raw request body: whole, and within ``MAX_BODY_BYTES`` (the worker's WholeRequests saw to it)."""
    return request.get_data(cache=True, as_text=False, parse_form_data=False)


# What JSON arrays of numbers are made of (with the separators and whitespace between them).
NUMBER_BYTES = b"0123456789.,[]-+eE \t\r\n"


def body_has_bools(body: bytes) -> bool:
    """False if the raw body cannot hold a JSON ``true`` or ``false``: then nobody needs to look for one
    in the parsed lists (NumPy would quietly take them for 1.0 and 0.0).

    One C pass: delete the bytes that numbers and arrays are made of; what remains of a prediction
    request is a few keys (or base64 text), and a ``true``/``false`` token leaves ``tru``/``fals`` in it
    (their ``e`` is deleted). Cheaper than searching the body for both words, which reads it twice
    (measured by ``python -m bench.hot_paths``, rows ``body_has_bools_*``); a key that happens to leave
    ``tru`` only costs the precise check."""
    rest = body.translate(None, NUMBER_BYTES)
    return b"tru" in rest or b"fals" in rest


def record_predictions(probabilities: np.ndarray) -> None:
    """Count the predicted digits and the batch size in the metrics, under this request's route (and
    protocol: ``g.protocol`` is set by service/grpc_api/calls.py for gRPC calls)."""
    digits = probabilities.argmax(axis=1)
    g.instances = len(digits)  # for the request's record (access log), with request IDs on
    state().metrics.observe_predictions(route_label(), digits, g.get("protocol", "http"))


def version_from_url(text: str | None, model_name: str) -> int | None:
    """The version number in a URL (None: none given); a name that is not a version is a 404."""
    if text is None:
        return None
    if not is_version_name(text):
        raise RequestError(f"model version must be a positive integer; got {text!r} for model "
                           f"{model_name!r}", status=404)
    return int(text)
