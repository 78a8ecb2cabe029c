"""The servers of the peers benchmark, one ``ServerSpec`` each: how to start it on a port (its launcher,
its own virtual environment for a framework), how to speak to it (its protocol, bench/peers_load.py;
its request and answer formats) and how it runs, for the report.

Adding a server is a launcher and a row of ``SPECS`` (and its name in ``SERVER_NAMES``); one that speaks
another protocol also names that protocol's class in its row.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from bench.localhost import free_port
from bench.peers_grpc import GRPC_INFER, INFER_PATH, GrpcInfer
from bench.peers_load import HTTP_JSON, HttpJson
from bench.servers import gunicorn_command
from bench.support import REPO

PEER_DIR = REPO / "bench" / "peer_servers"
SERVER_NAMES = ("ours", "baseline", "kserve", "litserve", "mlflow", "bentoml", "ours-grpc", "kserve-grpc",
                "ours-gthread", "ours-nginx")
DEFAULT_SERVERS = SERVER_NAMES[:8]  # the last two: other ways to run ours (docs/deployment.md, slow clients)
PEERS = ("kserve", "litserve", "mlflow", "bentoml")  # the frameworks: "best peer" is one of these
# the ratio rows of the report: (ours, the servers it is compared with, how the row names them)
COMPARISONS = (("ours", PEERS, "best peer"), ("ours-grpc", ("kserve-grpc",), "KServe gRPC"),
               ("ours-grpc", ("ours",), "ours over HTTP"))
PEER_WORKERS = 2
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", "DO_NOT_TRACK": "1",
             "MLFLOW_DISABLE_TELEMETRY": "true", "BENTOML_DO_NOT_TRACK": "True"}


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
    protocol: HttpJson | GrpcInfer = HTTP_JSON  # how requests reach it: the gate's, and the load
    #                                             (bench/peers_load.py, bench/peers_grpc.py)


def server_env(**extra: str) -> dict[str, str]:
    """This process's environment without what would leak into a server's, with ``QUIET_ENV`` and ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PROMETHEUS_MULTIPROC_DIR", "VIRTUAL_ENV")}
    return {**env, **QUIET_ENV, **extra}


def _peer_env(ctx: Context, name: str, **extra: str) -> dict[str, str]:
    """A peer's environment: no PYTHONPATH into this repository, its venv's bin first on PATH."""
    env = server_env(**extra)
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{ctx.pythons[name].parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def launch_ours(ctx: Context, port: int) -> Launch:
    return Launch(gunicorn_command(port), server_env(MODEL_DIR=str(ctx.export_base)), REPO)


def launch_ours_gthread(ctx: Context, port: int) -> Launch:
    """Ours as it was before the asyncio worker: gunicorn's threaded worker, 4 threads per worker."""
    command = gunicorn_command(port, extra_args=["-k", "gthread", "--threads", "4"])
    return Launch(command, server_env(MODEL_DIR=str(ctx.export_base)), REPO)


def launch_ours_nginx(ctx: Context, port: int) -> Launch:
    """Ours with gthread workers behind a buffering nginx (bench/peer_servers/nginx_front.sh)."""
    scratch = ctx.scratch / f"nginx-{port}"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}:/usr/sbin"
    return Launch(["sh", str(PEER_DIR / "nginx_front.sh"), str(port), str(scratch), str(free_port())],
                  server_env(MODEL_DIR=str(ctx.export_base), PATH=path), REPO)


def launch_baseline(ctx: Context, port: int) -> Launch:
    """bench/serving.py's tutorial app (imported from there), run as a script with Flask's server."""
    from bench import serving

    app = ctx.scratch / "baseline_app.py"
    app.write_text(serving.BASELINE_APP)
    env = server_env(BASELINE_MODEL=str(ctx.version_dir))
    return Launch([sys.executable, str(app), str(port)], env, ctx.scratch)


def launch_kserve(ctx: Context, port: int) -> Launch:
    command = [str(ctx.pythons["kserve"]), str(PEER_DIR / "kserve_server.py"),
               "--model_dir", str(ctx.version_dir), "--model_name", "mnist", "--http_port", str(port),
               "--workers", str(PEER_WORKERS), "--enable_grpc", "false"]
    return Launch(command, _peer_env(ctx, "kserve"), ctx.scratch)


def launch_ours_grpc(ctx: Context, port: int) -> Launch:
    """Ours as shipped, spoken to over gRPC: ``port`` is GRPC_PORT (HTTP on another free port)."""
    http_port = free_port()
    while http_port == port:
        http_port = free_port()
    return Launch(gunicorn_command(http_port), server_env(MODEL_DIR=str(ctx.export_base), GRPC_PORT=str(port)),
                  REPO)


def launch_kserve_grpc(ctx: Context, port: int) -> Launch:
    """KServe's ModelServer as for the REST rows, with its gRPC server on ``port`` (HTTP on another)."""
    command = [str(ctx.pythons["kserve-grpc"]), str(PEER_DIR / "kserve_server.py"),
               "--model_dir", str(ctx.version_dir), "--model_name", "mnist", "--http_port", str(free_port()),
               "--workers", str(PEER_WORKERS), "--enable_grpc", "true", "--grpc_port", str(port)]
    return Launch(command, _peer_env(ctx, "kserve-grpc"), ctx.scratch)


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
    ServerSpec("ours-grpc", "ours over gRPC (the same gunicorn)", INFER_PATH, None, launch_ours_grpc,
               _instances, lambda answer: answer,
               "the same gunicorn as ours, spoken to on GRPC_PORT: each worker's grpc.aio server "
               "(service/grpc_api, SO_REUSEPORT); the Open Inference Protocol's ModelInfer, raw FP32 in and out",
               GRPC_INFER),
    ServerSpec("kserve-grpc", f"KServe 0.21.0 gRPC ({PEER_WORKERS} REST workers)", INFER_PATH,
               _requirements("kserve"), launch_kserve_grpc, _instances, lambda answer: answer,
               f"the kserve row's server with --enable_grpc true: KServe's grpc.aio server in the parent "
               f"process beside {PEER_WORKERS} spawned REST workers (KServe keeps gRPC in one process); "
               "ModelInfer, raw FP32 in (the model's predict takes the InferRequest)", GRPC_INFER),
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
