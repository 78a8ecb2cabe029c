"""Helpers of the operator features' tests (tests/service/test_auth.py, test_cors.py, test_access_log.py,
test_tracing.py, test_operator_features.py, test_tls.py): an app with some features on, a tokens file."""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import APP_CONFIG

TOKENS = ("token-alpha-7f3a9c", "token-beta-22e1b0")


def feature_app(export_base: Path, **settings):
    """The service on ``export_base`` (the test limits of conftest.APP_CONFIG) with ``settings`` (variable
    names) on top; its predictor's polling stopped afterwards. The body of a fixture."""
    from service.app import create_app

    app = create_app({"MODEL_DIR": str(export_base), **APP_CONFIG, **settings})
    yield app
    app.extensions["mnist"].predictor.stop_polling()


def write_tokens(path: Path, *tokens: str) -> Path:
    """Replace the tokens file as an operator would: a new file renamed over the old one."""
    staging = path.with_name(path.name + ".new")
    staging.write_text("# API tokens, one a line\n" + "".join(f"{token}\n" for token in tokens))
    os.replace(staging, path)
    return path


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---- TLS -----------------------------------------------------------------------------------------------
def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for 127.0.0.1 and localhost, made with the openssl command (the
    test skips without it): ``(cert.pem, key.pem)``."""
    import shutil
    import subprocess

    require(shutil.which("openssl") is not None, "the openssl command (to make a test certificate)",
            "apt-get install openssl")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


def https_status(port: int, path: str, context, timeout: float = 5.0) -> int | None:
    """The status ``https://127.0.0.1:port/path`` answers with (``context`` verifies the server), or None."""
    import http.client

    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def running_tls_gunicorn(model_dir: Path, folder: Path, cert: Path, key: Path, workers: int = 2, **env):
    """gunicorn serving HTTPS (TLS_CERT_FILE, TLS_KEY_FILE and ``env``) with ``workers`` ready workers; on
    leaving, stopped, and ``AssertionError`` unless it shut down cleanly. The body of a fixture:
    ``tests.support.running_gunicorn`` waits over plain HTTP."""
    import ssl

    from bench.servers import GunicornServer

    context = ssl.create_default_context(cafile=str(cert))
    server = GunicornServer(model_dir, folder / "gunicorn.log", workers=workers,
                            extra_env={"TLS_CERT_FILE": str(cert), "TLS_KEY_FILE": str(key), **env})
    try:
        server.wait_until(lambda: len(server.ready_workers()) >= workers
                          and https_status(server.port, "/healthz", context) == 200, 120,
                          f"{workers} ready worker(s) and /healthz 200 over HTTPS")
        server.tls_context = context
        yield server
    finally:
        code = server.stop()
        print(server.log()[-3000:])
    assert code == 0, "gunicorn did not shut down cleanly on SIGTERM"


# ---- optional pieces -----------------------------------------------------------------------------------
def require(available: bool, what: str, fix: str) -> None:
    """Skip unless ``available``, saying ``fix``; in CI (``CI`` set), which installs it
    (.ci/setup.d/50-operator-features.sh), fail instead."""
    import pytest

    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing although CI installs it (.ci/setup.d/50-operator-features.sh): {fix}")
    pytest.skip(f"{what} is not installed: {fix}", allow_module_level=True)
