"""Peers benchmark: our service side by side with Python serving frameworks, all serving the same SavedModel.

    python -m bench.peers --model-dir /tmp/export          # every server, 3 repeats: about 22 minutes
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
4. CPU seconds per request at each level: utime+stime of the server's whole process tree (every
   descendant in /proc, with the time of children reaped meanwhile) over the measured seconds, divided by
   the requests; the tables show the single-instance c=8 level;
5. memory: PSS summed over the server's processes after the load (/proc/PID/smaps_rollup), MiB;
6. stop it (SIGTERM, then SIGKILL to its process group and any descendant left).

The report gives, per figure, the median over the repeats with the min-max spread, and the ratio of ours to
the best framework peer (the baseline is not a peer), computed within each repeat and then summarised the
same way. ``--json`` writes every raw figure and the machine's description (CPU model, cores, load
average before and after, commit). The machine's 2 cores are shared by the server, wrk and anything
else running: compare figures from one run only.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from bench.support import machine, newest_version, spread, summary
from tests.support import REPO, free_port

PEER_DIR = REPO / "bench" / "peer_servers"
DEFAULT_CACHE = Path.home() / ".cache" / "mnist-digits" / "bench-peers"
SERVER_NAMES = ("ours", "baseline", "kserve", "litserve", "mlflow", "bentoml", "ours-gthread", "ours-nginx")
DEFAULT_SERVERS = SERVER_NAMES[:6]  # the last two: other ways to run ours (docs/deployment.md, slow clients)
PEERS = ("kserve", "litserve", "mlflow", "bentoml")  # the frameworks: "best peer" is one of these
TOLERANCE = 1e-6
PEER_WORKERS = 2
READY_STREAK = 6  # predictions in a row, each on a fresh connection, before a server counts as ready
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "DO_NOT_TRACK": "1",
             "MLFLOW_DISABLE_TELEMETRY": "true", "BENTOML_DO_NOT_TRACK": "True"}


# ---- the machine and summaries -------------------------------------------------------------------------
def machine_with_wrk() -> dict:
    """bench/support.py's ``machine()`` (CPU model, cores, memory, OS, versions, commit), and the cores this
    process may use and wrk's version."""
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split("Copyright")[0]
    return {**machine(), "usable_cores": len(os.sched_getaffinity(0)), "wrk": wrk.strip()}


def load_average() -> list[float]:
    return [round(load, 2) for load in os.getloadavg()]


def summary_of_present(values) -> dict[str, float] | None:
    """bench/support.py's ``summary`` (median, min, max) of the values that are not None; None if none are."""
    present = [value for value in values if value is not None]
    return summary(present) if present else None


# ---- levels --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Level:
    """One load level: ``batch`` images per request, ``connections`` keep-alive connections."""

    batch: int
    connections: int

    @property
    def name(self) -> str:
        return f"{self.batch} img c={self.connections}"


DEFAULT_LEVELS = "1:1,1:8,1:32,64:8"
CPU_LEVEL = Level(1, 8)


def parse_levels(text: str) -> list[Level]:
    """``"1:1,1:8,64:8"`` -> levels (images per request : connections)."""
    levels = []
    for part in text.split(","):
        batch, _, connections = part.strip().partition(":")
        level = Level(int(batch), int(connections))
        if level.batch < 1 or level.connections < 1:
            raise ValueError(f"level {part!r}: images and connections must be >= 1")
        levels.append(level)
    return levels


# ---- process tree: CPU time and memory ----------------------------------------------------------------
@dataclass(frozen=True)
class ProcStat:
    """What /proc/PID/stat says about one process; ``ticks`` = utime+stime+cutime+cstime."""

    pid: int
    ppid: int
    start: int  # start time in ticks after boot: with pid, tells a process from a later one with its pid
    ticks: int

    @property
    def key(self) -> tuple[int, int]:
        return self.pid, self.start


def parse_stat(text: str) -> ProcStat:
    """Parse /proc/PID/stat (the command name in parentheses may hold spaces and parentheses)."""
    head, _, rest = text.rpartition(")")
    fields = rest.split()  # fields[0] is field 3 of proc(5), the state
    return ProcStat(pid=int(head.split("(", 1)[0]), ppid=int(fields[1]), start=int(fields[19]),
                    ticks=sum(int(x) for x in fields[11:15]))


