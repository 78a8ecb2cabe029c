"""The Flask app as an ASGI app that only ever sees whole requests.

gunicorn's asyncio worker (``service/worker.py``) parses requests on an event loop; this adapter
reads each request's body there too, in full, and only then calls the WSGI app (Flask), with the body
in memory. A client that sends its body slowly, or stops halfway, costs a coroutine and a socket
until its deadline, never the time of the code that runs the model, so slow clients cannot starve
fast ones.

The one place that enforces the body limits of HTTP requests (gRPC messages have gRPC's own
``max_receive_message_length``, service/grpc_api/server.py); Flask gets only bodies within them. What
the adapter refuses itself keeps the service's error contract (``errors.error_body``,
``Connection: close``):

- 413 when ``Content-Length`` (or the chunks received so far) exceeds ``max_body_bytes``
  (``MAX_BODY_BYTES``); the rest of the body is read and dropped first, up to :data:`DRAIN_LIMIT`
  bytes, so a client still writing gets the answer instead of a broken pipe;
- 408 when the body has not arrived within ``body_timeout`` seconds (``BODY_TIMEOUT_SECONDS``).

The WSGI environ is built as PEP 3333 says, from the ASGI scope (the ASGI spec's "WSGI
compatibility" section): ``PATH_INFO`` is the URL-decoded path as latin-1, headers become
``HTTP_*`` keys, ``wsgi.input`` holds the whole body and ``CONTENT_LENGTH`` its size.

Why not a2wsgi's or asgiref's WSGI adapter: both hand every call to a thread pool (a2wsgi: up to 10
threads by default) and let the app read the body while it arrives, so a slow body holds a thread, and
neither has a deadline for the whole body. This one reads the body on the loop under a total deadline and
can run the app on the loop itself (``threads=0``); what the hand-off to a pool thread costs per call is
measured by ``python -m bench.hot_paths`` (rows ``inline_*``).
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from .errors import ERROR_CONTENT_TYPE, body_too_large_message, error_body
from .request_ids import RECORD_KEY

log = logging.getLogger(__name__)

DRAIN_LIMIT = 32 * 1024 * 1024  # a refused body is read (and dropped) up to this size before the 413
JSON_ERROR_HEADERS = [(b"content-type", ERROR_CONTENT_TYPE.encode()), (b"connection", b"close")]


class WholeRequests:
    """``WholeRequests(wsgi_app, threads, max_body_bytes, body_timeout)``: an ASGI 3 application.

    ``threads=0``: the WSGI app runs on the event loop's own thread, one request at a time. Python
    runs one thread at a time anyway, and the model call is short next to handing it to a pool thread
    and back, so this is the fastest way: no hand-off between threads per request (measured by
    ``python -m bench.hot_paths``, rows ``inline_*``). ``threads > 0``: a pool of that many
    threads, for apps whose calls wait (TensorFlow's batch scheduler merges the predictions of
    requests waiting in different threads).
    """

    def __init__(self, wsgi_app, *, threads: int, max_body_bytes: int, body_timeout: float):
        self.wsgi_app = wsgi_app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="wsgi") if threads else None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:  # websocket: not offered
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive, send):
        """Nothing to start or stop: the Flask app was built (model loaded) before the worker serves."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.pool is not None:
                    self.pool.shutdown(wait=False)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope, receive, send):
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            if declared <= DRAIN_LIMIT:  # larger ones are not waited for: answered at once
                await self._drain(receive, declared)
            return await _send_error(send, scope, 413, body_too_large_message(declared, self.max_body_bytes))
        try:
            body = await self._read_body(receive)
        except _BodyTooLarge:
            return await _send_error(send, scope, 413, body_too_large_message(None, self.max_body_bytes))
        except asyncio.TimeoutError:
            return await _send_error(send, scope, 408, f"request body not received within {self.body_timeout:g} "
                                                       "seconds (BODY_TIMEOUT_SECONDS): send the whole body at once")
        except _Disconnected:
            return
        environ = wsgi_environ(scope, body)
        if self.pool is None:
            status, headers, content = call_wsgi(self.wsgi_app, environ)
        else:  # in this request's context: its request ID and trace span go with it into the thread
            status, headers, content = await asyncio.get_running_loop().run_in_executor(
                self.pool, contextvars.copy_context().run, call_wsgi, self.wsgi_app, environ)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _read_body(self, receive) -> bytes:
        """The whole body, within ``max_body_bytes`` and ``body_timeout`` seconds."""
        deadline = time.monotonic() + self.body_timeout
        chunks, size = [], 0
        while True:
            message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._drain(receive, DRAIN_LIMIT - size)
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _drain(self, receive, limit: int) -> None:
        """Read and drop up to ``limit`` more body bytes, within ``body_timeout``, best effort."""
        deadline = time.monotonic() + self.body_timeout
        received = 0
        try:
            while received <= min(limit, DRAIN_LIMIT):
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
                received += len(message.get("body", b""))
                if message["type"] == "http.disconnect" or not message.get("more_body", False):
                    return
        except asyncio.TimeoutError:
            return


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


def _content_length(scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # gunicorn's parser refuses such requests before they get here
    return None


async def _send_error(send, scope, status: int, message: str) -> None:
    record = scope.get(RECORD_KEY)
    body = error_body(message, None if record is None else record.id)
    await send({"type": "http.response.start", "status": status,
                "headers": [*JSON_ERROR_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def wsgi_environ(scope, body: bytes) -> dict:
    """The PEP 3333 environ of an ASGI HTTP ``scope`` whose whole ``body`` has been read."""
    server_name, server_port = scope.get("server") or ("localhost", 80)
    environ = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        "PATH_INFO": scope["path"].encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server_name,
        "SERVER_PORT": str(server_port),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if scope.get("client"):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = scope["client"][0], str(scope["client"][1])
    if RECORD_KEY in scope:  # request IDs on (service/request_ids.py)
        environ[RECORD_KEY] = scope[RECORD_KEY]
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").upper().replace("-", "_"), raw_value.decode("latin-1")
        if name == "CONTENT_LENGTH" or name == "TRANSFER_ENCODING":
            continue  # the body is whole: its length is len(body), however it was framed
        key = name if name == "CONTENT_TYPE" else f"HTTP_{name}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def call_wsgi(app, environ: dict) -> tuple[int, list, bytes]:
    """Call a WSGI app; return its status, headers (ASGI form) and whole body."""
    started = {}

    def start_response(status, headers, exc_info=None):
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started["status"] = int(status.split(" ", 1)[0])
        started["headers"] = [(name.lower().encode("latin-1"), value.encode("latin-1"))
                              for name, value in headers]
        return lambda data: None  # the legacy write() callable; Flask never uses it

    result = app(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return started["status"], started["headers"], content
