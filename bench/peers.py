"""Peers benchmark: our service side by side with Python serving frameworks, all serving the same SavedModel.

    python -m bench.peers --model-dir /tmp/export          # every server, 3 repeats (its duration: docs/benchmarks.md)
    python -m bench.peers --servers ours,kserve --repeats 1 --seconds 3 --warmup 1 --markdown
    python -m bench.peers --json /tmp/peers.json --markdown

Servers (``--servers``, default all, in this order):

- ``ours``: ``gunicorn -c service/gunicorn.conf.py "service.app:create_app()"`` from this repository with
  MODEL_DIR set to the export base, everything else as service/gunicorn.conf.py and service/config.py say
  (2 workers of service/worker.py, TF_NUM_THREADS=1); our ``POST /predict``. ``ours-gthread`` and
  ``ours-nginx`` are the slow-client options of docs/deployment.md (gthread workers; nginx in front).
- ``baseline``: the tutorial pattern of bench/serving.py (Flask's own server, Keras ``model.predict``).
- ``kserve``: KServe 0.21 Python ModelServer, 2 workers, v1 protocol (bench/peer_servers/kserve_server.py).
- ``litserve``: LitServe 0.2.19, 2 CPU inference workers (bench/peer_servers/litserve_server.py).
- ``mlflow``: MLflow 3.17 ``mlflow models serve --env-manager local -w 1`` of a pyfunc model wrapping the
  SavedModel (bench/peer_servers/mlflow_model.py).
- ``bentoml``: BentoML 1.4.40 ``bentoml serve``, 2 workers (bench/peer_servers/bentoml_service.py).
- ``ours-grpc``, ``kserve-grpc``: ours and KServe 0.21 over gRPC (issue 23), the Open Inference Protocol's
  ``ModelInfer`` with raw FP32, loaded by h2load replaying a pre-serialised gRPC frame (bench/peers_grpc.py;
  Debian's nghttp2-client), each also timed with a plain grpcio client at c=1 (h2load's c=1 check). The
  report's ratio rows: ours-grpc / KServe gRPC, and ours-grpc / ours over HTTP.

Each framework runs in its own virtual environment, made on first use under ``--cache-dir`` from its
pinned list bench/peer_servers/requirements-NAME.txt (tensorflow-cpu==2.21.0 in each); the folder name
carries a hash of that list, so changing a pin makes a new environment. Our service and the baseline run
with this Python.

For each repeat, the servers take turns, one at a time, on a free port of 127.0.0.1. For each server:

1. start it and wait until several predictions in a row succeed (``--start-timeout``; its log is shown
   if it exits or times out);
2. correctness gate: ``--gate-images`` real MNIST test images, one per request and then all in one
   request, in that server's own request format; every probability must be within 1e-6 of what
   ``tf.saved_model.load`` gives in a separate process. A server failing the gate is reported, not measured;
3. load with ``wrk -t1`` (keep-alive) and a Lua script per server (method, headers, body, and a ``done()``
   that prints the figures as JSON): for each level of ``--levels``, ``--warmup`` seconds, then
   ``--seconds`` measured: requests/s, p50/p99 latency, non-2xx responses and socket errors (a level with
   any is flagged with ``!``);
4. CPU seconds per request at each level: user+system time of the server's whole process tree (every
   descendant, with the time of children reaped meanwhile; psutil) over the measured seconds, divided by
   the requests; the tables show the single-instance c=8 level;
5. memory: PSS summed over the server's processes after the load (psutil's ``memory_full_info``), MiB;
6. stop it (SIGTERM, then SIGKILL to its process group and any descendant left).

The code: bench/peers_servers.py (each server: launcher, environment, formats), bench/peers_load.py (the
levels; the protocol: the gate's requests and wrk), bench/peers_run.py (one server's run, the rounds),
bench/peers_report.py (the tables), bench/processes.py (CPU time and PSS); this file is the command.

The report gives, per figure, the median over the repeats with the min-max spread, and the ratio of ours to
the best framework peer (the baseline is not a peer), computed within each repeat and then summarised the
same way. ``--json`` writes every raw figure and the machine's description (CPU model, cores, load
average before and after, commit). The machine's 2 cores are shared by the server, wrk and anything
else running: compare figures from one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from bench.peers_load import DEFAULT_LEVELS, parse_levels, wrk_version
from bench.peers_report import describe_run, render_report
from bench.peers_run import TOLERANCE, mnist_test_images, reference_probabilities, run_rounds
from bench.peers_servers import DEFAULT_SERVERS, SERVER_NAMES, SPECS, Context, ensure_venv
from bench.support import REPO, command_line, machine, newest_version

DEFAULT_CACHE = Path.home() / ".cache" / "mnist-digits" / "bench-peers"


def machine_with_wrk() -> dict:
    """bench/support.py's ``machine()`` (CPU model, cores, memory, OS, versions, commit), and the cores this
    process may use and wrk's version."""
    return {**machine(), "usable_cores": len(os.sched_getaffinity(0)), "wrk": wrk_version()}


