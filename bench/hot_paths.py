"""Hot-path micro-benchmark: each mechanism of the serving hot path side by side with the plain way it replaces.

    python -m bench.hot_paths                                        # every row, 15 repeats (about a minute)
    python -m bench.hot_paths --repeats 3 --loop-seconds 0.01 --markdown   # a quick look
    python -m bench.hot_paths --only instance_rows_64,body_has_bools_64     # some rows (names: ROWS)
    python -m bench.hot_paths --json docs/benchmarks/hot-paths.json --markdown   # the saved run (docs/benchmarks.md)

Rows (each for a body or batch of 1 and of 64 images; real MNIST test digits from ``MNIST_DATA_DIR``; the
model: the newest complete version under ``--model-dir``, loaded as service/predictor.py loads it, with
TensorFlow at 1 thread as the service's default ``TF_NUM_THREADS``):

- ``graph_runner``: service/graph_runner.py's ``GraphRunner`` (the signature frozen into a Session) against
  calling the SavedModel's ``serving_default`` signature (predictor.py's fallback, ``.numpy()`` included);
- ``callable_options``: the same Session's callable made from ``CallableOptions`` (``GraphRunner.__call__``)
  against ``Session.make_callable`` with a feed list, both fetching the same tensor;
- ``instance_rows``: service/json_rows.py (simdjson) + ``inputs.checked_pixels`` against the general path
  ``inputs.parse_json`` + ``inputs.to_pixel_batch(..., has_bools=web.body_has_bools(body))`` (as
  service/native.py calls them), from the raw body to the checked float32 pixels;
- ``body_has_bools``: service/web.py's ``body_has_bools`` against ``b"true" in body or b"false" in body``;
- ``orjson``: ``orjson.dumps({"predictions": probabilities}, option=OPT_SERIALIZE_NUMPY)`` (web.json_response)
  against ``json.dumps({"predictions": probabilities.tolist()}).encode()``;
- ``inline``: service/whole_requests.py's ``threads=0`` against ``threads=1``: inside one coroutine on an
  asyncio loop, N calls of a function made directly against N ``await loop.run_in_executor(pool,
  contextvars.copy_context().run, function)`` on a one-thread pool; the function is ``GraphRunner`` on one
  image (``inline_predict``) or one that does nothing (``inline_noop``: the hand-off alone).

Method: every pair is first checked to give the same results (a pair that does not stops the run). Then
each side is warmed up and calibrated (calls per timing loop so that a loop lasts about ``--loop-seconds``),
and for each of ``--repeats`` repeats both sides run one loop, turn about (plain first in even repeats,
ours first in odd ones), timed by ``time.perf_counter``. A row gives each side's median per-call time and
the ratio plain / ours of those medians (with the min-max of the per-repeat ratios). The machine is shared
with other work: compare the ratios, measured side by side, not the microseconds across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from bench.support import REPO, command_line, cpu_model, git_commit, markdown_table, mnist_dir

SIZES = (1, 64)


@dataclass
class Case:
    """One row: ``plain(n)`` and ``mechanism(n)`` each make n calls and return the last call's result;
    ``same(plain_result, mechanism_result)`` says whether the two ways agree."""

    name: str
    what: str
    plain_label: str
    mechanism_label: str
    plain: Callable[[int], object]
    mechanism: Callable[[int], object]
    same: Callable[[object, object], bool]


def looped(function: Callable, *args) -> Callable[[int], object]:
    """``run(n)``: n calls of ``function(*args)``, the last one's result returned."""
    def run(number: int):
        result = None
        for _ in range(number):
            result = function(*args)
        return result
    return run


# ---- the model ------------------------------------------------------------------------------------
@dataclass
class Model:
    signature_call: Callable  # predictor.py's fallback: the signature, pixels in, probabilities out
    runner: object  # the GraphRunner
    make_callable: Callable  # the runner's Session, Session.make_callable with a feed list
    version: int
    saved_model: object  # tf.saved_model.load's object: the signature's variables live as long as it


