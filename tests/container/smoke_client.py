"""The container smoke test's client side (tests/container/smoke.sh runs it from the repository root as
``python -m tests.container.smoke_client``): standard library, NumPy, bench/localhost.py, and TensorFlow
only for the reference predictions. Subcommands:

    free-port                       print a free TCP port on 127.0.0.1
    wait-ready URL SECONDS          poll URL/readyz until 200 (exit 1 on timeout)
    predict URL --mnist-dir D --export E --version N [--count K] [--min-accuracy A]
                                    real MNIST test digits through POST /predict, checked against the
                                    labels and against the SavedModel E run here, in this process
    load URL --out FILE --seconds S back-to-back predictions until the server stops answering (or S
                                    seconds); counts go to FILE as JSON (the graceful-shutdown check)
    check-load FILE                 exit 1 unless every answer received during the shutdown was a
                                    complete 200
    exercise URL --mnist-dir D      every kind of request the API takes (JSON, 28x28, TF Serving, KServe
                                    v2, images in five formats raw/multipart/base64), the refusals (4xx
                                    with a JSON error), the GET routes and /metrics: the slim image must
                                    still have every module these paths load
    wait-version URL N SECONDS      poll POST /predict until version N answers (hot reload, roll back)
    slow-clients URL --keepalive K --body-timeout B
                                    tests/slow_clients.py's three checks against the server at URL
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from bench.localhost import free_port, wait_for

from .smoke_support import fail, mnist_test_set, request, wait_ready

IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "BMP": "image/bmp",
               "WEBP": "image/webp"}
LOSSLESS = ("PNG", "GIF", "BMP")  # the same picture must give the same digit in each
GET_ROUTES = ("/", "/healthz", "/readyz", "/openapi.json", "/v1/models/{name}", "/v1/models/{name}/metadata",
              "/v1/models/{name}/versions/{version}", "/v2", "/v2/health/live", "/v2/health/ready",
              "/v2/models/{name}", "/v2/models/{name}/ready", "/v2/models/{name}/versions/{version}")


# -------------------------------------------------------------------------------------- predict
def reference_probabilities(export: Path, pixels: np.ndarray) -> np.ndarray:
    """What the exported SavedModel itself says, computed here (not in the container)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    signature = tf.saved_model.load(str(export)).signatures["serving_default"]
    return signature(pixels=tf.constant(pixels))["probabilities"].numpy()


def check_answer(answer: dict, count: int, version: int) -> list[list[float]]:
    """One POST /predict answer for ``count`` digits from model version ``version``, checked: its
    probabilities, one list a digit."""
    model = answer.get("model")
    if model != {"name": "mnist", "version": version}:
        fail(f"model {model!r}, expected {{'name': 'mnist', 'version': {version}}}")
    predictions = answer.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != count:
        fail(f"expected {count} predictions, got {str(predictions)[:200]}")
    for p in predictions:
        probs = p.get("probabilities")
        if (not isinstance(probs, list) or len(probs) != 10 or not 0 <= p.get("digit", -1) <= 9
                or abs(sum(probs) - 1) > 1e-3 or p["digit"] != int(np.argmax(probs))
                or abs(p["confidence"] - max(probs)) > 1e-6):
            fail(f"malformed prediction {json.dumps(p)[:300]}")
    return [p["probabilities"] for p in predictions]


def served_probabilities(url: str, pixels: np.ndarray, version: int, batch: int = 100) -> np.ndarray:
    """The server's probabilities for ``pixels``, ``batch`` digits a request, each answer checked."""
    served = []
    for lo in range(0, len(pixels), batch):
        chunk = pixels[lo:lo + batch]
        status, raw = request(url + "/predict", json.dumps({"instances": chunk.tolist()}).encode())
        if status != 200:
            fail(f"POST /predict answered {status}: {raw[:300]!r}")
        served += check_answer(json.loads(raw), len(chunk), version)
    return np.asarray(served, dtype=np.float32)


