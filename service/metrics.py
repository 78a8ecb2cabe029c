"""Prometheus metrics, in gunicorn's multiprocess mode when ``PROMETHEUS_MULTIPROC_DIR`` is set.

Under gunicorn every worker writes its samples to files in that folder (set up and cleaned by
``service/gunicorn.conf.py``), and ``/metrics`` on any worker aggregates all of them with
``MultiProcessCollector``. Without the variable (tests, ``flask run``) each app has its own registry.

Names: ``mnist_http_requests_total{route,method,status,protocol}``,
``mnist_http_request_duration_seconds{route,protocol}``, ``mnist_instances_per_request{route,protocol}``, ``mnist_predictions_total{digit}``, ``mnist_model_version``
(one sample per live worker: ``pid`` label), ``mnist_model_ready`` (per live worker),
``mnist_model_reloads_total{outcome}``.

``protocol`` is ``http`` or ``grpc``. A gRPC call (service/grpc_api) counts with its method's path as the
route (``/tensorflow.serving.PredictionService/Predict``), ``POST`` as the method (as on the wire) and
its gRPC status code name as the status (``OK``, ``INVALID_ARGUMENT`` ...).

``Metrics.init_app(app)`` (Flask extension style) times and counts every request of an app.
"""

from __future__ import annotations

import os
import time

import numpy as np
from flask import Flask, Response, g, request
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest)

from .contract import CLASSES

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1.0, 2.5, 5.0)


def batch_size_buckets(max_batch: int) -> list[int]:
    """Powers of two below ``max_batch``, then ``max_batch``: 1, 2, 4, ..., 128, 256."""
    buckets, size = [], 1
    while size < max_batch:
        buckets.append(size)
        size *= 2
    buckets.append(max_batch)
    return buckets


def multiprocess_dir() -> str | None:
    """The folder of gunicorn's workers' sample files, or None outside gunicorn (one registry)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


class Metrics:
    """The service's metrics; one instance per app."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, max_batch: int = 256, max_batch_size: int = 256):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("mnist_http_requests", "Requests by route, method, status and protocol "
                                "(http or grpc)", ["route", "method", "status", "protocol"], registry=registry)
        self.latency = Histogram("mnist_http_request_duration_seconds",
                                 "Time from request received to response ready, by route and protocol",
                                 ["route", "protocol"], buckets=LATENCY_BUCKETS, registry=registry)
        self.instances = Histogram("mnist_instances_per_request", "Instances per prediction request",
                                   ["route", "protocol"], buckets=batch_size_buckets(max_batch), registry=registry)
        self.predictions = Counter("mnist_predictions", "Predicted digits", ["digit"], registry=registry)
        self.batches = Histogram("mnist_batch_size", "Rows per model execution with ENABLE_BATCHING=1 "
                                 "(concurrent requests merged by TensorFlow's batch scheduler)",
                                 buckets=batch_size_buckets(max_batch_size), registry=registry)
        self.model_version = Gauge("mnist_model_version", "Model version served by each worker",
                                   multiprocess_mode="liveall", registry=registry)
        self.model_ready = Gauge("mnist_model_ready", "1 if the worker has a model loaded and warm",
                                 multiprocess_mode="liveall", registry=registry)
        self.reloads = Counter("mnist_model_reloads", "Hot reloads of a newer model version by outcome",
                               ["outcome"], registry=registry)
        self._digit_counters = [self.predictions.labels(digit=str(digit)) for digit in range(CLASSES)]
        for outcome in ("success", "failure"):
            self.reloads.labels(outcome=outcome)
        self.model_ready.set(0)

    # ---- Flask extension ---------------------------------------------------------------------
    def init_app(self, app: Flask) -> None:
        """Time every request of ``app`` and count it by route, method and status."""
        app.before_request(_start_timer)
        app.after_request(self._observe_response)

    def _observe_response(self, response: Response) -> Response:
        """After each request (errors included): count it and its duration under its route."""
        started = g.get("started")
        if started is not None:
            self.observe_request(route_label(), request.method, response.status_code,
                                 time.perf_counter() - started)
        return response

    # ---- observations ------------------------------------------------------------------------
    def observe_request(self, route: str, method: str, status: int | str, seconds: float,
                        protocol: str = "http") -> None:
        self.requests.labels(route=route, method=method, status=str(status), protocol=protocol).inc()
        self.latency.labels(route=route, protocol=protocol).observe(seconds)

    def observe_predictions(self, route: str, digits, protocol: str = "http") -> None:
        self.instances.labels(route=route, protocol=protocol).observe(len(digits))
        for digit, count in enumerate(np.bincount(digits, minlength=CLASSES)[:CLASSES]):
            if count:
                self._digit_counters[digit].inc(int(count))

    def observe_batch(self, size: int) -> None:
        self.batches.observe(size)

    def model_loaded(self, model, initial: bool) -> None:
        self.model_version.set(model.version)
        self.model_ready.set(1)
        if not initial:
            self.reloads.labels(outcome="success").inc()

    def model_failed(self, version: int, error: str) -> None:
        self.reloads.labels(outcome="failure").inc()

    # ---- exposition --------------------------------------------------------------------------
    def render(self) -> bytes:
        if multiprocess_dir():
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def _start_timer() -> None:
    """Before each request: when it started, for the duration histogram."""
    g.started = time.perf_counter()


def set_route(label: str) -> None:
    """The route label for metrics when the URL rule itself is too generic."""
    g.route_label = label


def route_label() -> str:
    """The metrics label of this request: ``set_route``'s, else the URL rule, else ``<unmatched>``."""
    return g.get("route_label") or (request.url_rule.rule if request.url_rule else "<unmatched>")