def read_procs(proc_root: Path = Path("/proc")) -> dict[int, ProcStat]:
    """Every process now, by pid (processes ending while this reads are skipped)."""
    procs = {}
    for entry in proc_root.iterdir():
        if entry.name.isdigit():
            try:
                stat = parse_stat((entry / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue
            procs[stat.pid] = stat
    return procs


def process_tree(procs: dict[int, ProcStat], root: int) -> dict[tuple[int, int], ProcStat]:
    """``root`` and all its descendants, by (pid, start time)."""
    children: dict[int, list[ProcStat]] = {}
    for stat in procs.values():
        children.setdefault(stat.ppid, []).append(stat)
    tree, todo = {}, [procs[root]] if root in procs else []
    while todo:
        stat = todo.pop()
        tree[stat.key] = stat
        todo.extend(children.get(stat.pid, []))
    return tree


def tree_cpu_ticks(before: dict[tuple[int, int], ProcStat], after: dict[tuple[int, int], ProcStat]) -> int:
    """CPU ticks the process tree used between two samples.

    Each process counts with utime+stime+cutime+cstime: a child that ends and is reaped by its parent
    moves its whole time into the parent's cutime/cstime. So the total is the sum over ``after`` minus the
    sum over ``before`` of the processes still there, and of the ended ones whose parent is still there
    (their time, including what they had used before, is now in that parent). A process started in
    between counts whole. An ended process whose parent is gone too counts nothing for the interval.
    """
    alive_pids = {pid for pid, _ in after}
    total = sum(stat.ticks for stat in after.values())
    for key, stat in before.items():
        if key in after or stat.ppid in alive_pids:
            total -= stat.ticks
    return total


def parse_pss_kib(smaps_rollup: str) -> int:
    """The ``Pss:`` figure of /proc/PID/smaps_rollup, in KiB (0 if absent)."""
    for line in smaps_rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def tree_pss_mib(pids: list[int], proc_root: Path = Path("/proc")) -> float:
    """Proportional set size summed over the processes (shared pages split among their users), MiB."""
    kib = 0
    for pid in pids:
        try:
            kib += parse_pss_kib((proc_root / str(pid) / "smaps_rollup").read_text())
        except OSError:
            continue
    return kib / 1024


# ---- wrk ----------------------------------------------------------------------------------------------
LUA_TEMPLATE = """\
-- {name}: POST {path}, {batch} image(s) per request
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open("{body}", "rb"))
wrk.body = file:read("*a")
file:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {{"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,"connect_errors":%.0f,' ..
    '"read_errors":%.0f,"write_errors":%.0f,"timeouts":%.0f,"non_2xx":%.0f,' ..
    '"latency_us":{{"mean":%.1f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"max":%.0f}}}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.timeout,
    e.status, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def parse_wrk_json(stdout: str) -> dict:
    """The figures printed by the Lua ``done()`` (the ``WRK_JSON`` line), with derived ones:
    requests/s, latencies in ms, socket errors, and ``flagged`` when any request failed."""
    line = next((l for l in stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if line is None:
        raise ValueError(f"no WRK_JSON line in wrk's output:\n{stdout[-2000:]}")
    raw = json.loads(line[len("WRK_JSON "):])
    socket_errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    seconds = raw["duration_us"] / 1e6
    latency = raw["latency_us"]
    return {"requests": int(raw["requests"]), "seconds": seconds,
            "rps": raw["requests"] / seconds if seconds else 0.0,
            "p50_ms": latency["p50"] / 1e3, "p90_ms": latency["p90"] / 1e3,
            "p99_ms": latency["p99"] / 1e3, "max_ms": latency["max"] / 1e3,
            "mean_ms": latency["mean"] / 1e3, "non_2xx": int(raw["non_2xx"]),
            "socket_errors": int(socket_errors), "flagged": bool(raw["non_2xx"] or socket_errors),
            "wrk": raw}


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict:
    """One wrk run: one thread, ``connections`` keep-alive connections, ``seconds`` long."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency",
               "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}{done.stdout[-2000:]}")
    return parse_wrk_json(done.stdout)


# ---- servers ------------------------------------------------------------------------------------------
@dataclass
class Context:
    """What every server's launcher needs: the export, a scratch folder, and the peers' Pythons."""

    export_base: Path
    version_dir: Path
    scratch: Path
    pythons: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class Launch:
    command: list[str]
    env: dict[str, str]
    cwd: Path


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server and speak its request format."""

    name: str
    title: str
    path: str  # prediction URL path
    requirements: Path | None  # its pinned list (its own virtual environment), or None: this Python
    launch: Callable[[Context, int], Launch]
    body: Callable[[list], dict]  # list of images (lists of 784 floats) -> request JSON
    answers: Callable[[object], list]  # response JSON -> list of 10 probabilities per image
    note: str = ""  # how it runs, for the report


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "VIRTUAL_ENV")}
    return {**env, **QUIET_ENV, **extra}


def _peer_env(ctx: Context, name: str, **extra: str) -> dict[str, str]:
    """A peer's environment: no PYTHONPATH into this repository, its venv's bin first on PATH."""
    env = _env(**extra)
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{ctx.pythons[name].parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def launch_ours(ctx: Context, port: int) -> Launch:
    command = [sys.executable, "-m", "gunicorn", "-c", "service/gunicorn.conf.py",
               "--bind", f"127.0.0.1:{port}", "service.app:create_app()"]
    return Launch(command, _env(MODEL_DIR=str(ctx.export_base)), REPO)


def launch_ours_gthread(ctx: Context, port: int) -> Launch:
    """Ours as it was before the asyncio worker: gunicorn's threaded worker, 4 threads per worker."""
    launch = launch_ours(ctx, port)
    return Launch(launch.command[:5] + ["-k", "gthread", "--threads", "4"] + launch.command[5:], launch.env,
                  launch.cwd)


def launch_ours_nginx(ctx: Context, port: int) -> Launch:
    """Ours with gthread workers behind a buffering nginx (bench/peer_servers/nginx_front.sh)."""
    scratch = ctx.scratch / f"nginx-{port}"
    return Launch(["sh", str(PEER_DIR / "nginx_front.sh"), str(port), str(scratch), str(free_port())],
                  _env(MODEL_DIR=str(ctx.export_base), PATH=f"{Path(sys.executable).parent}{os.pathsep}"
                                                            f"{os.environ.get('PATH', '')}:/usr/sbin"), REPO)


def launch_baseline(ctx: Context, port: int) -> Launch:
    """bench/serving.py's tutorial app (imported from there), run as a script with Flask's server."""
    from bench import serving

    app = ctx.scratch / "baseline_app.py"
    app.write_text(serving.BASELINE_APP)
    env = _env(BASELINE_MODEL=str(ctx.version_dir))
    return Launch([sys.executable, str(app), str(port)], env, ctx.scratch)


def launch_kserve(ctx: Context, port: int) -> Launch:
    command = [str(ctx.pythons["kserve"]), str(PEER_DIR / "kserve_server.py"),
               "--model_dir", str(ctx.version_dir), "--model_name", "mnist", "--http_port", str(port),
               "--workers", str(PEER_WORKERS), "--enable_grpc", "false"]
    return Launch(command, _peer_env(ctx, "kserve"), ctx.scratch)


def launch_litserve(ctx: Context, port: int) -> Launch:
    command = [str(ctx.pythons["litserve"]), str(PEER_DIR / "litserve_server.py"),
               str(ctx.version_dir), str(port), str(PEER_WORKERS)]
    return Launch(command, _peer_env(ctx, "litserve"), ctx.scratch)


def launch_mlflow(ctx: Context, port: int) -> Launch:
    """``mlflow models serve`` of the pyfunc model, saved into the scratch folder on first use."""
    model = ctx.scratch / "mlflow-model"
    env = _peer_env(ctx, "mlflow")
    if not model.is_dir():
        subprocess.run([str(ctx.pythons["mlflow"]), str(PEER_DIR / "mlflow_model.py"),
                        str(ctx.version_dir), str(model)], env=env, cwd=ctx.scratch, check=True,
                       capture_output=True)
    command = [str(ctx.pythons["mlflow"].parent / "mlflow"), "models", "serve", "-m", str(model),
               "--env-manager", "local", "--host", "127.0.0.1", "-p", str(port), "-w", "1"]
    return Launch(command, env, ctx.scratch)


def launch_bentoml(ctx: Context, port: int) -> Launch:
    command = [str(ctx.pythons["bentoml"].parent / "bentoml"), "serve", "bentoml_service:MnistService",
               "--host", "127.0.0.1", "--port", str(port), "--working-dir", str(PEER_DIR)]
    env = _peer_env(ctx, "bentoml", MNIST_SAVED_MODEL=str(ctx.version_dir),
                    BENTOML_WORKERS=str(PEER_WORKERS), BENTOML_HOME=str(ctx.scratch / "bentoml-home"))
    return Launch(command, env, ctx.scratch)


def _instances(images: list) -> dict:
    return {"instances": images}


def _predictions(response) -> list:
    return response["predictions"]


def _our_predictions(response) -> list:
    return [p["probabilities"] for p in response["predictions"]]


def _requirements(name: str) -> Path:
    return PEER_DIR / f"requirements-{name}.txt"


SPECS = {spec.name: spec for spec in (
    ServerSpec("ours", "ours (gunicorn, service/gunicorn.conf.py)", "/predict", None, launch_ours,
               _instances, _our_predictions,
               "gunicorn -c service/gunicorn.conf.py as shipped: 2 workers of service/worker.py (gunicorn's "
               "asyncio worker, uvloop, whole requests, balanced connections), TF_NUM_THREADS=1 each; "
               "POST /predict {instances}"),
    ServerSpec("ours-gthread", "ours on gthread workers (2 x 4 threads)", "/predict", None,
               launch_ours_gthread, _instances, _our_predictions,
               "the same app and settings with gunicorn -k gthread --threads 4 (no protection from slow "
               "clients: each one holds a thread)"),
    ServerSpec("ours-nginx", "ours on gthread behind nginx", "/predict", None, launch_ours_nginx,
               _instances, _our_predictions,
               "nginx (buffering proxy, keep-alive upstream connections) in front of gunicorn -k "
               "gthread --threads 4: gunicorn's documented way to face slow clients"),
    ServerSpec("baseline", "tutorial baseline (Flask + model.predict)", "/predict", None, launch_baseline,
               _instances, _our_predictions,
               "bench/serving.py's BASELINE_APP: Flask's app.run(threaded=True), Keras model.predict per "
               "request"),
    ServerSpec("kserve", f"KServe 0.21.0 ({PEER_WORKERS} workers, v1)", "/v1/models/mnist:predict",
               _requirements("kserve"), launch_kserve, _instances, _predictions,
               f"ModelServer().start([model]) with --workers {PEER_WORKERS} --enable_grpc false (spawned "
               "uvicorn workers, uvloop); POST /v1/models/mnist:predict {instances}; workarounds: the model "
               "reloads when unpickled into a worker, liveness ping timeout 120 s instead of 5 s"),
    ServerSpec("litserve", f"LitServe 0.2.19 ({PEER_WORKERS} workers)", "/predict",
               _requirements("litserve"), launch_litserve, _instances, _predictions,
               f"LitServer(api, accelerator='cpu', workers_per_device={PEER_WORKERS}).run(): "
               f"{PEER_WORKERS} inference worker processes and as many API server processes; "
               "POST /predict {instances}"),
    ServerSpec("mlflow", "MLflow 3.17.2 (1 worker)", "/invocations", _requirements("mlflow"),
               launch_mlflow, lambda images: {"inputs": images}, _predictions,
               "mlflow models serve --env-manager local -w 1 of a pyfunc model (uvicorn without uvloop); "
               "POST /invocations {inputs}. 1 worker: with -w 2, uvicorn's worker sockets lack TCP_NODELAY "
               "and each keep-alive request stalls ~40 ms on a delayed ACK"),
    ServerSpec("bentoml", f"BentoML 1.4.40 ({PEER_WORKERS} workers)", "/predict", _requirements("bentoml"),
               launch_bentoml, _instances, lambda response: response,
               f"bentoml serve of a @bentoml.service(workers={PEER_WORKERS}) class; POST /predict {{instances}}"),
)}


# ---- virtual environments -----------------------------------------------------------------------------
def venv_dir(requirements: Path, cache: Path) -> Path:
    """The folder of a peer's environment: its name and a hash of its pinned list and of this Python."""
    digest = hashlib.sha256((platform.python_version() + "\n" + requirements.read_text()).encode())
    return cache / f"{requirements.stem.removeprefix('requirements-')}-{digest.hexdigest()[:12]}"


def ensure_venv(requirements: Path, cache: Path) -> Path:
    """A peer's virtual environment, made (pip install of its pinned list) unless already complete.
    Returns its Python. Made in place (a venv cannot be moved); ``.complete`` marks a finished one."""
    target = venv_dir(requirements, cache)
    python = target / "bin" / "python"
    if (target / ".complete").is_file():
        return python
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    print(f"  making {target} from {requirements.name} (a few minutes)", flush=True)
    log = target / "pip-install.log"
    with open(log, "wb") as out:
        for step in ([sys.executable, "-m", "venv", str(target)],
                     [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-r",
                      str(requirements)]):
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"{' '.join(step[:4])} failed; see {log}:\n{log.read_text()[-3000:]}")
    (target / ".complete").write_text(requirements.read_text())
    return python


