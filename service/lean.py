"""Keep libraries the service never uses out of a serving worker.

``import tensorflow`` eagerly imports Keras (``keras.src.optimizers``, "for the SavedModel registry"),
and Keras imports scikit-learn, matplotlib and pandas when they are installed, only to offer integrations
the service never uses (memory per worker and start-up time: ``python -m bench.peers`` measures the
workers' PSS). SciPy is not kept out: the service uses ``scipy.ndimage`` to read photos
(``service/images``); with Keras and scikit-learn kept out, nothing else imports it. TensorFlow Lite's
helpers import JAX when it is installed (``from jax import jit``, for their converter), where the
torch/JAX backends share the environment. The service loads plain SavedModels (the exported graph needs
no Keras code), so the gunicorn master refuses these imports before it imports the service, and its
workers inherit that (``on_starting`` in ``service/gunicorn.conf.py``); TensorFlow and Keras treat them as
absent (both catch the ``ImportError``), which is what they are for the service.

An import of a kept-out module raises ``ModuleNotFoundError``, but ``importlib.util.find_spec``
still finds it: TensorFlow calls that at import time only to compute its ``tf.keras`` lazy-loader
path, and would fail if the spec were missing.

Only call :func:`keep_out` in a process that serves and nothing else: it affects the whole process.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

KEPT_OUT = ("keras", "sklearn", "matplotlib", "pandas", "jax", "jaxlib", "torch")


class _Refuse(importlib.abc.Loader):
    """A loader whose modules fail to execute: the import raises, ``find_spec`` still answers."""

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__spec__.name
        raise ModuleNotFoundError(f"No module named {name!r} (kept out of the serving process by "
                                  "service/lean.py)", name=name)


class _KeepOut(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] not in self.names:
            return None
        real = importlib.machinery.PathFinder.find_spec(fullname, path)
        if real is None:
            return None  # not installed: the usual ModuleNotFoundError
        return importlib.machinery.ModuleSpec(fullname, _Refuse(), origin=real.origin,
                                              is_package=real.submodule_search_locations is not None)


def keep_out(names=KEPT_OUT) -> None:
    """Make ``import <name>`` fail for ``names`` in this process (idempotent)."""
    if any(isinstance(finder, _KeepOut) for finder in sys.meta_path):
        return
    already = sorted(n for n in names if n in sys.modules)
    if already:  # too late for these: keep going, they are merely loaded
        names = [n for n in names if n not in already]
    sys.meta_path.insert(0, _KeepOut(names))
