"""Serving benchmark: the service under gunicorn vs. the tutorial pattern, under the same load.

    python -m bench.serving                       # uses exports/mnist, or makes a small export
    python -m bench.serving --requests 3000 --baseline-server gunicorn

It starts, one after the other on 127.0.0.1 (all then stay up while they are measured):

- **service**: ``gunicorn -c service/gunicorn.conf.py "service.app:create_app()"`` with ``--workers``
  workers (default 2, each with TF_NUM_THREADS=1);
- **batching**: the same with TensorFlow's batch scheduler on (``ENABLE_BATCHING=1``,
  ``--max-batch-size``, ``--batch-timeout-micros``); ``--batching off|on|both`` (default both);
- **baseline**: a minimal Flask app that loads the export with Keras and calls
  ``keras.Model.predict`` on every request, the common tutorial pattern, run with Flask's own server
  (``app.run(threaded=True)``, as tutorials do) or, with ``--baseline-server gunicorn``, under
  gunicorn with the same number of workers (to separate the process model from the per-request code).

and drives them with the same bounded load from separate client processes (one keep-alive HTTP
connection each): single-instance requests at concurrency 1, 8 and 32, and 64-instance batches. Each
scenario sends ``--requests`` requests (batches: a quarter of that) or stops after ``--max-seconds``,
after a few warm-up requests; with ``--repeats N`` both servers stay up and take turns, scenario by
scenario, in alternating order (so that load from other processes hits both alike). Bodies are real
MNIST test digits when ``MNIST_DATA_DIR`` (or ../shared/data/mnist) has them, as a client would send
them (``pixels / 255`` as JSON floats). Both servers are started, awaited and stopped by
bench/servers.py's ``ServerProcess`` / ``GunicornServer``, as the tests' servers are.

It prints p50/p99 latency and requests/s for each server and scenario (median, min and max over the
repeats), and the ratios; ``--json PATH`` also writes them, with more percentiles, as JSON. This machine
has 2 cores shared by the servers, the load generator and anything else running: note the load
average printed at the start, and compare numbers from the same run only.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from bench.localhost import free_port
from bench.servers import GunicornServer, ServerProcess, gunicorn_settings
from bench.support import REPO, git_commit, load_text, mnist_dir, newest_version, summary, write_json

BASELINE_APP = '''
"""The tutorial pattern: Keras model, model.predict per request, Flask."""
import os, sys
import numpy as np
import keras
from flask import Flask, jsonify, request

inputs = keras.Input((784,), name="pixels")
outputs = keras.layers.TFSMLayer(os.environ["BASELINE_MODEL"], call_endpoint="serving_default")(inputs)
model = keras.Model(inputs, outputs["probabilities"] if isinstance(outputs, dict) else outputs)

app = Flask(__name__)


@app.route("/predict", methods=["POST"])
def predict():
    x = np.array(request.get_json()["instances"], dtype="float32")
    probabilities = model.predict(x, verbose=0)
    return jsonify({"predictions": [{"digit": int(p.argmax()), "confidence": float(p.max()),
                                     "probabilities": p.tolist()} for p in probabilities]})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
'''

MAKE_EXPORT = '''
"""A small 784-128-64-10 Keras MLP (untrained: serving cost does not depend on the weights)."""
import sys
import keras
from training.export import export_model
keras.utils.set_random_seed(0)
inputs = keras.Input((784,), name="pixels")
hidden = keras.layers.Dense(128, activation="relu")(inputs)
hidden = keras.layers.Dense(64, activation="relu")(hidden)
model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(hidden))
print(export_model(model, sys.argv[1], {"sizes": [784, 128, 64, 10], "note": "bench, untrained"}))
'''


# ---- data ----------------------------------------------------------------------------------------
def mnist_test_digits(count: int) -> np.ndarray:
    """``count`` MNIST test images as float (n, 784) in [0, 1]; sparse random digits without MNIST."""
    folder = mnist_dir()
    path = folder / "t10k-images-idx3-ubyte.gz" if folder else None
    if path is not None and path.is_file():
        data = gzip.open(path).read()
        images = np.frombuffer(data, np.uint8, offset=16).reshape(-1, 784)[:count]
        return images / 255.0
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (count, 784)) * (rng.random((count, 784)) < 0.19)
    return images / 255.0


def model_to_serve(args, scratch: Path) -> tuple[Path, bool]:
    """``--model-dir`` if it holds a version, else a small untrained export made in ``scratch``; and
    whether it was made."""
    model_dir = Path(args.model_dir)
    if not model_dir.is_absolute():
        model_dir = REPO / model_dir
    if newest_version(model_dir) is not None:
        return model_dir, False
    model_dir = scratch / "exports"
    print(f"no export in {args.model_dir}: making a small one in {model_dir}", flush=True)
    # the project's packages come from the checkout this benchmark runs from
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    subprocess.run([sys.executable, "-c", MAKE_EXPORT, str(model_dir)], check=True, cwd=REPO,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": path}, stdout=subprocess.DEVNULL)
    return model_dir, True


# ---- servers --------------------------------------------------------------------------------------
def service_server(args, model_dir: Path, scratch: Path, batching: bool = False) -> GunicornServer:
    """The service: gunicorn with ``--workers`` workers, TF_NUM_THREADS=1, no hot reload; with
    ``batching``, TensorFlow's batch scheduler on (``--max-batch-size``, ``--batch-timeout-micros``)."""
    extra = ((["--worker-class", args.worker_class] if args.worker_class else [])
             + (["--threads", str(args.threads)] if args.threads else []))
    env = {"TF_NUM_THREADS": "1"}
    if batching:
        env.update({"ENABLE_BATCHING": "1", "MAX_BATCH": str(args.max_batch_size),
                    "MAX_BATCH_SIZE": str(args.max_batch_size), "BATCH_TIMEOUT_MICROS": str(args.batch_timeout_micros)})
    name = "batching" if batching else "service"
    return GunicornServer(model_dir, scratch / f"{name}.log", workers=args.workers, poll_seconds=0,
                          extra_env=env, extra_args=extra, name=name)


