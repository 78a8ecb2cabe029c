"""``train.py --strategy mirrored|multi-worker``: the steps of ``train.py`` over a ``tf.distribute`` strategy.

One training loop serves both strategies (``DistributedEngine``), because ``model.fit`` cannot:

- ``fit`` works under ``MirroredStrategy`` but fails under ``MultiWorkerMirroredStrategy`` in Keras
  3.15.1 (keras-team/keras#20585: a ValueError converting the ``PerReplica`` batch; pinned by
  tests/distributed), and under ``MirroredStrategy`` it gets an uneven last batch slightly wrong:
  each replica averages its own rows, so 19 + 18 rows are weighted 1/38 and 1/36 instead of 1/37.
- Our step gives every replica the whole global batch (the same on every worker: the data of an
  epoch is a pure function of ``(seed, epoch)``, ``training/augment.py``) and each replica takes its
  contiguous share: rows ``[i*B/R, (i+1)*B/R)`` of a full batch of B over R replicas, an even split
  (sizes differing by at most one, possibly zero) of a short last batch. Each replica's loss is the
  *sum* of its rows' losses divided by the number of rows in the *global* batch, so the gradients,
  summed over the replicas by our optimizer's all-reduce, are exactly the gradient of the global
  batch's mean loss, the last batch included. Nothing is dropped: an epoch has ``ceil(n / B)`` steps
  as in one process, and the learning-rate schedule is the same.
- No ``tf.data`` distribution: under ``MultiWorkerMirroredStrategy`` every ``next()`` on an
  ``experimental_distribute_dataset`` iterator runs an extra cross-worker all-reduce ("does any
  worker still have data?", ``input_lib._calculate_replicas_with_values``) even with
  ``drop_remainder=True``; slicing the batch in the step needs none, and which rows each replica
  trains on is plain to see (and tested).
- The optimizer is created and built inside ``strategy.scope()`` before the first step
  (keras-team/keras#23085); its ``apply_gradients`` all-reduces (sums) the gradients and then runs
  our ``update_step`` on each device's copy. Gradient clipping is refused (``refuse_clipping``):
  Keras would clip each replica's partial gradient before that sum.
- Training and validation loss and accuracy are summed per replica in sync-on-read variables and
  all-reduced once per epoch, not once per step.

Multi-worker: only the chief (``training/cluster.py``) writes the run folder (args.json, history.csv,
checkpoints, TensorBoard, plots, metrics.json) and the export; the other workers write nothing and exit
0. ``--resume`` makes every worker load the chief's last complete checkpoint from the run folder, which
must therefore be on storage all workers see (a shared volume); the workers then check with one
all-reduce that they agree on the epoch and the arguments. Collectives time out after
``--comm-timeout`` seconds: a lost worker makes the others exit with status 1 and a line naming it
(found by asking each peer, as TensorFlow's own health check does), never hang. Nothing half-written
is left: every file is written atomically and the export only after training.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from model.keras_network import build_model, compile_for_training, from_numpy, to_numpy
from training.arguments import RESUMABLE, fail
from training.atomic import save_keras_atomic, write_json_atomic
from training.cluster import TF_CONFIG, Cluster, parse_tf_config
from training.engines import keras_optimizer
from training.mnist_files import DataError

EVAL_ROWS_PER_REPLICA = 1024  # validation batch per replica (sums, so it does not change the figures)
CLIPPING = ("clipnorm", "clipvalue", "global_clipnorm")
PROBE_TIMEOUT_S = 3.0  # asking a peer whether it is alive, after a collective failed
LINGER_S = PROBE_TIMEOUT_S + 1  # a worker that saw a collective fail stays up this long before exiting


class ClippingRefused(ValueError):
    """Gradient clipping asked for in a distributed run."""


class SetupError(ValueError):
    """The strategy cannot be set up as asked (status 2, one line)."""


# =============================================================================
# The strategy
# =============================================================================
def make_strategy(args, cluster: Cluster | None = None):
    """``MirroredStrategy`` over ``args.replicas`` devices (the first GPUs, else logical CPU devices,
    configured here: this must run before TensorFlow initialises), or ``MultiWorkerMirroredStrategy``
    for the TF_CONFIG cluster with ``--comm-timeout`` on every collective. The latter's constructor
    waits for every worker to start (without a time limit, as TensorFlow does)."""
    if args.strategy == "mirrored":
        return tf.distribute.MirroredStrategy(local_devices(args.replicas))
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=args.comm_timeout)
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def local_devices(replicas: int) -> list[str]:
    """The names of ``replicas`` devices of this machine: its first GPUs, or logical CPU devices."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if replicas > len(gpus):
            raise SetupError(f"--replicas {replicas} but this machine has {len(gpus)} GPU(s)")
        return [f"/gpu:{i}" for i in range(replicas)]
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
    except RuntimeError as exc:  # TensorFlow already initialised: too late to split the CPU
        raise SetupError(f"cannot create {replicas} logical CPU devices: {exc}") from None
    return [f"/cpu:{i}" for i in range(replicas)]


