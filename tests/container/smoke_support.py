"""What the container checks' clients share: a clear failure, MNIST's test set read from its IDX files
(standard library and NumPy: the client needs none of the project's code), and plain HTTP to the service."""

from __future__ import annotations

import gzip
import http.client
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from bench.localhost import wait_for


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
