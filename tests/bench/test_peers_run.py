"""bench/peers_run.py with a stand-in server (a few lines of http.server, no TensorFlow): readiness, the
correctness gate (passed, failed by a difference, failed by a malformed answer), and a server that
exits at start."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from bench.peers_run import TOLERANCE, RunningServer, gate
from bench.peers_servers import Context, Launch, ServerSpec

# Answers each instance with ten copies of its mean: {"predictions": [[mean] * 10, ...]}.
STAND_IN = """
import http.server, json, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["instances"]
        body = json.dumps({"predictions": [[sum(row) / len(row)] * 10 for row in rows]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""
IMAGES = np.array([[0.0, 0.5, 1.0], [0.25, 0.25, 0.25], [1.0, 1.0, 0.7]], dtype=np.float32)
REFERENCE = np.repeat(IMAGES.mean(axis=1, keepdims=True), 10, axis=1).astype(np.float64)


def spec(script: str, answers=lambda response: response["predictions"]) -> ServerSpec:
    return ServerSpec("stand-in", "stand-in", "/predict", None,
                      lambda ctx, port: Launch([sys.executable, "-c", script, str(port)], {}, ctx.scratch),
                      lambda images: {"instances": images}, answers)


@pytest.fixture
def context(tmp_path) -> Context:
    return Context(tmp_path, tmp_path, tmp_path)


def test_a_ready_server_passes_the_gate_when_its_answers_match(context, tmp_path):
    server = RunningServer(spec(STAND_IN), context, tmp_path)
    try:
        assert server.wait_ready(IMAGES[0].tolist(), timeout=60) > 0
        result = gate(server, IMAGES, REFERENCE)
        assert result["passed"] and result["error"] is None and result["max_abs_diff"] < 1e-7
        off = gate(server, IMAGES, REFERENCE + 10 * TOLERANCE)
        assert not off["passed"] and off["max_abs_diff"] == pytest.approx(10 * TOLERANCE, rel=0.05)
    finally:
        assert server.stop() is not None
    assert server.process.poll() is not None


def test_a_malformed_answer_fails_the_gate_and_says_why(context, tmp_path):
    server = RunningServer(spec(STAND_IN, answers=lambda response: response["predictions"][:1]), context, tmp_path)
    try:
        server.wait_ready(IMAGES[0].tolist(), timeout=60)
        result = gate(server, IMAGES, REFERENCE)
    finally:
        server.stop()
    assert not result["passed"] and result["error"] == "3 image(s): answer of shape (1, 10) for 3 image(s)"


def test_a_server_that_exits_at_start_fails_with_its_log(context, tmp_path):
    server = RunningServer(spec("import sys; print('no such model'); sys.exit(3)"), context, tmp_path)
    try:
        with pytest.raises(RuntimeError, match=r"(?s)exited with status 3.*no such model"):
            server.wait_ready([0.0], timeout=60)
    finally:
        server.stop()