def load_average() -> list[float]:
    return [round(load, 2) for load in os.getloadavg()]


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_line(__doc__)
    parser.add_argument("--model-dir", type=Path, default=REPO / "exports" / "mnist",
                        help="export base with numbered SavedModel versions (default exports/mnist); the "
                             "newest version is served by every server")
    parser.add_argument("--servers", default=",".join(DEFAULT_SERVERS),
                        help=f"comma-separated servers to run, in this order (default: {','.join(DEFAULT_SERVERS)}; "
                             "also: ours-gthread, ours-nginx)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds; in each, every server runs once, one after another (default 3)")
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per level (default 10)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="warm-up seconds before each level, not measured (default 2; 0: none)")
    parser.add_argument("--levels", type=parse_levels, default=parse_levels(DEFAULT_LEVELS),
                        help="load levels as IMAGES_PER_REQUEST:CONNECTIONS, comma-separated "
                             f"(default {DEFAULT_LEVELS}); CPU per request is reported for 1:8")
    parser.add_argument("--gate-images", type=int, default=8,
                        help="MNIST test images of the correctness gate (default 8)")
    parser.add_argument("--start-timeout", type=float, default=300,
                        help="seconds a server may take to become ready (default 300)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"where the peers' virtual environments are kept (default {DEFAULT_CACHE})")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="keep the servers' logs here (default: a temporary folder, removed)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT",
                        help="write every raw figure, the settings and the machine's description here")
    parser.add_argument("--markdown", action="store_true", help="print the report as Markdown tables")
    args = parser.parse_args(argv)
    args.servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    unknown = sorted(set(args.servers) - set(SERVER_NAMES))
    if unknown:
        parser.error(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(SERVER_NAMES)}")
    if args.repeats < 1 or args.seconds < 1 or args.warmup < 0 or args.gate_images < 1:
        parser.error("--repeats, --seconds and --gate-images must be >= 1, --warmup >= 0")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    if any(name.endswith("-grpc") for name in args.servers) and shutil.which("h2load") is None:
        parser.error("h2load is not installed, for the gRPC rows (Debian: apt-get install nghttp2-client)")
    return args


def prepare(args, scratch: Path) -> Context:
    """Check the export and make (or find) each selected peer's virtual environment."""
    version = newest_version(args.model_dir)
    if version is None:
        raise SystemExit(f"no SavedModel version in {args.model_dir}; make one with: python training/train.py "
                         f"--epochs 3 --export-dir {args.model_dir}")
    ctx = Context(args.model_dir.resolve(), version.resolve(), scratch)
    for name in args.servers:
        if SPECS[name].requirements is not None:
            ctx.pythons[name] = ensure_venv(SPECS[name].requirements, args.cache_dir)
    return ctx


def write_json(path: Path, args, ctx: Context, machine_figures: dict, results: dict, elapsed: float) -> None:
    """Every raw figure, the settings, the servers and the machine, as JSON at ``path``."""
    path.write_text(json.dumps({
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "elapsed_seconds": elapsed,
        "machine": machine_figures, "model": str(ctx.version_dir),
        "settings": {"servers": args.servers, "repeats": args.repeats, "seconds": args.seconds,
                     "warmup": args.warmup, "levels": [level.name for level in args.levels],
                     "gate_images": args.gate_images, "tolerance": TOLERANCE},
        "servers": {name: {"title": SPECS[name].title, "note": SPECS[name].note,
                           "requirements": str(SPECS[name].requirements or "this Python"),
                           "python": str(ctx.pythons.get(name, sys.executable))}
                    for name in args.servers},
        "results": results}, indent=1))


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.time()
    scratch = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    log_dir = args.log_dir or scratch / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        ctx = prepare(args, scratch)
        images = mnist_test_images(max(64, args.gate_images, *(level.batch for level in args.levels)))
        reference = reference_probabilities(ctx.version_dir, images[:args.gate_images], scratch)
        machine_figures = {**machine_with_wrk(), "load_average_before": load_average()}
        print(f"serving {ctx.version_dir}; {machine_figures['cpu']}, {machine_figures['usable_cores']} cores; "
              f"commit {machine_figures['commit']}; load average {machine_figures['load_average_before']}", flush=True)
        results = run_rounds(args, ctx, images, reference, log_dir)
        machine_figures["load_average_after"] = load_average()
        elapsed = time.time() - started
        print()
        print(render_report(results, args.levels, args.markdown, describe_run(machine_figures, args, elapsed)))
        if args.json:
            write_json(args.json, args, ctx, machine_figures, results, elapsed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
