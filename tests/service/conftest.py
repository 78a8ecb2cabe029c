"""Fixtures for the service tests: small real models exported once per session, apps, clients.

Two plain Keras MLPs (784-64-10), each exported with ``training.export.export_model`` exactly as
training does (the service itself never imports Keras or ``training``; only these fixtures do):

- ``trained_model`` -> ``export_base`` / ``version_dir`` / ``reference`` / ``app`` / ``client``: trained
  in seconds on scikit-learn's bundled digits (``training.data.load_digits_28``: offline, shaped like
  MNIST; about 95 % test accuracy). Every protocol, validation, error, reload and gunicorn test uses it,
  so they run (not skip) without MNIST.
- ``mnist_model`` -> ``mnist_export_base`` / ``mnist_app``: trained for a few epochs on 10,000 real
  MNIST training images (about 93 % test accuracy), for the tests whose point is that real digits,
  as pixels or drawn as images, are recognised. They need the ``mnist`` fixture (``MNIST_DATA_DIR``)
  and skip without it.
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

APP_CONFIG = {"MODEL_POLL_SECONDS": 0, "MAX_BATCH": 64, "MAX_BODY_BYTES": 1024 * 1024,
              "MAX_IMAGE_PIXELS": 1000 * 1000}


def train_mlp(train_split: tuple[np.ndarray, np.ndarray], *, epochs: int, batch_size: int):
    """A seeded Keras 784-64-10 MLP with the contract's input name, trained on ``train_split`` ``(x, y)``."""
    import keras

    x, y = train_split
    keras.utils.set_random_seed(0)
    inputs = keras.Input((784,), name="pixels")
    hidden = keras.layers.Dense(64, activation="relu")(inputs)
    outputs = keras.layers.Dense(10, activation="softmax")(hidden)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return model


def export(model, base: Path, test_split) -> Path:
    """Version 1 of ``model`` under ``base``, with its accuracy on ``test_split`` in the metadata."""
    from training.export import export_model

    images, labels = test_split
    accuracy = float((model.predict(images, verbose=0).argmax(1) == labels).mean())
    export_model(model, base, {"sizes": [784, 64, 10], "test_accuracy": accuracy})
    return base


def make_app(export_base: Path):
    """The service on ``export_base`` with small limits (MAX_BATCH=64, MAX_BODY_BYTES=1 MiB,
    MAX_IMAGE_PIXELS=1,000,000) and no polling."""
    from service.app import create_app

    return create_app({"MODEL_DIR": str(export_base), **APP_CONFIG})


def serving_app(export_base: Path):
    """The body of an app fixture: ``make_app(export_base)``, its predictor's polling stopped afterwards."""
    application = make_app(export_base)
    yield application
    application.extensions["mnist"].predictor.stop_polling()


# ---- the digits model: no MNIST needed ------------------------------------------------------------
@pytest.fixture(scope="session")
def digits_data():
    """scikit-learn's 1,797 digits as 28x28 MNIST-like images: ``((x, y), (x_test, y_test))``."""
    from training.data import load_digits_28

    return load_digits_28()


@pytest.fixture(scope="session")
def trained_model(digits_data):
    return train_mlp(digits_data[0], epochs=10, batch_size=64)


@pytest.fixture(scope="session")
def export_base(tmp_path_factory, trained_model, digits_data) -> Path:
    """An export base holding version 1 of the digits model. Tests must not modify it."""
    return export(trained_model, tmp_path_factory.mktemp("exports") / "mnist", digits_data[1])


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

    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return lambda x: signature(pixels=tf.constant(np.asarray(x, np.float32)))["probabilities"].numpy()


@pytest.fixture(scope="session")
def grpc_server(tmp_path_factory):
    """gunicorn with 2 workers serving gRPC on a free GRPC_PORT beside HTTP, from an empty export base
    (MAX_BATCH=64, MAX_BODY_BYTES=1 MiB): test_grpc.py runs first, loads versions 1 and 2 into it."""
    from tests.support import running_gunicorn

    from .grpc_support import wait_for_grpc

    folder = tmp_path_factory.mktemp("grpc")
    limits = {"MAX_BATCH": "64", "MAX_BODY_BYTES": str(1024 * 1024)}
    with running_gunicorn(folder / "exports", folder / "gunicorn.log", workers=2, poll_seconds=0.5,
                          extra_env=limits) as gunicorn:
        wait_for_grpc(gunicorn)
        yield gunicorn


@pytest.fixture(scope="module")
def app(export_base):
    yield from serving_app(export_base)


@pytest.fixture
def client(app):
    return app.test_client()


# ---- the MNIST model: for the tests of recognising real digits ------------------------------------
@pytest.fixture(scope="session")
def mnist_subset(mnist):
    """10,000 training and 2,000 test images of real MNIST."""
    (images, labels), (test_images, test_labels) = mnist
    return (images[:10000], labels[:10000]), (test_images[:2000], test_labels[:2000])


@pytest.fixture(scope="session")
def mnist_model(mnist_subset):
    return train_mlp(mnist_subset[0], epochs=4, batch_size=128)


@pytest.fixture(scope="session")
def mnist_export_base(tmp_path_factory, mnist_model, mnist_subset) -> Path:
    """An export base holding version 1 of the MNIST model. Tests must not modify it."""
    return export(mnist_model, tmp_path_factory.mktemp("mnist-exports") / "mnist", mnist_subset[1])


@pytest.fixture(scope="module")
def mnist_app(mnist_export_base):
    yield from serving_app(mnist_export_base)


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
