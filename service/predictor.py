"""The model side of the service: load the newest exported version, predict, hot-reload.

An export base holds one folder per version (``<base>/<N>/``, digits only, each a complete
SavedModel written atomically by the exporter); anything else there (``.tmp-*`` folders of an export
in progress, files) is never considered. Only TensorFlow's SavedModel API is used
(``tf.saved_model.load`` and the ``serving_default`` signature), so any export with one float input of
shape ``(None, 784)`` and one ``(None, 10)`` output can be served.

Hot reload: :meth:`Predictor.refresh` (called every ``MODEL_POLL_SECONDS`` by a background thread in
each worker) loads a newer version *beside* the current one, warms it up, then swaps one reference.
A request reads that reference once (:attr:`Predictor.current`) and keeps using the object it got, so
requests in flight finish on the version they started with and nothing waits for a load. A version
that fails to load is logged and remembered (with a fingerprint of its files, so it is retried only
if it changes); the current version keeps serving.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported: no banner

import tensorflow as tf  # noqa: E402  (after the environment variable above)

from .contract import (CLASSES, METADATA_PATH, OUTPUT_NAME, PIXELS, SAVED_MODEL_FILE,  # noqa: E402
                       SIGNATURE_NAME, list_versions)
from .graph_runner import BatchSettings, GraphRunner  # noqa: E402
from .tracing import traced  # noqa: E402

log = logging.getLogger("service.predictor")



class ModelNotReady(Exception):
    """No version is loaded (yet): the service answers 503."""


class VersionNotFound(Exception):
    """A specific version was asked for that is not loaded: the service answers 404."""


def configure_tensorflow(num_threads: int) -> bool:
    """Limit TensorFlow's intra-op and inter-op thread pools (0 = TensorFlow's default: all cores).

    Must run before the first TensorFlow operation of the process (so in each gunicorn worker, before
    the model loads). Returns False if TensorFlow was already initialised (e.g. inside a test process
    that trained a model first); that is harmless there.
    """
    try:
        tf.config.threading.set_intra_op_parallelism_threads(num_threads)
        tf.config.threading.set_inter_op_parallelism_threads(num_threads)
        return True
    except RuntimeError:
        log.debug("TensorFlow already initialised; thread limits unchanged")
        return False


def fingerprint(version_dir: Path) -> tuple:
    """Names, sizes and modification times of the files of a version: changes when it changes."""
    items = []
    for root, _dirs, files in os.walk(version_dir):
        for name in files:
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            items.append((os.path.relpath(path, version_dir), st.st_size, st.st_mtime_ns))
    return tuple(sorted(items))


def _read_metadata(version_dir: Path) -> dict:
    import json

    path = version_dir / METADATA_PATH
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return {}


def _signature_defs(version_dir: Path) -> dict:
    """The SignatureDefs of the SavedModel as TensorFlow Serving prints them (JSON of the protos)."""
    from google.protobuf import json_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((version_dir / SAVED_MODEL_FILE).read_bytes())
    graph = saved.meta_graphs[0]
    return {
        name: json_format.MessageToDict(
            graph.signature_def[name],
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        for name in graph.signature_def
    }


@dataclass(frozen=True)
class Runtime:
    """How loaded versions run: TensorFlow threads per Session, optional batching, and the callback
    that counts batches (``on_batch(size)``)."""

    threads: int = 1
    batching: BatchSettings | None = None
    on_batch: Callable[[int], None] | None = None


@dataclass(eq=False)
class ModelVersion:
    """One loaded, warmed-up version. Immutable once built; safe to share between threads."""

    version: int
    path: Path
    input_name: str
    output_name: str
    metadata: dict
    signature_defs: dict
    loaded_at: float
    runs_as: str  # "frozen graph" (GraphRunner) or "signature" (the fallback)
    _run: Callable = field(repr=False)
    _saved_model: object = field(repr=False)  # keeps the variables alive

    @traced("model")
    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """``(n, 784)`` float32 in ``[0, 1]`` -> ``(n, 10)`` float32 probabilities (raises
        ``Overloaded`` when batching and the queue is full)."""
        return self._run(pixels)


def load_version(version_dir: str | os.PathLike, version: int | None = None,
                 runtime: Runtime = Runtime()) -> ModelVersion:
    """Load, check and warm up one exported version; raises ``ValueError`` with the reason if unusable."""
    path = Path(version_dir)
    loaded = _load_saved_model(path)
    function = _serving_signature(loaded, path)
    input_name, output_name = _checked_input_and_output(function)
    runs_as, run = _runner(function, input_name, output_name, runtime, path)
    model = ModelVersion(
        version=int(version if version is not None else path.name),
        path=path,
        input_name=input_name,
        output_name=output_name,
        metadata=_read_metadata(path),
        signature_defs=_signature_defs(path),
        loaded_at=time.time(),
        runs_as=runs_as,
        _run=run,
        _saved_model=loaded,
    )
    _warm_up(model)
    if runs_as == "frozen graph":
        run.on_batch = runtime.on_batch  # from now on: the probe and the warm-up were not served batches
    return model


def _load_saved_model(path: Path):
    """``tf.saved_model.load`` of ``path``; ``ValueError`` if it is not a SavedModel or does not load."""
    if not (path / SAVED_MODEL_FILE).is_file():
        raise ValueError(f"{path} has no {SAVED_MODEL_FILE}: not a SavedModel")
    try:
        return tf.saved_model.load(str(path))
    except Exception as exc:  # TensorFlow raises many kinds for a damaged folder
        raise ValueError(f"tf.saved_model.load({str(path)!r}) failed: {type(exc).__name__}: {exc}") from exc


def _serving_signature(loaded, path: Path):
    """The ``serving_default`` signature of a loaded SavedModel; ``ValueError`` if it has none."""
    signatures = getattr(loaded, "signatures", {})
    if SIGNATURE_NAME not in signatures:
        raise ValueError(f"{path} has no {SIGNATURE_NAME!r} signature (has: {sorted(signatures)})")
    return signatures[SIGNATURE_NAME]


def _checked_input_and_output(function) -> tuple[str, str]:
    """``(input name, output name)`` of a signature that takes one float32 ``(None, 784)`` input and has a
    ``(None, 10)`` output (``probabilities`` if there are several); ``ValueError`` otherwise."""
    inputs = function.structured_input_signature[1]
    outputs = function.structured_outputs
    if len(inputs) != 1:
        raise ValueError(f"the {SIGNATURE_NAME!r} signature must take one input; it takes {sorted(inputs)}")
    (input_name, input_spec), = inputs.items()
    if input_spec.dtype != tf.float32 or not input_spec.shape.is_compatible_with((None, PIXELS)):
        raise ValueError(f"input {input_name!r} is {input_spec.dtype.name} {input_spec.shape}; "
                         f"expected float32 (None, {PIXELS})")
    candidates = [name for name, spec in outputs.items() if spec.shape.is_compatible_with((None, CLASSES))]
    if not candidates:
        raise ValueError(f"no output of shape (None, {CLASSES}) in {SIGNATURE_NAME!r}: {outputs}")
    return input_name, OUTPUT_NAME if OUTPUT_NAME in candidates else candidates[0]


def _warm_up(model: ModelVersion) -> None:
    """One prediction now, so that tracing and allocation do not fall on a request; ``ValueError`` if its
    answer is not one finite row of 10."""
    warm = model.predict(np.zeros((1, PIXELS), np.float32))
    if warm.shape != (1, CLASSES) or not np.all(np.isfinite(warm)):
        raise ValueError(f"warm-up prediction gave shape {warm.shape} / non-finite values")


def _runner(function, input_name: str, output_name: str, runtime: Runtime, path: Path):
    """``(how, run)``: the signature frozen into a Session (``GraphRunner``, the fast way) if that gives
    the signature's own results on a probe batch, else the signature itself (logged)."""
    def signature_call(pixels):
        return function(**{input_name: tf.constant(pixels, dtype=tf.float32)})[output_name].numpy()

    rows = min(8, runtime.batching.max_batch_size) if runtime.batching else 8  # a batch takes no more
    probe = np.random.default_rng(0).random((rows, PIXELS), dtype=np.float32)
    try:
        runner = GraphRunner(function, output_name, runtime.threads, runtime.batching)
        if np.array_equal(runner(probe), signature_call(probe)):
            return "frozen graph", runner
        problem = "its results differ from the signature's"
    except Exception as exc:  # noqa: BLE001 - anything: serve through the signature instead
        problem = f"{type(exc).__name__}: {exc}"
    log.warning("%s: serving through the signature, not a frozen graph (%s)", path, problem)
    return "signature", signature_call


