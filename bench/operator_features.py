"""What the operator features cost per request (issue 24), our service measured side by side in one run:

    python -m bench.operator_features --model-dir exports/mnist
    python -m bench.operator_features --base 011e515 --json docs/benchmarks/operator-features.json --markdown

Configurations, each our service under gunicorn with 2 workers on 127.0.0.1, started, loaded and stopped
in turn, for ``--repeats`` rounds (the order alternates between rounds, so a drift of the shared machine
does not favour one):

- ``base``: the service of another commit (``--base``, e.g. the one before the error writer and the
  features; ``git archive`` of its ``service/`` in a scratch folder), everything off;
- ``off``: this checkout as shipped, every feature off;
- ``request-ids``: ``REQUEST_IDS=1``; ``json-log``: ``ACCESS_LOG=json`` (request IDs on with it);
- ``tokens``: ``API_TOKENS_FILE`` with 10 tokens, wrk sending one (``Authorization: Bearer``);
- ``tls``: ``TLS_CERT_FILE``/``TLS_KEY_FILE`` (a self-signed P-256 certificate made with openssl), wrk
  over HTTPS (keep-alive: one handshake per connection);
- ``all``: tokens, TLS and the JSON access log together.

Each level (``--levels``, images per request : connections) is loaded by wrk (one thread, keep-alive,
the usual ``{"instances": [[784 numbers]]}`` body of a real MNIST test image) for ``--warmup`` then
``--seconds`` seconds: requests/s, p50 and p99 latency, and CPU milliseconds per request of the server's
whole process tree (psutil). The report gives medians over the rounds and, per round, each
configuration's ratio to ``off``, summarised the same way. The machine's cores are shared by the server,
wrk and whatever else runs: compare figures of one run only.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.localhost import LOCALHOST, free_port, wait_for
from bench.peers_load import LUA_TEMPLATE, Level, parse_levels, run_wrk
from bench.peers_run import mnist_test_images
from bench.processes import sample_tree, tree_cpu_seconds
from bench.servers import ServerProcess, gunicorn_command
from bench.support import REPO, cpu_model, git_commit, markdown_table

CONFIGS = ("base", "off", "request-ids", "json-log", "tokens", "tls", "all")
TOKEN_COUNT = 10
CPU_LEVEL = Level(1, 8)


# ---- the servers ---------------------------------------------------------------------------------------
def feature_env(name: str, scratch: Path) -> dict[str, str]:
    """The service's settings of a configuration (files made in ``scratch``)."""
    tokens = {"API_TOKENS_FILE": str(scratch / "tokens")}
    tls = {"TLS_CERT_FILE": str(scratch / "cert.pem"), "TLS_KEY_FILE": str(scratch / "key.pem")}
    return {"base": {}, "off": {}, "request-ids": {"REQUEST_IDS": "1"}, "json-log": {"ACCESS_LOG": "json"},
            "tokens": tokens, "tls": tls, "all": {**tokens, **tls, "ACCESS_LOG": "json"}}[name]


def prepare(scratch: Path, base: str | None) -> None:
    """The tokens file, the certificate, and the ``base`` commit's service/ (if asked for)."""
    (scratch / "tokens").write_text("".join(f"bench-token-{index:02d}-{'x' * 24}\n" for index in range(TOKEN_COUNT)))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(scratch / "key.pem"), "-out", str(scratch / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    if base:
        archive = subprocess.run(["git", "archive", "--format=tar", base, "service"], cwd=REPO, check=True,
                                 capture_output=True, timeout=60).stdout
        folder = scratch / "base"
        folder.mkdir()
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")


def start(name: str, model_dir: Path, scratch: Path, log_dir: Path) -> ServerProcess:
    """gunicorn with this configuration, from this checkout (or the base commit's folder), ready."""
    port, grpc_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
           "MODEL_DIR": str(model_dir), "MODEL_POLL_SECONDS": "0", "WEB_CONCURRENCY": "2",
           "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "GRPC_PORT": str(grpc_port),
           **feature_env(name, scratch)}
    cwd = scratch / "base" if name == "base" else REPO
    server = ServerProcess(gunicorn_command(port), log_dir / f"{name}.log", port=port, env=env, name=name, cwd=cwd,
                           append_log=True)
    scheme = "https" if "TLS_CERT_FILE" in env else "http"
    server.base_url = f"{scheme}://{LOCALHOST}:{port}"
    server.wait_until(lambda: _ready(server, env), 180, "two predictions in a row")
    return server


def _ready(server: ServerProcess, env: dict) -> bool:
    command = ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json",
               "-d", json.dumps({"instances": [[0.0] * 784]}), server.url("/predict")]
    if "API_TOKENS_FILE" in env:
        command[2:2] = ["-H", f"Authorization: Bearer {token(env)}"]
    return all(subprocess.run(command, capture_output=True, text=True, timeout=10).stdout == "200" for _ in range(2))


