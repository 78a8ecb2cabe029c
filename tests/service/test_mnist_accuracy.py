"""Real digits are recognised: the tests whose point is accuracy on real MNIST.

Real MNIST test digits, as pixels and drawn as images of other sizes, formats and colours, get the
right digit from a model trained on real MNIST. They need MNIST (``MNIST_DATA_DIR``) and skip
without it; every protocol test of the same endpoints runs without it in ``test_app.py``.

In this module ``client`` and ``digits`` are the MNIST model's app and real MNIST test digits (they
override the conftest's digits-model ``client``).
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from .conftest import png_bytes


def as_f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(np.float32)


@pytest.fixture
def client(mnist_app):
    return mnist_app.test_client()


@pytest.fixture(scope="module")
def digits(mnist_subset):
    """A few real MNIST test digits and their labels."""
    _, (xt, yt) = mnist_subset
    return xt[:300], yt[:300]


def test_predict_accepts_a_mix_of_flat_and_square_instances(client, digits):
    x, y = digits
    response = client.post("/predict", json={"instances": [x[0].tolist(), x[1].reshape(28, 28).tolist()]})
    assert response.status_code == 200
    assert [p["digit"] for p in response.get_json()["predictions"]] == y[:2].tolist()


def test_predict_png_body_multipart_and_base64(client, digits):
    x, y = digits
    image = png_bytes(x[0], size=112)
    by_body = client.post("/predict", data=image, content_type="image/png").get_json()
    by_form = client.post("/predict", data={"image": (__import__("io").BytesIO(image), "digit.png")},
                          content_type="multipart/form-data").get_json()
    b64 = base64.b64encode(image).decode()
    by_b64 = client.post("/predict", json={"instances": [{"b64": b64},
                                                         {"b64": "data:image/png;base64," + b64},
                                                         x[0].tolist()]}).get_json()
    assert by_body["predictions"][0]["digit"] == int(y[0])
    assert by_body["predictions"] == by_form["predictions"]
    single = as_f32(by_body["predictions"][0]["probabilities"])
    for p in by_b64["predictions"][:2]:  # in a batch of 3 the float32 sums may differ in the last bit
        np.testing.assert_allclose(as_f32(p["probabilities"]), single, rtol=1e-4, atol=1e-7)
    assert by_b64["predictions"][2]["digit"] == int(y[0])


@pytest.mark.parametrize("fmt,content_type,mode", [
    ("JPEG", "image/jpeg", "RGB"), ("GIF", "image/gif", "P"), ("BMP", "image/bmp", "RGB"),
    ("WEBP", "image/webp", "RGB"), ("PNG", "image/png", "RGBA"),
])
def test_predict_every_supported_image_format(client, digits, fmt, content_type, mode):
    x, y = digits
    image = png_bytes(x[1], size=84, mode=mode, fmt=fmt)
    response = client.post("/predict", data=image, content_type=content_type)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["predictions"][0]["digit"] == int(y[1])


def test_images_of_real_digits_are_classified_as_well_as_raw_pixels(client, digits):
    """Real MNIST test digits drawn as dark-on-white images at other sizes: same accuracy."""
    x, y = digits
    raw = client.post("/predict", json={"instances": x[:64].tolist()}).get_json()
    raw_digits = [p["digit"] for p in raw["predictions"]]
    raw_digits += [p["digit"] for p in client.post(
        "/predict", json={"instances": x[64:128].tolist()}).get_json()["predictions"]]
    raw_accuracy = np.mean(np.array(raw_digits) == y[:128])
    for size in (40, 100, 280):
        instances = [{"b64": base64.b64encode(png_bytes(img, size=size)).decode()} for img in x[:128]]
        image_digits = []
        for start in (0, 64):
            response = client.post("/predict", json={"instances": instances[start:start + 64]})
            assert response.status_code == 200, response.get_json()
            image_digits += [p["digit"] for p in response.get_json()["predictions"]]
        image_accuracy = np.mean(np.array(image_digits) == y[:128])
        agreement = np.mean(np.array(image_digits) == np.array(raw_digits))
        assert image_accuracy >= raw_accuracy - 0.03, (size, image_accuracy, raw_accuracy)
        assert agreement >= 0.93, (size, agreement)


def test_light_digit_on_dark_and_transparent_background_images(client, digits):
    from PIL import Image
    import io

    x, y = digits
    light_on_dark = png_bytes(x[2], size=56, invert=False)
    assert client.post("/predict", data=light_on_dark,
                       content_type="image/png").get_json()["predictions"][0]["digit"] == int(y[2])
    ink = Image.fromarray(np.zeros((28, 28), np.uint8)).convert("RGBA")
    alpha = Image.fromarray((x[2].reshape(28, 28) * 255).astype(np.uint8))
    ink.putalpha(alpha)  # black ink, transparent paper: how many drawing apps export
    out = io.BytesIO()
    ink.resize((90, 90)).save(out, format="PNG")
    assert client.post("/predict", data=out.getvalue(),
                       content_type="image/png").get_json()["predictions"][0]["digit"] == int(y[2])