def check_malformed_refused(url: str) -> None:
    """A malformed request is the client's error (4xx), not a crash."""
    status, raw = request(url + "/predict", json.dumps({"instances": [[0.5] * 783]}).encode())
    if not 400 <= status < 500:
        fail(f"a 783-pixel instance got {status}, expected a 4xx: {raw[:200]!r}")
    print(f"POST /predict with 783 pixels: {status} {raw.decode()[:120]}")


def predict(args) -> None:
    pixels, labels = mnist_test_set(Path(args.mnist_dir))
    # a fixed, spread-out sample of the 10,000 test digits
    index = np.linspace(0, len(labels) - 1, args.count).astype(int)
    pixels, labels = pixels[index], labels[index]
    start = time.monotonic()
    served = served_probabilities(args.url, pixels, args.version)
    elapsed = time.monotonic() - start
    digits = served.argmax(axis=1)
    accuracy = float((digits == labels).mean())

    reference = reference_probabilities(Path(args.export) / str(args.version), pixels)
    disagree = int((reference.argmax(axis=1) != digits).sum())
    max_diff = float(np.abs(reference - served).max())
    print(f"POST /predict: {len(labels)} MNIST test digits in {elapsed:.2f} s, accuracy {accuracy:.1%}, "
          f"{disagree} disagreement(s) with the SavedModel run outside the container, "
          f"max |probability difference| {max_diff:.1e}")
    if disagree or max_diff > 1e-4:
        fail("the container's answers differ from the exported model's")
    if accuracy < args.min_accuracy:
        fail(f"accuracy {accuracy:.1%} is below {args.min_accuracy:.0%}")
    check_malformed_refused(args.url)


# -------------------------------------------------------------------------- graceful shutdown
def load(args) -> None:
    """Predictions one after another, each on a new connection, until the server goes away."""
    body = json.dumps({"instances": [[0.0] * 784] * 32}).encode()
    counts = {"ok": 0, "bad_status": 0, "bad_body": 0, "connection_errors": 0, "first_error": None}
    deadline = time.monotonic() + args.seconds
    Path(args.out + ".started").write_text("")
    while time.monotonic() < deadline:
        try:
            status, raw = request(args.url + "/predict", body, timeout=30)
        except (OSError, http.client.HTTPException) as error:
            # refused or reset: the server no longer accepts connections (it is shutting down)
            counts["connection_errors"] += 1
            counts["first_error"] = counts["first_error"] or repr(error)
            if counts["connection_errors"] >= 3:
                break
            time.sleep(0.05)
            continue
        if status != 200:
            counts["bad_status"] += 1
        else:
            try:
                if len(json.loads(raw)["predictions"]) != 32:
                    counts["bad_body"] += 1
                else:
                    counts["ok"] += 1
            except (ValueError, KeyError):
                counts["bad_body"] += 1
        Path(args.out).write_text(json.dumps(counts))
    Path(args.out).write_text(json.dumps(counts))


def check_load(args) -> None:
    counts = json.loads(Path(args.file).read_text())
    print(f"requests during SIGTERM: {counts['ok']} complete 200s, {counts['bad_status']} other statuses, "
          f"{counts['bad_body']} truncated/invalid bodies, then {counts['connection_errors']} refused "
          f"connection(s) ({counts['first_error']})")
    if counts["ok"] == 0:
        fail("no request succeeded before the shutdown")
    if counts["bad_status"] or counts["bad_body"]:
        fail("a request the server accepted was not answered completely during the graceful shutdown")


# ------------------------------------------------------------------------- every code path
def predicted_digits(url: str, pixels: np.ndarray) -> list[int]:
    """The digits POST /predict gives for ``pixels`` (every other route must agree)."""
    status, raw = request(url + "/predict", json.dumps({"instances": pixels.tolist()}).encode())
    if status != 200:
        fail(f"POST /predict answered {status}: {raw[:300]!r}")
    return [p["digit"] for p in json.loads(raw)["predictions"]]


