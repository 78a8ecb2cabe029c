"""The gunicorn worker of the service: gunicorn's asyncio (``asgi``) worker serving the Flask app whole.

``service/gunicorn.conf.py`` selects it (``worker_class = "service.worker.Worker"``). Each worker:

- loads the Flask app (``create_app()``: the model is loaded and warmed before the worker serves);
- parses requests on an asyncio event loop (uvloop when installed, gunicorn's C parser
  ``gunicorn_h1c`` when installed), so idle keep-alive connections and clients that send their
  request slowly cost a socket and a few kilobytes, not a thread;
- hands each *whole* request (``service/whole_requests.py``) to Flask: on the event loop's thread
  (measured fastest), or with ``ENABLE_BATCHING=1`` in a pool of ``GUNICORN_THREADS`` threads whose
  predictions TensorFlow's batch scheduler merges;
- serves gRPC on ``GRPC_PORT`` (unless 0) on the same event loop (``service/grpc_api/server.py``),
  created after the fork and after the model loaded; SIGTERM drains its calls beside the HTTP ones.

Slow clients are bounded in time, and every refusal keeps the service's error contract (JSON
``{"error": ...}``):

- a request's headers must be complete within ``KEEPALIVE_SECONDS`` of the connection opening (or of
  the previous response): gunicorn arms that timer only between requests, :class:`Protocol` arms it
  for the first request too; a client that sent part of a request by then gets a 408;
- its body must arrive within ``BODY_TIMEOUT_SECONDS`` (``whole_requests``: 408), and be at most
  ``MAX_BODY_BYTES`` (413);
- requests gunicorn's parser refuses (malformed, request line or headers too long) get their status
  (400, 414, 431, 501) with a JSON body instead of gunicorn's plain text.

:class:`Worker` overrides gunicorn's ``_serve`` and ``_shutdown`` coroutines to start and stop the gRPC
server, and ``_get_ssl_context`` so that a TLS setting that fails stops the worker instead of leaving the
port in plain HTTP. The two overrides of :class:`Protocol` use gunicorn's internal ``ASGIProtocol`` methods
(``_arm_keepalive_timer``, ``_keepalive_timeout``, ``_send_error_response``) of the pinned gunicorn
version; ``tests/service/test_worker.py`` checks each behaviour against a real server.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from gunicorn import sock as gunicorn_sock
from gunicorn.arbiter import Arbiter
from gunicorn.asgi import protocol as asgi_protocol
from gunicorn.workers import gasgi

from . import request_ids
from .asgi import asgi_app
from .balancing import TABLE, balancing_loop_class
from .config import load_config
from .errors import ERROR_CONTENT_TYPE, error_body


class Protocol(asgi_protocol.ASGIProtocol):
    """gunicorn's HTTP/1.1 protocol with a deadline on every request's headers and JSON errors."""

    def connection_made(self, transport):
        super().connection_made(transport)
        self._request_started = False
        self._arm_keepalive_timer()  # gunicorn waits for the first request's headers forever

    def connection_lost(self, exc):
        TABLE.add(self.worker.connection_slot, -1)  # BalancedListener counted it when it accepted
        super().connection_lost(exc)

    def data_received(self, data):
        if data:
            self._request_started = True
        super().data_received(data)

    def _on_message_complete(self):
        self._request_started = False  # bytes from now on start the next request
        super()._on_message_complete()

    def _keepalive_timeout(self):
        """Close an idle connection; answer 408 first if the client had started a request."""
        if self._request_started and not self._closed:
            self._send_error_response(408, "request headers not received within "
                                           f"{self._keepalive:g} seconds (KEEPALIVE_SECONDS)")
        super()._keepalive_timeout()

    def _send_error_response(self, status, message, extra_headers=()):
        """gunicorn's error response, with the service's body (``errors.error_body``). No request was
        read, so with request IDs on the id is a new one."""
        request_id = request_ids.request_id() if self.worker.request_ids_on else None
        body = error_body(message, request_id)
        if request_id is not None:
            extra_headers = (*extra_headers, (request_ids.HEADER, request_id))
        reason = HTTPStatus(status).phrase
        head = "".join([f"HTTP/1.1 {status} {reason}\r\n", f"Content-Type: {ERROR_CONTENT_TYPE}\r\n",
                        f"Content-Length: {len(body)}\r\n",
                        *(f"{name}: {value}\r\n" for name, value in extra_headers),
                        "Connection: close\r\n\r\n"])
        self._safe_write(head.encode("latin-1") + body)


class Worker(gasgi.ASGIWorker):
    """gunicorn's ``asgi`` worker running the WSGI app of the configuration through
    :class:`~service.whole_requests.WholeRequests` on :class:`Protocol` connections, accepting its
    share of the connections (``service/balancing.py``)."""

    def _setup_event_loop(self):
        super()._setup_event_loop()  # uvloop when installed, else asyncio's
        loop_class = type(self.loop)
        self.loop.close()
        self.loop = balancing_loop_class(loop_class)()
        self.loop.connection_slot = self.connection_slot = TABLE.claim(self.age)
        self.loop.tls_timeout = self.cfg.keepalive  # with TLS: the handshake is due as headers are
        asyncio.set_event_loop(self.loop)

    @classmethod
    def check_config(cls, cfg, log):
        pass  # the ASGI worker warns that it ignores `threads`: this one uses them for the pool

    grpc_server = None
    request_ids_on = False

    def load_wsgi(self):
        super().load_wsgi()  # the configured app: the Flask app of create_app()
        self.flask_app = self.asgi
        settings = load_config()
        self.request_ids_on = settings.request_ids_on
        self.asgi, self.whole_requests = asgi_app(self.flask_app, settings)

    def run(self):
        gasgi.ASGIProtocol = Protocol  # gasgi builds its servers with this module-level name
        super().run()

    async def _serve(self):
        """gunicorn's serving loop, with the gRPC server started first (``GRPC_PORT``, 0: none)."""
        settings = load_config()
        if settings.grpc_port:
            from .grpc_api.server import GrpcServer  # here, in the worker: gRPC never enters the master

            self.grpc_server = GrpcServer(self.flask_app, self._grpc_host(), settings, self.whole_requests.pool)
            try:
                await self.grpc_server.start()
            except RuntimeError as exc:
                self.log.error("%s", exc)
                raise SystemExit(Arbiter.WORKER_BOOT_ERROR) from None  # the master stops: a port clash is not transient
        await super()._serve()

    def _get_ssl_context(self):
        """gunicorn's TLS context; if it cannot be made, the worker stops (gunicorn would log the error
        and serve plain HTTP on the port that was meant to be TLS)."""
        if not self.cfg.is_ssl:
            return None
        try:
            return gunicorn_sock.ssl_context(self.cfg)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self.log.error("TLS (TLS_CERT_FILE, TLS_KEY_FILE): %s", exc)
            raise SystemExit(Arbiter.WORKER_BOOT_ERROR) from None

    def _grpc_host(self) -> str:
        """The host of gunicorn's first bind address (``0.0.0.0``, ``127.0.0.1``, ``[::]``), for gRPC too."""
        host, _, port = self.cfg.bind[0].rpartition(":") if self.cfg.bind else ("", "", "")
        return host if host and port.isdigit() else "0.0.0.0"

    async def _shutdown(self):
        """SIGTERM: the gRPC calls in flight drain beside the HTTP connections, within ``graceful_timeout``."""
        if self.grpc_server is None:
            return await super()._shutdown()
        grace = 0 if self._quick_shutdown else self.cfg.graceful_timeout
        await asyncio.gather(self.grpc_server.stop(grace), super()._shutdown())