# ---- one server's run ---------------------------------------------------------------------------------
class RunningServer:
    """A started server: its process (leader of a new process group) and its log."""

    def __init__(self, spec: ServerSpec, ctx: Context, log_dir: Path):
        self.spec, self.port = spec, free_port()
        launch = spec.launch(ctx, self.port)
        self.log_path = log_dir / f"{spec.name}.log"
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(launch.command, cwd=launch.cwd, env=launch.env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}{spec.path}"

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def tree(self) -> dict[tuple[int, int], ProcStat]:
        return process_tree(read_procs(), self.process.pid)

    def post(self, images: list, timeout: float = 60) -> tuple[int, object]:
        """POST images in this server's format on a fresh connection: (status, decoded JSON or text)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            body = json.dumps(self.spec.body(images)).encode()
            conn.request("POST", self.spec.path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode(errors="replace")[:500]

    def wait_ready(self, image: list, timeout: float) -> float:
        """Seconds until ``READY_STREAK`` predictions in a row succeed; raises with the log otherwise."""
        started = time.monotonic()
        streak = 0
        while streak < READY_STREAK:
            if self.process.poll() is not None:
                raise RuntimeError(f"exited with {self.process.returncode}; log:\n{self.log_tail()}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"not ready after {timeout:.0f} s; log:\n{self.log_tail()}")
            try:
                status, _ = self.post([image], timeout=30)
            except (OSError, http.client.HTTPException):
                status = 0
            streak = streak + 1 if status == 200 else 0
            if status != 200:
                time.sleep(0.5)
        return time.monotonic() - started

    def stop(self) -> None:
        """SIGTERM to the server, then SIGKILL to its process group and to any descendant left."""
        tree = self.tree()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        for kill in (lambda: os.killpg(self.process.pid, signal.SIGKILL),
                     *(lambda pid=key[0]: _kill_if_same(pid, tree) for key in tree)):
            try:
                kill()
            except (ProcessLookupError, PermissionError):
                pass
        self.process.wait()
        self._log.close()


def _kill_if_same(pid: int, tree: dict[tuple[int, int], ProcStat]) -> None:
    """SIGKILL ``pid`` if it is still the process recorded in ``tree`` (same start time)."""
    try:
        now = parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return
    if now.key in tree:
        os.kill(pid, signal.SIGKILL)


def gate(server: RunningServer, images: np.ndarray, reference: np.ndarray) -> dict:
    """Correctness gate: each image alone, then all in one request; the largest difference from the
    SavedModel's probabilities must be <= TOLERANCE. Returns {"passed", "max_abs_diff", "error"}."""
    worst, error = 0.0, None
    requests = [([i], images[i:i + 1]) for i in range(len(images))] + [(list(range(len(images))), images)]
    for rows, batch in requests:
        status, response = server.post(batch.tolist())
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
    """The body and Lua script for each batch size of the levels: {batch: script path}."""
    scripts = {}
    for batch in sorted({level.batch for level in levels}):
        body = folder / f"{spec.name}-{batch}.json"
        body.write_text(json.dumps(spec.body(images[:batch].tolist()), separators=(",", ":")))
        script = folder / f"{spec.name}-{batch}.lua"
        script.write_text(LUA_TEMPLATE.format(name=spec.name, path=spec.path, batch=batch, body=body))
        scripts[batch] = script
    return scripts


