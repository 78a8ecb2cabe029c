"""bench/peers_load.py: the levels, wrk's Lua script and its JSON line, and the HTTP/JSON protocol
against a small local server."""

from __future__ import annotations

import dataclasses
import http.server
import json
import re
import threading

import numpy as np
import pytest

from bench.localhost import LOCALHOST, free_port
from bench.peers_load import HTTP_JSON, LUA_TEMPLATE, Level, level_from_name, parse_levels, parse_wrk_json
from bench.peers_servers import SPECS


# ---- levels --------------------------------------------------------------------------------------------
def test_levels_are_images_per_request_and_connections():
    assert parse_levels("1:1, 1:8,64:8") == [Level(1, 1), Level(1, 8), Level(64, 8)]
    assert Level(64, 8).name == "64 img c=8"
    assert level_from_name("64 img c=8") == Level(64, 8)
    for bad in ("0:8", "1:0", "8", "a:b"):
        with pytest.raises(ValueError):
            parse_levels(bad)


# ---- wrk -----------------------------------------------------------------------------------------------
WRK_STDOUT = """Running 3s test @ http://127.0.0.1:4242/predict
  1 threads and 8 connections
  Latency Distribution
     50%    4.33ms
  4462 requests in 3.00s, 3.1MB read
Requests/sec:   1487.33
WRK_JSON {"requests":4462,"duration_us":3000000,"bytes":3250000,"connect_errors":0,"read_errors":0,\
"write_errors":0,"timeouts":0,"non_2xx":0,"latency_us":{"mean":5012.5,"p50":4330,"p90":8000,"p99":13860,\
"max":20123}}
"""


def test_wrk_json_gives_rate_latencies_and_no_flag():
    figures = parse_wrk_json(WRK_STDOUT)
    assert figures["requests"] == 4462 and figures["seconds"] == 3.0
    assert figures["rps"] == pytest.approx(4462 / 3)
    assert (figures["p50_ms"], figures["p99_ms"], figures["max_ms"]) == (4.33, 13.86, 20.123)
    assert figures["non_2xx"] == 0 and figures["socket_errors"] == 0 and not figures["flagged"]


def test_wrk_errors_flag_the_level():
    stdout = WRK_STDOUT.replace('"read_errors":0', '"read_errors":2').replace('"timeouts":0', '"timeouts":1')
    figures = parse_wrk_json(stdout)
    assert figures["socket_errors"] == 3 and figures["flagged"]
    figures = parse_wrk_json(WRK_STDOUT.replace('"non_2xx":0', '"non_2xx":5'))
    assert figures["non_2xx"] == 5 and figures["flagged"]


def test_wrk_output_without_the_json_line_is_an_error():
    with pytest.raises(ValueError, match="WRK_JSON"):
        parse_wrk_json("Running 3s test\nRequests/sec: 12\n")


def test_lua_script_sets_the_request_and_prints_json(tmp_path):
    body = tmp_path / "kserve-64.json"
    script = LUA_TEMPLATE.format(name="kserve", path="/v1/models/mnist:predict", batch=64, body=body)
    assert 'wrk.method = "POST"' in script and 'wrk.headers["Content-Type"] = "application/json"' in script
    assert f'io.open("{body}", "rb")' in script
    # done()'s format string, filled in as Lua's string.format would, is the line parse_wrk_json reads
    call = script.split("string.format(", 1)[1].split("summary.requests")[0]
    pattern = "".join(re.findall(r"'([^']*)'", call)).replace("\\n", "\n")
    line = pattern % (10, 2e6, 999, 0, 1, 0, 0, 3, 1234.5, 1000, 2000, 3000, 4000)
    figures = parse_wrk_json(line)
    assert figures["rps"] == 5.0 and figures["p99_ms"] == 3.0 and figures["mean_ms"] == 1.2345
    assert figures["socket_errors"] == 1 and figures["non_2xx"] == 3


# ---- the HTTP/JSON protocol ----------------------------------------------------------------------------
@pytest.fixture
def echo_server():
    """A local HTTP server that answers every POST with 201 and what it received, as JSON
    ({"path", "content_type", "body"}); and closes without an answer when the path is /drop."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            received = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/drop":
                self.close_connection = True
                return
            answer = json.dumps({"path": self.path, "content_type": self.headers["Content-Type"],
                                 "body": received}).encode()
            self.send_response(201)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((LOCALHOST, free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_predict_posts_the_servers_own_format_and_decodes_the_answer(echo_server):
    status, answer = HTTP_JSON.predict(SPECS["mlflow"], echo_server, [[0.5] * 3])
    assert status == 201
    assert answer == {"path": "/invocations", "content_type": "application/json", "body": {"inputs": [[0.5] * 3]}}
    status, answer = HTTP_JSON.predict(SPECS["kserve"], echo_server, [[0.25]])
    assert answer["path"] == "/v1/models/mnist:predict" and answer["body"] == {"instances": [[0.25]]}


def test_no_answer_is_an_os_error(echo_server):
    spec = dataclasses.replace(SPECS["ours"], path="/drop")
    with pytest.raises(OSError, match="RemoteDisconnected"):
        HTTP_JSON.predict(spec, echo_server, [[0.0]])
    with pytest.raises(OSError):
        HTTP_JSON.predict(SPECS["ours"], free_port(), [[0.0]])  # nothing listens there


def test_the_load_file_is_a_lua_script_posting_the_first_images(tmp_path):
    images = np.arange(12, dtype=np.float32).reshape(4, 3)
    script = HTTP_JSON.write_load(SPECS["mlflow"], images, 2, tmp_path)
    assert script == tmp_path / "mlflow-2.lua"
    assert f'io.open("{tmp_path / "mlflow-2.json"}", "rb")' in script.read_text()
    assert "-- mlflow: POST /invocations, 2 image(s) per request" in script.read_text()
    assert json.loads((tmp_path / "mlflow-2.json").read_text()) == {"inputs": [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]}
