"""One server's run in the peers benchmark, and the rounds of them: start it, wait until it answers,
gate it (its probabilities against the SavedModel's own), load it at every level while sampling its
process tree's CPU time, read its memory, stop it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.localhost import free_port
from bench.peers_load import Level
from bench.peers_servers import SPECS, Context, ServerSpec, server_env
from bench.processes import sample_tree, tree_cpu_seconds, tree_pss_mib
from bench.servers import ServerProcess

TOLERANCE = 1e-6
READY_STREAK = 6  # predictions in a row, each on a fresh connection, before a server counts as ready
STOP_SECONDS = 30  # after SIGTERM, before SIGKILL


class RunningServer(ServerProcess):
    """A server of ``SPECS`` started on a free port, its log in ``log_dir/NAME.log`` (appended to, round
    after round), spoken to in its protocol."""

    def __init__(self, spec: ServerSpec, ctx: Context, log_dir: Path):
        port = free_port()
        launch = spec.launch(ctx, port)
        super().__init__(launch.command, log_dir / f"{spec.name}.log", port=port, env=launch.env,
                         name=spec.name, cwd=launch.cwd, append_log=True)
        self.spec = spec

    def predict(self, images: list, timeout: float = 60) -> tuple[int, object]:
        """(status, decoded answer) for ``images`` in one request on a fresh connection."""
        return self.spec.protocol.predict(self.spec, self.port, images, timeout)

    def tree(self):
        """The server's process tree now (bench/processes.py)."""
        return sample_tree(self.process.pid)

    def wait_ready(self, image: list, timeout: float) -> float:
        """Seconds until ``READY_STREAK`` predictions in a row succeed; raises with the log otherwise."""
        def answers_in_a_row() -> bool:
            return all(self._answers(image) for _ in range(READY_STREAK))

        started = time.monotonic()
        self.wait_until(answers_in_a_row, timeout, f"{READY_STREAK} predictions in a row", interval=0.5)
        return time.monotonic() - started

    def _answers(self, image: list) -> bool:
        try:
            return self.predict([image], timeout=30)[0] == 200
        except OSError:
            return False


def gate(server: RunningServer, images: np.ndarray, reference: np.ndarray) -> dict:
    """Correctness gate: each image alone, then all in one request; the largest difference from the
    SavedModel's probabilities must be <= TOLERANCE. Returns {"passed", "max_abs_diff", "error"}."""
    worst, error = 0.0, None
    requests = [([i], images[i:i + 1]) for i in range(len(images))] + [(list(range(len(images))), images)]
    for rows, batch in requests:
        status, response = server.predict(batch.tolist())
        try:
            if status != 200:
                raise ValueError(f"HTTP {status}: {str(response)[:300]}")
            answers = np.asarray(server.spec.answers(response), dtype=np.float64)
            if answers.shape != (len(rows), 10):
                raise ValueError(f"answer of shape {answers.shape} for {len(rows)} image(s)")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            error = f"{len(rows)} image(s): {exc}"
            break
        worst = max(worst, float(np.abs(answers - reference[rows]).max()))
    return {"passed": error is None and worst <= TOLERANCE, "max_abs_diff": worst, "error": error}


def write_load_files(spec: ServerSpec, images: np.ndarray, levels: list[Level], folder: Path) -> dict:
    """What the load generator replays for each batch size of the levels: {batch: file}."""
    return {batch: spec.protocol.write_load(spec, images, batch, folder)
            for batch in sorted({level.batch for level in levels})}


def measure_level(server: RunningServer, load_file: Path, level: Level, seconds: int, warmup: int) -> dict:
    """Warm-up, then the measured load, with the server tree's CPU time sampled around it."""
    spec = server.spec
    if warmup > 0:
        spec.protocol.run_load(spec, server.port, load_file, level.connections, warmup)
    before = server.tree()
    figures = spec.protocol.run_load(spec, server.port, load_file, level.connections, seconds)
    after = server.tree()
    cpu_seconds = tree_cpu_seconds(before, after)
    figures.update(cpu_seconds=cpu_seconds, processes=len(after),
                   cpu_ms_per_request=1e3 * cpu_seconds / figures["requests"] if figures["requests"] else None)
    return figures


