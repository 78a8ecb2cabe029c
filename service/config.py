"""Service configuration: environment variables with defaults, overridable per app (tests).

=====================  ===============  ==================================================
Variable               Default          Meaning
=====================  ===============  ==================================================
``MODEL_DIR``          ``exports/mnist``  the export base: ``<MODEL_DIR>/<version>/`` folders
``MODEL_NAME``         ``mnist``        the name clients use in ``/v1/models/<name>`` etc.
``PORT``               ``8000``         listening port (read by ``service/gunicorn.conf.py``)
``WEB_CONCURRENCY``    ``2``            gunicorn workers (read by ``service/gunicorn.conf.py``)
``MAX_BATCH``          ``256``          instances per request (more: 413)
``MAX_BODY_BYTES``     ``4194304``      request body limit, 4 MiB (more: 413)
``MODEL_POLL_SECONDS`` ``10``           how often each worker looks for a newer version; 0: never
``TF_NUM_THREADS``     ``1``            TensorFlow intra-op and inter-op threads per worker
``MAX_IMAGE_PIXELS``   ``16777216``     largest decoded image (width x height) accepted (more: 413)
``KEEP_VERSIONS``      ``2``            loaded versions kept in memory (current + previous)
=====================  ===============  ==================================================
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from typing import Mapping

MIB = 1024 * 1024


@dataclass(frozen=True)
class Config:
    """Everything the app needs to know; build it with :func:`load_config`."""

    model_dir: str = "exports/mnist"
    model_name: str = "mnist"
    port: int = 8000
    web_concurrency: int = 2
    max_batch: int = 256
    max_body_bytes: int = 4 * MIB
    model_poll_seconds: float = 10.0
    tf_num_threads: int = 1
    max_image_pixels: int = 4096 * 4096
    keep_versions: int = 2


# environment variable -> field name
ENV_VARS = {
    "MODEL_DIR": "model_dir",
    "MODEL_NAME": "model_name",
    "PORT": "port",
    "WEB_CONCURRENCY": "web_concurrency",
    "MAX_BATCH": "max_batch",
    "MAX_BODY_BYTES": "max_body_bytes",
    "MODEL_POLL_SECONDS": "model_poll_seconds",
    "TF_NUM_THREADS": "tf_num_threads",
    "MAX_IMAGE_PIXELS": "max_image_pixels",
    "KEEP_VERSIONS": "keep_versions",
}


def _convert(name: str, value, kind):
    try:
        converted = kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"configuration {name}={value!r} is not a valid {kind.__name__}") from None
    if kind in (int, float) and not 0 <= converted < math.inf:  # NaN and inf fail too
        raise ValueError(f"configuration {name}={value!r} must be a finite number, not negative")
    return converted


def load_config(overrides: Mapping | None = None, environ: Mapping | None = None) -> Config:
    """Read the environment, then apply ``overrides`` (keys: field names or variable names).

    A malformed value raises ``ValueError`` naming the variable, so a bad deployment fails loudly at
    start-up rather than serving with a surprising setting.
    """
    environ = os.environ if environ is None else environ
    types = {f.name: type(f.default) for f in fields(Config)}
    values = {}
    for var, field in ENV_VARS.items():
        if environ.get(var, "").strip():
            values[field] = _convert(var, environ[var].strip(), types[field])
    for key, value in (overrides or {}).items():
        field = ENV_VARS.get(key, key)
        if field not in types:
            raise ValueError(f"unknown configuration key {key!r}; known: {sorted(types)}")
        values[field] = _convert(key, value, types[field])
    config = replace(Config(), **values)
    if config.max_batch < 1:
        raise ValueError("MAX_BATCH must be at least 1")
    if config.keep_versions < 1:
        raise ValueError("KEEP_VERSIONS must be at least 1")
    return config
