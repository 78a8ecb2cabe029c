"""The operator features against a real gunicorn with the shipped worker (2 workers), side by side with
one started as shipped (everything off): API tokens over HTTP and gRPC (missing, wrong, right, revoked by
editing the file while it runs), the request ID in the answer, the error body and the JSON access log
(every line of the log parsed), CORS in a real browser (Debian's chromium, Playwright) on another origin.
TLS: test_tls.py; tracing: test_tracing.py."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import threading
import time

import grpc
import numpy as np
import pytest
import requests

from bench.localhost import LOCALHOST
from tests.support import running_gunicorn

from .grpc_support import Clients, predict_request, wait_for_grpc
from .operator_support import TOKENS, bearer, write_tokens

ZEROS = [0.0] * 784
PREDICT = {"instances": [ZEROS]}
CHROMIUM = "/usr/bin/chromium"
ACCESS_KEYS = ["time", "id", "protocol", "method", "route", "path", "status", "duration_ms", "instances",
               "bytes_in", "bytes_out", "client"]


class PageServer:
    """A blank page on its own origin (``http://127.0.0.1:PORT``), for the browser's cross-origin calls."""

    def __init__(self):
        class Blank(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = b"<!doctype html><title>another origin</title>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer((LOCALHOST, 0), Blank)
        self.origin = f"http://{LOCALHOST}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def pages():
    listed, unlisted = PageServer(), PageServer()
    yield listed, unlisted
    listed.close()
    unlisted.close()


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory):
    return write_tokens(tmp_path_factory.mktemp("tokens") / "tokens", *TOKENS)


@pytest.fixture(scope="module")
def featured(tmp_path_factory, export_base, pages, tokens_file):
    """CORS for the first page's origin, API tokens, the JSON access log (so request IDs) on."""
    folder = tmp_path_factory.mktemp("featured")
    env = {"CORS_ORIGINS": pages[0].origin, "API_TOKENS_FILE": str(tokens_file), "ACCESS_LOG": "json"}
    with running_gunicorn(export_base, folder / "gunicorn.log", workers=2, poll_seconds=0, extra_env=env) as server:
        wait_for_grpc(server)
        yield server


@pytest.fixture(scope="module")
def plain(tmp_path_factory, export_base):
    """The service as shipped: every operator feature off."""
    folder = tmp_path_factory.mktemp("plain")
    with running_gunicorn(export_base, folder / "gunicorn.log", workers=2, poll_seconds=0) as server:
        yield server


def access_lines(server, until=lambda lines: True, seconds: float = 5.0) -> list[dict]:
    """Every access-log line of the server's log (its standard output and error, interleaved), parsed: a line
    that starts like one and does not parse fails here. A worker writes a request's line just after sending
    its answer, so a test that has its answer waits (at most ``seconds``) until ``until(lines)`` holds."""
    deadline = time.monotonic() + seconds
    while True:
        lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
        if until(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


def on_fresh_connections(server, method: str, path: str, times: int = 6, **kwargs) -> list[requests.Response]:
    """The same request on ``times`` new connections (they spread over both workers)."""
    return [requests.request(method, server.url(path), timeout=10, **kwargs) for _ in range(times)]


def test_the_plain_server_is_as_shipped(plain):
    answer = requests.post(plain.url("/predict"), json=PREDICT, headers={"Origin": "http://x.example"}, timeout=10)
    assert answer.status_code == 200 and "X-Request-Id" not in answer.headers
    assert not [name for name in answer.headers if name.lower().startswith("access-control-")]
    refused = requests.post(plain.url("/predict"), data=b"{", headers={"Content-Type": "application/json"}, timeout=10)
    assert refused.status_code == 400 and list(refused.json()) == ["error"]
    assert access_lines(plain) == []


def test_http_tokens_missing_wrong_right_and_revoked_while_running(featured, tokens_file):
    missing = requests.post(featured.url("/predict"), json=PREDICT, timeout=10)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer <token>" in missing.json()["error"]
    assert missing.json()["request_id"] == missing.headers["X-Request-Id"]
    wrong = requests.post(featured.url("/predict"), json=PREDICT, headers=bearer("not-a-token"), timeout=10)
    assert wrong.status_code == 401 and "not valid" in wrong.json()["error"]
    assert {r.status_code for r in on_fresh_connections(featured, "POST", "/predict", json=PREDICT,
                                                        headers=bearer(TOKENS[0]))} == {200}
    assert requests.get(featured.url("/healthz"), timeout=10).status_code == 200  # probes stay open
    try:
        write_tokens(tokens_file, TOKENS[1])  # TOKENS[0] revoked, no restart
        assert {r.status_code for r in on_fresh_connections(featured, "POST", "/predict", json=PREDICT,
                                                            headers=bearer(TOKENS[0]))} == {401}
        assert {r.status_code for r in on_fresh_connections(featured, "POST", "/predict", json=PREDICT,
                                                            headers=bearer(TOKENS[1]))} == {200}
    finally:
        write_tokens(tokens_file, *TOKENS)


def grpc_call(featured, metadata=()):
    clients = Clients(featured.grpc_port)
    try:
        response, call = clients.predictions.Predict.with_call(predict_request(np.zeros((1, 784), np.float32)),
                                                               metadata=metadata, timeout=10)
        return response, dict(call.trailing_metadata())
    finally:
        clients.close()


def test_grpc_tokens_missing_wrong_right_and_revoked(featured, tokens_file):
    for metadata, words in [((), "Authorization: Bearer <token>"), ((("authorization", "Bearer nope"),), "not valid")]:
        with pytest.raises(grpc.RpcError) as refused:
            grpc_call(featured, metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED and words in refused.value.details()
    response, trailing = grpc_call(featured, (("authorization", f"Bearer {TOKENS[0]}"), ("x-request-id", "grpc-1")))
    assert response.outputs["probabilities"].tensor_shape.dim[1].size == 10 and trailing["x-request-id"] == "grpc-1"
    try:
        write_tokens(tokens_file, TOKENS[1])
        with pytest.raises(grpc.RpcError) as revoked:
            grpc_call(featured, (("authorization", f"Bearer {TOKENS[0]}"),))
        assert revoked.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        write_tokens(tokens_file, *TOKENS)
    def grpc_lines(lines):
        return [line for line in lines if line["protocol"] == "grpc"]

    def revoked_call_logged(lines):  # the last call's line, after the accepted one's
        ids = [line["id"] for line in grpc_lines(lines)]
        return "grpc-1" in ids and ids.index("grpc-1") < len(ids) - 1
    lines = grpc_lines(access_lines(featured, until=revoked_call_logged))
    assert {"id": "grpc-1", "status": "OK", "instances": 1} == {k: v for k, v in lines[-2].items()
                                                               if k in ("id", "status", "instances")}
    assert lines[-1]["status"] == "UNAUTHENTICATED"


def test_the_request_id_is_in_the_answer_the_error_body_and_the_access_log(featured):
    refused = requests.post(featured.url("/predict"), data=b'{"instances": [[2]]}',
                            headers={"Content-Type": "application/json", "X-Request-Id": "op-check-17",
                                     **bearer(TOKENS[0])}, timeout=10)
    assert refused.status_code == 400 and refused.headers["X-Request-Id"] == "op-check-17"
    assert refused.json()["request_id"] == "op-check-17"
    def ours(lines):
        return [line for line in lines if line["id"] == "op-check-17"]
    (line,) = ours(access_lines(featured, until=ours))
    assert (line["status"], line["route"], line["method"], line["client"]) == (400, "/predict", "POST", "127.0.0.1")
    with socket.create_connection(("127.0.0.1", featured.port), timeout=10) as sock:  # refused by the parser
        sock.sendall(b"GARBAGE\r\n\r\n")
        head, _, body = sock.recv(65536).partition(b"\r\n\r\n")
    made = json.loads(body)["request_id"]
    assert head.startswith(b"HTTP/1.1 400") and f"X-Request-Id: {made}".encode() in head and len(made) == 32


def test_one_json_access_line_per_request_and_every_line_parses(featured):
    before = len(access_lines(featured))
    sent = [requests.post(featured.url("/predict"), json={"instances": [ZEROS] * 3}, headers=bearer(TOKENS[1]), timeout=10),
            requests.get(featured.url("/healthz"), timeout=10),
            requests.get(featured.url("/v2/models/mnist"), headers=bearer(TOKENS[0]), timeout=10),
            requests.get(featured.url("/no/such/route"), timeout=10),
            requests.post(featured.url("/predict"), data=b"0" * (9 * 1024 * 1024), timeout=10)]
    assert [answer.status_code for answer in sent] == [200, 200, 200, 404, 413]
    lines = access_lines(featured, until=lambda lines: len(lines) >= before + len(sent))[before:]
    assert len(lines) == len(sent)  # lines from the two workers: in any order
    assert all(list(line) == ACCESS_KEYS for line in access_lines(featured))
    by_id = {line["id"]: line for line in lines}
    for answer in sent:
        line = by_id[answer.headers["X-Request-Id"]]
        assert line["status"] == answer.status_code and line["bytes_out"] == len(answer.content)
    assert by_id[sent[0].headers["X-Request-Id"]]["instances"] == 3
    assert by_id[sent[4].headers["X-Request-Id"]]["route"] is None  # the worker's 413: before Flask
    assert all(token not in featured.log() for token in TOKENS)


# ---- CORS in a real browser -----------------------------------------------------------------------------
FETCH = """async ([url, token]) => {
    try {
        const answer = await fetch(url, {method: "POST", body: JSON.stringify({instances: [new Array(784).fill(0)]}),
                                         headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token}});
        const body = await answer.json();
        return {status: answer.status, digit: body.predictions[0].digit, id: answer.headers.get("X-Request-Id")};
    } catch (error) {
        return {error: error.name + ": " + error.message};
    }
}"""


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium; .ci/setup.d/20-browser.sh does it in CI)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    from .test_browser import FLAGS

    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield launched
        launched.close()


def fetch_from(browser, origin: str, api: str) -> dict:
    page = browser.new_page()
    with contextlib.closing(page):
        page.goto(origin + "/")
        return page.evaluate(FETCH, [api + "/predict", TOKENS[0]])


def test_a_page_on_another_origin_calls_predict_only_where_cors_allows_it(browser, pages, featured, plain):
    listed, unlisted = pages
    allowed = fetch_from(browser, listed.origin, featured.base_url)
    assert allowed["status"] == 200 and 0 <= allowed["digit"] <= 9 and len(allowed["id"]) == 32
    for origin, server in ((unlisted.origin, featured), (listed.origin, plain)):
        refused = fetch_from(browser, origin, server.base_url)
        assert refused == {"error": "TypeError: Failed to fetch"}, (origin, server.name)