def load_model(model_dir: Path) -> Model:
    """The newest complete version, loaded as service/predictor.py does (1 TensorFlow thread)."""
    from service.contract import complete_versions
    from service.predictor import _checked_input_and_output, configure_tensorflow

    configure_tensorflow(1)
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from service.graph_runner import GraphRunner, _output_index

    versions = complete_versions(model_dir)
    if not versions:
        raise SystemExit(f"no complete version under {model_dir}: run `python training/train.py` first")
    loaded = tf.saved_model.load(str(model_dir / str(versions[-1])))
    function = loaded.signatures["serving_default"]
    input_name, output_name = _checked_input_and_output(function)
    runner = GraphRunner(function, output_name, threads=1)
    frozen = convert_variables_to_constants_v2(function)  # to name the tensor GraphRunner fetches
    output = frozen.outputs[_output_index(frozen, function, output_name)]
    fetch = runner.graph.get_tensor_by_name("model/" + output.name)
    feed = runner.graph.get_tensor_by_name("pixels:0")

    def signature_call(pixels):
        return function(**{input_name: tf.constant(pixels, dtype=tf.float32)})[output_name].numpy()

    return Model(signature_call, runner, runner.session.make_callable(fetch, feed_list=[feed]), versions[-1],
                 loaded)


def close_to(tolerance: float) -> Callable[[object, object], bool]:
    return lambda a, b: a.shape == b.shape and bool(np.allclose(a, b, rtol=0, atol=tolerance))


def model_cases(model: Model, images: np.ndarray) -> list[Case]:
    cases = []
    for n in SIZES:
        pixels = np.ascontiguousarray(images[:n])
        cases.append(Case(f"graph_runner_{n}", f"predict {n} image{'s' * (n > 1)}", "SavedModel signature call",
                          "GraphRunner (frozen graph, Session callable)", looped(model.signature_call, pixels),
                          looped(model.runner, pixels), close_to(1e-6)))
        cases.append(Case(f"callable_options_{n}", f"predict {n} image{'s' * (n > 1)}, same Session",
                          "Session.make_callable", "callable from CallableOptions (GraphRunner)",
                          looped(model.make_callable, pixels), looped(model.runner, pixels), close_to(0)))
    return cases


# ---- bodies and answers ---------------------------------------------------------------------------
def request_body(images: np.ndarray) -> bytes:
    """``{"instances": [[784 numbers], ...]}`` as a client writes it (pixels in [0, 1], 6 decimals)."""
    return json.dumps({"instances": np.asarray(images, np.float64).round(6).tolist()}).encode()


def general_path(body: bytes) -> np.ndarray:
    """The body's pixels the general way (service/native.py without json_rows)."""
    from service.inputs import parse_json, require_object, to_pixel_batch
    from service.web import body_has_bools

    return to_pixel_batch(require_object(parse_json(body), "")["instances"], has_bools=body_has_bools(body))


def fast_path(body: bytes) -> np.ndarray:
    """The body's pixels through json_rows (service/native.py's first try)."""
    from service.inputs import checked_pixels
    from service.json_rows import instance_rows

    return checked_pixels(instance_rows(body), "instance")


def word_search(body: bytes) -> bool:
    return b"true" in body or b"false" in body


def json_answer(probabilities: np.ndarray) -> bytes:
    return json.dumps({"predictions": probabilities.tolist()}).encode()


def orjson_answer(probabilities: np.ndarray) -> bytes:
    import orjson

    return orjson.dumps({"predictions": probabilities}, option=orjson.OPT_SERIALIZE_NUMPY)


def same_answer(plain: bytes, ours: bytes) -> bool:
    """Both answers read back to the same float32 probabilities (orjson writes float32's shortest digits)."""
    a, b = (np.asarray(json.loads(body)["predictions"], np.float32) for body in (plain, ours))
    return a.shape == b.shape and bool(np.array_equal(a, b))


def body_cases(model: Model, images: np.ndarray) -> list[Case]:
    from service.web import body_has_bools

    cases = []
    for n in SIZES:
        body, s = request_body(images[:n]), "s" * (n > 1)
        probabilities = model.runner(np.ascontiguousarray(images[:n]))
        cases.append(Case(f"instance_rows_{n}", f"body of {n} image{s} ({len(body) / 1000:.1f} kB) to pixels",
                          "parse_json + to_pixel_batch", "instance_rows (simdjson) + checked_pixels",
                          looped(general_path, body), looped(fast_path, body),
                          lambda a, b: a.dtype == b.dtype and np.array_equal(a, b)))
        cases.append(Case(f"body_has_bools_{n}", f"body of {n} image{s}: can it hold true/false?",
                          'b"true" in body or b"false" in body', "body_has_bools (bytes.translate)",
                          looped(word_search, body), looped(body_has_bools, body), lambda a, b: a == b))
        cases.append(Case(f"orjson_{n}", f"answer of {n} prediction{s} to JSON bytes",
                          "json.dumps(tolist())", "orjson.dumps (OPT_SERIALIZE_NUMPY)",
                          looped(json_answer, probabilities), looped(orjson_answer, probabilities), same_answer))
    return cases


