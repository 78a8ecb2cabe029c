"""gunicorn settings for the prediction service.

    gunicorn -c service/gunicorn.conf.py "service.app:create_app()"

- Settings from the environment come from ``service/config.py`` (``load_config``), checked there: a
  bad value (``PORT=abc``, ``GUNICORN_THREADS=0``, ``MAX_BATCH=-1`` ...) stops gunicorn at once with
  one line naming the variable and exit status 1, before any worker starts.
- Binds ``0.0.0.0:$PORT`` (default 8000); ``--bind`` on the command line wins (tests use 127.0.0.1).
- ``$WEB_CONCURRENCY`` workers (default 2), each worker a separate process (``service/worker.py``:
  gunicorn's asyncio worker, requests read whole before Flask sees them) that loads the model itself
  *after* the fork, in ``create_app()``, before it accepts a connection. Never ``--preload``: a
  TensorFlow runtime initialised in the master (a model loaded, any op run) makes every forked worker
  hang on its first prediction.
- The master does *import* the service's code, TensorFlow included, before it forks (``on_starting``):
  importing initialises no runtime and starts no thread, and the imported code is then shared, copy on
  write, by all workers instead of held once per worker. ``gc.freeze()`` then puts those objects out
  of the collector's reach: collections no longer write to the shared pages, and a full collection no
  longer walks TensorFlow's hundreds of thousands of objects (a stall of every request in flight on that
  worker). What it saves in memory is the peers table's PSS column (``python -m bench.peers``,
  docs/benchmarks.md); how fast a killed worker's replacement is ready, docs/reliability.md.
- ``service`` is importable because gunicorn puts its working directory (``chdir``, by default the one
  it was started in: the repository root, or ``/app`` in the image) first on ``sys.path`` before it
  reads this file.
- Prometheus multiprocess mode: the master creates a fresh ``PROMETHEUS_MULTIPROC_DIR`` (or empties the
  one given) before forking, marks dead workers so their live gauges disappear, and removes its own
  temporary folder at exit. (That variable is prometheus_client's, not one of the service's settings.)
- The master, and so every worker, refuses to import Keras, scikit-learn, matplotlib, pandas, JAX and
  torch (``service/lean.py``): TensorFlow would import them when installed, for nothing.
- No control socket (gunicorn >= 25 would create one in ``~/.gunicorn/`` or ``$XDG_RUNTIME_DIR``).
- TLS when ``TLS_CERT_FILE`` and ``TLS_KEY_FILE`` are set: gunicorn's ``certfile``/``keyfile``, TLS 1.2 at
  least (``ssl_context`` below); the worker balances TLS connections too and gives a handshake
  ``KEEPALIVE_SECONDS`` (service/balancing.py), and refuses to start rather than serve plain HTTP if the
  context cannot be made (service/worker.py). gRPC takes the same certificate (service/grpc_api/server.py).
"""

import glob
import os
import shutil
import ssl
import sys
import tempfile

from service.config import load_config


def _settings():
    """The service's configuration, or exit with its one-line reason (no traceback) if it is bad."""
    try:
        return load_config()
    except ValueError as exc:
        sys.exit(f"Error: {exc} (service/config.py lists the settings)")


_config = _settings()
bind = f"0.0.0.0:{_config.port}"
workers = _config.web_concurrency
# gunicorn's asyncio worker with the Flask app behind service/whole_requests.py (service/worker.py):
# requests are read whole by the event loop before Flask runs them, so idle keep-alive connections
# and slow clients cannot take the time of the code that runs the model.
worker_class = "service.worker.Worker"
threads = _config.threads  # used with ENABLE_BATCHING=1 only (service/worker.py)
preload_app = False  # see above: the model must be loaded in each worker, after the fork
timeout = 60  # includes a worker's boot: importing TensorFlow and loading the model take seconds
graceful_timeout = 30
keepalive = _config.keepalive_seconds  # idle connections close, and request headers are due, after this
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # heartbeat files off the disk
control_socket_disable = True
accesslog = None  # ACCESS_LOG=json is the service's own (service/access_log.py)
certfile = _config.tls_cert_file or None
keyfile = _config.tls_key_file or None
errorlog = "-"
loglevel = _config.log_level

_created_metrics_dir = None


def ssl_context(conf, default_ssl_context_factory):
    """gunicorn's TLS context (certfile, keyfile), refusing TLS 1.0 and 1.1."""
    context = default_ssl_context_factory()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def on_starting(server):
    """Master, before forking: a clean folder for the workers' Prometheus sample files."""
    global _created_metrics_dir
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        os.makedirs(path, exist_ok=True)
        for stale in glob.glob(os.path.join(path, "*.db")):
            os.remove(stale)
    else:
        path = _created_metrics_dir = tempfile.mkdtemp(prefix="mnist-prometheus-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    server.log.info("Prometheus multiprocess folder: %s", path)
    _import_before_fork(server)


def _import_before_fork(server):
    """Master: import the app's modules (TensorFlow too, but run nothing) so workers share them."""
    import gc
    import time

    from service.lean import keep_out

    started = time.perf_counter()
    keep_out()  # Keras, scikit-learn & co.: imported by TensorFlow when installed, never used here
    import service.app  # noqa: F401  (after PROMETHEUS_MULTIPROC_DIR: prometheus_client reads it at import)

    gc.freeze()  # the collector would otherwise write to every shared object's page in each worker
    server.log.info("imported the service and TensorFlow in %.1f s, before forking", time.perf_counter() - started)


def post_worker_init(worker):
    """Worker, after ``create_app()`` loaded and warmed the model, before accepting connections."""
    worker.log.info("worker %s ready to accept requests", worker.pid)


def child_exit(server, worker):
    """Master: a worker ended; drop its live gauges (model version and readiness) and its slot in the
    connection table (service/balancing.py)."""
    from prometheus_client import multiprocess  # imported here: the env var above must come first

    from service.balancing import TABLE

    multiprocess.mark_process_dead(worker.pid)
    TABLE.release(worker.age)


def on_exit(server):
    if _created_metrics_dir:
        shutil.rmtree(_created_metrics_dir, ignore_errors=True)
