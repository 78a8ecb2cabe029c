"""Fixtures for the service tests: a small real model exported once per session, apps, clients.

The model is a plain Keras MLP (784-64-10) trained for a few epochs on 10,000 real MNIST training
images (about 93 % test accuracy), exported with ``training.export.export_model`` exactly as training
does. The service itself never imports Keras or ``training``; only this fixture does.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def mnist_subset(mnist):
    """10,000 training and 2,000 test images of real MNIST."""
    (x, y), (xt, yt) = mnist
    return (x[:10000], y[:10000]), (xt[:2000], yt[:2000])


@pytest.fixture(scope="session")
def trained_model(mnist_subset):
    import keras

    (x, y), _ = mnist_subset
    keras.utils.set_random_seed(0)
    inputs = keras.Input((784,), name="pixels")
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    outputs = keras.layers.Dense(10, activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=4, batch_size=128, verbose=0)
    return model


@pytest.fixture(scope="session")
def export_base(tmp_path_factory, trained_model, mnist_subset) -> Path:
    """An export base holding version 1 of the small model. Tests must not modify it."""
    from training.export import export_model

    _, (xt, yt) = mnist_subset
    accuracy = float((trained_model.predict(xt, verbose=0).argmax(1) == yt).mean())
    base = tmp_path_factory.mktemp("exports") / "mnist"
    export_model(trained_model, base, {"sizes": [784, 64, 10], "test_accuracy": accuracy})
    return base


@pytest.fixture(scope="session")
def version_dir(export_base) -> Path:
    return export_base / "1"


def copy_version(source: Path, base: Path, version: int) -> Path:
    """Publish a copy of ``source`` as ``base/<version>`` atomically (temporary folder + rename)."""
    base.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=base))
    shutil.copytree(source, staging / "model")
    os.rename(staging / "model", base / str(version))
    shutil.rmtree(staging)
    return base / str(version)


@pytest.fixture(scope="session")
def reference(version_dir):
    """The exported signature loaded directly with ``tf.saved_model.load``: predictions to match."""
    import tensorflow as tf

    fn = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return lambda x: fn(pixels=tf.constant(np.asarray(x, np.float32)))["probabilities"].numpy()


@pytest.fixture(scope="module")
def app(export_base):
    from service.app import create_app

    application = create_app({"MODEL_DIR": str(export_base), "MODEL_POLL_SECONDS": 0, "MAX_BATCH": 64,
                              "MAX_BODY_BYTES": 1024 * 1024, "MAX_IMAGE_PIXELS": 1000 * 1000})
    yield application
    application.extensions["mnist"].predictor.stop_polling()


@pytest.fixture
def client(app):
    return app.test_client()


def png_bytes(pixels: np.ndarray, size: int | tuple[int, int] = 28, invert: bool = True,
              mode: str = "L", fmt: str = "PNG") -> bytes:
    """A 28x28 MNIST digit (floats in [0, 1]) rendered as an image file at another size.

    ``invert`` draws it the way people write: dark ink on white paper.
    """
    from PIL import Image

    grey = np.asarray(pixels, np.float32).reshape(28, 28)
    if invert:
        grey = 1.0 - grey
    image = Image.fromarray((grey * 255).round().astype(np.uint8))
    if size != 28:
        image = image.resize(size if isinstance(size, tuple) else (size, size), Image.Resampling.BICUBIC)
    image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()
