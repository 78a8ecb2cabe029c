"""The distributed-training options of ``train.py`` and the cluster they describe. No TensorFlow here.

``--strategy none`` (the default) is one process on one device. ``--strategy mirrored --replicas N``
is one process driving N devices of this machine (its GPUs, or N logical CPU devices when it has
none). ``--strategy multi-worker`` is one process per worker, the cluster taken from TensorFlow's
standard ``TF_CONFIG`` environment variable::

    TF_CONFIG='{"cluster": {"worker": ["host-a:2222", "host-b:2222"]}, "task": {"type": "worker", "index": 0}}'

Worker 0 is the chief (or the single task of a ``"chief"`` job, when the cluster has one, as
TensorFlow's own rule says): it alone writes the run folder and the export. ``--batch-size`` is always
the global batch: each of the R replicas gets ``batch / R`` rows, and a batch that does not split
evenly is refused, as are the options that cannot be distributed (see ``check``). Every refusal is one
line on stderr and exit status 2, before anything is loaded or written (``arguments.parse_args``).

For orchestrators (deploy/kubernetes-train.yaml, docker-compose.yml), which restart a failed worker
with the command it started with::

    python -m training.cluster worker --run-dir DIR [train.py options]
    python -m training.cluster indexed-job     # prints the TF_CONFIG that `worker` would build

``worker`` runs ``train.py --strategy multi-worker`` with the given options, adding ``--resume`` when
``DIR`` already holds the run (after a failure every worker restarts from the chief's last complete
checkpoint) and doing nothing when the run is complete (``DIR/metrics.json`` exists). Without
``TF_CONFIG`` in a pod of a Kubernetes Indexed Job, it builds it from ``JOB_COMPLETION_INDEX``,
``WORKERS``, ``JOB_NAME``, ``SERVICE_NAME`` and ``WORKER_PORT`` (``indexed_job_tf_config``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

STRATEGIES = ("none", "mirrored", "multi-worker")
DEFAULT_REPLICAS = 2
MAX_REPLICAS = 64
DEFAULT_COMM_TIMEOUT = 120.0
TF_CONFIG = "TF_CONFIG"
TRAIN_SCRIPT = Path(__file__).resolve().with_name("train.py")
# Task types of a TF_CONFIG cluster that MultiWorkerMirroredStrategy trains with.
TRAINING_JOBS = ("chief", "worker")

STRATEGY_HELP = (
    "none: one process on one device. "
    "mirrored: synchronous data parallelism in one process over --replicas devices of this machine (its GPUs, "
    "or as many logical CPU devices when it has none): every step, each replica computes the gradient of its "
    "share of the batch and the gradients are summed before our optimizer updates every copy of the weights. "
    "multi-worker: the same, one process per worker on one or several machines, the cluster read from the "
    "TF_CONFIG environment variable (TensorFlow's format); worker 0 is the chief and alone writes the run "
    "folder and the export, the others write nothing and exit 0. "
    "With any strategy --batch-size is the global batch (each replica gets batch/replicas rows) and the data "
    "of every epoch is the same as without one, so a run can be resumed under another strategy. "
    "docs/distributed.md has the commands")


class ClusterError(ValueError):
    """TF_CONFIG is missing or does not describe a cluster this program can train on."""


@dataclass(frozen=True)
class Cluster:
    """The training tasks of a TF_CONFIG, in TensorFlow's order (the ``chief`` job first, if any, then
    the workers), and which of them this process is."""
    tasks: tuple[tuple[str, int, str], ...]   # (job, index, "host:port")
    task: tuple[str, int]                      # this process's (job, index)

    @property
    def size(self) -> int:
        return len(self.tasks)

    @property
    def rank(self) -> int:
        """This process's position in ``tasks``: 0 is the chief."""
        return [(job, index) for job, index, _ in self.tasks].index(self.task)

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def name(self, rank: int) -> str:
        """``"worker 1 (host-b:2222)"``: how messages name a task."""
        job, index, address = self.tasks[rank]
        return f"{job} {index} ({address})"

    def device_name(self, rank: int) -> str:
        """TensorFlow's name of a task: ``/job:worker/replica:0/task:1``."""
        job, index, _ = self.tasks[rank]
        return f"/job:{job}/replica:0/task:{index}"


