"""Versioned, atomic TensorFlow SavedModel export: writes the layout of ``service/contract.py``.

The signature loads with plain ``tf.saved_model.load(path).signatures["serving_default"]`` in a
process that never imports this project: the custom layers are traced into the graph.

A version is written into a temporary folder beside its final place and renamed into place only when
complete (``os.rename`` of a directory is atomic on POSIX), so a reader never sees half a version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from service.contract import INPUT_NAME, METADATA_PATH, OUTPUT_NAME, SIGNATURE_NAME, TEMP_PREFIX, next_version
from training.atomic import write_json_atomic


def _write_savedmodel(model, path: Path) -> None:
    """Trace ``model`` into a SavedModel at ``path`` with the contract's signature."""
    width = model.input_shape[-1]
    archive = keras.export.ExportArchive()
    archive.track(model)

    @tf.function(input_signature=[tf.TensorSpec((None, width), tf.float32, name=INPUT_NAME)])
    def serving_default(pixels):
        return {OUTPUT_NAME: model(pixels, training=False)}

    archive.add_endpoint(SIGNATURE_NAME, serving_default)
    archive.write_out(str(path), verbose=False)


def export_model(model, export_base: str | os.PathLike, metadata: dict | None = None, verify=None) -> Path:
    """Export ``model`` as the next version under ``export_base`` and return the version folder.

    ``metadata`` (plus ``version`` and ``created``) goes to ``assets.extra/metadata.json``.
    ``verify(staged_dir)``, if given, runs on the complete SavedModel before it is published and
    raises to abort: a version that fails it never appears under ``export_base``.
    If another exporter takes the same version number first, the next number is tried.
    """
    base = Path(export_base)
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=TEMP_PREFIX))
    try:
        staged = tmp / "model"
        _write_savedmodel(model, staged)
        if verify is not None:
            verify(staged)
        for _ in range(100):
            version = next_version(base)
            meta = dict(metadata or {})
            meta.update(version=version, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            write_json_atomic(staged / METADATA_PATH, meta)
            try:
                os.rename(staged, base / str(version))
            except OSError:
                if (base / str(version)).exists():
                    continue  # lost a race for this number: take the next one
                raise
            return base / str(version)
        raise RuntimeError(f"could not claim a version number under {base}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ExportVerificationError(RuntimeError):
    """The reloaded export does not predict what the model in memory predicts."""


def verify_export(model, x):
    """A check for ``export_model``: the SavedModel, loaded the way the service loads it, must give the
    in-memory model's probabilities (same classes, values within 1e-5) on ``x``."""
    return verify_probabilities(x, lambda: model.predict(x, batch_size=2048, verbose=0))


def verify_probabilities(x, expected):
    """A check for ``export_model``: the SavedModel, loaded the way the service loads it, must give the
    probabilities ``expected`` (an array, or a function returning one) on ``x``: same classes, values
    within 1e-5. ``training/export_keras.py`` passes those a torch or JAX process computed."""
    def verify(path: Path):
        serve = tf.saved_model.load(str(path)).signatures[SIGNATURE_NAME]
        exported = serve(**{INPUT_NAME: tf.constant(x, dtype=tf.float32)})[OUTPUT_NAME].numpy()
        wanted = np.asarray(expected() if callable(expected) else expected)
        if wanted.shape != exported.shape:
            raise ExportVerificationError(f"the reloaded export gives probabilities of shape {exported.shape}, "
                                          f"the trained model {wanted.shape}")
        same_class = float((exported.argmax(1) == wanted.argmax(1)).mean())
        max_diff = float(np.abs(exported - wanted).max())
        if same_class < 1.0 or not max_diff <= 1e-5:
            raise ExportVerificationError(f"the reloaded export disagrees with the trained model: "
                                          f"{same_class:.2%} same classes, max |diff| {max_diff:.2e}")
        print(f"Export verified on {len(x)} test images: identical classes, max |diff| {max_diff:.1e}")
    return verify
