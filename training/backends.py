"""Which Keras backend a run trains on: TensorFlow (the default), PyTorch or JAX.

A process has one Keras backend, chosen when Keras is first imported, from ``KERAS_BACKEND``. So the
choice is made here, from ``--backend`` (which wins) or else ``KERAS_BACKEND`` (else ``tensorflow``),
and written to ``KERAS_BACKEND`` before anything imports Keras: ``training/arguments.py`` calls
``choose`` while it checks the arguments, and this module imports neither Keras nor any backend (the
package is only looked up with ``importlib.util.find_spec``), so a bad choice or a missing package is
one line and exit status 2 with nothing written.

TensorFlow stays installed whatever the backend (``requirements.txt``): the export is always written by
a TensorFlow process (``training/export_keras.py``) and TensorBoard logging uses ``tf.summary``.
PyTorch and JAX are optional, pinned in ``requirements-backends.txt``.

Per backend, ``make_reproducible`` turns on what makes the same seed give the same weights run to run:
TensorFlow's op determinism, PyTorch's deterministic algorithms; JAX (XLA on CPU) is deterministic as
it is, and training there is always jit-compiled (``jit_compile``).
"""

from __future__ import annotations

import importlib.util
import os
from importlib import metadata

BACKENDS = ("tensorflow", "torch", "jax")
DEFAULT = "tensorflow"
ENVIRONMENT = "KERAS_BACKEND"
REQUIREMENTS = "requirements-backends.txt"
# backend -> the package that must be importable, and the distribution whose version is recorded
PACKAGES = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}
DISTRIBUTIONS = {"tensorflow": "tensorflow-cpu", "torch": "torch", "jax": "jax"}


class BackendError(ValueError):
    """A backend that cannot be used: unknown, or its package is not installed (one line of text)."""


def requested(flag: str | None, environ=os.environ) -> str | None:
    """The backend asked for: ``flag`` (``--backend``) if given, else ``KERAS_BACKEND`` if set (not
    empty), else None. Not checked."""
    if flag:
        return flag
    return environ.get(ENVIRONMENT) or None


def check(name: str, source: str = "--backend") -> str:
    """``name`` if it is a known backend whose package is installed; else BackendError saying which
    package is missing and where its pin is. Imports nothing."""
    if name not in BACKENDS:
        raise BackendError(f"{source}: unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    package = PACKAGES[name]
    if importlib.util.find_spec(package) is None:
        raise BackendError(f"the {name} backend needs the package {package!r}, which is not installed: "
                           f"pip install -r {REQUIREMENTS}")
    return name


def choose(flag: str | None, environ=os.environ, resumed: str | None = None) -> str:
    """The backend of this process: ``--backend``, else ``KERAS_BACKEND``, else tensorflow; checked
    (BackendError) and written to ``KERAS_BACKEND`` so that Keras starts on it.

    ``resumed``: the backend of a run being resumed. The run continues on it; a request for another
    one (the flag, else the environment) is a BackendError, never a run trained on two backends."""
    name = requested(flag, environ)
    source = "--backend" if flag else ENVIRONMENT
    if resumed is not None:
        if name is not None and name != resumed:
            asked = f"--backend {name}" if flag else f"{ENVIRONMENT}={name}"
            raise BackendError(f"it was trained on the {resumed} backend and resumes on it only, not on {asked} "
                               f"(pass --backend {resumed} or leave the backend out)")
        name, source = resumed, "the run's args.json"
    name = check(name or DEFAULT, source)
    activate(name, environ)
    return name


def activate(name: str, environ=os.environ) -> None:
    """Set ``KERAS_BACKEND``; if Keras is already imported on another backend, that is a bug: raise."""
    import sys

    environ[ENVIRONMENT] = name
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend") and keras.backend.backend() != name:
        raise RuntimeError(f"Keras was imported on {keras.backend.backend()!r} before the backend {name!r} "
                           "was chosen: choose the backend before anything imports Keras")


def version(name: str) -> str | None:
    """The installed version of the backend's library (None if it is not installed)."""
    for distribution in (DISTRIBUTIONS[name], PACKAGES[name]):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return None


def describe(name: str) -> dict:
    """``{"name", "library", "version"}``: what metrics.json and the export's metadata record."""
    return {"name": name, "library": PACKAGES[name], "version": version(name)}


def jit_compile(name: str, requested_jit: bool) -> bool:
    """The ``jit_compile`` to compile the trainer with: always on JAX (XLA; un-jitted JAX is slow), as
    asked (``--jit``) on TensorFlow, never on torch (there it would mean torch.compile, not XLA)."""
    if name == "jax":
        return True
    if name == "torch":
        return False
    return bool(requested_jit)


def make_reproducible(seed: int, name: str | None = None) -> None:
    """Seed Python, NumPy and the backend (``keras.utils.set_random_seed``) and make the backend's ops
    deterministic: the same seed then gives the same weights, bit for bit, run to run. Import Keras
    only after ``choose``."""
    import keras

    name = name or keras.backend.backend()
    keras.utils.set_random_seed(seed)
    if name == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif name == "torch":
        import torch

        torch.use_deterministic_algorithms(True)
    # jax: XLA on CPU is deterministic; keras.utils.set_random_seed seeds Keras's JAX seed generator
