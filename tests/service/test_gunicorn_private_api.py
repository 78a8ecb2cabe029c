"""service/worker.py builds on private parts of gunicorn's ASGI worker (issue 22, item 7): it overrides private
methods of ``ASGIProtocol`` and ``ASGIWorker``, reads their private attributes, and swaps the module-level name
``gasgi.ASGIProtocol``. A new gunicorn could rename any of them, and an override of a method that no longer exists
is silently dead code (no error, the behaviour just goes). These tests fail loudly instead: gunicorn is the pinned
version, and every private name the worker relies on is still there, called where the worker expects it."""

from __future__ import annotations

import importlib.metadata
import inspect
import re

from gunicorn.asgi import protocol as asgi_protocol
from gunicorn.workers import gasgi

from bench.support import REPO
from service.worker import Protocol, Worker

# private method -> where gunicorn calls it (the override is only alive if that call is still there)
PROTOCOL_HOOKS = {
    "_on_message_complete": "self._on_message_complete",
    "_keepalive_timeout": "self._keepalive_timeout",
    "_send_error_response": "self._send_error_response(",
}
WORKER_HOOKS = {"_setup_event_loop": "self._setup_event_loop()", "_serve": "self._serve()",
                "_get_ssl_context": "self._get_ssl_context()", "_shutdown": "self._shutdown()"}
PROTOCOL_ATTRIBUTES = ("_closed", "_keepalive", "_safe_write", "_arm_keepalive_timer", "worker")
WORKER_ATTRIBUTES = ("_quick_shutdown", "loop", "asgi", "cfg", "age")


def pinned(package: str) -> str:
    """The ``==`` version of ``package`` in requirements-serve.txt."""
    match = re.search(rf"^{package}==(\S+)", (REPO / "requirements-serve.txt").read_text(), re.MULTILINE)
    assert match, f"requirements-serve.txt pins no {package}"
    return match[1]


def test_gunicorn_is_the_pinned_version():
    assert importlib.metadata.version("gunicorn") == pinned("gunicorn"), (
        "gunicorn moved: check service/worker.py's private hooks (this file) before changing the pin")


def test_every_overridden_private_method_still_exists_and_is_still_called():
    protocol_source = inspect.getsource(asgi_protocol)
    worker_source = inspect.getsource(gasgi)
    for base, ours, hooks, source in ((asgi_protocol.ASGIProtocol, Protocol, PROTOCOL_HOOKS, protocol_source),
                                      (gasgi.ASGIWorker, Worker, WORKER_HOOKS, worker_source)):
        for name, call in hooks.items():
            assert name in vars(ours), f"service/worker.py no longer overrides {name}: update this test"
            assert callable(getattr(base, name, None)), f"gunicorn's {base.__name__} has no {name} any more"
            assert call in source, f"gunicorn no longer calls {call}: {ours.__name__}.{name} would be dead"
            ours_params = list(inspect.signature(vars(ours)[name]).parameters)
            assert ours_params == list(inspect.signature(getattr(base, name)).parameters), (
                f"{base.__name__}.{name}'s parameters changed")


def test_the_private_attributes_the_worker_reads_are_still_set():
    protocol_source = inspect.getsource(asgi_protocol)
    worker_source = inspect.getsource(gasgi) + inspect.getsource(gasgi.ASGIWorker.__mro__[1])
    for name in PROTOCOL_ATTRIBUTES:
        assert f"self.{name}" in protocol_source, f"gunicorn's ASGIProtocol no longer has {name}"
    for name in WORKER_ATTRIBUTES:
        assert f"self.{name}" in worker_source, f"gunicorn's ASGIWorker no longer has {name}"


def test_the_worker_builds_its_servers_with_the_module_level_protocol_name():
    """Worker.run sets ``gasgi.ASGIProtocol = Protocol``: that only works while gasgi looks the name up at
    the time it creates a server."""
    assert isinstance(gasgi.ASGIProtocol, type) and issubclass(Protocol, gasgi.ASGIProtocol)
    assert re.search(r"ASGIProtocol\(", inspect.getsource(gasgi)), "gasgi no longer creates ASGIProtocol(...)"


def test_gunicorns_private_hook_for_the_tls_context_is_still_there():
    """service/worker.py overrides gunicorn's private ``ASGIWorker._get_ssl_context`` so that a TLS context
    that cannot be made stops the worker (gunicorn's own logs it and serves plain HTTP): it must still be
    what ``_serve`` calls."""
    assert "self._get_ssl_context()" in inspect.getsource(gasgi.ASGIWorker._serve)
    assert Worker._get_ssl_context is not gasgi.ASGIWorker._get_ssl_context
