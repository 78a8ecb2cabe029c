"""Helpers of the reliability suite: process figures from /proc, a bounded load generator, and the
requests it sends (each with what a correct answer is). The report is in report.py; ports and waiting
in bench/localhost.py, the gunicorn process in bench/servers.py.

Everything here talks only to 127.0.0.1, and every loop is bounded in time and in count.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


# ---- processes ------------------------------------------------------------------------------------
def rss_mib(pid: int) -> float:
    """Resident set size (VmRSS) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_snapshot(server) -> dict[int, int]:
    """Open file descriptors of the gunicorn master and each worker: ``{pid: count}``."""
    pids = [server.process.pid, *sorted(server.worker_pids())]
    return {pid: fd_count(pid) for pid in pids}


# ---- requests -------------------------------------------------------------------------------------
@dataclass
class Template:
    """One kind of request, with what a correct answer to it is.

    ``valid`` requests must get 200 and ``check(payload)`` must return None (else a message);
    invalid ones must get ``status`` (a 4xx) with a JSON body ``{"error": "<text>"}``.
    """

    name: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict = field(default_factory=dict)
    valid: bool = True
    status: int = 200
    weight: float = 1.0
    check: Callable[[dict], str | None] | None = None

    def judge(self, status: int, data: bytes) -> str | None:
        """None if the answer is right, else what is wrong with it."""
        if self.valid:
            if status != 200:
                return f"{self.name}: status {status} (expected 200): {data[:200]!r}"
            try:
                payload = json.loads(data)
            except ValueError:
                return f"{self.name}: 200 with a body that is not JSON: {data[:200]!r}"
            return self.check(payload) if self.check else None
        if status != self.status:
            return f"{self.name}: status {status} (expected {self.status}): {data[:200]!r}"
        problem = error_body_problem(status, data)
        return f"{self.name}: {problem}" if problem else None


def error_body_problem(status: int, data: bytes) -> str | None:
    """None if ``data`` is the JSON ``{"error": "<text>"}`` every refusal carries, else what is wrong."""
    try:
        payload = json.loads(data)
    except ValueError:
        return f"{status} with a body that is not JSON: {data[:200]!r}"
    if not (isinstance(payload, dict) and isinstance(payload.get("error"), str) and payload["error"]):
        return f"{status} without a JSON {{'error': str}} body: {data[:200]!r}"
    return None


def send(conn: http.client.HTTPConnection, template: Template) -> tuple[int, bytes]:
    headers = dict(template.headers)
    if template.body is not None:
        headers["Content-Length"] = str(len(template.body))
    conn.request(template.method, template.path, body=template.body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.will_close:
        conn.close()
    return response.status, data


@dataclass
class LoadResult:
    started: float = 0.0
    stopped: float = 0.0
    sent: Counter = field(default_factory=Counter)          # template name -> requests
    statuses: Counter = field(default_factory=Counter)      # HTTP status (or "connection error") -> count
    failures: list = field(default_factory=list)            # (monotonic time, valid?, message, client)
    events: list = field(default_factory=list)              # (monotonic end time, ok?) when recorded
    valid_sent: int = 0
    invalid_sent: int = 0

    @property
    def requests(self) -> int:
        return sum(self.sent.values())

    @property
    def seconds(self) -> float:
        return self.stopped - self.started

    def failed(self, valid: bool | None = None) -> list:
        return [f for f in self.failures if valid is None or f[1] == valid]


class LoadGenerator:
    """``concurrency`` threads, each with its own HTTP/1.1 connection (reopened when the server closes
    it), sending weighted random templates back to back (closed loop: the highest rate the server
    sustains) until ``stop()``, ``seconds`` or ``max_requests`` per thread, whichever comes first."""

    def __init__(self, port: int, templates: list[Template], *, concurrency: int = 8,
                 seconds: float = 60.0, max_requests: int = 200_000, seed: int = 0,
                 record_events: bool = False, timeout: float = 30.0):
        self.port, self.templates, self.concurrency = port, templates, concurrency
        self.seconds, self.max_requests, self.seed = seconds, max_requests, seed
        self.record_events, self.timeout = record_events, timeout
        self.result = LoadResult()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> "LoadGenerator":
        self.result.started = time.monotonic()
        self._deadline = self.result.started + self.seconds
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(self.concurrency)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        return self.join()

    def join(self) -> LoadResult:
        for thread in self._threads:
            thread.join(self.timeout + 10)
        self.result.stopped = time.monotonic()
        return self.result

    def _run(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        weights = [t.weight for t in self.templates]
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        count = 0
        while not self._stop.is_set() and time.monotonic() < self._deadline and count < self.max_requests:
            template = rng.choices(self.templates, weights)[0]
            count += 1
            try:
                status, data = send(conn, template)
                problem = template.judge(status, data)
                key = status
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                problem, key = f"{template.name}: {type(exc).__name__}: {exc}", "connection error"
            now = time.monotonic()
            with self._lock:
                self.result.sent[template.name] += 1
                self.result.statuses[key] += 1
                if template.valid:
                    self.result.valid_sent += 1
                else:
                    self.result.invalid_sent += 1
                if problem:
                    self.result.failures.append((now, template.valid, problem, index))
                if self.record_events:
                    self.result.events.append((now, problem is None))
        conn.close()


# ---- the traffic of the soak and of the faults ----------------------------------------------------
def _digits_check(name: str, digits: list[int], key: str = "predictions"):
    """A check that the answer holds exactly these predicted digits (from the model itself)."""
    def check(payload: dict) -> str | None:
        rows = payload.get(key)
        if not isinstance(rows, list) or len(rows) != len(digits):
            return f"{name}: {len(rows or [])} rows for {len(digits)} instances"
        got = []
        for row in rows:
            probabilities = row["probabilities"] if isinstance(row, dict) else row
            if len(probabilities) != 10:
                return f"{name}: a row of {len(probabilities)} probabilities"
            got.append(max(range(10), key=probabilities.__getitem__))
        if got != digits:
            return f"{name}: predicted {got}, the model says {digits}"
        return None
    return check


def valid_templates(x, predicted) -> list[Template]:
    """Valid requests of every kind the API takes; each answer must hold the model's own digits."""
    import base64

    from tests.service.conftest import png_bytes

    x = [[float(v) for v in row] for row in x]
    predicted = [int(digit) for digit in predicted]
    json_headers = {"Content-Type": "application/json"}
    square = [x[2][r * 28:(r + 1) * 28] for r in range(28)]
    templates = [
        Template("predict 1 instance", "POST", "/predict", json.dumps({"instances": [x[0]]}).encode(),
                 json_headers, weight=4, check=_digits_check("single", predicted[:1])),
        Template("predict 16 instances", "POST", "/predict", json.dumps({"instances": x[:16]}).encode(),
                 json_headers, weight=2, check=_digits_check("batch", predicted[:16])),
        Template("predict 28x28", "POST", "/predict", json.dumps({"instances": [square]}).encode(),
                 json_headers, check=_digits_check("square", predicted[2:3])),
        Template("TF Serving predict", "POST", "/v1/models/mnist:predict",
                 json.dumps({"instances": x[3:5]}).encode(), json_headers,
                 check=_digits_check("tf-serving", predicted[3:5])),
        Template("KServe v2 infer", "POST", "/v2/models/mnist/infer", json.dumps(
            {"inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": x[5]}]}).encode(),
            json_headers, check=_check_v2(predicted[5])),
    ]
    # images: the service preprocesses them like MNIST, so their digit is what the service said at
    # the warm-up (checked to be one of 10 classes); it must not change under load
    png = png_bytes(x[6], size=84)
    templates += [
        Template("predict PNG", "POST", "/predict", png, {"Content-Type": "image/png"}),
        Template("predict base64 PNG", "POST", "/predict",
                 json.dumps({"instances": [{"b64": base64.b64encode(png).decode()}]}).encode(), json_headers),
    ]
    return templates


