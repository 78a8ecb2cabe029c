"""The TensorFlow training loop of ``train.py`` under every ``tf.distribute`` strategy: TensorFlow's
default strategy (one device, ``--strategy none``), ``MirroredStrategy`` (``--strategy mirrored``) and
``MultiWorkerMirroredStrategy`` (``--strategy multi-worker``).

One training loop serves every strategy (``DistributedEngine``), because ``model.fit`` cannot:

- ``fit`` works under ``MirroredStrategy`` but fails under ``MultiWorkerMirroredStrategy`` in Keras
  3.15.1 (keras-team/keras#20585: a ValueError converting the ``PerReplica`` batch; pinned by
  tests/distributed), and under ``MirroredStrategy`` it gets an uneven last batch slightly wrong:
  each replica averages its own rows, so 19 + 18 rows are weighted 1/38 and 1/36 instead of 1/37.
- On one device the loop gives ``fit``'s weights bit for bit (tests/distributed/test_equivalence.py)
  and an epoch takes less time than ``fit``'s (``bench/training_loop.py``, side by side): ``fit``
  sets up its data adapter, callbacks and evaluation again at every call, and ``train.py`` calls it
  once per epoch. So one device needs no second loop on TensorFlow; ``fit`` stays only where there is
  no ``tf.distribute`` (the torch and JAX backends, ``training/engines.py``).
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
  our ``update_step`` on each device's copy. Gradient clipping over several replicas is refused
  (``refuse_clipping``): Keras would clip each replica's partial gradient before that sum.
- Training and validation loss and accuracy are summed per replica in sync-on-read variables and
  all-reduced once per epoch, not once per step.

Multi-worker: only the chief (``training/cluster.py``) writes the run folder and the export
(``Role.chief``, which ``train.py`` checks); ``training/workers.py`` has what only a cluster needs
(the workers' agreement at the start, naming a lost worker).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from model.keras_network import from_numpy, to_numpy
from training import engines
from training.atomic import save_keras_atomic
from training.cluster import TF_CONFIG, Cluster, parse_tf_config
from training.progress import EpochProgress

EVAL_ROWS_PER_REPLICA = 1024  # validation batch per replica (sums, so it does not change the figures)
CLIPPING = ("clipnorm", "clipvalue", "global_clipnorm")


class ClippingRefused(ValueError):
    """Gradient clipping asked for in a distributed run."""


class SetupError(ValueError):
    """The strategy cannot be set up as asked (status 2, one line)."""


# =============================================================================
# Who this process is, and its strategy
# =============================================================================
@dataclass
class Role:
    """This process in the run: its strategy (None where there is no ``tf.distribute``: the torch and
    JAX backends, the NumPy engine), its cluster (multi-worker only), and whether it writes the run."""
    strategy: object | None
    cluster: Cluster | None = None
    devices: list[str] = field(default_factory=list)

    @property
    def chief(self) -> bool:
        """Whether this process writes the run folder and the export: always, but in a cluster."""
        return self.cluster is None or self.cluster.is_chief

    @property
    def name(self) -> str:
        return "this process" if self.cluster is None else self.cluster.name(self.cluster.rank)


def start_role(args) -> Role:
    """This process's ``Role``: ``--strategy none`` is TensorFlow's default strategy when the Keras
    engine trains on TensorFlow (else no strategy); mirrored and multi-worker are made here, before
    anything initialises TensorFlow. SetupError if they cannot be, or the batch does not split."""
    if args.strategy == "none":
        on_tensorflow = args.engine == "keras" and args.backend == "tensorflow"
        return Role(tf.distribute.get_strategy() if on_tensorflow else None)
    cluster = parse_tf_config(os.environ.get(TF_CONFIG)) if args.strategy == "multi-worker" else None
    role = Role(make_strategy(args, cluster), cluster)
    role.devices = list(role.strategy.extended.worker_devices)
    replicas = role.strategy.num_replicas_in_sync
    if args.batch_size % replicas:  # multi-worker with several GPUs per worker: known only now
        raise SetupError(f"--batch-size {args.batch_size} does not split evenly over {replicas} replicas")
    return role


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
    """``engines.new_trainer``: the logits model compiled with our loss and optimizer, as ``KerasEngine``
    makes it (same initial weights, same cosine schedule over ``epochs * steps_per_epoch`` steps). Call
    it inside ``strategy.scope()``. ``optimizer_kwargs`` go to the optimizer; clipping ones are refused."""
    trainer = engines.new_trainer(args, steps_per_epoch, **optimizer_kwargs)
    refuse_clipping(trainer.optimizer)
    return trainer


def make_engine(args, strategy, steps_per_epoch: int, checkpoint: Path | None = None) -> "DistributedEngine":
    """``DistributedEngine`` over ``strategy`` on a new trainer, or on ``checkpoint``'s (a ``.keras``
    file of any engine and strategy); ``--jit`` compiles its steps with XLA."""
    def make_trainer():
        if checkpoint is not None:
            return keras.saving.load_model(checkpoint)
        return new_trainer(args, steps_per_epoch)

    return DistributedEngine(strategy, make_trainer, args.batch_size, args.epochs, jit_compile=args.jit)


def _sums_variable():
    """``[loss sum, correct, rows]``, one copy per replica, summed over all of them when read."""
    return tf.Variable(tf.zeros(3), trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                       aggregation=tf.VariableAggregation.SUM)


# =============================================================================
# The engine: one step for every strategy
# =============================================================================
class DistributedEngine:
    """The engine interface of ``training/engines.py`` (``train_epoch``, ``learning_rate``,
    ``save_checkpoint``, ``probabilities_model``) over ``strategy``.

    ``make_trainer()`` is called inside ``strategy.scope()`` and returns a compiled logits model
    (``new_trainer``, a loaded checkpoint, or in tests ``compile_for_training(from_numpy(...))``).
    ``batch_size`` is the global batch. ``jit_compile`` compiles the steps with XLA (``--jit``; Keras's
    ``fit`` ignores it while TensorFlow's op determinism is on, which ``train.py`` always turns on).
    After each epoch, ``replica_rows`` holds, per step, the rows each of this process's replicas
    trained on.
    """

    def __init__(self, strategy, make_trainer, batch_size: int, epochs: int = 1, verbose: bool = True,
                 jit_compile: bool = False):
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        self.batch_size, self.epochs, self.verbose = batch_size, epochs, verbose
        if batch_size % self.replicas:
            raise SetupError(f"--batch-size {batch_size} does not split evenly over {self.replicas} replicas")
        with strategy.scope():
            self.trainer = make_trainer()
            if self.replicas > 1:  # one replica's gradient is the batch's: clipping it is right
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
        self._train_step = tf.function(self._distributed_train_step, input_signature=spec, jit_compile=jit_compile)
        self._eval_step = tf.function(self._distributed_eval_step, input_signature=spec, jit_compile=jit_compile)
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
        steps = math.ceil(len(y) / self.batch_size)
        progress = EpochProgress(epoch, self.epochs, steps) if self.verbose else None
        self._train_sums.assign(tf.zeros(3))
        self.replica_rows = []
        if progress:
            progress.on_epoch_begin(epoch)
        for step in range(steps):
            rows = slice(step * self.batch_size, (step + 1) * self.batch_size)
            shares = self._train_step(x[rows], y[rows])
            self.replica_rows.append([int(n) for n in self.strategy.experimental_local_results(shares)])
            if progress:
                progress.on_train_batch_end(step)
        logs = self._logs(self._train_sums, len(y), "")
        if len(validation[0]):
            logs.update(self.evaluate(*validation))
        if progress:
            progress.on_epoch_end(epoch, logs)
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
# What the run does, for its output and metrics.json
# =============================================================================
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