def measure_level(server: RunningServer, script: Path, level: Level, seconds: int, warmup: int) -> dict:
    """Warm-up, then the measured wrk run, with the server tree's CPU time sampled around it."""
    if warmup > 0:
        run_wrk(server.url, script, level.connections, warmup)
    before = server.tree()
    figures = run_wrk(server.url, script, level.connections, seconds)
    after = server.tree()
    cpu_seconds = tree_cpu_ticks(before, after) / os.sysconf("SC_CLK_TCK")
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
        tree = server.tree()
        result["pss_mib"] = tree_pss_mib([pid for pid, _ in tree])
        result["processes"] = len(tree)
    except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
        output = getattr(exc, "stderr", None) or getattr(exc, "output", None) or b""
        result["error"] = f"{exc}\n{output.decode(errors='replace') if isinstance(output, bytes) else output}"
    finally:
        if server is not None:
            server.stop()
    return result


# ---- reference probabilities ---------------------------------------------------------------------------
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
                          env=_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"could not compute the reference probabilities:\n{done.stderr[-3000:]}")
    return np.load(out).astype(np.float64)


def mnist_test_images(count: int) -> np.ndarray:
    """The first ``count`` real MNIST test images, float32 (n, 784) in [0, 1]."""
    from training.data import load_mnist

    (_, _), (x_test, _) = load_mnist()
    return np.ascontiguousarray(x_test[:count], dtype=np.float32)


