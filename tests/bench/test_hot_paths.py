"""bench/hot_paths.py on the real exported model, with tiny repeat counts: every row measured, the JSON
saved whole, and each mechanism giving the plain way's results. No timing is asserted (a shared machine)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson
import pytest

from bench import hot_paths
from bench.document import section_hot_paths
from bench.support import REPO, mnist_dir
from service.contract import complete_versions

MODEL_DIR = REPO / "exports" / "mnist"
ROW_KEYS = {"name", "what", "plain", "mechanism", "plain_us", "mechanism_us", "ratio"}


def need_model_and_digits() -> None:
    if not complete_versions(MODEL_DIR):
        pytest.skip(f"no complete version in {MODEL_DIR}: run `python training/train.py` first")
    if mnist_dir() is None or not mnist_dir().is_dir():
        pytest.skip("real MNIST not found: set MNIST_DATA_DIR to a folder with the four IDX .gz files")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A whole run through the command line (2 repeats of 2 ms loops), its JSON and the files renamed into place."""
    need_model_and_digits()
    folder = tmp_path_factory.mktemp("saved")
    path = folder / "hot-paths.json"
    path.write_text("old")
    replaced = []
    with pytest.MonkeyPatch.context() as patch:
        real_replace = os.replace
        patch.setattr("training.atomic.os.replace", lambda src, dst: (replaced.append((src, dst)),
                                                                      real_replace(src, dst)))
        assert hot_paths.main(["--repeats", "2", "--loop-seconds", "0.002", "--json", str(path)]) == 0
    return path, json.loads(path.read_text()), replaced


@pytest.fixture(scope="module")
def cases():
    need_model_and_digits()
    model, images = hot_paths.load_model(MODEL_DIR), hot_paths.mnist_digits()
    with contextlib.ExitStack() as stack:
        yield {case.name: case for case in hot_paths.all_cases(model, images, stack)}


def test_every_row_is_measured_with_positive_finite_timings(saved):
    _, data, _ = saved
    assert [row["name"] for row in data["rows"]] == list(hot_paths.ROWS)
    for row in data["rows"]:
        for key in ("plain_us", "mechanism_us", "ratio", "ratio_min", "ratio_max"):
            assert math.isfinite(row[key]) and row[key] > 0, (row["name"], key, row[key])
        assert row["ratio"] == pytest.approx(row["plain_us"] / row["mechanism_us"])
        assert row["same_results"] is True and row["repeats"] == 2


def test_the_json_is_renamed_into_place_whole_with_the_expected_keys(saved):
    path, data, replaced = saved
    assert [Path(dst) for _, dst in replaced] == [path]
    assert Path(replaced[0][0]).parent == path.parent and not Path(replaced[0][0]).exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["hot-paths.json"]  # no temporary file left
    assert {"when", "command", "machine", "versions", "settings", "elapsed_seconds", "rows"} <= data.keys()
    assert data["machine"]["cpu_count"] == os.cpu_count() and data["machine"]["platform"]
    assert {"tensorflow", "orjson", "simdjson", "numpy"} <= data["versions"].keys()
    assert all(ROW_KEYS <= row.keys() for row in data["rows"])


def test_docs_benchmarks_gets_a_hot_paths_section_from_the_saved_run(saved, tmp_path):
    path, data, _ = saved
    lines = section_hot_paths(path, path.parent.parent / "benchmarks.md")
    assert lines[0] == "## Hot paths" and data["command"] in lines[2]
    text = "\n".join(lines)
    assert "| mechanism | plain way | µs plain | µs ours | ratio |" in text
    assert sum(line.startswith("| ") for line in text.splitlines()) == 1 + len(hot_paths.ROWS)  # header, rows
    assert section_hot_paths(tmp_path / "absent.json", tmp_path / "benchmarks.md") == []


def test_an_unknown_row_name_is_refused():
    with pytest.raises(SystemExit):
        hot_paths.parse_args(["--only", "graph_runner_1,no_such_row"])


@pytest.mark.parametrize("n", hot_paths.SIZES)
def test_graph_runner_gives_the_signatures_probabilities(cases, n):
    case = cases[f"graph_runner_{n}"]
    signature, runner = case.plain(1), case.mechanism(1)
    assert signature.shape == runner.shape == (n, 10)
    np.testing.assert_allclose(runner, signature, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(cases[f"callable_options_{n}"].plain(1), runner)  # make_callable: same Session


@pytest.mark.parametrize("n", hot_paths.SIZES)
def test_instance_rows_gives_the_general_paths_pixels(cases, n):
    case = cases[f"instance_rows_{n}"]
    general, fast = case.plain(1), case.mechanism(1)
    assert general.dtype == fast.dtype == np.float32 and general.shape == (n, 784)
    np.testing.assert_array_equal(fast, general)


def test_body_has_bools_agrees_with_the_word_search():
    from service.web import body_has_bools

    numbers = hot_paths.request_body(np.linspace(0, 1, 2 * 784).reshape(2, 784))
    with_words = [numbers.replace(b"0.0, ", b"true, ", 1), numbers.replace(b"1.0]", b"false]", 1),
                  b'{"instances": [[0.5, true]], "note": "untrue"}', b'{"instances": [false]}']
    without = [numbers, b'{"instances": [{"b64": "iVBORw0KGgo"}]}', b'{"signature_name": "serving_default"}']
    for body in with_words + without:
        assert body_has_bools(body) == hot_paths.word_search(body) == (body in with_words), body[:60]


@pytest.mark.parametrize("n", hot_paths.SIZES)
def test_orjson_and_json_answers_read_back_the_same(cases, n):
    case = cases[f"orjson_{n}"]
    plain, ours = json.loads(case.plain(1)), json.loads(case.mechanism(1))
    assert plain.keys() == ours.keys() == {"predictions"}
    np.testing.assert_array_equal(np.float32(ours["predictions"]), np.float32(plain["predictions"]))
    floats = {"predictions": np.float32(plain["predictions"]).tolist()}  # Python floats: the very same text
    assert json.loads(orjson.dumps(floats)) == json.loads(json.dumps(floats)) == floats


def test_inline_runs_on_the_loops_thread_and_pooled_on_the_pool_thread(cases):
    np.testing.assert_array_equal(cases["inline_predict"].plain(2), cases["inline_predict"].mechanism(2))
    assert cases["inline_noop"].plain(3) is None and cases["inline_noop"].mechanism(3) is None
    loop, pool = asyncio.new_event_loop(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsgi")
    try:
        pooled, inline = hot_paths.event_loop_pair(loop, pool, lambda: threading.current_thread().name)
        assert pooled(2).startswith("wsgi") and inline(2) == threading.current_thread().name
    finally:
        pool.shutdown()
        loop.close()
