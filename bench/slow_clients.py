"""Slow clients against the ways to run our service: what other clients get while attackers stall.

    python -m bench.slow_clients --model-dir exports/mnist
    python -m bench.slow_clients --servers ours,ours-nginx --hold 5

For each server (bench/peers_servers.py's launchers: ``ours`` as shipped, ``ours-gthread``: the same app on
gunicorn's threaded worker, ``ours-nginx``: that behind a buffering nginx) and each attack, on 127.0.0.1:

- ``headers``: ``--connections`` connections send a request line and part of the headers, then wait;
- ``body``: as many send complete headers and then one byte of the body a second;
- ``idle``: ``--idle`` connections each make one request and then stay open, silent;

it holds the attackers for ``--hold`` seconds while a probe asks for ``GET /healthz`` and a single-image
``POST /predict`` in turn, each on a new connection with a 5 s timeout, and reports the probes' p50,
p99 and failures; then how many attackers the server closed within ``--wait`` seconds more. The figures
feed docs/deployment.md ("Slow clients"); the shipped server's behaviour is asserted by
tests/reliability/test_slow_clients.py.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.attacks import ATTACKS, STILL_OPEN, Probes, attack, hold, p99, probe, raise_fd_limit
from bench.peers_run import STOP_SECONDS, RunningServer, mnist_test_images
from bench.peers_servers import SPECS, Context
from bench.support import newest_version

PROBE_TIMEOUT = 5.0
SERVERS = ("ours", "ours-gthread", "ours-nginx")


def figures(probes: Probes) -> dict:
    """The probes of both paths together: how many, how many failed, the answered ones' p50 and p99."""
    answered = [ms for values in probes.answered.values() for ms in values]
    failed = sum(len(failures) for failures in probes.failed.values())
    result = {"probes": len(answered) + failed, "failed": failed}
    if answered:
        result.update(p50_ms=float(np.percentile(answered, 50)), p99_ms=p99(answered))
    return result


def run_attack(port: int, kind: str, count: int, args, body: bytes) -> dict:
    """One attack (bench/attacks.py's attack and hold), measured by a probe that counts failures
    instead of stopping at them: the servers compared here include some that fail it."""
    started = time.monotonic()
    sockets, _ = attack(port, kind, count)
    measure = functools.partial(probe, port, args.hold, body, timeout=PROBE_TIMEOUT)
    probes, answers, _ = hold(sockets, kind, measure, args.wait)
    closed = sum(answer != STILL_OPEN for answer in answers)
    return {**figures(probes), "attackers": len(sockets), "closed": closed, "seconds": time.monotonic() - started}


def bench_server(name: str, ctx: Context, args, images: np.ndarray, log_dir: Path) -> dict:
    server = RunningServer(SPECS[name], ctx, log_dir)
    body = json.dumps({"instances": [images[0].tolist()]}).encode()
    try:
        server.wait_ready(images[0].tolist(), timeout=300)
        results = {}
        for kind in ATTACKS:
            count = args.idle if kind == "idle" else args.connections
            results[kind] = run_attack(server.port, kind, count, args, body)
            print(f"  {name:13s} {kind:8s} {line(results[kind])}", flush=True)
            time.sleep(1)
        return results
    finally:
        server.stop(STOP_SECONDS)


def line(figures: dict) -> str:
    p99 = f"p99 {figures['p99_ms']:7.1f} ms" if "p99_ms" in figures else "p99       -   "
    return (f"{figures['attackers']:5d} attackers: probes {p99}, {figures['failed']:3d} of "
            f"{figures['probes']:3d} failed; {figures['closed']} closed by the server")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=Path("exports/mnist"), help="export base to serve")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated, from {', '.join(SERVERS)}")
    parser.add_argument("--connections", type=int, default=200, help="attackers for headers and body (200)")
    parser.add_argument("--idle", type=int, default=1000, help="idle keep-alive connections (1000)")
    parser.add_argument("--hold", type=float, default=4.0, help="seconds of probing while attacked (4)")
    parser.add_argument("--wait", type=float, default=12.0,
                        help="seconds more for the server to close the attackers (12)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    args.servers = [name for name in args.servers.split(",") if name]
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown server(s) {', '.join(sorted(unknown))}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    raise_fd_limit()
    version = newest_version(args.model_dir)
    if version is None:
        raise SystemExit(f"no SavedModel version in {args.model_dir}")
    scratch = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    try:
        ctx = Context(args.model_dir.resolve(), version.resolve(), scratch)
        images = mnist_test_images(1)
        results = {name: bench_server(name, ctx, args, images, scratch) for name in args.servers}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
