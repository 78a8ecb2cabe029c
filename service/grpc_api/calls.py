"""One gRPC call, start to end: raw bytes in, the servicer function in the Flask app's context, bytes out.

Each method is registered with no deserializer (:func:`method_handler`), so a call is handled here whole:

1. read the one request message and parse it ourselves: bytes that are no valid message are the client's
   mistake, INVALID_ARGUMENT with protobuf's reason (gRPC's own deserializer would answer INTERNAL). The
   methods are registered as stream-unary (the same on the wire): grpc.aio's unary-unary path never
   answers a call whose stream ends inside its message (a truncated frame: the client waits forever),
   while ``context.read()`` returns EOF there, and that gets INVALID_ARGUMENT too;
2. run the servicer function (``tf_serving.py``, ``kserve.py``) inside ``app.app_context()``, so it
   shares ``state()``, the checks and the messages of the HTTP routes; ``g.route_label`` and
   ``g.protocol`` make ``record_predictions`` count under the method and ``grpc``;
3. map a refusal to its gRPC status with ``service.errors.grpc_status`` (the one mapping of the
   service's errors), anything unexpected to INTERNAL (logged with its traceback, the client sees
   only the exception's type, as over HTTP);
4. count the call in the metrics: route = the method's path, method ``POST``, status = the code's name.

With an ``API_TOKENS_FILE`` the call's ``authorization`` metadata is checked first (``service/auth.py``:
UNAUTHENTICATED otherwise). With request IDs on (or the access log, or tracing) the call gets its id
from the ``x-request-id`` metadata (or a new one), sends it back in the trailing metadata, and is
recorded as an HTTP request is (``service/request_ids.py``): its log lines, access log line and span.

The function runs where HTTP requests run (service/whole_requests.py): on the event loop's thread (a
prediction is short and holds the GIL anyway; ``bench/peers.py``'s gRPC rows measure it), or with
ENABLE_BATCHING=1 in the same pool of threads, so that the batch scheduler can merge concurrent calls.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from concurrent.futures import Executor
from typing import Callable

import grpc
from flask import Flask, g
from google.protobuf.message import DecodeError

from ..errors import grpc_status
from ..request_ids import ID_METADATA, RequestRecord, arounds, grpc_record, recording
from ..tracing import traced
from ..web import state

log = logging.getLogger(__name__)


def method_handler(app: Flask, route: str, request_type, function: Callable,
                   pool: Executor | None = None) -> grpc.RpcMethodHandler:
    """A handler of raw bytes running ``function(request) -> response message`` (the first request message
    of the stream: a unary call has one): on the event loop, or in ``pool`` (with ENABLE_BATCHING=1, as
    HTTP requests: TensorFlow's batch scheduler merges calls that wait in different threads)."""
    tokens = app.extensions.get("mnist.tokens")  # API_TOKENS_FILE (service/auth.py)
    recorded = app.extensions["mnist"].config.request_ids_on  # request IDs, access log, tracing

    def run(raw, metadata: dict, record: RequestRecord | None) -> tuple[str, str, bytes]:
        started = time.perf_counter()
        code, message, body = "OK", "", b""
        with app.app_context():
            g.route_label, g.protocol = route, "grpc"
            try:
                if tokens is not None:
                    tokens.check(metadata.get("authorization"))
                body = function(_parse(request_type, raw)).SerializeToString()
            except Exception as exc:  # noqa: BLE001 - every failure becomes a status, never a dead call
                code, message = _refusal(exc, route)
            state().metrics.observe_request(route, "POST", code, time.perf_counter() - started, "grpc")
            if record is not None:
                record.status, record.instances, record.bytes_out = code, g.get("instances"), len(body)
        return code, message, body

    async def execute(raw, metadata: dict, record: RequestRecord | None) -> tuple[str, str, bytes]:
        if pool is None:
            return run(raw, metadata, record)
        try:  # in this call's context: its request ID and trace span go with it into the thread
            return await asyncio.get_running_loop().run_in_executor(
                pool, contextvars.copy_context().run, run, raw, metadata, record)
        except RuntimeError:  # the pool is shut down (the worker is stopping): run the call here
            return run(raw, metadata, record)

    async def behavior(requests, context: grpc.aio.ServicerContext) -> bytes:
        raw = await context.read()
        metadata = dict(context.invocation_metadata() or ())
        trailing = ()
        if not recorded:
            code, message, body = await execute(raw, metadata, None)
        else:
            record = grpc_record(route, metadata, context.peer(), raw)
            trailing = ((ID_METADATA, record.id),)
            context.set_trailing_metadata(trailing)
            with recording(record, arounds(app)):
                code, message, body = await execute(raw, metadata, record)
        if code != "OK":
            await context.abort(getattr(grpc.StatusCode, code), message, trailing)
        return body

    return grpc.stream_unary_rpc_method_handler(behavior)


class _Malformed(Exception):
    pass


@traced("parse")
def _parse(request_type, raw):
    if raw is grpc.aio.EOF:
        raise _Malformed(f"no complete {request_type.DESCRIPTOR.full_name} message: the request stream ended "
                         "before its message did (a truncated gRPC frame)")
    try:
        return request_type.FromString(raw)
    except DecodeError as exc:
        raise _Malformed(f"the request is not a valid {request_type.DESCRIPTOR.full_name} message "
                         f"(protobuf): {exc}") from None


def _refusal(exc: Exception, route: str) -> tuple[str, str]:
    """``(gRPC code name, message)`` for a failed call."""
    if isinstance(exc, _Malformed):
        return "INVALID_ARGUMENT", str(exc)
    known = grpc_status(exc)
    if known is not None:
        return known
    log.exception("unexpected error in gRPC call %s", route)
    return "INTERNAL", f"internal server error ({type(exc).__name__}); it was logged"


def generic_handlers(app: Flask, methods: dict, pool: Executor | None = None) -> list[grpc.GenericRpcHandler]:
    """gRPC handlers of ``{service: {method: (request message, function)}}``."""
    return [grpc.method_handlers_generic_handler(service, {
        name: method_handler(app, f"/{service}/{name}", request_type, function, pool)
        for name, (request_type, function) in service_methods.items()})
        for service, service_methods in methods.items()]
