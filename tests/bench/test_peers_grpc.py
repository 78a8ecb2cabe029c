"""bench/peers_grpc.py: the gRPC frame h2load replays, h2load's summary and per-call log read into the
figures, a refused call caught by the answers' bytes, and the protocol against the real service."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bench.peers_grpc import GRPC_INFER, answer_bytes, frame, infer_request, parse_h2load
from bench.peers_servers import SPECS

H2LOAD_OUTPUT = """\
finished in 2.01s, 1914.00 req/s, 267.54KB/s
requests: 3828 total, 3830 started, 3828 done, 3828 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 3828 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 535.07KB (547913) total, 11.36KB (11634) headers (space savings 96.25%), 314.02KB (321552) data
"""


def test_a_frame_is_the_length_prefixed_message():
    request = infer_request(np.zeros((2, 784), np.float32))
    message = request.SerializeToString()
    assert frame(message) == b"\0" + len(message).to_bytes(4, "big") + message
    assert list(request.inputs[0].shape) == [2, 784] and len(request.raw_input_contents[0]) == 2 * 784 * 4


def test_h2load_figures_from_its_summary_and_log():
    log = "".join(f"1796618467541381\t200\t{us}\n" for us in [1000] * 98 + [5000, 9000])
    figures = parse_h2load(H2LOAD_OUTPUT, log, answer_bytes(1))
    assert figures["requests"] == 3828 and figures["rps"] == pytest.approx(3828 / 2.01)
    assert figures["p50_ms"] == 1.0 and figures["max_ms"] == 9.0 and figures["p99_ms"] > 5.0
    assert not figures["flagged"] and figures["data_bytes"] == 321552


def test_refused_calls_are_flagged_by_their_missing_answer_bytes():
    """A refused gRPC call is an HTTP 200 without DATA: too few bytes for one answer per call."""
    refused = H2LOAD_OUTPUT.replace("314.02KB (321552) data", "0B (0) data")
    figures = parse_h2load(refused, "", answer_bytes(1))
    assert figures["grpc_errors"] and figures["flagged"]
    assert parse_h2load(H2LOAD_OUTPUT, "", answer_bytes(64))["flagged"]  # 84 bytes a call: not 64 answers


def test_the_protocol_against_the_real_service(grpc_served, tmp_path):
    spec = SPECS["ours-grpc"]
    images = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    status, answer = GRPC_INFER.predict(spec, grpc_served.grpc_port, images.tolist())
    assert status == 200 and np.asarray(answer).shape == (3, 10)
    np.testing.assert_allclose(np.asarray(answer).sum(1), 1, atol=1e-5)
    if shutil.which("h2load") is None:
        pytest.skip("h2load is not installed: apt-get install nghttp2-client")
    load = GRPC_INFER.write_load(spec, images, 2, tmp_path)
    figures = GRPC_INFER.run_load(spec, grpc_served.grpc_port, load, connections=2, seconds=1)
    assert figures["requests"] > 0 and not figures["flagged"], figures
    assert GRPC_INFER.plain_client_rps(grpc_served.grpc_port, images[:1], 0.5) > 0


@pytest.fixture(scope="module")
def grpc_served(tmp_path_factory):
    """Our service with a tiny model (tests/service/conftest.py's digits MLP), gRPC on a free port."""
    from tests.service.conftest import export, train_mlp
    from tests.support import running_gunicorn
    from training.data import load_digits_28

    train, test = load_digits_28()
    folder = tmp_path_factory.mktemp("peers-grpc")
    export(train_mlp(train, epochs=1, batch_size=64), folder / "exports", test)
    with running_gunicorn(folder / "exports", folder / "gunicorn.log", workers=1) as server:
        from tests.service.grpc_support import wait_for_grpc

        wait_for_grpc(server, workers=1)
        yield server


def test_a_level_where_h2load_completed_no_call_is_flagged():
    none = H2LOAD_OUTPUT.replace("3828 done, 3828 succeeded", "0 done, 0 succeeded").replace(
        "3828 2xx", "0 2xx").replace("(321552) data", "(0) data")
    assert parse_h2load(none, "", answer_bytes(1))["flagged"]


def test_the_report_shows_the_c1_check_and_the_grpc_ratios():
    from bench.peers_load import Level
    from bench.peers_report import render_report

    def run(rps: float, plain: float | None) -> dict:
        figures = {"rps": rps, "p50_ms": 1.0, "p99_ms": 2.0, "cpu_ms_per_request": 0.5, "flagged": False}
        return {"status": "measured", "levels": {"1 img c=1": figures}, "pss_mib": 600.0,
                **({"plain_client_rps": plain} if plain else {})}

    results = {"ours": [run(900.0, None)], "ours-grpc": [run(1200.0, 1000.0)], "kserve-grpc": [run(400.0, 500.0)]}
    text = render_report(results, [Level(1, 1)], markdown=False)
    assert "ours-grpc / KServe gRPC" in text and "3.00 vs kserve-grpc" in text  # 1200 / 400
    assert "ours-grpc / ours over HTTP" in text and "1.33 vs ours" in text  # 1200 / 900
    check = text[text.index("c=1 check of h2load"):]
    assert "2.00 vs kserve-grpc" in check.split("Servers:")[0]  # 1000 / 500, the plain client's
