"""The container smoke test's client side (tests/container/smoke.sh runs it from the repository root as
``python -m tests.container.smoke_client``): standard library, NumPy, tests/support.py, and TensorFlow
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
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from tests.support import free_port, wait_for


def fail(message: str) -> None:
    print(f"smoke_client: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------------------------------- MNIST IDX
def read_idx(path: Path, magic: int, header: int) -> np.ndarray:
    """An IDX file (gzipped or not): big-endian magic, counts, then unsigned bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        fail(f"{path}: magic {found}, expected {magic}: not an MNIST IDX file")
    count = int.from_bytes(data[4:8], "big")
    values = np.frombuffer(data, dtype=np.uint8, offset=header)
    return values.reshape(count, -1) if magic == 2051 else values[:count]


def mnist_test_set(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    def find(stem: str) -> Path:
        for name in (stem + ".gz", stem):
            if (folder / name).exists():
                return folder / name
        fail(f"{folder}: no {stem}(.gz); set MNIST_DATA_DIR to the folder with the MNIST IDX files")

    images = read_idx(find("t10k-images-idx3-ubyte"), 2051, 16)
    labels = read_idx(find("t10k-labels-idx1-ubyte"), 2049, 8)
    if images.shape != (10000, 784) or labels.shape != (10000,):
        fail(f"unexpected MNIST test set shapes {images.shape} {labels.shape}")
    return images.astype(np.float32) / 255.0, labels.astype(np.int64)


# ------------------------------------------------------------------------------------------ HTTP
def request(url: str, body: bytes | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_ready(url: str, seconds: float) -> None:
    last = ["no answer"]

    def ready() -> bool:
        try:
            status, body = request(url + "/readyz", timeout=5)
        except (OSError, http.client.HTTPException) as error:
            last[0] = repr(error)
            return False
        last[0] = f"{status} {body.decode()[:200]}"
        return status == 200

    try:
        wait_for(ready, seconds, f"{url}/readyz to answer 200", interval=1.0)
    except TimeoutError:
        fail(f"{url}/readyz did not answer 200 within {seconds:.0f} s (last: {last[0]})")
    print(f"{url}/readyz: {last[0]}")


# -------------------------------------------------------------------------------------- predict
def reference_probabilities(export: Path, pixels: np.ndarray) -> np.ndarray:
    """What the exported SavedModel itself says, computed here (not in the container)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    signature = tf.saved_model.load(str(export)).signatures["serving_default"]
    return signature(pixels=tf.constant(pixels))["probabilities"].numpy()


def predict(args) -> None:
    pixels, labels = mnist_test_set(Path(args.mnist_dir))
    # a fixed, spread-out sample of the 10,000 test digits
    index = np.linspace(0, len(labels) - 1, args.count).astype(int)
    pixels, labels = pixels[index], labels[index]

    served = []
    batch = 100
    start = time.monotonic()
    for lo in range(0, len(pixels), batch):
        body = json.dumps({"instances": pixels[lo:lo + batch].tolist()}).encode()
        status, raw = request(args.url + "/predict", body)
        if status != 200:
            fail(f"POST /predict answered {status}: {raw[:300]!r}")
        answer = json.loads(raw)
        model = answer.get("model")
        if model != {"name": "mnist", "version": args.version}:
            fail(f"model {model!r}, expected {{'name': 'mnist', 'version': {args.version}}}")
        predictions = answer.get("predictions")
        if not isinstance(predictions, list) or len(predictions) != len(pixels[lo:lo + batch]):
            fail(f"expected {len(pixels[lo:lo + batch])} predictions, got {str(predictions)[:200]}")
        for p in predictions:
            probs = p.get("probabilities")
            if (not isinstance(probs, list) or len(probs) != 10 or not 0 <= p.get("digit", -1) <= 9
                    or abs(sum(probs) - 1) > 1e-3 or p["digit"] != int(np.argmax(probs))
                    or abs(p["confidence"] - max(probs)) > 1e-6):
                fail(f"malformed prediction {json.dumps(p)[:300]}")
            served.append(probs)
    elapsed = time.monotonic() - start
    served = np.asarray(served, dtype=np.float32)
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

    # a malformed request is the client's error (4xx), not a crash
    status, raw = request(args.url + "/predict", json.dumps({"instances": [[0.5] * 783]}).encode())
    if not 400 <= status < 500:
        fail(f"a 783-pixel instance got {status}, expected a 4xx: {raw[:200]!r}")
    print(f"POST /predict with 783 pixels: {status} {raw.decode()[:120]}")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("free-port")
    p = sub.add_parser("wait-ready")
    p.add_argument("url")
    p.add_argument("seconds", type=float)
    p = sub.add_parser("predict")
    p.add_argument("url")
    p.add_argument("--mnist-dir", required=True)
    p.add_argument("--export", required=True, help="the export base the served version came from")
    p.add_argument("--version", type=int, required=True)
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--min-accuracy", type=float, default=0.8)
    p = sub.add_parser("load")
    p.add_argument("url")
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=60)
    p = sub.add_parser("check-load")
    p.add_argument("file")
    args = parser.parse_args()
    if args.command == "free-port":
        print(free_port())
    elif args.command == "wait-ready":
        wait_ready(args.url, args.seconds)
    elif args.command == "predict":
        predict(args)
    elif args.command == "load":
        load(args)
    else:
        check_load(args)


if __name__ == "__main__":
    main()