def parse_tf_config(text: str | None) -> Cluster:
    """The cluster of a TF_CONFIG value; ClusterError (one line) if it is missing or unusable."""
    if not text:
        raise ClusterError(f"--strategy multi-worker needs the {TF_CONFIG} environment variable, e.g. "
                           '{"cluster": {"worker": ["host-a:2222", "host-b:2222"]}, "task": {"type": "worker", '
                           '"index": 0}} (docs/distributed.md)')
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        job, index = task["type"], task["index"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ClusterError(f"{TF_CONFIG} is not JSON with \"cluster\" and \"task\" {{\"type\", \"index\"}} "
                           f"({exc!r})") from None
    if not isinstance(cluster, dict) or not isinstance(index, int) or isinstance(index, bool):
        raise ClusterError(f"{TF_CONFIG}: \"cluster\" must map job names to address lists and the task "
                           f"index must be an integer, got {text!r}")
    others = sorted(set(cluster) - set(TRAINING_JOBS))
    if others:
        raise ClusterError(f"{TF_CONFIG}: jobs {others} are not supported: synchronous training uses "
                           "\"worker\" tasks (and optionally one \"chief\"), no parameter servers or evaluators")
    if job not in TRAINING_JOBS:
        raise ClusterError(f"{TF_CONFIG}: task type {job!r} is not one of {list(TRAINING_JOBS)}")
    tasks = []
    for name in TRAINING_JOBS:
        addresses = cluster.get(name, [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise ClusterError(f"{TF_CONFIG}: cluster[{name!r}] must be a list of \"host:port\" strings, "
                               f"got {addresses!r}")
        tasks += [(name, i, address) for i, address in enumerate(addresses)]
    if len(cluster.get("chief", [])) > 1:
        raise ClusterError(f"{TF_CONFIG}: at most one chief, got {cluster['chief']!r}")
    if not tasks:
        raise ClusterError(f"{TF_CONFIG}: the cluster has no worker")
    if not 0 <= index < len(cluster.get(job, [])):
        raise ClusterError(f"{TF_CONFIG}: task {job} {index} is not in the cluster ({len(cluster.get(job, []))} "
                           f"{job} address(es))")
    return Cluster(tuple(tasks), (job, index))


# =============================================================================
# The command line
# =============================================================================
def add_options(parser: argparse.ArgumentParser) -> None:
    """--strategy, --replicas, --comm-timeout."""
    parser.add_argument("--strategy", choices=STRATEGIES, default="none", help=STRATEGY_HELP)
    parser.add_argument("--replicas", type=int, default=None, metavar="N",
                        help=f"--strategy mirrored: devices to train on (default {DEFAULT_REPLICAS}); the GPUs "
                             "if there are some (at most their number), else logical CPU devices (which share "
                             "the cores: a test of the mechanics, not a speed-up)")
    parser.add_argument("--comm-timeout", type=float, default=DEFAULT_COMM_TIMEOUT, metavar="SECONDS",
                        help="--strategy multi-worker: a collective (the gradient all-reduce of a step) that "
                             "does not complete in this many seconds fails the run on every worker, naming the "
                             "lost worker, instead of hanging; it must exceed the chief's end-of-epoch work "
                             "(writing the checkpoint), which the others wait for")


def replicas_requested(args) -> int:
    """The number of replicas the arguments ask for (multi-worker: one per worker until TensorFlow
    sees the GPUs)."""
    if args.strategy == "mirrored":
        return args.replicas
    if args.strategy == "multi-worker":
        return parse_tf_config(os.environ.get(TF_CONFIG)).size
    return 1


def check(args, parser: argparse.ArgumentParser) -> None:
    """Exit with status 2 and one line if the strategy options are inconsistent, or ask for something
    that cannot be distributed: the NumPy engine, XLA, a batch that does not split evenly."""
    if args.strategy != "mirrored" and args.replicas is not None:
        parser.error(f"--replicas is for --strategy mirrored (multi-worker runs one replica per worker of "
                     f"{TF_CONFIG}), got --strategy {args.strategy}")
    if args.strategy == "mirrored" and args.replicas is None:
        args.replicas = DEFAULT_REPLICAS
    if args.strategy == "none":
        return
    if args.replicas is not None and not 1 <= args.replicas <= MAX_REPLICAS:
        parser.error(f"--replicas must be between 1 and {MAX_REPLICAS}, got {args.replicas}")
    if not args.comm_timeout > 0:
        parser.error(f"--comm-timeout must be a positive number of seconds, got {args.comm_timeout}")
    if getattr(args, "backend", "tensorflow") != "tensorflow":
        parser.error(f"--strategy {args.strategy} runs on TensorFlow's tf.distribute: use --backend tensorflow "
                     f"(got --backend {args.backend})")
    if args.engine != "keras":
        parser.error(f"--engine {args.engine} cannot be distributed: --strategy {args.strategy} trains the Keras "
                     "engine (drop --engine numpy, or --strategy)")
    if args.jit:
        parser.error(f"--jit is not supported with --strategy {args.strategy} (the distributed step is not "
                     "compiled with XLA); drop one of them")
    try:
        replicas = replicas_requested(args)
    except ClusterError as exc:
        parser.error(str(exc))
    if args.batch_size % replicas:
        parser.error(f"--batch-size {args.batch_size} does not split evenly over {replicas} replicas "
                     f"(--batch-size is the global batch; use a multiple of {replicas}, e.g. "
                     f"{max(replicas, args.batch_size // replicas * replicas)})")


# =============================================================================
# Kubernetes Indexed Job
# =============================================================================
def indexed_job_tf_config(env=os.environ) -> str:
    """TF_CONFIG for the pod of an Indexed Job with a headless Service: worker ``i`` of ``WORKERS`` is
    ``<JOB_NAME>-<i>.<SERVICE_NAME>:<WORKER_PORT>``, this pod is ``JOB_COMPLETION_INDEX``."""
    try:
        index, workers = int(env["JOB_COMPLETION_INDEX"]), int(env["WORKERS"])
        job, service, port = env["JOB_NAME"], env["SERVICE_NAME"], int(env.get("WORKER_PORT", "2222"))
    except (KeyError, ValueError) as exc:
        raise ClusterError(f"indexed-job needs JOB_COMPLETION_INDEX, WORKERS, JOB_NAME and SERVICE_NAME "
                           f"(and optionally WORKER_PORT) as integers/names: {exc!r}") from None
    if not 0 <= index < workers:
        raise ClusterError(f"JOB_COMPLETION_INDEX {index} is not in 0..{workers - 1}")
    hosts = [f"{job}-{i}.{service}:{port}" for i in range(workers)]
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def worker_command(argv: list[str], env=os.environ) -> list[str] | None:
    """``train.py --strategy multi-worker`` with ``argv``, plus ``--resume`` if ``--run-dir`` already
    holds the run; None if that run is complete. ClusterError without ``--run-dir``."""
    run_dir = None
    for i, arg in enumerate(argv):
        if arg == "--run-dir" and i + 1 < len(argv):
            run_dir = argv[i + 1]
        elif arg.startswith("--run-dir="):
            run_dir = arg.split("=", 1)[1]
    if not run_dir:
        raise ClusterError("worker needs --run-dir: a folder every worker sees, where the chief keeps the run")
    if (Path(run_dir) / "metrics.json").exists():
        return None
    resume = ["--resume"] if (Path(run_dir) / "args.json").exists() and "--resume" not in argv else []
    return [sys.executable, str(TRAIN_SCRIPT), "--strategy", "multi-worker", *resume, *argv]


def _main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    try:
        if command == "indexed-job" and not rest:
            print(indexed_job_tf_config())
            return 0
        if command == "worker":
            if TF_CONFIG not in os.environ and "JOB_COMPLETION_INDEX" in os.environ:
                os.environ[TF_CONFIG] = indexed_job_tf_config()
            train = worker_command(rest)
            if train is None:
                print(f"the run in {rest[rest.index('--run-dir') + 1] if '--run-dir' in rest else '--run-dir'} is "
                      "complete (metrics.json exists): nothing to do", flush=True)
                return 0
            sys.stdout.flush()
            os.execv(train[0], train)
    except ClusterError as error:
        print(f"training.cluster: error: {error}", file=sys.stderr)
        return 2
    print("usage: python -m training.cluster worker --run-dir DIR [train.py options]\n"
          "       python -m training.cluster indexed-job", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
