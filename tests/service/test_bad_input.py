"""Every kind of bad input: the right status, a JSON ``{"error": ...}`` that says what to do, and the
service keeps answering. (The app fixture uses MAX_BATCH=64, MAX_BODY_BYTES=1 MiB and
MAX_IMAGE_PIXELS=1,000,000.)"""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest

from .conftest import png_bytes

ZEROS = [0.0] * 784
V2 = "/v2/models/mnist/infer"


def v2_body(**tensor_overrides) -> dict:
    tensor = {"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": ZEROS}
    tensor.update(tensor_overrides)
    return {"inputs": [tensor]}


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims to be ``width`` x ``height`` (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def blank_png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (50, 50), 255).save(out, format="PNG")
    return out.getvalue()


J = "application/json"
CASES = [
    # (id, method, path, body, content type, status, words expected in the message)
    ("malformed JSON", "POST", "/predict", '{"instances": [', J, 400, "malformed JSON"),
    # json.loads(bytes) would also read UTF-16, where the raw-bytes check for true/false misses booleans
    ("UTF-16 JSON", "POST", "/predict", ('{"instances": [[true' + ", 0" * 783 + "]]}").encode("utf-16"), J, 400,
     "not UTF-8"),
    ("empty body", "POST", "/predict", "", J, 400, "empty"),
    ("JSON list, not object", "POST", "/predict", "[1, 2]", J, 400, "must be an object"),
    ("missing key", "POST", "/predict", {"data": [ZEROS]}, J, 400, "missing key 'instances'"),
    ("instances not a list", "POST", "/predict", {"instances": "abc"}, J, 400, "must be a list"),
    ("no instances", "POST", "/predict", {"instances": []}, J, 400, "no instances"),
    ("783 numbers", "POST", "/predict", {"instances": [ZEROS[:-1]]}, J, 400, "has 783 numbers; expected 784"),
    ("27 rows", "POST", "/predict", {"instances": [[[0] * 28] * 27]}, J, 400, "shape [27, 28]"),
    ("ragged", "POST", "/predict", {"instances": [ZEROS, ZEROS[:10]]}, J, 400, "instance 1 has 10 numbers"),
    ("scalar instance", "POST", "/predict", {"instances": [0.5]}, J, 400, "instance 0 must be a list"),
    ("string value", "POST", "/predict", {"instances": [["0.5"] + ZEROS[1:]]}, J, 400, "non-numeric"),
    ("boolean value", "POST", "/predict", {"instances": [[True] + ZEROS[1:]]}, J, 400, "non-numeric value (true)"),
    ("null value", "POST", "/predict", {"instances": [[None] + ZEROS[1:]]}, J, 400, "non-numeric"),
    ("NaN", "POST", "/predict", '{"instances": [[NaN' + ", 0" * 783 + "]]}", J, 400, "contains NaN"),
    ("Infinity", "POST", "/predict", '{"instances": [[Infinity' + ", 0" * 783 + "]]}", J, 400, "Infinity"),
    ("overflow", "POST", "/predict", '{"instances": [[1e999' + ", 0" * 783 + "]]}", J, 400, "Infinity"),
    ("0-255 pixels", "POST", "/predict", {"instances": [[255] * 784]}, J, 400, "divide 0-255 pixel values by 255"),
    ("negative", "POST", "/predict", {"instances": [[-0.5] + ZEROS[1:]]}, J, 400, "outside [0, 1]"),
    ("too many instances", "POST", "/predict", {"instances": [ZEROS] * 65}, J, 413, "at most 64"),
    ("unsupported type", "POST", "/predict", "1,2,3", "text/csv", 415, "unsupported Content-Type 'text/csv'"),
    ("unsupported image type", "POST", "/predict", b"II*\0", "image/tiff", 415, "image/png"),
    ("not an image", "POST", "/predict", b"hello, not a png", "image/png", 400, "not an image"),
    ("truncated image", "POST", "/predict", "TRUNCATED", "image/png", 400, "could not be decoded"),
    ("image too large", "POST", "/predict", "BIG", "image/png", 413, "at most 1000000 pixels"),
    ("decompression bomb", "POST", "/predict", png_header_only(100_000, 100_000), "image/png", 413, "too large"),
    ("blank image", "POST", "/predict", blank_png(), "image/png", 422, "no digit found in the image: it holds nothing: it is blank"),
    ("bad base64", "POST", "/predict", {"instances": [{"b64": "***"}]}, J, 400, "not valid base64"),
    ("wrong object", "POST", "/predict", {"instances": [{"image": "x"}]}, J, 400, '{"b64": "<base64 image>"}'),
    ("b64 not an image", "POST", "/predict", {"instances": [{"b64": "aGVsbG8="}]}, J, 400, "instance 0: the data is not an image"),
    # TensorFlow Serving API
    ("v1 unknown model", "POST", "/v1/models/fashion:predict", {"instances": [ZEROS]}, J, 404, "'fashion'"),
    ("v1 unknown version", "POST", "/v1/models/mnist/versions/9:predict", {"instances": [ZEROS]}, J, 404, "version 9 is not loaded"),
    ("v1 bad version", "GET", "/v1/models/mnist/versions/x1", None, None, 404, "positive integer"),
    ("v1 unicode version", "GET", "/v1/models/mnist/versions/\u00b2", None, None, 404, "positive integer"),
    ("v1 huge version", "GET", "/v1/models/mnist/versions/" + "9" * 5000, None, None, 404, "positive integer"),
    ("deeply nested", "POST", "/predict", '{"instances": [' + "[" * 5000 + "]" * 5000 + "]}", J, 400, "nested too deeply"),
    ("nested 100 deep", "POST", "/predict", '{"instances": [' + "[" * 100 + "0" + "]" * 100 + "]}", J, 400, "instance 0"),
    ("v2 nested 100 deep", "POST", V2, '{"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [' + "[" * 100 + "true" + "]" * 100 + "]}]}", J, 400, "non-numeric"),
    ("v1 label", "GET", "/v1/models/mnist/labels/stable", None, None, 404, "label 'stable'"),
    ("v1 both formats", "POST", "/v1/models/mnist:predict", {"instances": [ZEROS], "inputs": [ZEROS]}, J, 400, "not both"),
    ("v1 neither format", "POST", "/v1/models/mnist:predict", {"examples": []}, J, 400, "Missing 'inputs' or 'instances'"),
    ("v1 signature", "POST", "/v1/models/mnist:predict", {"signature_name": "serve2", "instances": [ZEROS]}, J, 400, "'serve2' not found"),
    ("v1 classify", "POST", "/v1/models/mnist:classify", {"examples": []}, J, 400, "use :predict"),
    ("v1 28x28", "POST", "/v1/models/mnist:predict", {"instances": [[[0] * 28] * 28]}, J, 400, "784 numbers"),
    ("v1 wrong input name", "POST", "/v1/models/mnist:predict", {"instances": [{"image": ZEROS}]}, J, 400, "'pixels'"),
    ("v1 too many", "POST", "/v1/models/mnist:predict", {"inputs": [ZEROS] * 65}, J, 413, "MAX_BATCH"),
    ("v1 empty inputs", "POST", "/v1/models/mnist:predict", {"inputs": {"pixels": []}}, J, 400, "no instances"),
    ("v1 range", "POST", "/v1/models/mnist:predict", {"instances": [[2] * 784]}, J, 400, "divide 0-255"),
    ("v1 image body", "POST", "/v1/models/mnist:predict", b"\x89PNG", "image/png", 415, "JSON"),
    # Open Inference Protocol
    ("v2 unknown model", "POST", "/v2/models/fashion/infer", v2_body(), J, 404, "unknown model 'fashion'"),
    ("v2 unknown model metadata", "GET", "/v2/models/fashion", None, None, 404, "unknown model"),
    ("v2 unknown version", "POST", "/v2/models/mnist/versions/9/infer", v2_body(), J, 404, "version 9"),
    ("v2 no inputs", "POST", V2, {"inputs": []}, J, 400, "non-empty list"),
    ("v2 input name", "POST", V2, v2_body(name="x"), J, 400, "unknown input 'x'"),
    ("v2 datatype", "POST", V2, v2_body(datatype="BYTES"), J, 400, "FP32"),
    ("v2 datatype not a string", "POST", V2, v2_body(datatype=["FP32"]), J, 400, "FP32"),
    ("v2 shape", "POST", V2, v2_body(shape=[1, 783]), J, 400, "[n, 784]"),
    ("v2 data size", "POST", V2, v2_body(shape=[2, 784]), J, 400, "needs 1568"),
    ("v2 missing data", "POST", V2, {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32"}]}, J, 400, "missing 'data'"),
    ("v2 non-numeric", "POST", V2, v2_body(data=["a"] * 784), J, 400, "non-numeric"),
    ("v2 boolean", "POST", V2, v2_body(data=[True] + ZEROS[1:]), J, 400, "non-numeric"),
    ("v2 range", "POST", V2, v2_body(data=[255.0] * 784), J, 400, "divide 0-255"),
    ("v2 NaN", "POST", V2, '{"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [NaN'
     + ", 0" * 783 + "]}]}", J, 400, "NaN"),
    ("v2 NaN id", "POST", V2, '{"id": NaN, "inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", '
     '"data": [0' + ", 0" * 783 + "]}]}", J, 400, "'id' must be a string"),
    ("v2 output name", "POST", V2, {**v2_body(), "outputs": [{"name": "logits"}]}, J, 400, "unknown output 'logits'"),
    ("v2 too many", "POST", V2, v2_body(shape=[65, 784], data=ZEROS * 65), J, 413, "MAX_BATCH"),
    ("v2 binary size", "POST", V2, "BINARY", "application/octet-stream", 400, "binary_data_size must be 3136"),
    ("v2 binary size not an integer", "POST", V2, "BINARY FLOAT SIZE", "application/octet-stream", 400,
     "binary_data_size must be 3136"),
    # methods and routes
    ("GET /predict", "GET", "/predict", None, None, 405, "use POST"),
    ("POST /healthz", "POST", "/healthz", None, None, 405, "use GET"),
    ("DELETE v1 status", "DELETE", "/v1/models/mnist", None, None, 405, "DELETE is not allowed"),
    ("GET v1 predict", "GET", "/v1/models/mnist:predict", None, None, 405, "use POST"),
    ("GET v2 infer", "GET", V2, None, None, 405, "use POST"),
    ("unknown route", "GET", "/predictions", None, None, 404, "no such endpoint: GET /predictions"),
    ("unknown v1 verb", "POST", "/v1/models/mnist:explain", {}, J, 404, "no such endpoint"),
]


def make_body(body, digits):
    if body == "TRUNCATED":
        return png_bytes(digits[0], size=60)[:120]
    if body == "BIG":
        return png_bytes(digits[0], size=1001)
    if body in ("BINARY", "BINARY FLOAT SIZE"):
        declared = 100 if body == "BINARY" else 3136.0  # the right size, but not an integer
        header = json.dumps({"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32",
                                         "parameters": {"binary_data_size": declared}}]}).encode()
        return header + b"\0" * int(declared), {"Inference-Header-Content-Length": str(len(header))}
    if isinstance(body, (dict, list)):
        return json.dumps(body)
    return body


