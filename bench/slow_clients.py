"""Slow clients against the ways to run our service: what other clients get while attackers stall.

    python -m bench.slow_clients --model-dir exports/mnist          # ~3 minutes
    python -m bench.slow_clients --servers ours,ours-nginx --hold 5

For each server (``bench/peers.py``'s launchers: ``ours`` as shipped, ``ours-gthread``: the same app on
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
import json
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench.peers import SPECS, Context, RunningServer, mnist_test_images
from bench.support import newest_version
from tests.slow_clients import connect, p99, raise_fd_limit, wait_closed

PROBE_TIMEOUT = 5.0
ATTACKS = ("headers", "body", "idle")
SERVERS = ("ours", "ours-gthread", "ours-nginx")
FIRST_BYTES = {"headers": b"POST /predict HTTP/1.1\r\nHost: slow\r\nContent-Type: a",
               "body": b"POST /predict HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
                       b"Content-Length: 4000\r\n\r\n{",
               "idle": b"GET /healthz HTTP/1.1\r\nHost: idle\r\n\r\n"}


def attack(port: int, kind: str, count: int) -> list[socket.socket]:
    """Open ``count`` attacking connections of ``kind`` (tests/slow_clients.py's ``connect``); the
    idle ones read the answer to their one request and then stay open, silent."""
    sockets = connect(port, count, FIRST_BYTES[kind])
    if kind == "idle":
        for sock in sockets:
            try:
                sock.recv(65536)  # the answer to the one request; then the connection idles
            except OSError:
                pass
    return sockets


def dribble(sockets: list[socket.socket], stop: threading.Event) -> None:
    while not stop.wait(1.0):
        for sock in sockets:
            try:
                sock.send(b" ")
            except OSError:
                pass


def probe_once(port: int, request: bytes) -> float | None:
    """Milliseconds for one whole 200 answer on a new connection, or None (timeout, error, not 200)."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as sock:
            sock.settimeout(PROBE_TIMEOUT)
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError:
        return None
    return (time.monotonic() - started) * 1000 if data.startswith(b"HTTP/1.1 200") else None


def probe(port: int, seconds: float, body: bytes) -> dict:
    requests = [b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n",
                b"POST /predict HTTP/1.1\r\nHost: probe\r\nContent-Type: application/json\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body]
    answered, failed = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for request in requests:
            result = probe_once(port, request)
            failed += result is None
            if result is not None:
                answered.append(result)
        time.sleep(0.01)
    figures = {"probes": len(answered) + failed, "failed": failed}
    if answered:
        figures.update(p50_ms=float(np.percentile(answered, 50)), p99_ms=p99(answered))
    return figures


def run_attack(port: int, kind: str, count: int, args, body: bytes) -> dict:
    started = time.monotonic()
    sockets = attack(port, kind, count)
    stop = threading.Event()
    dribbler = threading.Thread(target=dribble, args=(sockets, stop), daemon=True)
    if kind == "body":
        dribbler.start()
    try:
        figures = probe(port, args.hold, body)
        _, answers = wait_closed(sockets, args.wait)
        closed = sum(answer != b"<open>" for answer in answers)
    finally:
        stop.set()
    return {**figures, "attackers": len(sockets), "closed": closed, "seconds": time.monotonic() - started}


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
        server.stop()


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