def baseline_server(args, model_dir: Path, scratch: Path) -> ServerProcess:
    """The tutorial pattern (BASELINE_APP), under Flask's own server or under gunicorn."""
    app_file = scratch / "baseline_app.py"
    app_file.write_text(textwrap.dedent(BASELINE_APP))
    extra_env = {"BASELINE_MODEL": str(newest_version(model_dir)), "PYTHONPATH": str(scratch)}
    if args.baseline_server == "gunicorn":
        return GunicornServer(model_dir, scratch / "baseline.log", workers=args.workers, poll_seconds=0,
                              extra_env=extra_env, app="baseline_app:app", name="baseline")
    env = {**os.environ, "MODEL_DIR": str(model_dir), "MODEL_POLL_SECONDS": "0", "TF_CPP_MIN_LOG_LEVEL": "2",
           **extra_env}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    return ServerProcess([sys.executable, str(app_file), str(port)], scratch / "baseline.log", port=port,
                         env=env, name="baseline")


# ---- load -----------------------------------------------------------------------------------------
def _client(port: int, bodies: list[bytes], count: int, deadline: float, warmup: int, queue) -> None:
    """One keep-alive connection; sends requests one after another; reports latencies (s)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Content-Type": "application/json"}
    latencies, errors, first = [], 0, None
    for index in range(warmup + count):
        if index == warmup:
            first = time.monotonic()
        body = bodies[index % len(bodies)]
        started = time.perf_counter()
        try:
            conn.request("POST", "/predict", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
        elapsed = time.perf_counter() - started
        if index >= warmup:
            latencies.append(elapsed)
            errors += not ok
            if time.monotonic() > deadline:
                break
    conn.close()
    queue.put((latencies, errors, first, time.monotonic()))


def run_load(port: int, bodies: list[bytes], requests: int, concurrency: int, max_seconds: float) -> dict:
    ctx = mp.get_context("fork")  # the parent never imports TensorFlow
    queue = ctx.Queue()
    per_client = max(1, requests // concurrency)
    deadline = time.monotonic() + max_seconds
    procs = [ctx.Process(target=_client, args=(port, bodies[c::concurrency] or bodies, per_client,
                                                deadline, 3, queue)) for c in range(concurrency)]
    for process in procs:
        process.start()
    results = [queue.get() for _ in procs]
    for process in procs:
        process.join()
    latencies = np.concatenate([np.asarray(r[0]) for r in results])
    # throughput over the measured part (after every client's warm-up): requests / wall time
    wall = max(r[3] for r in results) - min(r[2] for r in results)
    return {"requests": int(latencies.size), "errors": int(sum(r[1] for r in results)),
            "rps": latencies.size / wall, "p50": float(np.percentile(latencies, 50) * 1e3),
            "p99": float(np.percentile(latencies, 99) * 1e3),
            "percentiles": {str(q): float(np.percentile(latencies, q) * 1e3) for q in PERCENTILES}}


PERCENTILES = (50, 75, 90, 95, 99, 99.9)


def scenarios(args, digits: np.ndarray) -> list[tuple[str, list[bytes], int, int]]:
    singles = [json.dumps({"instances": [digit.tolist()]}).encode() for digit in digits[:200]]
    batches = [json.dumps({"instances": digits[i:i + 64].tolist()}).encode()
               for i in range(0, 64 * 8, 64)]
    return [
        ("1 instance, c=1", singles, 1, args.requests),
        (f"1 instance, c={args.concurrency}", singles, args.concurrency, args.requests),
        (f"1 instance, c={args.high_concurrency}", singles, args.high_concurrency, args.requests),
        (f"64 instances, c={args.batch_concurrency}", batches, args.batch_concurrency,
         max(args.requests // 4, args.batch_concurrency)),
    ]


def bench_servers(servers: list[ServerProcess], args, digits) -> dict:
    """Every scenario ``--repeats`` times; within a repeat the servers take turns, in alternating order,
    so that load from other processes hits both alike. Returns server -> scenario -> list of runs."""
    results = {server.name: {} for server in servers}
    for repeat in range(args.repeats):
        for name, bodies, concurrency, count in scenarios(args, digits):
            for server in (servers if repeat % 2 == 0 else servers[::-1]):
                run = run_load(server.port, bodies, count, concurrency, args.max_seconds)
                results[server.name].setdefault(name, []).append(run)
                print(f"  [{repeat + 1}/{args.repeats}] {server.name:9s} {name:22s} {run['requests']:6d} req  "
                      f"{run['rps']:8.1f} req/s  p50 {run['p50']:7.2f} ms  p99 {run['p99']:7.2f} ms  "
                      f"errors {run['errors']}", flush=True)
    return results


# ---- main -----------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default="exports/mnist",
                        help="export base to serve (default exports/mnist; a small export is made "
                             "in a temporary folder if it has no version)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests per single-instance scenario (batches: a quarter)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--high-concurrency", type=int, default=32)
    parser.add_argument("--batch-concurrency", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=30.0, help="cap per scenario")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of every scenario per server, the servers taking turns (default 1)")
    parser.add_argument("--baseline-server", choices=["flask", "gunicorn", "none"], default="flask")
    parser.add_argument("--batching", choices=["off", "on", "both"], default="both",
                        help="the service without TensorFlow's batch scheduler, with it (ENABLE_BATCHING=1), "
                             "or both side by side (default both)")
    parser.add_argument("--max-batch-size", type=int, default=64, help="MAX_BATCH_SIZE with batching (64)")
    parser.add_argument("--batch-timeout-micros", type=int, default=500,
                        help="BATCH_TIMEOUT_MICROS with batching (500)")
    parser.add_argument("--worker-class", default=None,
                        help="gunicorn worker class for the service (default: service/gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per worker (default: service/gunicorn.conf.py's: $GUNICORN_THREADS)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the figures here as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    servers = []
    try:
        model_dir, made = model_to_serve(args, scratch)
        digits = mnist_test_digits(512)
        body = json.dumps({"instances": [digits[0].tolist()]}).encode()
        load = os.getloadavg()
        print_settings(args, model_dir, body)
        for batching in {"off": [False], "on": [True], "both": [False, True]}[args.batching]:
            service = service_server(args, model_dir, scratch, batching)
            servers.append(service)
            service.wait_until_up(timeout=180, workers=args.workers)  # every worker has loaded the model
        if args.baseline_server != "none":
            baseline = baseline_server(args, model_dir, scratch)
            servers.append(baseline)
            baseline.wait_until_answers("/predict", body=body, in_a_row=6)  # fresh connections: every worker
        results = bench_servers(servers, args, digits)
        for server in servers:
            server.stop()
        report(results)
        write_json(args.json, {
            "settings": {**{k: v for k, v in vars(args).items() if k != "json"}, **gunicorn_settings()},
            "model": "small untrained 784-128-64-10 export" if made else str(newest_version(model_dir)),
            "body_bytes": len(body), "load_average_before": load, "load_average_after": os.getloadavg(),
            "results": results})
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def print_settings(args, model_dir: Path, body: bytes) -> None:
    print(f"commit {git_commit()}; {os.cpu_count()} cores; load average {load_text()}; "
          f"serving {newest_version(model_dir)}; service: {args.workers} "
          f"{args.worker_class or gunicorn_settings()['worker_class']} workers, TF_NUM_THREADS=1, batching "
          f"{args.batching} (MAX_BATCH_SIZE {args.max_batch_size}, BATCH_TIMEOUT_MICROS {args.batch_timeout_micros}); "
          f"baseline: {args.baseline_server}; "
          f"single-instance body {len(body)} bytes; {args.repeats} repeat(s), servers taking turns",
          flush=True)


def report(results: dict) -> None:
    """Median (min-max) over the repeats of each figure, and the service/baseline ratios: of the
    medians, and the median of the per-repeat ratios (each repeat measured both back to back)."""
    print()
    print(f"{'server':9s} {'scenario':22s} {'requests':>8s} {'req/s median (min-max)':>26s} "
          f"{'p50 ms':>22s} {'p99 ms':>22s} {'errors':>6s}")
    for server, rows in results.items():
        for name, runs in rows.items():
            cells = []
            for key, fmt in (("rps", ".1f"), ("p50", ".2f"), ("p99", ".2f")):
                figures = summary(r[key] for r in runs)
                cells.append(f"{figures['median']:{fmt}} ({figures['min']:{fmt}}-{figures['max']:{fmt}})")
            print(f"{server:9s} {name:22s} {sum(r['requests'] for r in runs):8d} {cells[0]:>26s} "
                  f"{cells[1]:>22s} {cells[2]:>22s} {sum(r['errors'] for r in runs):6d}")
    if len(results) > 1:
        print_ratios(results)


def print_ratios(results: dict) -> None:
    """Each service against the baseline, and batching on against off when both ran."""
    def median(runs: list[dict], key: str) -> float:
        return summary(r[key] for r in runs)["median"]

    pairs = [(name, "baseline") for name in results if name != "baseline" and "baseline" in results]
    if "service" in results and "batching" in results:
        pairs.append(("batching", "service"))
    for ours_name, theirs_name in pairs:
        print()
        print(f"{'ratio ' + ours_name + '/' + theirs_name:32s} {'throughput':>10s} {'p50 latency':>12s} "
              f"{'p99 latency':>12s}  (of the medians)")
        for name in results[ours_name]:
            ours, theirs = results[ours_name][name], results[theirs_name][name]
            print(f"{name:32s} {median(ours, 'rps') / median(theirs, 'rps'):9.2f}x "
                  f"{median(ours, 'p50') / median(theirs, 'p50'):11.3f}x "
                  f"{median(ours, 'p99') / median(theirs, 'p99'):11.3f}x")


if __name__ == "__main__":
    sys.exit(main())