# ---- the event loop: inline or handed to a thread -------------------------------------------------
def event_loop_pair(loop, pool, function: Callable) -> tuple[Callable[[int], object], Callable[[int], object]]:
    """``(pooled, inline)``: n calls of ``function`` in one coroutine, each handed to ``pool`` as
    WholeRequests does with threads > 0, or made directly on the loop's thread (threads=0)."""
    async def pooled(number: int):
        result = None
        for _ in range(number):
            result = await loop.run_in_executor(pool, contextvars.copy_context().run, function)
        return result

    async def inline(number: int):
        result = None
        for _ in range(number):
            result = function()
        return result

    return (lambda n: loop.run_until_complete(pooled(n))), (lambda n: loop.run_until_complete(inline(n)))


def thread_cases(model: Model, images: np.ndarray, stack: contextlib.ExitStack) -> list[Case]:
    loop = asyncio.new_event_loop()
    stack.callback(loop.close)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsgi")
    stack.callback(pool.shutdown)
    one = np.ascontiguousarray(images[:1])
    cases = []
    for name, what, function, same in (
            ("inline_predict", "one-image prediction (GraphRunner)", lambda: model.runner(one), close_to(0)),
            ("inline_noop", "an empty function (the hand-off alone)", lambda: None, lambda a, b: a == b)):
        pooled, inline = event_loop_pair(loop, pool, function)
        cases.append(Case(name, f"calls on an asyncio loop, each {what}", "run_in_executor, 1-thread pool (threads=1)",
                          "inline on the loop's thread (threads=0)", pooled, inline, same))
    return cases


ORDER = ("graph_runner", "callable_options", "instance_rows", "body_has_bools", "orjson", "inline")
ROWS = (*(f"{kind}_{n}" for kind in ORDER[:-1] for n in SIZES), "inline_predict", "inline_noop")


def all_cases(model: Model, images: np.ndarray, stack: contextlib.ExitStack) -> list[Case]:
    """Every row, in the order of ``ROWS`` (each mechanism's sizes together)."""
    cases = model_cases(model, images) + body_cases(model, images) + thread_cases(model, images, stack)
    return sorted(cases, key=lambda case: ROWS.index(case.name))


# ---- timing -----------------------------------------------------------------------------------------
def seconds(run: Callable[[int], object], number: int) -> float:
    start = time.perf_counter()
    run(number)
    return time.perf_counter() - start


def calls_per_loop(run: Callable[[int], object], loop_seconds: float) -> int:
    """Warm up, then how many calls make a timing loop of about ``loop_seconds``."""
    run(3)
    number = 1
    while (elapsed := seconds(run, number)) < loop_seconds / 5 and number < 10**7:
        number *= 2
    return max(1, math.ceil(number * loop_seconds / max(elapsed, 1e-9)))


def measure(case: Case, repeats: int, loop_seconds: float) -> dict:
    """Both sides of a case, interleaved: medians per call (µs) and the ratio plain / ours."""
    if not case.same(case.plain(1), case.mechanism(1)):
        raise SystemExit(f"{case.name}: {case.mechanism_label} and {case.plain_label} give different results")
    numbers = {"plain": calls_per_loop(case.plain, loop_seconds),
               "mechanism": calls_per_loop(case.mechanism, loop_seconds)}
    runs = {"plain": case.plain, "mechanism": case.mechanism}
    times = {"plain": [], "mechanism": []}
    for repeat in range(repeats):
        for side in (("plain", "mechanism") if repeat % 2 == 0 else ("mechanism", "plain")):
            times[side].append(seconds(runs[side], numbers[side]) / numbers[side] * 1e6)
    plain_us, mechanism_us = statistics.median(times["plain"]), statistics.median(times["mechanism"])
    ratios = [p / m for p, m in zip(times["plain"], times["mechanism"])]
    return {"name": case.name, "what": case.what, "plain": case.plain_label, "mechanism": case.mechanism_label,
            "plain_us": plain_us, "mechanism_us": mechanism_us, "ratio": plain_us / mechanism_us,
            "ratio_min": min(ratios), "ratio_max": max(ratios), "same_results": True,
            "calls_per_loop": numbers, "repeats": repeats}