def split(rows: int, replicas: int) -> list[int]:
    """Rows per replica of a batch of ``rows``: as even as possible, the first ones one more
    (what ``DistributedEngine`` does inside its step)."""
    base, extra = divmod(rows, replicas)
    return [base + (i < extra) for i in range(replicas)]


# =============================================================================
# The trainer and the refusals
# =============================================================================
def refuse_clipping(optimizer) -> None:
    """ClippingRefused if ``optimizer`` clips gradients: under a strategy Keras clips each replica's
    partial gradient, before the all-reduce, which is not clipping the batch's gradient."""
    clipping = {name: getattr(optimizer, name, None) for name in CLIPPING}
    clipping = {name: value for name, value in clipping.items() if value is not None}
    if clipping:
        settings = ", ".join(f"{name}={value}" for name, value in clipping.items())
        raise ClippingRefused(f"gradient clipping ({settings}) cannot be distributed: Keras would clip each "
                              "replica's partial gradient before the all-reduce, not the batch's gradient")


def new_trainer(args, steps_per_epoch: int, **optimizer_kwargs) -> keras.Model:
    """The logits model compiled with our loss and optimizer, as ``KerasEngine`` makes it (same
    initial weights, same cosine schedule over ``epochs * steps_per_epoch`` steps). Call it inside
    ``strategy.scope()``. ``optimizer_kwargs`` go to the optimizer; clipping ones are refused."""
    optimizer = keras_optimizer(args, steps_per_epoch, **optimizer_kwargs)
    refuse_clipping(optimizer)
    return compile_for_training(build_model(args.sizes, args.activation, args.seed), optimizer, loss=args.loss)


def _sums_variable():
    """``[loss sum, correct, rows]``, one copy per replica, summed over all of them when read."""
    return tf.Variable(tf.zeros(3), trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                       aggregation=tf.VariableAggregation.SUM)


