"""The Flask application: ``create_app()`` builds it, with the model loaded and warm.

Run it with gunicorn (one model per worker, loaded after the fork)::

    gunicorn -c service/gunicorn.conf.py "service.app:create_app()"

This module only wires the parts together; each lives in its own module:

- ``POST /predict``                        our API (``service/native.py``)
- ``POST /read``                           every digit of a photo, as a number (``service/reading.py``)
- ``/v1/models/<name>...``                 TensorFlow Serving REST API (``service/tf_serving.py``)
- ``/v2/...``                              Open Inference Protocol / KServe v2 (``service/kserve.py``)
- ``GET /healthz``, ``/readyz``, ``/metrics``  liveness, readiness, Prometheus (``service/probes.py``)
- ``GET /``, ``GET /openapi.json``         the draw page, the OpenAPI 3 description (``service/pages.py``)
- request metrics                          ``Metrics.init_app`` (``service/metrics.py``)
- every error as JSON ``{"error": ...}``   ``service/error_handlers.py``; a traceback never reaches a client
"""

from __future__ import annotations

import logging
from typing import Mapping

from flask import Flask

from . import error_handlers, kserve, native, pages, probes, reading, request_ids, tf_serving
from .config import Config, load_config
from .metrics import Metrics
from .graph_runner import BatchSettings
from .predictor import Predictor, Runtime, configure_tensorflow
from .web import ServiceState

log = logging.getLogger(__name__)

BLUEPRINTS = (native.blueprint, reading.blueprint, tf_serving.blueprint, kserve.blueprint, probes.blueprint, pages.blueprint)


def create_app(config: Mapping | Config | None = None) -> Flask:
    """Build the app: read the configuration, load and warm the newest model, start the poller.

    ``config`` overrides environment variables (a dict of field or variable names, or a Config).
    If no model can be loaded, the app still starts: ``/healthz`` is 200, ``/readyz`` and the
    prediction endpoints 503, and the poller keeps looking for a version.
    """
    settings = config if isinstance(config, Config) else load_config(config)
    _configure_logging(settings)
    configure_tensorflow(settings.tf_num_threads)
    metrics = Metrics(settings.max_batch, settings.max_batch_size)
    predictor = _start_predictor(settings, metrics)

    app = Flask(__name__, static_folder=None)  # bodies arrive within MAX_BODY_BYTES: service/whole_requests.py
    app.extensions["mnist"] = ServiceState(settings, predictor, metrics)
    metrics.init_app(app)
    error_handlers.init_app(app)
    _init_operator_features(app, settings)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    return app


def _init_operator_features(app: Flask, settings: Config) -> None:
    """The features an operator turns on (docs/deployment.md, "Securing it"); off, each is absent."""
    if settings.request_ids_on:
        request_ids.init_app(app)
    if settings.access_log == "json":
        from . import access_log

        access_log.init_app(app)
    if settings.tracing_on:
        from . import tracing

        tracing.init_app(app, settings.otel_service_name)
    if settings.cors_origin_list:
        from . import cors

        cors.init_app(app, settings.cors_origin_list)
    if settings.api_tokens_file:
        from . import auth

        auth.init_app(app, settings.api_tokens_file, bool(settings.auth_probes))


def _configure_logging(settings: Config) -> None:
    root = logging.getLogger()
    created = not root.handlers
    if created:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    if settings.request_ids_on:
        request_ids.install_log_filter(root.handlers, set_format=created)
    logging.getLogger("service").setLevel(logging.INFO)


def _runtime(config: Config, metrics: Metrics) -> Runtime:
    """How versions run: TensorFlow's threads, and TensorFlow Serving's batching if enabled."""
    batching = BatchSettings(config.max_batch_size, config.batch_timeout_micros, config.max_enqueued_batches,
                             config.num_batch_threads) if config.enable_batching else None
    return Runtime(threads=config.tf_num_threads, batching=batching, on_batch=metrics.observe_batch)


def _start_predictor(config: Config, metrics: Metrics) -> Predictor:
    """Load and warm the newest version now (if there is one), then poll for newer ones."""
    predictor = Predictor(config.model_dir, keep_versions=config.keep_versions, runtime=_runtime(config, metrics),
                          on_load=metrics.model_loaded, on_failure=metrics.model_failed)
    predictor.refresh()
    if predictor.ready:
        log.info("ready: serving model %r version %d from %s", config.model_name,
                 predictor.current.version, config.model_dir)
    else:
        log.warning("not ready: %s; polling every %s s", predictor.not_ready_reason(),
                    config.model_poll_seconds or "(never: MODEL_POLL_SECONDS=0)")
    predictor.start_polling(config.model_poll_seconds)
    return predictor
