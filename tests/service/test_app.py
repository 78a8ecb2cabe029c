"""Every endpoint and format through Flask's test client, with a real exported model.

The model is the conftest's digits model (trained in seconds, no MNIST needed): these tests check
the protocols, that each answer is exactly what the SavedModel says. That real digits get the right
answer is ``test_mnist_accuracy.py``'s subject.
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest

from .conftest import png_bytes


def as_f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(np.float32)


@pytest.fixture(scope="module")
def digits(digits_data):
    """A few MNIST-like test digits (scikit-learn's, scaled to 28x28) and their labels."""
    _, (xt, yt) = digits_data
    return xt[:300], yt[:300]


# ---- our own API ----------------------------------------------------------------------------------
def test_predict_json_matches_the_saved_model_exactly(client, digits, reference):
    x, _ = digits
    batch = x[:8]
    response = client.post("/predict", json={"instances": batch.tolist()})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model"] == {"name": "mnist", "version": 1}
    expected = reference(batch)
    got = as_f32([p["probabilities"] for p in body["predictions"]])
    np.testing.assert_array_equal(got, expected)  # bit-identical float32
    assert [p["digit"] for p in body["predictions"]] == expected.argmax(1).tolist()
    for p in body["predictions"]:
        assert p["confidence"] == max(p["probabilities"])
        assert len(p["probabilities"]) == 10


def test_predict_accepts_28_rows_of_28(client, digits, reference):
    x, _ = digits
    response = client.post("/predict", json={"instances": [x[0].reshape(28, 28).tolist()]})
    assert response.status_code == 200
    np.testing.assert_array_equal(as_f32(response.get_json()["predictions"][0]["probabilities"]),
                                  reference(x[:1])[0])


def test_predict_accepts_integers_and_json_without_content_type(client):
    body = json.dumps({"instances": [[0] * 784, [1] * 784]})
    for headers in ({}, {"Content-Type": "application/x-www-form-urlencoded"}):
        response = client.post("/predict", data=body, headers=headers)
        assert response.status_code == 200, response.get_json()
        assert len(response.get_json()["predictions"]) == 2


def test_predict_accepts_a_mix_of_flat_and_square_instances_exactly(client, digits, reference):
    x, _ = digits
    response = client.post("/predict", json={"instances": [x[0].tolist(), x[1].reshape(28, 28).tolist()]})
    assert response.status_code == 200
    got = as_f32([p["probabilities"] for p in response.get_json()["predictions"]])
    np.testing.assert_array_equal(got, reference(x[:2]))


@pytest.mark.parametrize("fmt,content_type,mode", [
    ("PNG", "image/png", "L"), ("JPEG", "image/jpeg", "RGB"), ("GIF", "image/gif", "P"),
    ("BMP", "image/bmp", "RGB"), ("WEBP", "image/webp", "RGB"), ("PNG", "image/png", "RGBA"),
])
def test_image_body_and_multipart_form_are_preprocessed_then_predicted(client, digits, reference, fmt,
                                                                        content_type, mode):
    """Each supported format, as the body or as a form's 'image' file: the SavedModel's answer for
    the image prepared by ``service.images.to_mnist``."""
    from service.images import to_mnist

    x, _ = digits
    image = png_bytes(x[1], size=84, mode=mode, fmt=fmt)
    expected = reference(to_mnist(image)[None, :])
    by_body = client.post("/predict", data=image, content_type=content_type)
    by_form = client.post("/predict", data={"image": (io.BytesIO(image), "digit")},
                          content_type="multipart/form-data")
    for response in (by_body, by_form):
        assert response.status_code == 200, response.get_json()
        (prediction,) = response.get_json()["predictions"]
        np.testing.assert_array_equal(as_f32(prediction["probabilities"]), expected[0])


def test_base64_images_and_data_urls_in_json_beside_pixels(client, digits, reference):
    from service.images import to_mnist

    x, _ = digits
    image = png_bytes(x[0], size=112)
    b64 = base64.b64encode(image).decode()
    url_safe = base64.urlsafe_b64encode(image).decode().rstrip("=")
    response = client.post("/predict", json={"instances": [{"b64": b64},
                                                           {"b64": "data:image/png;base64," + b64},
                                                           {"b64": url_safe}, x[0].tolist()]})
    assert response.status_code == 200, response.get_json()
    expected = reference(np.stack([to_mnist(image)] * 3 + [x[0]]))
    got = as_f32([p["probabilities"] for p in response.get_json()["predictions"]])
    np.testing.assert_array_equal(got, expected)


# ---- TensorFlow Serving REST API ------------------------------------------------------------------
def test_tf_serving_row_format(client, digits, reference):
    x, _ = digits
    response = client.post("/v1/models/mnist:predict", json={"instances": x[:3].tolist()})
    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == ["predictions"]
    assert np.asarray(body["predictions"]).shape == (3, 10)
    np.testing.assert_array_equal(as_f32(body["predictions"]), reference(x[:3]))
    named = client.post("/v1/models/mnist:predict",
                        json={"signature_name": "serving_default",
                              "instances": [{"pixels": row} for row in x[:3].tolist()]})
    assert named.get_json() == body


def test_tf_serving_columnar_format(client, digits, reference):
    x, _ = digits
    plain = client.post("/v1/models/mnist:predict", json={"inputs": x[:2].tolist()}).get_json()
    named = client.post("/v1/models/mnist/versions/1:predict",
                        json={"inputs": {"pixels": x[:2].tolist()}}).get_json()
    assert list(plain) == ["outputs"] and plain == named
    np.testing.assert_array_equal(as_f32(plain["outputs"]), reference(x[:2]))


def test_tf_serving_model_status(client):
    expected = {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert client.get("/v1/models/mnist").get_json() == expected
    assert client.get("/v1/models/mnist/versions/1").get_json() == expected
    response = client.get("/v1/models/mnist/versions/5")
    assert response.status_code == 404 and "version 5" in response.get_json()["error"]


def test_tf_serving_metadata(client):
    body = client.get("/v1/models/mnist/metadata").get_json()
    assert body["model_spec"] == {"name": "mnist", "signature_name": "", "version": "1"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    pixels = signature["inputs"]["pixels"]
    assert pixels["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in pixels["tensor_shape"]["dim"]] == ["-1", "784"]
    out = signature["outputs"]["probabilities"]
    assert [d["size"] for d in out["tensor_shape"]["dim"]] == ["-1", "10"]
    assert client.get("/v1/models/mnist/versions/1/metadata").get_json() == body


# ---- Open Inference Protocol (KServe v2) ----------------------------------------------------------
def test_v2_health_and_metadata(client):
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get("/v2/models/mnist/ready").get_json() == {"name": "mnist", "ready": True}
    assert client.get("/v2/models/mnist/versions/1/ready").status_code == 200
    metadata = client.get("/v2/models/mnist").get_json()
    assert metadata == {
        "name": "mnist", "versions": ["1"], "platform": "tensorflow_savedmodel",
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 784]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}],
    }
    assert client.get("/v2/models/mnist/versions/1").get_json() == metadata
    server = client.get("/v2").get_json()
    assert set(server) == {"name", "version", "extensions"}


def test_v2_infer_flat_and_nested_data(client, digits, reference):
    x, _ = digits
    request = {"id": "42", "inputs": [{"name": "pixels", "shape": [2, 784], "datatype": "FP32",
                                       "data": x[:2].reshape(-1).tolist()}],
               "outputs": [{"name": "probabilities"}]}
    response = client.post("/v2/models/mnist/infer", json=request)
    assert response.status_code == 200
    body = response.get_json()
    assert body["model_name"] == "mnist" and body["model_version"] == "1" and body["id"] == "42"
    (output,) = body["outputs"]
    assert output["name"] == "probabilities" and output["datatype"] == "FP32" and output["shape"] == [2, 10]
    assert len(output["data"]) == 20  # flattened, row-major
    np.testing.assert_array_equal(as_f32(output["data"]).reshape(2, 10), reference(x[:2]))
    request["inputs"][0]["data"] = x[:2].tolist()
    del request["id"]
    nested = client.post("/v2/models/mnist/versions/1/infer", json=request).get_json()
    assert nested["outputs"] == body["outputs"] and "id" not in nested


def test_v2_infer_without_content_type_like_tritons_client(client, digits):
    x, _ = digits
    body = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32",
                                   "data": x[0].tolist()}]})
    response = client.post("/v2/models/mnist/infer", data=body, headers={"Content-Type": ""})
    assert response.status_code == 200, response.get_json()


