"""Keep optional heavy libraries out of a serving worker.

``import tensorflow`` eagerly imports Keras, and Keras imports scikit-learn (and through it SciPy),
matplotlib and pandas when they are installed, only to offer optional integrations the service never
uses: about 100 MB of memory per worker and part of a second of start-up. They are not installed in
the serving image (``requirements-serve.txt``), but they are in the development environment, so the
gunicorn workers refuse to import them (``post_fork`` in ``service/gunicorn.conf.py``). Keras treats
them as absent, which is what they are for the service.

Only call :func:`keep_out` in a process that serves and nothing else: it affects the whole process.
"""

from __future__ import annotations

import importlib.abc
import sys

KEPT_OUT = ("sklearn", "scipy", "matplotlib", "pandas")


class _KeepOut(importlib.abc.MetaPathFinder):
    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (kept out of the serving process "
                                      "by service/lean.py)", name=fullname)
        return None


def keep_out(names=KEPT_OUT) -> None:
    """Make ``import <name>`` fail for ``names`` in this process (idempotent)."""
    if any(isinstance(finder, _KeepOut) for finder in sys.meta_path):
        return
    already = sorted(n for n in names if n in sys.modules)
    if already:  # too late for these: keep going, they are merely loaded
        names = [n for n in names if n not in already]
    sys.meta_path.insert(0, _KeepOut(names))
