"""The Flask application: ``create_app()`` builds it, with the model loaded and warm.

Run it with gunicorn (one model per worker, loaded after the fork)::

    gunicorn -c service/gunicorn.conf.py "service.app:create_app()"

Endpoints (details in ``/openapi.json``):

- ``POST /predict``                        our API: JSON pixels, images, base64 images in JSON
- ``/v1/models/<name>...``                 TensorFlow Serving REST API (``service/tf_serving.py``)
- ``/v2/...``                              Open Inference Protocol / KServe v2 (``service/kserve.py``)
- ``GET /healthz``, ``GET /readyz``        liveness; readiness (503 until a model is loaded and warm)
- ``GET /metrics``                         Prometheus (multiprocess under gunicorn)
- ``GET /openapi.json``                    OpenAPI 3 description
- ``GET /``                                a page to draw a digit and see the prediction

Every error is JSON ``{"error": "..."}`` with a fitting status; a traceback never reaches a client.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Mapping

from flask import Flask, Response, g, request, send_file
from werkzeug.exceptions import HTTPException

from . import kserve, native, tf_serving
from .config import Config, load_config
from .inputs import InputError
from .metrics import Metrics
from .openapi import build_spec
from .predictor import ModelNotReady, Predictor, VersionNotFound, configure_tensorflow
from .web import ServiceState, error_response, json_response, route_label, state

log = logging.getLogger("service.app")

STATIC = Path(__file__).parent / "static"
DRAIN_LIMIT = 32 * 1024 * 1024  # read (and drop) oversized bodies up to this size before a 413
RETRY_AFTER_SECONDS = "5"


def create_app(config: Mapping | Config | None = None) -> Flask:
    """Build the app: read the configuration, load and warm the newest model, start the poller.

    ``config`` overrides environment variables (a dict of field or variable names, or a Config).
    If no model can be loaded, the app still starts: ``/healthz`` is 200, ``/readyz`` and the
    prediction endpoints 503, and the poller keeps looking for a version.
    """
    cfg = config if isinstance(config, Config) else load_config(config)
    _configure_logging()
    configure_tensorflow(cfg.tf_num_threads)
    metrics = Metrics(cfg.max_batch)
    predictor = Predictor(cfg.model_dir, keep_versions=cfg.keep_versions,
                          on_load=metrics.model_loaded, on_failure=metrics.model_failed)
    predictor.refresh()
    if predictor.ready:
        log.info("ready: serving model %r version %d from %s", cfg.model_name,
                 predictor.current.version, cfg.model_dir)
    else:
        log.warning("not ready: %s; polling every %s s", predictor.not_ready_reason(),
                    cfg.model_poll_seconds or "(never: MODEL_POLL_SECONDS=0)")
    predictor.start_polling(cfg.model_poll_seconds)

    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    app.extensions["mnist"] = ServiceState(cfg, predictor, metrics)
    app.register_blueprint(native.blueprint)
    app.register_blueprint(tf_serving.blueprint)
    app.register_blueprint(kserve.blueprint)
    _add_service_routes(app)
    _add_error_handlers(app)
    _add_request_metrics(app)
    return app


def _configure_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    logging.getLogger("service").setLevel(logging.INFO)


def _add_service_routes(app: Flask) -> None:
    @app.get("/healthz")
    def healthz():
        return json_response({"status": "alive"})

    @app.get("/readyz")
    def readyz():
        st = state()
        model = st.predictor.current
        if model is None:
            return error_response(st.predictor.not_ready_reason(), 503,
                                  {"Retry-After": RETRY_AFTER_SECONDS})
        return json_response({"status": "ready",
                              "model": {"name": st.config.model_name, "version": model.version}})

    @app.get("/metrics")
    def metrics():
        return Response(state().metrics.render(), mimetype=None,
                        headers={"Content-Type": state().metrics.content_type})

    @app.get("/openapi.json")
    def openapi():
        return json_response(build_spec(state().config))

    @app.get("/")
    def index():
        response = send_file(STATIC / "index.html", mimetype="text/html", max_age=0)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
            "img-src 'self' data: blob:; connect-src 'self'")
        return response


def _add_error_handlers(app: Flask) -> None:
    @app.errorhandler(InputError)
    def input_error(exc: InputError):
        if exc.status == 413:
            _drain_body()
        return error_response(exc.message, exc.status)

    @app.errorhandler(ModelNotReady)
    def not_ready(exc: ModelNotReady):
        return error_response(f"{exc}; retry later", 503, {"Retry-After": RETRY_AFTER_SECONDS})

    @app.errorhandler(VersionNotFound)
    def version_not_found(exc: VersionNotFound):
        return error_response(str(exc), 404)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        status = exc.code or 500
        headers = {}
        if status == 404:
            message = (f"no such endpoint: {request.method} {request.path}; "
                       "see GET /openapi.json for the API")
        elif status == 405:
            allowed = sorted(set(getattr(exc, "valid_methods", None) or []) - {"HEAD", "OPTIONS"})
            message = (f"method {request.method} is not allowed on {request.path}; "
                       f"use {' or '.join(allowed) or 'another method'}")
            headers["Allow"] = ", ".join(getattr(exc, "valid_methods", None) or allowed)
        elif status == 413:
            limit = app.config["MAX_CONTENT_LENGTH"]
            size = f"{request.content_length} bytes" if request.content_length else "over the limit"
            message = (f"request body too large: {size}; at most {limit} bytes (MAX_BODY_BYTES) are "
                       "accepted: send fewer instances per request or a smaller image")
            _drain_body()
            headers["Connection"] = "close"
        else:
            message = f"{exc.name}: {exc.description}"
        return error_response(message, status, headers)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(f"internal server error ({type(exc).__name__}); it was logged", 500)


def _drain_body() -> None:
    """Read what is left of a refused body so the client gets the 413 instead of a broken pipe."""
    length = request.content_length
    if length is None and "wsgi.input_terminated" in request.environ:
        length = DRAIN_LIMIT  # chunked: read to the end, up to the cap
    if not length or length > DRAIN_LIMIT:
        return
    stream = request.environ.get("wsgi.input")
    try:
        while length > 0 and stream is not None:
            chunk = stream.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)
    except Exception:  # noqa: BLE001 - best effort only
        pass


def _add_request_metrics(app: Flask) -> None:
    @app.before_request
    def start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def observe(response):
        started = g.get("started")
        if started is not None:
            state().metrics.observe_request(route_label(), request.method, response.status_code,
                                            time.perf_counter() - started)
        return response
