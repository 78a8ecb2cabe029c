"""Configuration from the environment: malformed values fail at start-up, naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.config import LOG_LEVELS, load_config

from ..conftest import REPO


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_non_finite_or_negative_poll_interval_is_refused(value):
    # NaN passed a "< 0" check and made the poller spin without pause; inf killed the poller thread
    with pytest.raises(ValueError, match="MODEL_POLL_SECONDS"):
        load_config(environ={"MODEL_POLL_SECONDS": value})


def test_valid_values_are_converted():
    config = load_config({"MAX_BATCH": "8"}, environ={"MODEL_POLL_SECONDS": "0.5"})
    assert config.max_batch == 8 and config.model_poll_seconds == 0.5


def test_gunicorn_settings_are_read_and_converted():
    config = load_config(environ={"PORT": "9000", "WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "4",
                                  "LOG_LEVEL": "DEBUG"})
    assert (config.port, config.web_concurrency, config.threads, config.log_level) == (9000, 3, 4, "debug")
    default = load_config(environ={})
    assert (default.port, default.web_concurrency, default.threads, default.log_level) == (8000, 2, 16, "info")


@pytest.mark.parametrize("variable,value,message", [
    ("PORT", "abc", "PORT='abc' is not a valid int"),
    ("PORT", "0", "PORT must be a port number from 1 to 65535; got 0"),
    ("PORT", "65536", "PORT must be a port number from 1 to 65535; got 65536"),
    ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be at least 1; got 0"),
    ("GUNICORN_THREADS", "0", "GUNICORN_THREADS must be at least 1; got 0"),
    ("GUNICORN_THREADS", "two", "GUNICORN_THREADS='two' is not a valid int"),
    ("LOG_LEVEL", "loud", "LOG_LEVEL must be one of debug, info, warning, error, critical; got 'loud'"),
    ("MAX_BATCH", "0", "MAX_BATCH must be at least 1; got 0"),
    ("KEEP_VERSIONS", "0", "KEEP_VERSIONS must be at least 1; got 0"),
])
def test_out_of_range_values_are_refused_naming_the_variable(variable, value, message):
    with pytest.raises(ValueError) as error:
        load_config(environ={variable: value})
    assert message in str(error.value)


def test_log_levels_are_gunicorns():
    from gunicorn.glogging import Logger

    assert sorted(LOG_LEVELS) == sorted(Logger.LOG_LEVELS)


def test_importing_the_config_imports_neither_tensorflow_nor_flask():
    """gunicorn's master imports service.config (service/gunicorn.conf.py): TensorFlow initialised in
    the master would make the forked workers hang."""
    check = ("import sys, service.config; "
             "print(sorted(m for m in ('tensorflow', 'flask', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