def level_line(level: Level, figures: dict) -> str:
    """One progress line for a measured level."""
    line = (f"    {level.name:14s} {figures['rps']:9.1f} req/s  p50 {figures['p50_ms']:8.2f} ms  "
            f"p99 {figures['p99_ms']:8.2f} ms  CPU {figures['cpu_ms_per_request'] or 0:6.2f} ms/req")
    if figures["flagged"]:
        line += f"  ! {figures['non_2xx']} non-2xx, {figures['socket_errors']} socket errors"
    return line


def bench_server(spec: ServerSpec, ctx: Context, args, images: np.ndarray, reference: np.ndarray,
                 log_dir: Path) -> dict:
    """Start, gate, load every level, measure memory, stop: one server's figures for one repeat."""
    result: dict = {"status": "start failed", "levels": {}}
    server = None
    try:
        server = RunningServer(spec, ctx, log_dir)
        result["ready_seconds"] = server.wait_ready(images[0].tolist(), args.start_timeout)
        result["gate"] = gate(server, images[:args.gate_images], reference)
        passed = "passed" if result["gate"]["passed"] else "FAILED"
        print(f"    ready after {result['ready_seconds']:.1f} s; gate {passed}"
              f": largest difference {result['gate']['max_abs_diff']:.1e}", flush=True)
        if not result["gate"]["passed"]:
            result["status"] = "gate failed"
            return result
        result["status"] = "measured"
        scripts = write_load_files(spec, images, args.levels, ctx.scratch)
        for level in args.levels:
            figures = measure_level(server, scripts[level.batch], level, args.seconds, args.warmup)
            result["levels"][level.name] = figures
            print(level_line(level, figures), flush=True)
        if hasattr(spec.protocol, "plain_client_rps"):  # gRPC: h2load's c=1 checked against a plain client
            result["plain_client_rps"] = spec.protocol.plain_client_rps(server.port, images[:1], args.seconds)
            print(f"    plain grpcio client, 1 image, c=1: {result['plain_client_rps']:.1f} calls/s", flush=True)
        tree = server.tree()
        result["pss_mib"] = tree_pss_mib([pid for pid, _ in tree])
        result["processes"] = len(tree)
    except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
        output = getattr(exc, "stderr", None) or getattr(exc, "output", None) or b""
        result["error"] = f"{exc}\n{output.decode(errors='replace') if isinstance(output, bytes) else output}"
    finally:
        if server is not None:
            server.stop(STOP_SECONDS)
    return result


REFERENCE_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
pixels = np.load(sys.argv[2])
signature = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
np.save(sys.argv[3], signature(pixels=tf.constant(pixels))["probabilities"].numpy())
"""


def reference_probabilities(version_dir: Path, images: np.ndarray, scratch: Path) -> np.ndarray:
    """The SavedModel's own probabilities for ``images``, computed in a child process (so that this
    process never imports TensorFlow)."""
    pixels, out = scratch / "gate-pixels.npy", scratch / "gate-probabilities.npy"
    np.save(pixels, images)
    done = subprocess.run([sys.executable, "-c", REFERENCE_SCRIPT, str(version_dir), str(pixels), str(out)],
                          env=server_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"could not compute the reference probabilities:\n{done.stderr[-3000:]}")
    return np.load(out).astype(np.float64)


def mnist_test_images(count: int) -> np.ndarray:
    """The first ``count`` real MNIST test images, float32 (n, 784) in [0, 1]."""
    from training.data import load_mnist

    (_, _), (x_test, _) = load_mnist()
    return np.ascontiguousarray(x_test[:count], dtype=np.float32)


def run_rounds(args, ctx: Context, images: np.ndarray, reference: np.ndarray, log_dir: Path) -> dict:
    """Every repeat, the servers one after another: {server: [one result per repeat]}. A server that
    failed its gate once is not started again."""
    results: dict[str, list[dict]] = {name: [] for name in args.servers}
    for repeat in range(args.repeats):
        for name in args.servers:
            if any(run["status"] == "gate failed" for run in results[name]):
                results[name].append({"status": "gate failed", "levels": {}})
                continue
            print(f"[{repeat + 1}/{args.repeats}] {SPECS[name].title}", flush=True)
            run = bench_server(SPECS[name], ctx, args, images, reference, log_dir)
            results[name].append(run)
            if run["status"] != "measured" or "error" in run:
                print(f"    {run['status']}: {run.get('error') or run.get('gate')}", flush=True)
    return results