# ---- report -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One figure of the report: its label, how to read it from a repeat's result, whether higher is
    better, and its number format."""

    label: str
    read: Callable[[dict], float | None]
    higher_is_better: bool
    fmt: str = ".1f"
    level: str | None = None  # the load level it comes from (its failed requests flag it)


def level_column(label: str, level: Level, key: str, higher_is_better: bool, fmt: str) -> Column:
    return Column(label, lambda run: run["levels"].get(level.name, {}).get(key), higher_is_better, fmt,
                  level.name)


def flagged(run: dict, column: Column) -> bool:
    return column.level is not None and run["levels"].get(column.level, {}).get("flagged", False)


def report_tables(levels: list[Level]) -> list[tuple[str, list[Column]]]:
    """The tables: throughput, p50, p99 (one column per level), then CPU per request and memory."""
    cpu_level = CPU_LEVEL if CPU_LEVEL in levels else levels[0]
    return [
        ("requests/s", [level_column(l.name, l, "rps", True, ".1f") for l in levels]),
        ("p50 latency, ms", [level_column(l.name, l, "p50_ms", False, ".2f") for l in levels]),
        ("p99 latency, ms", [level_column(l.name, l, "p99_ms", False, ".2f") for l in levels]),
        ("resources", [level_column(f"CPU ms/request ({cpu_level.name})", cpu_level,
                                    "cpu_ms_per_request", False, ".2f"),
                       Column("PSS MiB after load", lambda run: run.get("pss_mib"), False, ".0f")]),
    ]


def summarise(results: dict, columns: list[Column]) -> dict[str, list[str]]:
    """Rows of cells: per server, "median (min-max)" of each column over its measured repeats (``!`` if
    any of them had failed requests), or why it was not measured."""
    rows = {}
    for name, runs in results.items():
        measured = [run for run in runs if run["status"] == "measured"]
        if not measured:
            rows[name] = [", ".join(sorted({run["status"] for run in runs}))] + [""] * (len(columns) - 1)
            continue
        cells = []
        for column in columns:
            stats = summary_of_present([column.read(run) for run in measured])
            flag = "!" if any(flagged(run, column) for run in measured) else ""
            cells.append("-" if stats is None else spread(stats, column.fmt) + flag)
        rows[name] = cells
    return rows


def ours_vs_best_peer(results: dict, column: Column) -> tuple[dict[str, float] | None, list[str]]:
    """Ratio ours / best framework peer for one column, within each repeat (peers whose level had failed
    requests are left out of "best"), summarised (``summary_of_present``); and the best peers' names."""
    ratios, best_names = [], []
    for repeat, ours in enumerate(results.get("ours", [])):
        ours_value = column.read(ours) if ours["status"] == "measured" else None
        candidates = []
        for name in PEERS:
            runs = results.get(name, [])
            if repeat < len(runs) and runs[repeat]["status"] == "measured" \
                    and not flagged(runs[repeat], column):
                value = column.read(runs[repeat])
                if value is not None:
                    candidates.append((value, name))
        if ours_value is None or not candidates:
            continue
        value, name = (max if column.higher_is_better else min)(candidates)
        if value:
            ratios.append(ours_value / value)
            best_names.append(name)
    return summary_of_present(ratios), sorted(set(best_names))