# =============================================================================
# The engine: one step for both strategies
# =============================================================================
class DistributedEngine:
    """The engine interface of ``training/engines.py`` (``train_epoch``, ``learning_rate``,
    ``save_checkpoint``, ``probabilities_model``) over ``strategy``.

    ``make_trainer()`` is called inside ``strategy.scope()`` and returns a compiled logits model
    (``new_trainer``, a loaded checkpoint, or in tests ``compile_for_training(from_numpy(...))``).
    ``batch_size`` is the global batch. After each epoch, ``replica_rows`` holds, per step, the rows
    each of this process's replicas trained on.
    """

    def __init__(self, strategy, make_trainer, batch_size: int, epochs: int = 1, verbose: bool = True):
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        self.batch_size, self.epochs, self.verbose = batch_size, epochs, verbose
        if batch_size % self.replicas:
            raise SetupError(f"--batch-size {batch_size} does not split evenly over {self.replicas} replicas")
        with strategy.scope():
            self.trainer = make_trainer()
            refuse_clipping(self.trainer.optimizer)
            # keras-team/keras#23085: the optimizer's variables are made here, mirrored, before the first step
            self.trainer.optimizer.build(self.trainer.trainable_variables)
            self._train_sums = _sums_variable()
            self._val_sums = _sums_variable()
        self.loss = self.trainer.loss
        width = self.trainer.input_shape[-1]
        spec = [tf.TensorSpec((None, width), tf.float32), tf.TensorSpec((None,), tf.int64)]
        # One trace each, whatever the batch's length (a short last batch does not retrace: under
        # MultiWorkerMirroredStrategy every worker must launch the same collectives in the same order).
        self._train_step = tf.function(self._distributed_train_step, input_signature=spec)
        self._eval_step = tf.function(self._distributed_eval_step, input_signature=spec)
        self.replica_rows: list[list[int]] = []

    # ---- inside the step (replica context) -----------------------------------------------------
    @staticmethod
    def _share(x, y):
        """This replica's contiguous share of the global batch ``(x, y)`` (see ``split``)."""
        context = tf.distribute.get_replica_context()
        replicas = context.num_replicas_in_sync
        replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
        rows = tf.shape(x)[0]
        base, extra = rows // replicas, rows % replicas
        start = replica * base + tf.minimum(replica, extra)
        size = base + tf.cast(replica < extra, tf.int32)
        return x[start:start + size], y[start:start + size]

    def _sums(self, y, logits):
        """``[sum of the rows' losses, correct predictions, rows]`` of one replica's share."""
        per_row = self.loss.call(y, logits)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), y), tf.float32))
        return per_row, tf.stack([tf.reduce_sum(per_row), correct, tf.cast(tf.shape(y)[0], tf.float32)])

    def _distributed_train_step(self, x, y):
        global_rows = tf.cast(tf.shape(x)[0], tf.float32)

        def step(x, y):
            x, y = self._share(x, y)
            variables = self.trainer.trainable_variables
            with tf.GradientTape() as tape:
                logits = self.trainer(x, training=True)
                per_row, sums = self._sums(y, logits)
                # this replica's part of the global batch's mean: summed over the replicas by the all-reduce
                loss = tf.reduce_sum(per_row) / global_rows
            gradients = tape.gradient(loss, variables)
            self.trainer.optimizer.apply_gradients(zip(gradients, variables))
            self._train_sums.assign_add(sums)
            return tf.shape(x)[0]

        return self.strategy.run(step, args=(x, y))

    def _distributed_eval_step(self, x, y):
        def step(x, y):
            x, y = self._share(x, y)
            _, sums = self._sums(y, self.trainer(x, training=False))
            self._val_sums.assign_add(sums)

        self.strategy.run(step, args=(x, y))

    # ---- the engine interface ------------------------------------------------------------------
    def train_epoch(self, x, y, validation, epoch: int) -> dict:
        """One pass over ``(x, y)`` in order, in global batches of ``batch_size`` (the last one may be
        shorter), then the validation set; returns loss, accuracy and val_loss/val_accuracy."""
        started = time.perf_counter()
        steps = math.ceil(len(y) / self.batch_size)
        self._train_sums.assign(tf.zeros(3))
        self.replica_rows = []
        if self.verbose:
            print(f"Epoch {epoch + 1}/{self.epochs}", flush=True)
        for step in range(steps):
            rows = slice(step * self.batch_size, (step + 1) * self.batch_size)
            shares = self._train_step(x[rows], y[rows])
            self.replica_rows.append([int(n) for n in self.strategy.experimental_local_results(shares)])
        logs = self._logs(self._train_sums, len(y), "")
        if len(validation[0]):
            logs.update(self.evaluate(*validation))
        seconds = time.perf_counter() - started
        if self.verbose:
            figures = " - ".join(f"{key}: {value:.4f}" for key, value in logs.items())
            print(f"{steps}/{steps} - {seconds:.0f}s - {1000 * seconds / steps:.0f}ms/step - {figures}", flush=True)
        return logs

    def evaluate(self, x, y) -> dict:
        """``val_loss`` and ``val_accuracy`` of ``(x, y)``, computed over the replicas."""
        self._val_sums.assign(tf.zeros(3))
        batch = EVAL_ROWS_PER_REPLICA * self.replicas
        for start in range(0, len(y), batch):
            self._eval_step(x[start:start + batch], y[start:start + batch])
        return self._logs(self._val_sums, len(y), "val_")

    def _logs(self, sums, expected_rows: int, prefix: str) -> dict:
        """Mean loss and accuracy from summed ``sums`` (one all-reduce), checking that every row was
        counted exactly once over all replicas and workers."""
        loss_sum, correct, rows = (float(v) for v in sums.read_value().numpy())
        if rows != expected_rows:
            raise RuntimeError(f"the replicas saw {rows:.0f} rows in all, expected {expected_rows}")
        return {f"{prefix}loss": loss_sum / rows, f"{prefix}accuracy": correct / rows}

    def learning_rate(self) -> float:
        """The optimizer's learning rate now (after the schedule's latest step)."""
        return float(keras.ops.convert_to_numpy(self.trainer.optimizer.learning_rate))

    def save_checkpoint(self, path: Path) -> None:
        """Model, compiled loss and optimizer state, as ``KerasEngine`` saves them (so a run can be
        resumed with or without a strategy)."""
        save_keras_atomic(self.trainer, path)

    def probabilities_model(self) -> keras.Model:
        """A plain probabilities model (outside the strategy) with the trained weights."""
        return from_numpy(to_numpy(self.trainer))


