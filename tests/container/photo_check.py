"""The container checks' photo side (smoke.sh; measure_files.py traces it): photos of MNIST test digits, rendered
here by bench/photo_sheets.py from a fixed seed, sent through the published port, and each answer compared with
the answer of the service run here, in this process, on the same export (``service.app.create_app``, SciPy as
pip installs it): the slim image must read photos exactly as the full environment does.

    python -m tests.container.photo_check photos URL --mnist-dir D --export E
        /predict: a photo of a digit under every condition of bench/photo_looks.py but the 12-megapixel one
        (phone JPEGs, scans and the draw page's PNG), the plain one also as multipart, as base64 and with
        ?explain=1 (the 28x28 image the model read); /read: a 4-digit number (also with ?explain=1) and one
        of touching digits; refusals: that number to /predict (422, pointing to /read), and every sheet
        without a digit to /predict and /read (a blank one: 422, "no digit found in the image")
    python -m tests.container.photo_check big-photo URL --mnist-dir D --export E
        a 12-megapixel phone JPEG (4-6 MB) to /predict: the server needs MAX_BODY_BYTES above 6 MB
    python -m tests.container.photo_check cpu URL PID --mnist-dir D --export E [--rounds R] [--count N]
        the CPU time of the process tree PID (the container's gunicorn as the host sees it) per request,
        photos to /predict, numbers to /read and 784 numbers to /predict side by side, R alternating
        rounds of N requests each: printed, never asserted

E: the export base the server serves (version folders). Every answer must equal the local one (probabilities
within 1e-4, everything else exactly). Besides, the plain photo must be read as its digit and the 4-digit
number exactly: their digits are MNIST test digits the model reads right and surely (``CONFIDENT``) as 784
numbers, since this checks that the image reads photos, not how accurate the smoke test's small model is.
Exit 1 with a line saying what is wrong otherwise. 127.0.0.1 only; about 30 requests (cpu: 3 x R x N).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.container.smoke_client import image_requests
from tests.container.smoke_support import mnist_test_set

SEED = 21
CONFIDENT = 0.9  # a digit chosen for a photo: read right as 784 numbers with at least this probability
TOLERANCE = 1e-4  # |probability| between TensorFlow in the container and here (smoke_client.py predict's)
LOCAL_MAX_BODY = 8 * 1024 * 1024  # the local service's body limit: room for the 12-megapixel photo
NUMBER = (4, 0, 2, 7)  # the number of the /read check (issue 21's example)
JPEG = "image/jpeg"
PNG_B64 = "iVBORw0KGgo"  # the PNG signature, base64


def fail(message: str) -> None:
    print(f"photo_check: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


@dataclass
class Photo:
    """One request: ``name`` (for messages), where it goes and what it carries; ``truth``: the digits it shows
    ("" for none), which the answer must hold if ``must_read`` (else it need only equal the local answer);
    ``refusal``: the start of the error of the 422 it must get instead."""

    name: str
    route: str
    body: bytes
    headers: dict
    truth: str = ""
    must_read: bool = False
    refusal: str = ""


# ---------------------------------------------------------------------------------------- the photos
def photo_rng(name: str) -> np.random.Generator:
    return np.random.default_rng([SEED, zlib.crc32(name.encode())])


def content_type(data: bytes) -> str:
    return "image/png" if data.startswith(b"\x89PNG") else JPEG


def confident_digits(local, x: np.ndarray, y: np.ndarray, count: int = 1000) -> list[list[int]]:
    """For each class, the indexes of the first test digits the local service reads right with ``CONFIDENT``."""
    chosen: list[list[int]] = [[] for _ in range(10)]
    for lo in range(0, count, 250):
        status, answer = local_answer(local, "/predict", json.dumps({"instances": x[lo:lo + 250].tolist()}).encode(),
                                      {"Content-Type": "application/json"})
        if status != 200:
            fail(f"the local service answered {status} to MNIST test digits: {answer}")
        for offset, prediction in enumerate(answer["predictions"]):
            index = lo + offset
            if prediction["digit"] == y[index] and prediction["confidence"] >= CONFIDENT:
                chosen[y[index]].append(index)
    few = [digit for digit, indexes in enumerate(chosen) if len(indexes) < 3]
    if few:
        fail(f"the model reads fewer than 3 of the first {count} test digits {few} right with probability "
             f"{CONFIDENT}: is it trained?")
    return chosen


def digit_photos(x: np.ndarray, chosen: list[list[int]]) -> list[Photo]:
    """A digit photographed under each condition (digit i % 10 for condition i) to /predict; the plain photo
    also multipart, base64 and with ?explain=1. Only the plain one must be read as its digit."""
    from bench.photo_sheets import CONDITIONS, render_digit

    photos = []
    for i, condition in enumerate(c for c in CONDITIONS if c != "photo_12mp"):
        data = render_digit(x[chosen[i % 10][0]], condition, photo_rng(condition))
        plain = condition == "plain"
        photos.append(Photo(condition, "/predict", data, {"Content-Type": content_type(data)}, str(i % 10), plain))
        if plain:
            for how, body, headers in image_requests(data, "JPEG", JPEG)[1:]:
                photos.append(Photo(f"plain ({how})", "/predict", body, headers, str(i % 10), True))
            photos.append(Photo("plain (?explain=1)", "/predict?explain=1", data, {"Content-Type": JPEG}, "0", True))
    return photos


def number_photos(x: np.ndarray, y: np.ndarray, chosen: list[list[int]]) -> list[Photo]:
    """The 4-digit number to /read (must be read exactly) and, as several digits, to /predict (422); touching
    digits to /read; every sheet without a digit to /predict and /read (a blank one must be a 422)."""
    from bench.photo_sheets import NON_DIGIT_KINDS, render_non_digit, render_number

    digits = [chosen[d][1] for d in NUMBER]
    data, truth = render_number(x[digits], y[digits], photo_rng("number"))
    touching, shown = render_number(x[[chosen[d][2] for d in (3, 5, 8)]], [3, 5, 8], photo_rng("touching"),
                                    touching=True)
    photos = [Photo("4-digit number", "/read", data, {"Content-Type": JPEG}, truth, True),
              Photo("4-digit number (?explain=1)", "/read?explain=1", data, {"Content-Type": JPEG}, truth, True),
              Photo("4-digit number to /predict", "/predict", data, {"Content-Type": JPEG},
                    refusal="the image holds 4 digits"),
              Photo("touching digits", "/read", touching, {"Content-Type": JPEG}, shown)]
    for kind in NON_DIGIT_KINDS:
        sheet = render_non_digit(kind, photo_rng(f"no digit {kind}"))
        refusal = "no digit found in the image" if kind == "blank" else ""
        for route in ("/predict", "/read"):
            photos.append(Photo(f"{kind} sheet to {route}", route, sheet, {"Content-Type": content_type(sheet)},
                                refusal=refusal))
    return photos


def big_photos(x: np.ndarray, chosen: list[list[int]]) -> list[Photo]:
    from bench.photo_sheets import render_digit

    data = render_digit(x[chosen[7][0]], "photo_12mp", photo_rng("photo_12mp"))
    return [Photo(f"12-megapixel phone JPEG ({len(data) / 1e6:.1f} MB)", "/predict", data, {"Content-Type": JPEG}, "7")]


# ---------------------------------------------------------------------------------------- answers
def served_answer(url: str, photo: Photo) -> tuple[int, dict | None]:
    req = urllib.request.Request(url + photo.route, data=photo.body, headers=photo.headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, None


def local_service(export: Path):
    """The service built in this process on ``export`` (bench/photos.py's: model loaded, no polling)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bench.photos import build_client

    quiet = logging.StreamHandler()  # the local service's "model loaded" lines are not the server's: warnings only
    quiet.setLevel(logging.WARNING)
    logging.getLogger().addHandler(quiet)
    return build_client(export, LOCAL_MAX_BODY)


def local_answer(local, route: str, body: bytes, headers: dict) -> tuple[int, dict | None]:
    response = local.post(route, data=body, headers=headers)
    return response.status_code, response.get_json(silent=True)


def difference(served, expected, where: str = "") -> str | None:
    """Where two JSON answers differ (numbers within ``TOLERANCE``, everything else exactly), or None."""
    if isinstance(expected, dict) and isinstance(served, dict):
        if set(served) != set(expected):
            return f"{where or 'the answer'} has keys {sorted(served)}, expected {sorted(expected)}"
        return next((d for key in expected if (d := difference(served[key], expected[key], f"{where}.{key}"))), None)
    if isinstance(expected, list) and isinstance(served, list):
        if len(served) != len(expected):
            return f"{where} has {len(served)} items, expected {len(expected)}"
        return next((d for i, (s, e) in enumerate(zip(served, expected))
                     if (d := difference(s, e, f"{where}[{i}]"))), None)
    if isinstance(expected, float) and isinstance(served, (int, float)) and not isinstance(served, bool):
        return None if abs(served - expected) <= TOLERANCE else f"{where}: {served}, expected {expected}"
    return None if served == expected and type(served) is type(expected) else f"{where}: {served!r}, expected {expected!r}"


def read_as(answer: dict) -> str:
    """The digits of a 200 answer: /read's number, or /predict's one digit."""
    return answer["number"] if "number" in answer else "".join(str(p["digit"]) for p in answer["predictions"])


def explained_images(answer: dict) -> list[str]:
    items = answer.get("digits") or answer.get("predictions") or []
    return [item.get("image", "") for item in items]


def check(url: str, local, photo: Photo) -> str:
    """One photo: the container's answer equals the local one and holds what the photo must; its summary."""
    status, answer = served_answer(url, photo)
    expected_status, expected = local_answer(local, photo.route, photo.body, photo.headers)
    if answer is None or not isinstance(answer, dict):
        fail(f"{photo.name}: {status} without a JSON object body")
    if status != expected_status:
        fail(f"{photo.name}: {status} {json.dumps(answer)[:300]}; outside the container: {expected_status} "
             f"{json.dumps(expected)[:300]}")
    different = difference(answer, expected)
    if different:
        fail(f"{photo.name}: the answer differs from the one outside the container: {different}")
    if photo.refusal:
        if status != 422 or set(answer) != {"error"} or not answer["error"].startswith(photo.refusal):
            fail(f"{photo.name}: expected a 422 {{'error': '{photo.refusal}...'}}, got {status} {answer}")
        return f"422 {answer['error'][:70]}..."
    if status not in (200, 422):
        fail(f"{photo.name}: {status} {answer}")
    if status == 422:
        return f"422 {answer['error'][:70]}..."
    read = read_as(answer)
    if photo.must_read and read != photo.truth:
        fail(f"{photo.name}: read as {read!r}, it shows {photo.truth!r} (outside the container too)")
    if "explain=1" in photo.route and not all(image.startswith(PNG_B64) for image in explained_images(answer)):
        fail(f"{photo.name}: ?explain=1 but not every digit has its 28x28 image as base64 PNG: {answer}")
    verdict = "right" if read == photo.truth else f"shows {photo.truth!r}"
    return f"200 read {read!r} ({verdict}{', warned: touching' if 'warnings' in answer else ''})"


def check_all(url: str, local, photos: list[Photo]) -> None:
    start = time.monotonic()
    for photo in photos:
        print(f"  {photo.name:34} {photo.route:18} {check(url, local, photo)}", flush=True)
    musts = [f"{sum(p.must_read for p in photos)} read right as they must",
             f"{sum(bool(p.refusal) for p in photos)} refused as they must (422 with a JSON error)"]
    print(f"{len(photos)} photo request(s) through {url} in {time.monotonic() - start:.1f} s: every answer equal to "
          "the service's outside the container (SciPy as pip installs it)"
          + "".join(f"; {must}" for must in musts if not must.startswith("0 ")))


# ---------------------------------------------------------------------------------------- CPU
def cpu_per_request(args, x, y, chosen) -> None:
    """Requests of three kinds side by side, R alternating rounds; CPU of the server's process tree each."""
    from bench.photo_sheets import render_digit, render_number
    from bench.processes import sample_tree, tree_cpu_seconds

    n = args.count
    picks = [chosen[i % 10][i // 10 % len(chosen[i % 10])] for i in range(n)]
    fours = [[picks[(k + j) % n] for j in range(4)] for k in range(n)]
    kinds = {
        "photo of a digit -> /predict": [("/predict", render_digit(x[i], "plain", photo_rng(f"cpu {i}")), JPEG)
                                         for i in picks],
        "photo of 4 digits -> /read": [("/read", render_number(x[four], y[four], photo_rng(f"cpu number {k}"))[0],
                                        JPEG) for k, four in enumerate(fours)],
        # ten times as many: CPU times come in clock ticks (10 ms), too coarse for ~1 ms per request otherwise
        "784 numbers -> /predict": [("/predict", json.dumps({"instances": [x[i].tolist()]}).encode(),
                                     "application/json") for i in picks] * 10,
    }
    seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind, requests in kinds.items():
            before = sample_tree(args.pid)
            for route, body, ctype in requests:
                status, answer = served_answer(args.url, Photo(kind, route, body, {"Content-Type": ctype}))
                if status != 200:
                    fail(f"{kind}: {status} {answer}")
            seconds[kind].append(tree_cpu_seconds(before, sample_tree(args.pid)) / len(requests))
    per = {kind: 1000 * float(np.median(values)) for kind, values in seconds.items()}
    base = per["784 numbers -> /predict"]
    print(f"CPU per request of the server's processes (median of {args.rounds} alternating rounds; {n} photos, "
          f"{n} numbers, {10 * n} x 784 numbers a round):")
    for kind, ms in per.items():
        print(f"  {kind:32} {ms:7.1f} ms  ({ms / base:.1f}x 784 numbers)")


# ---------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("photos", "big-photo", "cpu"))
    parser.add_argument("url")
    parser.add_argument("pid", nargs="?", type=int, help="cpu: the server's process (the container's PID 1)")
    parser.add_argument("--mnist-dir", required=True)
    parser.add_argument("--export", required=True, type=Path, help="the export base the server serves")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    if args.command == "cpu" and (args.pid is None or args.count < 4):
        parser.error("cpu needs the server's PID and --count of at least 4")
    x, y = mnist_test_set(Path(args.mnist_dir))
    local = local_service(args.export)
    chosen = confident_digits(local, x, y)
    if args.command == "cpu":
        cpu_per_request(args, x, y, chosen)
    elif args.command == "big-photo":
        check_all(args.url, local, big_photos(x, chosen))
    else:
        check_all(args.url, local, digit_photos(x, chosen) + number_photos(x, y, chosen))


if __name__ == "__main__":
    main()