def send_catalogue(url: str, pixels: np.ndarray, predicted: list[int]) -> list:
    """tests/reliability/support.py's catalogue of requests (the same the soak and fuzz tests send),
    each once and judged; returns the templates sent."""
    from tests.reliability.support import invalid_templates, send, valid_templates

    host, port = url.removeprefix("http://").split(":")
    templates = valid_templates(pixels, predicted) + invalid_templates()
    for template in templates:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            problem = template.judge(*send(conn, template))
        finally:
            conn.close()
        if problem:
            fail(problem)
    return templates


def image_requests(data: bytes, fmt: str, content_type: str) -> list[tuple[str, bytes, dict[str, str]]]:
    """An image file as POST /predict takes it: ``(how, body, headers)`` raw, multipart and base64."""
    import base64
    import uuid

    boundary = uuid.uuid4().hex
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"digit.{fmt.lower()}\"\r\n"
                 f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    b64 = json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}]}).encode()
    return [("raw", data, {"Content-Type": content_type}),
            ("multipart", multipart, {"Content-Type": f"multipart/form-data; boundary={boundary}"}),
            ("base64", b64, {"Content-Type": "application/json"})]


def post_image(url: str, body: bytes, headers: dict[str, str], what: str) -> int:
    """The digit POST /predict gives for one image request (``what`` names it in a failure)."""
    req = urllib.request.Request(url + "/predict", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as error:
        fail(f"{what}: {error.code} {error.read()[:200]!r}")
    return answer["predictions"][0]["digit"]


def check_image_formats(url: str, pixels: np.ndarray) -> None:
    """One digit in every image format, each raw, multipart and base64: the same digit from every
    encoding of a format, and from every lossless format."""
    from tests.service.conftest import png_bytes

    digits = {}
    for fmt, content_type in IMAGE_TYPES.items():
        data = png_bytes(pixels, size=84, fmt=fmt)
        for how, body, headers in image_requests(data, fmt, content_type):
            digit = post_image(url, body, headers, f"{fmt} image ({how})")
            if digits.setdefault((fmt, "any"), digit) != digit:
                fail(f"{fmt} image: {how} gave digit {digit}, another encoding {digits[(fmt, 'any')]}")
            if fmt in LOSSLESS and digits.setdefault("lossless", digit) != digit:
                fail(f"{fmt} image ({how}): digit {digit}, PNG gave {digits['lossless']}")


def check_get_routes(url: str) -> None:
    """Every GET route of ``GET_ROUTES`` answers 200, for the model the server has loaded."""
    model = json.loads(request(url + "/readyz")[1])["model"]
    for route in GET_ROUTES:
        path = route.format(name=model["name"], version=model["version"])
        status, raw = request(url + path)
        if status != 200:
            fail(f"GET {path} answered {status}: {raw[:200]!r}")


def predictions_counted(url: str) -> float:
    """The digits /metrics counts as predicted (it must count some, and the HTTP requests)."""
    status, raw = request(url + "/metrics")
    text = raw.decode()
    predictions = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("mnist_predictions_total{"))
    if status != 200 or "mnist_http_requests_total{" not in text or predictions <= 0:
        fail(f"GET /metrics: {status}, {predictions:.0f} predictions counted: {text[:300]!r}")
    return predictions


def exercise(args) -> None:
    """Each kind of request, valid and invalid, once: tests/reliability/support.py's catalogue (the
    same the soak and fuzz tests send) plus every image format, GET route and /metrics."""
    pixels, _ = mnist_test_set(Path(args.mnist_dir))
    x = pixels[:32]
    templates = send_catalogue(args.url, x, predicted_digits(args.url, x))
    check_image_formats(args.url, x[6])
    check_get_routes(args.url)
    predictions = predictions_counted(args.url)
    print(f"{len(templates)} kinds of request ({sum(t.valid for t in templates)} valid, "
          f"{sum(not t.valid for t in templates)} refused with their 4xx and a JSON error), "
          f"{len(IMAGE_TYPES)} image formats x raw/multipart/base64, {len(GET_ROUTES)} GET routes: as expected; "
          f"/metrics counts {predictions:.0f} predicted digits")