def render_table(title: str, columns: list[Column], results: dict, markdown: bool) -> str:
    """One table: a row per server, then ours / best peer."""
    header = ["server"] + [column.label for column in columns]
    rows = [[SPECS[name].name] + cells for name, cells in summarise(results, columns).items()]
    if "ours" in results and any(name in results for name in PEERS):
        cells = []
        for column in columns:
            stats, names = ours_vs_best_peer(results, column)
            cells.append("-" if stats is None else f"{spread(stats, '.2f')} vs {'/'.join(names)}")
        rows.append(["ours / best peer"] + cells)
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(row[i])) for row in [header] + rows) for i in range(len(header))]
    lines = [title] + ["  ".join(str(cell).ljust(w) if i == 0 else str(cell).rjust(w)
                                 for i, (cell, w) in enumerate(zip(row, widths))) for row in [header] + rows]
    return "\n".join(lines)


def render_report(results: dict, levels: list[Level], markdown: bool, about: str = "") -> str:
    """The tables, the servers (how each runs), and ``about`` (machine and settings)."""
    tables = [render_table(title, columns, results, markdown) for title, columns in report_tables(levels)]
    bullet = "- " if markdown else "  "
    servers = "\n".join(f"{bullet}{name}: {SPECS[name].note}" for name in results)
    return "\n\n".join(tables + [f"Servers:\n{servers}"] + ([about] if about else []))


def report_from_json(data: dict) -> str:
    """The Markdown report of a saved ``--json`` file (``python -m bench.run_all --render-only`` puts it
    into docs/benchmarks.md)."""
    settings = data["settings"]
    levels = [Level(int(name.split(" img c=")[0]), int(name.split(" img c=")[1])) for name in settings["levels"]]
    args = argparse.Namespace(repeats=settings["repeats"], warmup=settings["warmup"], seconds=settings["seconds"])
    return render_report(data["results"], levels, True, describe_run(data["machine"], args, data["elapsed_seconds"]))


def describe_run(machine: dict, args, elapsed: float) -> str:
    """One paragraph: machine, commit, load average, settings, duration."""
    return (f"{machine['cpu']}, {machine['usable_cores']} cores, {machine['memory']}, {machine['os']}, "
            f"Python {machine['versions']['python']}, {machine['wrk']}; commit {machine['commit']}; "
            f"load average before {machine['load_average_before']}, after {machine['load_average_after']}. "
            f"{args.repeats} repeat(s); per level {args.warmup} s warm-up + {args.seconds} s measured, "
            f"wrk -t1; medians (min-max); ! = a level with non-2xx responses or socket errors; "
            f"took {elapsed / 60:.1f} min.")


# ---- main ---------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
