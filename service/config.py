"""Service configuration: environment variables with defaults, overridable per app (tests).

The one source of the service's settings: ``create_app`` reads it in each worker, and
``service/gunicorn.conf.py`` reads it in the gunicorn master for the server's own settings. Every
value is checked when it is read; a bad one is a ``ValueError`` naming the variable. Stdlib only:
the gunicorn master imports this module, and must never import TensorFlow or Flask.

======================  =================  ================================================================
Variable                Default            Meaning
======================  =================  ================================================================
``MODEL_DIR``           ``exports/mnist``  the export base: ``<MODEL_DIR>/<version>/`` folders
``MODEL_NAME``          ``mnist``          the name clients use in ``/v1/models/<name>`` etc.
``PORT``                ``8000``           listening port, 1-65535 (gunicorn binds ``0.0.0.0:$PORT``)
``GRPC_PORT``           ``8500``           gRPC port (TF Serving's PredictionService, the Open Inference
                                           Protocol, health, reflection: service/grpc_api), on the host
                                           gunicorn binds, shared by every worker; 0: no gRPC
``WEB_CONCURRENCY``     ``2``              gunicorn workers, at least 1
``GUNICORN_THREADS``    ``16``             with ENABLE_BATCHING=1: threads per worker whose predictions are
                                           merged into batches (without batching a worker runs requests on
                                           its event loop: service/whole_requests.py), at least 1
``LOG_LEVEL``           ``info``           gunicorn's log level: debug, info, warning, error or critical
``MAX_BATCH``           ``256``            instances per request (more: 413)
``MAX_BODY_BYTES``      ``8388608``        request body limit, 8 MiB: a phone's 4-6 MB photo fits (more: 413)
``MODEL_POLL_SECONDS``  ``10``             how often each worker looks for a newer version; 0: never
``TF_NUM_THREADS``      ``1``              TensorFlow intra-op and inter-op threads per worker
``MAX_IMAGE_PIXELS``    ``16777216``       largest decoded image (width x height) accepted (more: 413)
``KEEP_VERSIONS``       ``2``              loaded versions kept in memory (current + previous)
``KEEPALIVE_SECONDS``   ``5``              how long an idle connection stays open, and how long a client
                                           may take to send a request's headers (then 408), at least 1
``BODY_TIMEOUT_SECONDS`` ``10``            how long a client may take to send a request's body (then 408)
``ENABLE_BATCHING``     ``0``              1: merge concurrent predictions into batches (TensorFlow's
                                           batch scheduler, as TensorFlow Serving's --enable_batching)
``MAX_BATCH_SIZE``      ``256``            rows per merged batch; MAX_BATCH must not exceed it
``BATCH_TIMEOUT_MICROS`` ``500``           longest wait for a batch to fill, in microseconds
``MAX_ENQUEUED_BATCHES`` ``100``           batches that may wait; beyond, requests get 503
``NUM_BATCH_THREADS``   ``1``              threads that execute batches, per worker
``REQUEST_IDS``         ``0``              1: every HTTP request gets an id (its X-Request-Id, sanitised, or
                                           a new one), echoed in the response, its error body and its log
                                           lines (service/request_ids.py); on by itself with
                                           ACCESS_LOG=json or tracing
``ACCESS_LOG``          ``off``            json: one JSON line per request (HTTP and gRPC) on standard
                                           output: time, id, method, route, status, duration, instances,
                                           bytes in and out, client (service/access_log.py)
``TLS_CERT_FILE``       (none)             with TLS_KEY_FILE: HTTPS and gRPC over TLS (1.2 at least) with
``TLS_KEY_FILE``        (none)             this certificate (chain, PEM) and its private key (PEM); both
                                           or neither (service/gunicorn.conf.py)
``OTEL_EXPORTER_OTLP_ENDPOINT`` (none)     OpenTelemetry's: set, every request is traced (service/tracing.py;
                                           needs ``pip install -r requirements-tracing.txt``); the other
                                           OTEL_* variables are read by OpenTelemetry itself
``OTEL_SERVICE_NAME``   ``mnist-digits``   the service's name in the traces
``CORS_ORIGINS``        (none)             origins whose pages may call the API (``https://a.example,
                                           http://localhost:3000``, comma or space separated), or ``*``:
                                           any (service/cors.py)
``API_TOKENS_FILE``     (none)             a file of bearer tokens, one a line: then every API route (HTTP
                                           and gRPC) needs one; read again when it changes (service/auth.py)
``AUTH_PROBES``         ``0``              1: the probes (/healthz, /readyz, /metrics, /v2/health/*, gRPC
                                           health) need a token too
======================  =================  ================================================================

Every operator feature (request IDs, CORS, tokens, TLS, the JSON access log, tracing) is off by
default; off, it adds nothing to a request (its module is not even imported).
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import ssl
from dataclasses import dataclass, fields, replace
from typing import Mapping

MIB = 1024 * 1024
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")  # gunicorn's (glogging.Logger.LOG_LEVELS)
ACCESS_LOG_MODES = ("off", "json")
ORIGIN = re.compile(r"^https?://([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")
MAX_PORT = 65535


@dataclass(frozen=True)
class Config:
    """Everything the service needs to know; build it with :func:`load_config`."""

    model_dir: str = "exports/mnist"
    model_name: str = "mnist"
    port: int = 8000  # gunicorn only (service/gunicorn.conf.py), like the next three
    grpc_port: int = 8500  # 0: off (service/worker.py starts service/grpc_api in each worker)
    web_concurrency: int = 2
    threads: int = 16
    log_level: str = "info"
    max_batch: int = 256
    max_body_bytes: int = 8 * MIB
    model_poll_seconds: float = 10.0
    tf_num_threads: int = 1
    max_image_pixels: int = 4096 * 4096
    keep_versions: int = 2
    keepalive_seconds: int = 5  # gunicorn only (service/gunicorn.conf.py, service/worker.py)
    body_timeout_seconds: float = 10.0
    enable_batching: int = 0  # TensorFlow Serving's batching parameters, under its names
    max_batch_size: int = 256
    batch_timeout_micros: int = 500
    max_enqueued_batches: int = 100
    num_batch_threads: int = 1
    request_ids: int = 0  # service/request_ids.py
    access_log: str = "off"  # service/access_log.py
    api_tokens_file: str = ""  # service/auth.py
    cors_origins: str = ""  # service/cors.py
    tls_cert_file: str = ""  # gunicorn's certfile (service/gunicorn.conf.py) and gRPC's (grpc_api/server.py)
    tls_key_file: str = ""
    otel_exporter_otlp_endpoint: str = ""  # OpenTelemetry's own variables (service/tracing.py)
    otel_service_name: str = "mnist-digits"
    auth_probes: int = 0

    @property
    def request_ids_on(self) -> bool:
        """Request IDs, asked for or needed by the features that record them."""
        return bool(self.request_ids) or self.access_log == "json" or self.tracing_on

    @property
    def tracing_on(self) -> bool:
        return bool(self.otel_exporter_otlp_endpoint)

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """``CORS_ORIGINS`` as a tuple (empty: CORS off)."""
        return tuple(self.cors_origins.replace(",", " ").split())


# environment variable -> field name
ENV_VARS = {
    "MODEL_DIR": "model_dir",
    "MODEL_NAME": "model_name",
    "PORT": "port",
    "GRPC_PORT": "grpc_port",
    "WEB_CONCURRENCY": "web_concurrency",
    "GUNICORN_THREADS": "threads",
    "LOG_LEVEL": "log_level",
    "MAX_BATCH": "max_batch",
    "MAX_BODY_BYTES": "max_body_bytes",
    "MODEL_POLL_SECONDS": "model_poll_seconds",
    "TF_NUM_THREADS": "tf_num_threads",
    "MAX_IMAGE_PIXELS": "max_image_pixels",
    "KEEP_VERSIONS": "keep_versions",
    "KEEPALIVE_SECONDS": "keepalive_seconds",
    "BODY_TIMEOUT_SECONDS": "body_timeout_seconds",
    "ENABLE_BATCHING": "enable_batching",
    "MAX_BATCH_SIZE": "max_batch_size",
    "BATCH_TIMEOUT_MICROS": "batch_timeout_micros",
    "MAX_ENQUEUED_BATCHES": "max_enqueued_batches",
    "NUM_BATCH_THREADS": "num_batch_threads",
    "REQUEST_IDS": "request_ids",
    "ACCESS_LOG": "access_log",
    "API_TOKENS_FILE": "api_tokens_file",
    "AUTH_PROBES": "auth_probes",
    "CORS_ORIGINS": "cors_origins",
    "TLS_CERT_FILE": "tls_cert_file",
    "TLS_KEY_FILE": "tls_key_file",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "otel_exporter_otlp_endpoint",
    "OTEL_SERVICE_NAME": "otel_service_name",
}
VARIABLE = {field: var for var, field in ENV_VARS.items()}  # field name -> environment variable
SWITCHES = ("enable_batching", "request_ids", "auth_probes")  # 0 or 1
AT_LEAST_ONE = ("web_concurrency", "threads", "max_batch", "keep_versions", "keepalive_seconds", "max_batch_size",
                "max_enqueued_batches", "num_batch_threads")


def load_config(overrides: Mapping | None = None, environ: Mapping | None = None) -> Config:
    """Read the environment, then apply ``overrides`` (keys: field names or variable names).

    A malformed value raises ``ValueError`` naming the variable, so a bad deployment fails loudly at
    start-up rather than serving with a surprising setting.
    """
    environ = os.environ if environ is None else environ
    types = {field.name: type(field.default) for field in fields(Config)}
    values = {}
    for var, field in ENV_VARS.items():
        if environ.get(var, "").strip():
            values[field] = _convert(var, environ[var].strip(), types[field])
    for key, value in (overrides or {}).items():
        field = ENV_VARS.get(key, key)
        if field not in types:
            raise ValueError(f"unknown configuration key {key!r}; known: {sorted(types)}")
        values[field] = _convert(key, value, types[field])
    for field in ("log_level", "access_log"):
        if field in values:
            values[field] = values[field].lower()  # gunicorn ignores the case of its log level too
    config = replace(Config(), **values)
    _check_ranges(config)
    return config


def _convert(name: str, value, kind):
    try:
        converted = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"configuration {name}={value!r} is not a valid {kind.__name__}") from None
    if kind in (int, float) and not 0 <= converted < math.inf:  # NaN and inf fail too
        raise ValueError(f"configuration {name}={value!r} must be a finite number, not negative")
    return converted


def _check_ranges(config: Config) -> None:
    """What a type alone does not guarantee: counts of at least 1, a real port, a known log level."""
    for field in AT_LEAST_ONE:
        if getattr(config, field) < 1:
            raise ValueError(f"{VARIABLE[field]} must be at least 1; got {getattr(config, field)}")
    for field in SWITCHES:
        if getattr(config, field) not in (0, 1):
            raise ValueError(f"{VARIABLE[field]} must be 0 or 1; got {getattr(config, field)}")
    if config.enable_batching and config.max_batch > config.max_batch_size:
        raise ValueError(f"MAX_BATCH ({config.max_batch}) must not exceed MAX_BATCH_SIZE ({config.max_batch_size}) "
                         "with ENABLE_BATCHING=1: every request must fit in one batch")
    if not config.body_timeout_seconds > 0:
        raise ValueError(f"BODY_TIMEOUT_SECONDS must be more than 0; got {config.body_timeout_seconds}")
    if not 1 <= config.port <= MAX_PORT:
        raise ValueError(f"PORT must be a port number from 1 to {MAX_PORT}; got {config.port}")
    if config.grpc_port > MAX_PORT:
        raise ValueError(f"GRPC_PORT must be a port number from 1 to {MAX_PORT}, or 0 for no gRPC; got {config.grpc_port}")
    if config.grpc_port == config.port:
        raise ValueError(f"GRPC_PORT must differ from PORT ({config.port}); use 0 for no gRPC")
    if config.log_level not in LOG_LEVELS:
        raise ValueError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}; got {config.log_level!r}")
    _check_operator_features(config)


def _check_operator_features(config: Config) -> None:
    """The operator features' settings: known values, and files that can be read now (else start-up fails)."""
    if config.access_log not in ACCESS_LOG_MODES:
        raise ValueError(f"ACCESS_LOG must be {' or '.join(ACCESS_LOG_MODES)}; got {config.access_log!r}")
    if config.api_tokens_file and not os.access(config.api_tokens_file, os.R_OK):
        raise ValueError(f"API_TOKENS_FILE={config.api_tokens_file!r} cannot be read")
    if config.auth_probes and not config.api_tokens_file:
        raise ValueError("AUTH_PROBES=1 needs API_TOKENS_FILE (the tokens the probes must carry)")
    _check_tls(config.tls_cert_file, config.tls_key_file)
    if config.tracing_on and importlib.util.find_spec("opentelemetry.sdk") is None:
        raise ValueError("OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
                         "pip install -r requirements-tracing.txt (or unset it)")
    origins = config.cors_origin_list
    for origin in origins:
        if not (origin == "*" and len(origins) == 1) and not ORIGIN.match(origin):
            raise ValueError(f"CORS_ORIGINS: {origin!r} is not an origin like https://app.example or "
                             "http://localhost:3000 (scheme, host, optional port; no path, no trailing /), "
                             "nor a lone *")


def _check_tls(cert_file: str, key_file: str) -> None:
    """Both files or neither, and a certificate that the key matches (loaded once, here, so that a bad pair
    stops gunicorn at start with its reason)."""
    if bool(cert_file) != bool(key_file):
        raise ValueError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both (or neither, for plain HTTP)")
    if cert_file:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"TLS_CERT_FILE={cert_file!r} and TLS_KEY_FILE={key_file!r} cannot be used: "
                             f"{exc.strerror or exc}") from None
