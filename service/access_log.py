"""``ACCESS_LOG=json``: one JSON line per request on standard output, the other logs staying on standard
error, so a log shipper can take the lines as they are.

Each line (keys in this order)::

    {"time": "2026-12-07T05:08:11.168Z", "id": "4f1c...", "protocol": "http", "method": "POST",
     "route": "/predict", "path": "/predict", "status": 200, "duration_ms": 1.42, "instances": 1,
     "bytes_in": 12907, "bytes_out": 221, "client": "10.0.0.7"}

- ``time``: when the request's headers had been read (UTC); ``duration_ms``: from then until its
  answer was sent (the body's arrival included);
- ``route``: the route template (Flask's, as in the metrics; ``null`` for a request refused before
  Flask ran, e.g. a 413 by the worker); ``path``: the URL path without its query string (its first
  :data:`MAX_PATH` characters);
- ``status``: the HTTP status, or for gRPC the status code's name (``OK``, ``UNAUTHENTICATED`` ...);
  ``null`` if the client left before an answer;
- ``instances``: images predicted (``null`` for other requests).

Never the body, the query string or any header, so never a token. Requests the worker's HTTP parser
refuses before it has a request (malformed, headers too slow) have no line: they have no method or path.
The lines come from the record that ``service/request_ids.py`` keeps of every request (HTTP: the ASGI
layer; gRPC: ``service/grpc_api/calls.py``), so turning the access log on turns request IDs on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import time

import orjson
from flask import Flask

from .request_ids import RequestRecord, add_around

LOGGER_NAME = "service.access"
MAX_PATH = 256  # characters of the path kept: a line stays one atomic write to a pipe (under PIPE_BUF)


def init_app(app: Flask) -> None:
    """Write a line for every request of ``app``'s worker (HTTP and gRPC)."""
    _logger()
    add_around(app, written)


def _logger() -> logging.Logger:
    """``service.access``: its own handler on standard output, message only, not passed to the root's."""
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


@contextlib.contextmanager
def written(record: RequestRecord):
    """Around a request: its line, once it has been answered (or has failed)."""
    try:
        yield
    finally:
        logging.getLogger(LOGGER_NAME).info(line(record))


def line(record: RequestRecord) -> str:
    """The JSON line of one request (orjson: a fifth of the time of the standard library's encoder)."""
    return orjson.dumps({
        "time": _utc(record.wall_time), "id": record.id, "protocol": record.protocol, "method": record.method,
        "route": record.route, "path": record.path[:MAX_PATH], "status": record.status,
        "duration_ms": round(record.seconds() * 1000, 3), "instances": record.instances,
        "bytes_in": record.bytes_in, "bytes_out": record.bytes_out, "client": record.client,
    }).decode()


@functools.lru_cache(maxsize=4)
def _second(whole: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def _utc(seconds: float) -> str:
    """ISO 8601 in UTC, to the millisecond: ``2026-12-07T05:08:11.168Z`` (the second's text is made once)."""
    whole = int(seconds)
    return f"{_second(whole)}.{int((seconds - whole) * 1000):03d}Z"