@pytest.fixture(scope="module")
def some_digits(digits_data):
    return digits_data[1][0][:2]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(client, case, some_digits):
    _, method, path, body, content_type, status, words = case
    body = make_body(body, some_digits)
    headers = {}
    if isinstance(body, tuple):
        body, headers = body
    if content_type:
        headers["Content-Type"] = content_type
    response = client.open(path, method=method, data=body, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    payload = response.get_json()
    assert list(payload) == ["error"]
    assert words in payload["error"], payload["error"]
    assert "Traceback" not in payload["error"] and "<html" not in payload["error"].lower()
    if status == 405:
        assert response.headers["Allow"]
    # and the service keeps serving
    assert client.post("/predict", json={"instances": [ZEROS]}).status_code == 200


def test_multipart_without_image_field(client):
    response = client.post("/predict", data={"file": (io.BytesIO(b"x"), "a.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 400
    assert "no file field named 'image' (it has: file)" in response.get_json()["error"]


def test_multipart_part_with_an_unparsable_name_is_a_400(client):
    """Found by the reliability fuzzer: name="\\" reaches Flask as a field named None (was a 500)."""
    body = (b'--b\r\nContent-Disposition: form-data; name="\\"\r\n\r\nvalue\r\n'
            b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nhi\r\n--b--\r\n')
    response = client.post("/predict", data=body, content_type="multipart/form-data; boundary=b")
    assert response.status_code == 400
    assert response.get_json()["error"] == "the multipart form has no file field named 'image' (it has: note)"


def test_unexpected_failure_is_a_json_500_without_traceback(app, client, monkeypatch):
    model = app.extensions["mnist"].predictor.current

    def explode(pixels):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(model, "predict", explode)
    response = client.post("/predict", json={"instances": [ZEROS]})
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal server error (RuntimeError); it was logged"}
    monkeypatch.undo()
    assert client.post("/predict", json={"instances": [ZEROS]}).status_code == 200


@pytest.mark.parametrize("body, can_hold_bools", [
    (b'{"instances": [[0.5, 1e-05, 2E+3, -0.0]]}', False),
    (b'{"instances": [[0.5, true]]}', True),
    (b'{"instances":[[false,0]]}', True),
    (b'{\n  "instances": [\n    [0, 1,\n     true]\n  ]\n}', True),
    (b'{"inputs": [{"name": "pixels", "shape": [1, 2], "datatype": "FP32", "data": [0, 1]}]}', False),
    (b'{"structure": [0]}', True),  # a false alarm ("structur" holds "tru"): only costs the precise check
])
def test_the_raw_body_check_never_misses_a_boolean(body, can_hold_bools):
    from service.web import body_has_bools

    assert body_has_bools(body) is can_hold_bools