def token(env: dict) -> str:
    return Path(env["API_TOKENS_FILE"]).read_text().split()[TOKEN_COUNT // 2]


# ---- the load ------------------------------------------------------------------------------------------
def write_script(folder: Path, name: str, images: np.ndarray, batch: int, scratch: Path) -> Path:
    """wrk's Lua script: the usual body of ``batch`` images, with the token where the configuration needs one."""
    body = folder / f"body-{batch}.json"
    body.write_text(json.dumps({"instances": images[:batch].tolist()}, separators=(",", ":")))
    script = LUA_TEMPLATE.format(name=name, path="/predict", batch=batch, body=body)
    env = feature_env(name, scratch)
    if "API_TOKENS_FILE" in env:
        script = script.replace('wrk.headers["Content-Type"]',
                                f'wrk.headers["Authorization"] = "Bearer {token(env)}"\nwrk.headers["Content-Type"]', 1)
    path = folder / f"{name}-{batch}.lua"
    path.write_text(script)
    return path


def measure(server: ServerProcess, script: Path, level: Level, seconds: int, warmup: int) -> dict:
    """Warm-up, then the measured load with the server tree's CPU time sampled around it."""
    url = server.url("/predict")
    if warmup:
        run_wrk(url, script, level.connections, warmup)
    before = sample_tree(server.process.pid)
    figures = run_wrk(url, script, level.connections, seconds)
    cpu = tree_cpu_seconds(before, sample_tree(server.process.pid))
    figures["cpu_ms_per_request"] = 1e3 * cpu / figures["requests"] if figures["requests"] else None
    figures.pop("wrk", None)
    return figures


def run(args, images: np.ndarray, scratch: Path, log_dir: Path) -> list[dict]:
    """Every round: each configuration started, measured at each level, stopped."""
    rounds = []
    for repeat in range(args.repeats):
        order = args.configs if repeat % 2 == 0 else list(reversed(args.configs))
        results = {}
        for name in order:
            server = start(name, args.model_dir, scratch, log_dir)
            try:
                results[name] = {}
                for level in args.levels:
                    script = write_script(scratch, name, images, level.batch, scratch)
                    figures = measure(server, script, level, args.seconds, args.warmup)
                    results[name][level.name] = figures
                    print(f"  round {repeat + 1} {name:12s} {level.name:10s} {figures['rps']:8.1f} req/s  "
                          f"p50 {figures['p50_ms']:6.2f} ms  p99 {figures['p99_ms']:6.2f} ms  "
                          f"CPU {figures['cpu_ms_per_request'] or 0:5.3f} ms/req"
                          + ("  ! failed requests" if figures["flagged"] else ""), flush=True)
            finally:
                server.stop()
        rounds.append(results)
    return rounds


# ---- the report ----------------------------------------------------------------------------------------
def summary(rounds: list[dict], name: str, level: str, key: str) -> tuple[float, float, float] | None:
    values = [r[name][level][key] for r in rounds if name in r and r[name][level][key] is not None]
    return (statistics.median(values), min(values), max(values)) if values else None


def ratio(rounds: list[dict], name: str, level: str, key: str) -> tuple[float, float, float] | None:
    values = [r[name][level][key] / r["off"][level][key] for r in rounds
              if name in r and "off" in r and r["off"][level][key]]
    return (statistics.median(values), min(values), max(values)) if values else None


def cell(figure, digits: int = 1, suffix: str = "") -> str:
    if figure is None:
        return "-"
    median, low, high = figure
    return f"{median:.{digits}f}{suffix} ({low:.{digits}f}-{high:.{digits}f})"


def report_from_json(data: dict) -> list[str]:
    """The Markdown tables of a run (``--json``'s content): per level, each configuration's figures and
    its ratio to ``off`` (medians over the rounds, min-max in brackets)."""
    rounds, lines = data["rounds"], []
    for level in data["levels"]:
        rows = [[f"`{name}`", cell(summary(rounds, name, level, "rps")), cell(ratio(rounds, name, level, "rps"), 3, "x"),
                 cell(summary(rounds, name, level, "p50_ms"), 2), cell(summary(rounds, name, level, "p99_ms"), 2),
                 cell(summary(rounds, name, level, "cpu_ms_per_request"), 3),
                 cell(ratio(rounds, name, level, "cpu_ms_per_request"), 3, "x")]
                for name in data["configs"]]
        lines += [f"**{level}** (wrk -t1, keep-alive; {data['seconds']} s per round, {len(rounds)} rounds)", "",
                  *markdown_table(["configuration", "req/s", "vs off", "p50 ms", "p99 ms", "CPU ms/req",
                                   "CPU vs off"], rows), ""]
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "exports" / "mnist")
    parser.add_argument("--configs", default=",".join(CONFIGS[1:]),
                        help=f"comma-separated, in order (default: all but base; known: {', '.join(CONFIGS)})")
    parser.add_argument("--base", help="also run the service of this commit as 'base' (features off)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--levels", default="1:1,1:8", type=parse_levels)
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--markdown", action="store_true", help="print the report as Markdown tables")
    args = parser.parse_args(argv)
    args.configs = [name for name in args.configs.split(",") if name]
    if args.base and "base" not in args.configs:
        args.configs.insert(0, "base")
    unknown = set(args.configs) - set(CONFIGS)
    if unknown or ("base" in args.configs and not args.base) or "off" not in args.configs:
        parser.error(f"--configs: {sorted(unknown) or 'base needs --base; off is needed (the ratios)'}")
    for tool in ("wrk", "openssl", "curl"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is needed: apt-get install {tool}")
    images = mnist_test_images(max(level.batch for level in args.levels))
    with tempfile.TemporaryDirectory(prefix="operator-features-") as folder:
        scratch = Path(folder)
        prepare(scratch, args.base)
        started = time.time()
        rounds = run(args, images, scratch, scratch)
    data = {"configs": args.configs, "levels": [level.name for level in args.levels], "seconds": args.seconds,
            "base": args.base, "commit": git_commit(), "cpu": cpu_model(), "load_average": os.getloadavg(),
            "minutes": round((time.time() - started) / 60, 1), "python": sys.version.split()[0], "rounds": rounds}
    if args.json:
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    report = report_from_json(data)
    print("\n".join(report if args.markdown else [line.replace("`", "") for line in report]))


if __name__ == "__main__":
    main()
