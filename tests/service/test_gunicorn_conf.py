"""service/gunicorn.conf.py: gunicorn's settings come from service/config.py, checked there."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys

import pytest

from ..conftest import REPO

CONF = "service/gunicorn.conf.py"


def test_settings_come_from_the_service_configuration(monkeypatch):
    for variable, value in {"PORT": "9123", "WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "5",
                            "LOG_LEVEL": "Warning"}.items():
        monkeypatch.setenv(variable, value)
    settings = runpy.run_path(str(REPO / CONF))
    assert settings["bind"] == "0.0.0.0:9123"
    assert (settings["workers"], settings["threads"], settings["loglevel"]) == (3, 5, "warning")


def start_gunicorn(**env) -> subprocess.CompletedProcess:
    """``gunicorn -c service/gunicorn.conf.py --check-config`` from the repository root, as the image
    and the README start it. ``-I``: no PYTHONPATH and no current folder on ``sys.path``, so
    ``service`` is importable only through gunicorn's own ``chdir`` (the folder it starts in)."""
    environ = {key: value for key, value in os.environ.items()
               if key not in ("PYTHONPATH", "PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "LOG_LEVEL")}
    return subprocess.run([sys.executable, "-I", "-m", "gunicorn", "-c", CONF, "--check-config",
                           "service.app:create_app()"],
                          cwd=REPO, env={**environ, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("variable,value,message", [
    ("PORT", "abc", "Error: configuration PORT='abc' is not a valid int"),
    ("GUNICORN_THREADS", "0", "Error: GUNICORN_THREADS must be at least 1; got 0"),
    ("LOG_LEVEL", "verbose", "Error: LOG_LEVEL must be one of debug, info, warning, error, critical"),
    ("MAX_BATCH", "many", "Error: configuration MAX_BATCH='many' is not a valid int"),
])
def test_a_bad_value_stops_gunicorn_with_one_clear_line(variable, value, message):
    done = start_gunicorn(**{variable: value})
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert "Traceback" not in done.stderr


IMPORT_BEFORE_FORK = """
import gc, json, logging, runpy, sys, threading
hooks = runpy.run_path("service/gunicorn.conf.py")
server = type("Server", (), {"log": logging.getLogger("master")})()
hooks["_import_before_fork"](server)
print(json.dumps({"tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules,
                  "threads": threading.active_count(), "frozen": gc.get_freeze_count()}))
"""


def test_the_master_imports_tensorflow_runs_nothing_and_freezes_what_it_imported():
    done = subprocess.run([sys.executable, "-c", IMPORT_BEFORE_FORK], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert done.returncode == 0, done.stderr[-2000:]
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state["tensorflow"] and not state["keras"]  # imported for the workers to share; Keras kept out
    assert state["threads"] == 1  # no TensorFlow runtime (its thread pools): forked workers would hang
    assert state["frozen"] > 100_000  # TensorFlow's objects out of the collector's reach (gc.freeze)