def _check_v2(digit: int):
    def check(payload: dict) -> str | None:
        outputs = payload.get("outputs")
        if not outputs or outputs[0].get("shape") != [1, 10] or len(outputs[0].get("data", [])) != 10:
            return f"v2: malformed outputs {str(outputs)[:200]}"
        data = outputs[0]["data"]
        got = max(range(10), key=data.__getitem__)
        return None if got == digit else f"v2: predicted {got}, the model says {digit}"
    return check


def pin_answers(port: int, templates: list[Template]) -> None:
    """Send each valid template once; those without a check must keep giving this first answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for template in templates:
            status, data = send(conn, template)
            problem = template.judge(status, data)
            assert problem is None, problem
            if template.check is None:
                digits = [p["digit"] for p in json.loads(data)["predictions"]]
                template.check = _digits_check(template.name, digits)
    finally:
        conn.close()


def invalid_templates(max_body: int = 4 * 1024 * 1024) -> list[Template]:
    """Invalid requests, each with the 4xx it must get."""
    json_type = {"Content-Type": "application/json"}
    row = "[" + ",".join(["0.5"] * 784) + "]"
    return [
        Template("malformed JSON", "POST", "/predict", b'{"instances": [[0.1, 0.2,', json_type, False, 400),
        Template("783 numbers", "POST", "/predict", ('{"instances": [[' + ",".join(["0.5"] * 783) + "]]}").encode(),
                 json_type, False, 400),
        Template("out of range (0-255 pixels)", "POST", "/predict",
                 ('{"instances": [[' + ",".join(["255"] * 784) + "]]}").encode(), json_type, False, 400),
        Template("NaN pixel", "POST", "/predict", ('{"instances": [[NaN' + ",0.5" * 783 + "]]}").encode(),
                 json_type, False, 400),
        Template("empty body", "POST", "/predict", b"", json_type, False, 400),
        Template("not an image", "POST", "/predict", b"\x89PNG\r\n\x1a\nnot really", {"Content-Type": "image/png"},
                 False, 400),
        Template("wrong Content-Type", "POST", "/predict", b"0.5,0.5", {"Content-Type": "text/csv"}, False, 415),
        Template("too many instances", "POST", "/predict",
                 ('{"instances": [' + ",".join([row] * 257) + "]}").encode(), json_type, False, 413, weight=0.3),
        Template("unknown model", "POST", "/v1/models/nope:predict", b'{"instances": []}', json_type, False, 404),
        Template("unknown route", "GET", "/predictions", None, {}, False, 404),
        Template("wrong method", "GET", "/predict", None, {}, False, 405),
        Template("huge body (5 MiB)", "POST", "/predict", b'{"instances": [' + b"0.5, " * (max_body // 4) + b"0]}",
                 json_type, False, 413, weight=0.05),
    ]