def test_v2_binary_tensor_extension_both_ways(client, digits, reference):
    x, _ = digits
    raw = x[:3].astype("<f4").tobytes()
    header = json.dumps({"inputs": [{"name": "pixels", "shape": [3, 784], "datatype": "FP32",
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}]}).encode()
    response = client.post("/v2/models/mnist/infer", data=header + raw,
                           headers={"Content-Type": "application/octet-stream",
                                    "Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200, response.data[:300]
    split = int(response.headers["Inference-Header-Content-Length"])
    head = json.loads(response.data[:split])
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 120}
    probabilities = np.frombuffer(response.data[split:], "<f4").reshape(3, 10)
    np.testing.assert_array_equal(probabilities, reference(x[:3]))


# ---- probes, metrics, OpenAPI, page ---------------------------------------------------------------
def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "alive"}
    assert client.get("/readyz").get_json() == {"status": "ready", "model": {"name": "mnist", "version": 1}}


def test_not_ready_without_a_model_but_alive(tmp_path):
    from service.app import create_app

    app = create_app({"MODEL_DIR": str(tmp_path / "empty"), "MODEL_POLL_SECONDS": 0})
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    for path in ("/readyz", "/v2/health/ready", "/v2/models/mnist/ready"):
        assert client.get(path).status_code == 503, path
    response = client.post("/predict", json={"instances": [[0] * 784]})
    assert response.status_code == 503
    assert "does not exist" in response.get_json()["error"] and response.headers["Retry-After"]
    assert client.get("/readyz").get_json()["error"].startswith("no model loaded")
    assert client.post("/v1/models/mnist:predict", json={"instances": [[0] * 784]}).status_code == 503
    assert client.get("/v1/models/mnist").status_code == 404