def wait_version(args) -> None:
    """Until three answers in a row come from version N (every worker switched), or time is up."""
    body = json.dumps({"instances": [[0.0] * 784]}).encode()
    streak = [0]
    last = ["no answer"]

    def serving() -> bool:
        try:
            status, raw = request(args.url + "/predict", body, timeout=10)
        except (OSError, http.client.HTTPException) as error:
            last[0] = repr(error)
            return False
        last[0] = f"{status} {raw[:120]!r}"
        version = json.loads(raw).get("model", {}).get("version") if status == 200 else None
        streak[0] = streak[0] + 1 if version == args.version else 0
        return streak[0] >= 3

    start = time.monotonic()
    try:
        wait_for(serving, args.seconds, f"version {args.version}", interval=0.3)
    except TimeoutError:
        fail(f"version {args.version} did not answer within {args.seconds:.0f} s (last: {last[0]})")
    print(f"version {args.version} answers after {time.monotonic() - start:.1f} s")


def slow_clients(args) -> None:
    from bench.attacks import raise_fd_limit
    from tests.slow_clients import dribbled_bodies, idle_keep_alive, never_finished_headers

    try:
        raise_fd_limit()
    except RuntimeError as error:
        fail(str(error))
    port = int(args.url.rsplit(":", 1)[1])
    attacks = [("200 connections that never finish their headers", never_finished_headers, args.keepalive),
               ("200 connections that dribble a body at a byte a second", dribbled_bodies, args.body_timeout),
               ("1,000 idle keep-alive connections", idle_keep_alive, args.keepalive)]
    for name, attack, deadline in attacks:
        started = time.monotonic()
        try:
            outcome = attack(port, deadline)
        except AssertionError as error:
            fail(f"{name}: {error}")
        print(f"{name}: {outcome.measured}; all closed {outcome.closed_after:.1f} s after they were held "
              f"(deadline {deadline:g} s); {time.monotonic() - started:.0f} s")


URL = ("url", {})
# Each subcommand: what runs it, and its arguments (argparse's add_argument: the name, the options).
SUBCOMMANDS = {
    "free-port": (lambda args: print(free_port()), []),
    "wait-ready": (lambda args: wait_ready(args.url, args.seconds), [URL, ("seconds", {"type": float})]),
    "predict": (predict, [URL, ("--mnist-dir", {"required": True}),
                          ("--export", {"required": True, "help": "the export base the served version came from"}),
                          ("--version", {"type": int, "required": True}),
                          ("--count", {"type": int, "default": 500}),
                          ("--min-accuracy", {"type": float, "default": 0.8})]),
    "load": (load, [URL, ("--out", {"required": True}), ("--seconds", {"type": float, "default": 60})]),
    "check-load": (check_load, [("file", {})]),
    "exercise": (exercise, [URL, ("--mnist-dir", {"required": True})]),
    "wait-version": (wait_version, [URL, ("version", {"type": int}), ("seconds", {"type": float})]),
    "slow-clients": (slow_clients, [URL,
                                    ("--keepalive", {"type": float, "default": 5,
                                                     "help": "the server's KEEPALIVE_SECONDS"}),
                                    ("--body-timeout", {"type": float, "default": 10,
                                                        "help": "the server's BODY_TIMEOUT_SECONDS"})]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for command, (_, arguments) in SUBCOMMANDS.items():
        command_parser = sub.add_parser(command)
        for name, options in arguments:
            command_parser.add_argument(name, **options)
    args = parser.parse_args()
    run, _ = SUBCOMMANDS[args.command]
    run(args)


if __name__ == "__main__":
    main()