# =============================================================================
# The run: train.py's steps, the writes by the chief only
# =============================================================================
@dataclass
class Role:
    """Who this process is: the strategy, the cluster (multi-worker), whether it writes the run."""
    strategy: object
    cluster: Cluster | None = None
    devices: list[str] = field(default_factory=list)

    @property
    def chief(self) -> bool:
        return self.cluster is None or self.cluster.is_chief

    @property
    def name(self) -> str:
        return "this process" if self.cluster is None else self.cluster.name(self.cluster.rank)


def run(args) -> int:
    """``train.py``'s steps (load data -> start or resume -> train epochs -> evaluate and report ->
    export) under ``--strategy``; the exit status. Called by ``train.main`` after the arguments are
    checked (``training/cluster.py``)."""
    from training import train as steps  # its steps; imported here, as train.py imports this module lazily

    cluster = parse_tf_config(os.environ.get(TF_CONFIG)) if args.strategy == "multi-worker" else None
    try:
        role = Role(make_strategy(args, cluster), cluster)
    except SetupError as exc:
        return fail(str(exc), status=2)
    replicas = role.strategy.num_replicas_in_sync
    role.devices = list(role.strategy.extended.worker_devices)
    if args.batch_size % replicas:  # multi-worker with several GPUs per worker: known only now
        return fail(f"--batch-size {args.batch_size} does not split evenly over {replicas} replicas", status=2)
    try:
        data = steps.load_data(args)
    except DataError as exc:
        return fail(str(exc), status=2)
    if cluster is None:
        return _train_and_report(args, role, data, steps)
    try:
        return _train_and_report(args, role, data, steps)
    except tf.errors.OpError as error:
        # A collective failed: a worker died, hung or restarted. Name it, then leave at once (after a
        # failed collective, TensorFlow's runtime may not shut down cleanly).
        fail(lost_worker_message(role, error, _completed_epochs(args)), status=1)
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(LINGER_S)  # still answering, so that peers asking who is lost do not count this one
        os._exit(1)


