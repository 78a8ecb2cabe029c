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