@dataclass(frozen=True)
class LoadFailure:
    version: int
    fingerprint: tuple
    error: str


class Predictor:
    """Serves the newest loadable version under ``model_dir`` and keeps it fresh.

    ``on_load(model, initial)`` and ``on_failure(version, error)`` are optional callbacks (metrics).
    """

    def __init__(self, model_dir: str | os.PathLike, *, keep_versions: int = 2, runtime: Runtime = Runtime(),
                 on_load: Callable | None = None, on_failure: Callable | None = None):
        self.model_dir = Path(model_dir)
        self.keep_versions = keep_versions
        self.runtime = runtime
        self._on_load = on_load
        self._on_failure = on_failure
        self._current: ModelVersion | None = None
        self._loaded: dict[int, ModelVersion] = {}  # replaced, never mutated: lock-free reads
        self._failures: dict[int, LoadFailure] = {}  # also replaced, never mutated
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_state = None  # to log "no model" once rather than every poll
        self.reloads = 0

    # ---- reading (request threads) ------------------------------------------------------------
    @property
    def current(self) -> ModelVersion | None:
        """The version new requests use (one atomic reference read)."""
        return self._current

    @property
    def ready(self) -> bool:
        return self._current is not None

    def get(self, version: int | None = None) -> ModelVersion:
        """The current version, or a specific loaded one; raises ModelNotReady / VersionNotFound."""
        current = self._current
        if current is None:
            raise ModelNotReady(self.not_ready_reason())
        if version is None:
            return current
        model = self._loaded.get(version)
        if model is None:
            raise VersionNotFound(
                f"version {version} is not loaded; loaded: {sorted(self._loaded)}")
        return model

    def loaded_versions(self) -> list[int]:
        return sorted(self._loaded)

    def failures(self) -> list[LoadFailure]:
        return sorted(self._failures.values(), key=lambda f: f.version)

    def not_ready_reason(self) -> str:
        if not self.model_dir.is_dir():
            return f"no model loaded: the export base {str(self.model_dir)!r} (MODEL_DIR) does not exist"
        if self._failures:
            latest = max(self._failures.values(), key=lambda f: f.version)
            return f"no model loaded: version {latest.version} failed to load: {latest.error}"
        return f"no model loaded: no version folder in {str(self.model_dir)!r} (MODEL_DIR) yet"

    # ---- loading (start-up and the poller thread) ---------------------------------------------
    def refresh(self) -> bool:
        """Load the newest complete version if it is not the current one. True if a swap happened.

        Versions are tried newest first; a broken one is skipped (and remembered until its files
        change). If the current version's folder was removed, an older one is loaded (roll back).
        Concurrent calls do not pile up: a call made while another runs returns False at once.
        """
        if not self._refresh_lock.acquire(blocking=False):
            return False
        try:
            return self._refresh()
        finally:
            self._refresh_lock.release()

    def _refresh(self) -> bool:
        versions = list_versions(self.model_dir)
        current = self._current
        if not versions and current is None:
            self._log_state_once("empty", logging.WARNING, "%s", self.not_ready_reason())
        for version in reversed(versions):
            if current is not None and version == current.version:
                return False
            folder = self.model_dir / str(version)
            files_print = fingerprint(folder)
            known = self._failures.get(version)
            if known is not None and known.fingerprint == files_print:
                continue
            started = time.perf_counter()
            try:
                model = load_version(folder, version, self.runtime)
            except Exception as exc:  # noqa: BLE001 - any failure: skip this version, keep serving
                error = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
                self._failures = {**self._failures, version: LoadFailure(version, files_print, error)}
                log.error("model version %d in %s is broken and was skipped (%s); %s", version,
                          self.model_dir, error,
                          f"still serving version {current.version}" if current else "no version loaded")
                if self._on_failure:
                    self._on_failure(version, error)
                continue
            self._failures = {v: f for v, f in self._failures.items() if v != version}
            self._install(model)
            log.info("model version %d loaded from %s in %.2f s%s", version, folder,
                     time.perf_counter() - started,
                     f" (was version {current.version})" if current else "")
            if current is not None:
                self.reloads += 1
            if self._on_load:
                self._on_load(model, current is None)
            self._last_state = "loaded"
            return True
        return False

    def _install(self, model: ModelVersion) -> None:
        loaded = dict(self._loaded)
        loaded[model.version] = model
        # keep the newest swap-ins: evict the ones loaded longest ago, never the new current one
        for old in sorted(loaded.values(), key=lambda m: m.loaded_at):
            if len(loaded) <= self.keep_versions:
                break
            if old is not model:
                del loaded[old.version]
        self._loaded = loaded
        self._current = model  # the atomic swap: requests from now on use the new version

    def _log_state_once(self, state: str, level: int, msg: str, *args) -> None:
        if self._last_state != state:
            log.log(level, msg, *args)
            self._last_state = state

    # ---- polling -----------------------------------------------------------------------------
    def start_polling(self, interval: float) -> None:
        """Call :meth:`refresh` every ``interval`` seconds in a daemon thread (0: never)."""
        if interval <= 0 or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, args=(interval,), name="model-poller",
                                        daemon=True)
        self._thread.start()

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the poller must never die
                log.exception("model refresh failed")

    def stop_polling(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