def _train_and_report(args, role: Role, data, steps) -> int:
    """Train on every worker; then, on the chief only, evaluate, export and write metrics.json. ``steps``
    is training/train.py, whose steps this follows."""
    from training.engines import make_reproducible

    make_reproducible(args.seed)
    start_epoch, checkpoint, rows = _resume_point(args, role, steps)
    try:
        engine = _start_engine(args, role, data, steps, start_epoch, checkpoint)
    except (ClippingRefused, SetupError) as exc:
        return fail(f"{exc}{f' (checkpoint {checkpoint})' if checkpoint else ''}", status=2)
    if role.chief:
        (args.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        if not args.resume:
            write_json_atomic(args.run_dir / "args.json", vars(args))
    description = describe(args, role, len(data.fit[1]))
    _print_start(args, data, steps, description, start_epoch)
    _train_epochs(args, role, engine, data, steps, start_epoch, rows)
    if not role.chief:
        print(f"{role.name}: trained to epoch {args.epochs}; the chief ({role.cluster.name(0)}) writes the run "
              "files and the export")
        return 0
    return _evaluate_and_export(args, engine.probabilities_model(), data, steps, rows, description)


def _resume_point(args, role: Role, steps) -> tuple[int, Path | None, list[dict]]:
    """train.py's ``resume_point``, for every worker from the shared run folder: the chief's last
    complete checkpoint; the history rows for the chief only (it alone writes history.csv)."""
    start_epoch, checkpoint, rows = steps.resume_point(args)
    return start_epoch, checkpoint, rows if role.chief else []


def _start_engine(args, role: Role, data, steps, start_epoch: int, checkpoint: Path | None) -> DistributedEngine:
    """The engine on a new trainer or the checkpoint's; in a cluster, the workers' agreement checked
    first. Raises ``ClippingRefused`` or ``SetupError``."""
    steps_per_epoch = steps.steps_per_epoch(args, data)

    def make_trainer():
        if checkpoint is not None:
            return keras.saving.load_model(checkpoint)
        return new_trainer(args, steps_per_epoch)

    engine = DistributedEngine(role.strategy, make_trainer, args.batch_size, args.epochs)
    if role.cluster is not None:
        check_agreement(role, args, data, start_epoch)
    return engine


def _print_start(args, data, steps, description: dict, start_epoch: int) -> None:
    """What is trained, on what, and how it is distributed."""
    if args.resume:
        print(f"Resuming {args.run_dir} after epoch {start_epoch} of {args.epochs}")
    steps.print_plan(args, data)
    print(description["text"], flush=True)


def _train_epochs(args, role: Role, engine: DistributedEngine, data, steps, start_epoch: int,
                  rows: list[dict]) -> None:
    """Every worker trains each epoch; the chief alone then records it as train.py does."""
    tensorboard = tf.summary.create_file_writer(str(args.run_dir / "tensorboard")) if role.chief else None
    with steps.epoch_prefetcher(args, data) as prefetcher:
        for epoch in range(start_epoch, args.epochs):
            row = steps.train_one_epoch(args, engine, data, epoch, prefetcher)
            if role.chief:
                steps.record_epoch(args, engine, rows, row, tensorboard)


def _evaluate_and_export(args, model, data, steps, rows: list[dict], description: dict) -> int:
    """The chief's end of the run: evaluation and report, the export (unless ``--no-export``), metrics.json
    with the distribution described, the summary. 1 if the export failed."""
    metrics = steps.evaluate_and_report(args, model, data, rows)
    metrics["distributed"] = {key: value for key, value in description.items() if key != "text"}
    if not args.no_export:
        exported = steps.export(args, model, data, metrics)
        if exported is None:
            return 1
        metrics["export"] = exported
    write_json_atomic(args.run_dir / "metrics.json", metrics)
    steps.print_summary(args, metrics)
    return 0


def describe(args, role: Role, fit_rows: int) -> dict:
    """What the run does, for its output and metrics.json: strategy, replicas, devices, workers, the
    rows per replica, and how the last (short) batch of an epoch is handled."""
    replicas = role.strategy.num_replicas_in_sync
    last = fit_rows % args.batch_size
    workers = 1 if role.cluster is None else role.cluster.size
    info = {"strategy": args.strategy, "replicas": replicas, "workers": workers,
            "devices": role.devices, "global_batch": args.batch_size, "rows_per_replica": args.batch_size // replicas,
            "steps_per_epoch": math.ceil(fit_rows / args.batch_size),
            "last_batch": {"rows": last or args.batch_size, "split": split(last or args.batch_size, replicas)}}
    where = (f"{replicas} replicas ({', '.join(role.devices)}) in one process" if role.cluster is None else
             f"{workers} workers, {replicas} replicas; this is {role.name}"
             + (", the chief: it writes the run files and the export" if role.chief else
                ", not the chief: it writes nothing"))
    text = (f"Distributed ({args.strategy}): {where}. Global batch {args.batch_size} = {replicas} x "
            f"{args.batch_size // replicas} rows.")
    if last:
        text += (f" The last batch of each epoch has {last} rows: split {' + '.join(map(str, split(last, replicas)))} "
                 f"over the replicas, each replica's loss summed and divided by {last}, so its gradient is the one "
                 "of one process (nothing dropped).")
    info["text"] = text
    return info


def fingerprint(args, data) -> int:
    """A 32-bit digest of what must be equal on every worker: the arguments that shape training (those
    a resumed run restores, less where the chief exports) and the labels."""
    keys = sorted(set(RESUMABLE) - {"export_dir", "no_export"})
    settings = json.dumps({key: getattr(args, key) for key in keys}, sort_keys=True, default=str)
    return zlib.crc32(data.fit[1].tobytes(), zlib.crc32(data.validation[1].tobytes(), zlib.crc32(settings.encode())))


def check_agreement(role: Role, args, data, start_epoch: int) -> None:
    """One all-gather at the start: every worker must resume from the same epoch, with the same
    arguments and data (else the run would hang, or train on a mix). SetupError names the problem."""
    digest = fingerprint(args, data)
    mine = tf.constant([[start_epoch, digest >> 16, digest & 0xFFFF]], tf.float32)  # exact in float32
    values = role.strategy.experimental_distribute_values_from_function(lambda context: mine)
    everyone = role.strategy.gather(values, axis=0).numpy()  # one row per replica, in replica order
    if len({row[0] for row in everyone}) > 1:
        raise SetupError(f"the workers would resume from different epochs ({sorted({int(r[0]) for r in everyone})}; "
                         f"this is {role.name}, at {start_epoch}): --run-dir must be one folder shared by every "
                         "worker, and every worker must be given --resume")
    if len({tuple(row[1:]) for row in everyone}) > 1:
        raise SetupError(f"the workers were not given the same arguments or data (this is {role.name}): start "
                         "every worker with the same command line and data")


# =============================================================================
# A lost worker
# =============================================================================
def lost_worker_message(role: Role, error: Exception, completed_epochs: int) -> str:
    """One line: which worker was lost (asking every peer), what failed, and how to go on."""
    cluster = role.cluster
    lost = [rank for rank in range(cluster.size) if rank != cluster.rank and not peer_alive(cluster, rank)]
    summary = cause(error)
    what = (f"lost {', '.join(cluster.name(rank) for rank in lost)}: "
            f"{'it no longer answers' if len(lost) == 1 else 'they no longer answer'}" if lost else
            "a collective operation failed but every other worker still answers (one may have restarted or hung)")
    return (f"{role.name}: {what} ({type(error).__name__}: {summary}); stopping. The run folder keeps its last "
            f"complete checkpoint (epoch {completed_epochs}): start every worker again with --resume")


def cause(error: Exception) -> str:
    """The informative part of a failed collective's error, on one line: e.g. "recvmsg:Connection
    reset by peer" or "Collective has timed out during execution" (not "Graph execution error:")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Collective") or "timed out" in line:
            return re.sub(r"^(Collective ops is aborted by: )+", "", re.sub(r"\{\{[^}]*\}\}\s*", "", line))[:200]
    return re.sub(r"\{\{[^}]*\}\}\s*", "", lines[0])[:200] if lines else "no message"


def peer_alive(cluster: Cluster, rank: int) -> bool:
    """Whether task ``rank`` still answers: TensorFlow's collective health check (which also tells a
    restarted task from the original), else a TCP connection to its address."""
    from tensorflow.python.eager import context  # the call TensorFlow's own health check thread makes

    try:
        context.context().check_collective_ops_peer_health(cluster.device_name(rank),
                                                           timeout_in_ms=int(PROBE_TIMEOUT_S * 1000))
        return True
    except (tf.errors.UnavailableError, tf.errors.FailedPreconditionError, tf.errors.DeadlineExceededError):
        return False
    except Exception:  # noqa: BLE001 - the check itself is unusable here: fall back to TCP
        host, _, port = cluster.tasks[rank][2].rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
                return True
        except OSError:
            return False


def _completed_epochs(args) -> int:
    """The epoch of the run's last complete checkpoint (0 if none)."""
    from training.train import latest_checkpoint

    return latest_checkpoint(args.run_dir / "checkpoints")[0]