def test_metrics(client, digits):
    x, y = digits
    client.post("/predict", json={"instances": x[:5].tolist()})
    client.post("/predict", data="nope", content_type="application/json")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'mnist_http_requests_total{method="POST",protocol="http",route="/predict",status="200"}' in text
    assert 'mnist_http_requests_total{method="POST",protocol="http",route="/predict",status="400"}' in text
    assert 'mnist_http_request_duration_seconds_bucket{le="0.005",protocol="http",route="/predict"}' in text
    assert re.search(r'mnist_instances_per_request_bucket\{le="8.0",protocol="http",route="/predict"\} [1-9]', text)
    assert re.search(r'mnist_predictions_total\{digit="\d"\} [1-9]', text)
    assert "mnist_model_version 1.0" in text
    assert 'mnist_model_reloads_total{outcome="success"} 0.0' in text


def test_openapi_is_valid_and_documents_every_route(app, client):
    from openapi_spec_validator import validate

    spec = client.get("/openapi.json").get_json()
    validate(spec)
    documented = set(spec["paths"])
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule).replace("{name}", "{model}")
        if path == "/v1/models/{rest}":  # TF Serving's URL grammar, parsed by one route
            assert {"/v1/models/{model}", "/v1/models/{model}:predict",
                    "/v1/models/{model}/metadata"} <= documented
            continue
        assert path in documented, path


def test_draw_page_is_self_contained(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "<canvas" in html and "predict" in html
    assert not re.search(r'(src|href)="(https?:)?//', html), "no external scripts, styles or fonts"
    assert "@import" not in html and "url(http" not in html
