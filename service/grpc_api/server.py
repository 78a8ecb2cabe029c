"""The gRPC server of one gunicorn worker: a ``grpc.aio`` server on the worker's own event loop.

``service/worker.py`` creates it after the fork, once the worker's Flask app (and model) is loaded, and
only then imports this module: the gunicorn master never imports or initialises gRPC (grpc's fork
support covers clients only; ``tests/service/test_grpc_server.py`` checks the master's memory map).
Every worker binds ``GRPC_PORT`` on the host gunicorn binds, with ``SO_REUSEPORT`` (grpc's own
multiprocessing example): the kernel spreads new connections over the workers' listening sockets, and
a replaced worker's server simply binds again.

Served: ``tensorflow.serving.PredictionService`` and ``ModelService`` (``tf_serving.py``),
``inference.GRPCInferenceService`` (``kserve.py``), ``grpc.health.v1.Health`` (:class:`Health`) and
server reflection (``grpcurl list`` works without proto files). Messages over ``MAX_BODY_BYTES`` are
refused by gRPC itself (RESOURCE_EXHAUSTED, "Received message larger than max"). With
``TLS_CERT_FILE``/``TLS_KEY_FILE`` it serves TLS with the HTTP port's certificate.

On the event loop, not in a thread of its own: requests of both protocols then run one at a time on
one thread, as HTTP requests already do, with no hand-off between threads per call and no contention for
the GIL between them; the gRPC rows of ``bench/peers.py`` measure the result against KServe. The
alternative was measured too, for gRPC alone in one process (the same handler code in a sync
``grpc.server`` with a pool of 4 threads, h2load, 3 rounds): the thread pool answered faster at c=8 and
on 64-image batches, the same at c=1. A load of both protocols at once was not measured: measure it
before moving gRPC to a thread. ``stop(grace)`` (SIGTERM) refuses new calls and lets the calls in flight
finish within gunicorn's ``graceful_timeout``, beside the HTTP connections' drain.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

import grpc
from flask import Flask
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..config import Config
from ..errors import RequestError
from . import kserve, tf_serving
from .calls import generic_handlers

log = logging.getLogger(__name__)

METHODS = {**tf_serving.METHODS, **kserve.METHODS}
HEALTH_REFRESH_SECONDS = 1.0  # Watch subscribers hear of a model's arrival within this time


class Health(health.aio.HealthServicer):
    """``grpc.health.v1.Health``: SERVING once a model version is loaded, NOT_SERVING before (and while
    the worker shuts down), for the server as a whole (``""``) and each of its services."""

    def __init__(self, predictor, services, tokens=None):
        super().__init__()
        self.predictor = predictor
        self.services = ("", *services)
        self.tokens = tokens  # with AUTH_PROBES=1: the API's TokenFile (service/auth.py)

    async def refresh(self) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if self.predictor.ready \
            else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in self.services:
            await self.set(service, status)

    async def Check(self, request, context):  # noqa: N802 (gRPC's method name)
        await self._authorise(context)
        await self.refresh()
        return await super().Check(request, context)

    async def Watch(self, request, context):  # noqa: N802
        await self._authorise(context)
        return await super().Watch(request, context)

    async def _authorise(self, context) -> None:
        """With AUTH_PROBES=1, a probe needs a token too (UNAUTHENTICATED otherwise)."""
        if self.tokens is not None:
            try:
                self.tokens.check(dict(context.invocation_metadata() or ()).get("authorization"))
            except RequestError as exc:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)

    async def keep_fresh(self) -> None:
        """For Watch: the status follows the model (the first version appears) without a Check."""
        while True:
            await self.refresh()
            await asyncio.sleep(HEALTH_REFRESH_SECONDS)


def tls_credentials(cert_file: str, key_file: str) -> grpc.ServerCredentials | None:
    """With TLS_CERT_FILE and TLS_KEY_FILE, gRPC serves TLS with the HTTP port's certificate (None: plain)."""
    if not cert_file:
        return None
    with open(key_file, "rb") as key, open(cert_file, "rb") as chain:
        return grpc.ssl_server_credentials([(key.read(), chain.read())])


class GrpcServer:
    """``GrpcServer(app, host, config, pool)``: ``await start()`` in the worker, ``await stop(grace)`` at its
    end. ``pool``: the threads that run the calls (the HTTP requests' pool with ENABLE_BATCHING=1), or None:
    the event loop runs them."""

    def __init__(self, app: Flask, host: str, config: Config, pool: Executor | None = None):
        self.app = app
        self.pool = pool
        self.address = f"{host}:{config.grpc_port}"
        self.max_message = config.max_body_bytes
        self.auth_probes = bool(config.auth_probes)
        self.credentials = tls_credentials(config.tls_cert_file, config.tls_key_file)
        self.server: grpc.aio.Server | None = None
        self.health: Health | None = None
        self._refresher: asyncio.Task | None = None

    async def start(self) -> None:
        """Build, bind (``RuntimeError`` naming the address if that fails) and start the server."""
        server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", self.max_message),
            ("grpc.max_send_message_length", -1),
        ])
        server.add_generic_rpc_handlers(generic_handlers(self.app, METHODS, self.pool))
        probe_tokens = self.app.extensions.get("mnist.tokens") if self.auth_probes else None
        self.health = Health(self.app.extensions["mnist"].predictor, METHODS, probe_tokens)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((*METHODS, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        try:
            if self.credentials is None:
                server.add_insecure_port(self.address)
            else:
                server.add_secure_port(self.address, self.credentials)
        except RuntimeError as exc:  # grpc's "Failed to bind to address ..."
            raise RuntimeError(f"gRPC could not bind {self.address} (GRPC_PORT): {exc}") from None
        await server.start()
        await self.health.refresh()
        self._refresher = asyncio.get_running_loop().create_task(self.health.keep_fresh())
        self.server = server
        log.info("gRPC server listening on %s (%s)", self.address, ", ".join(METHODS))

    async def stop(self, grace: float) -> None:
        """No new calls; the calls in flight get up to ``grace`` seconds to finish."""
        if self.server is None:
            return
        self._refresher.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        log.info("gRPC server stopped")