# ---- the run and its report -------------------------------------------------------------------------
def mnist_digits(count: int = 64) -> np.ndarray:
    """The first ``count`` MNIST test digits, ``(count, 784)`` float32 in [0, 1]."""
    from training.data import load_mnist

    folder = mnist_dir()
    if folder is None or not folder.is_dir():
        raise SystemExit("real MNIST not found: set MNIST_DATA_DIR to a folder with the four IDX .gz files")
    _, (x, _) = load_mnist(folder)
    return np.asarray(x[:count], np.float32).reshape(count, -1)


def library_versions() -> dict[str, str]:
    from importlib import metadata

    import numpy
    import orjson
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "orjson": orjson.__version__, "simdjson": metadata.version("pysimdjson"),
            "numpy": numpy.__version__, "python": platform.python_version()}


def run(model_dir: Path, repeats: int, loop_seconds: float, only: list[str] | None = None, log=print,
        command: str = "python -m bench.hot_paths") -> dict:
    """Every case (or those named in ``only``) measured; the figures and the machine, as saved by --json."""
    started, load_before = time.time(), os.getloadavg()
    model, images = load_model(model_dir), mnist_digits()
    rows = []
    with contextlib.ExitStack() as stack:
        for case in all_cases(model, images, stack):
            if only is None or case.name in only:
                rows.append(measure(case, repeats, loop_seconds))
                log(row_line(rows[-1]))
    return {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
            "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "cpu": cpu_model(),
                        "commit": git_commit(mark_dirty=True), "load_average": [load_before, os.getloadavg()]},
            "versions": library_versions(), "elapsed_seconds": time.time() - started,
            "settings": {"repeats": repeats, "loop_seconds": loop_seconds, "model_version": model.version,
                         "tensorflow_threads": 1}, "rows": rows}


def row_line(row: dict) -> str:
    return (f"{row['name']:<20} {row['plain_us']:10.2f} us plain {row['mechanism_us']:10.2f} us ours "
            f"{row['ratio']:7.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})")


def micros(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def times(ratio: float) -> str:
    return f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.1f}" if ratio >= 10 else f"{ratio:.2f}"


def report_from_json(data: dict) -> str:
    """The Markdown table and a line on the machine and the settings (docs/benchmarks.md's Hot paths)."""
    lines = markdown_table(["mechanism", "plain way", "µs plain", "µs ours", "ratio"],
                           [[f"{row['mechanism']}: {row['what']}", row["plain"], micros(row["plain_us"]),
                             micros(row["mechanism_us"]), f"{times(row['ratio'])}x ({times(row['ratio_min'])}-"
                             f"{times(row['ratio_max'])})"] for row in data["rows"]])
    machine, settings = data["machine"], data["settings"]
    versions = ", ".join(f"{name} {version}" for name, version in data["versions"].items())
    before, after = (load[0] for load in machine["load_average"])
    footer = (f"{machine['cpu']}, {machine['cpu_count']} cores, {machine['platform']}; {versions}; commit "
              f"{machine['commit']}; load average {before:.2f} at the start, {after:.2f} at the end (1 min); "
              f"{settings['repeats']} interleaved repeats of about {settings['loop_seconds']} s per side, medians "
              "(ratio: plain / ours, and its min-max over the repeats); model version "
              f"{settings['model_version']}, TensorFlow at 1 thread.")
    return "\n".join(lines + ["", footer])


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_line(__doc__)
    parser.add_argument("--model-dir", type=Path, default=REPO / "exports" / "mnist",
                        help="export base; its newest complete version is measured (default exports/mnist)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved repeats per row (default 15)")
    parser.add_argument("--loop-seconds", type=float, default=0.1, help="one timing loop's length (default 0.1)")
    parser.add_argument("--only", help="comma-separated row names (default: every row)")
    parser.add_argument("--json", type=Path, help="write every figure here (e.g. docs/benchmarks/hot-paths.json)")
    parser.add_argument("--markdown", action="store_true", help="print the Markdown table at the end")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.loop_seconds <= 0:
        parser.error("--repeats must be >= 1 and --loop-seconds > 0")
    args.only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else None
    if set(args.only or ()) - set(ROWS):
        parser.error(f"unknown rows {sorted(set(args.only) - set(ROWS))}; choose from {','.join(ROWS)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from training.atomic import write_json_atomic

    command = shlex.join(["python", "-m", "bench.hot_paths", *(sys.argv[1:] if argv is None else argv)])
    data = run(args.model_dir, args.repeats, args.loop_seconds, args.only, command=command)
    if args.json:
        write_json_atomic(args.json, data)
        print(f"wrote {args.json}")
    if args.markdown:
        print("\n" + report_from_json(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
