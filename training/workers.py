"""What only a multi-worker run needs besides the strategy (``training/distributed.py``): the workers'
agreement at the start, and a lost worker named, not waited for.

``--resume`` makes every worker load the chief's last complete checkpoint from the run folder, which
must therefore be on storage all workers see (a shared volume); the workers then check with one
all-gather that they agree on the epoch and the arguments (``check_agreement``). Collectives time out
after ``--comm-timeout`` seconds: a lost worker makes the others exit with status 1 and a line naming
it (found by asking each peer, as TensorFlow's own health check does), never hang
(``exit_if_a_worker_is_lost``). Nothing half-written is left: every file is written atomically and
the export only after training.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import time
import zlib
from contextlib import contextmanager

import tensorflow as tf

from training.arguments import RESUMABLE, fail
from training.checkpoints import latest_checkpoint
from training.cluster import Cluster
from training.distributed import Role, SetupError

PROBE_TIMEOUT_S = 3.0  # asking a peer whether it is alive, after a collective failed
LINGER_S = PROBE_TIMEOUT_S + 1  # a worker that saw a collective fail stays up this long before exiting


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


@contextmanager
def exit_if_a_worker_is_lost(role: Role, run_dir):
    """Around a multi-worker run: if a collective fails (a worker died, hung or restarted), print which
    worker was lost and how to go on, then leave at once with status 1 (after a failed collective,
    TensorFlow's runtime may not shut down cleanly). Does nothing without a cluster."""
    if role.cluster is None:
        yield
        return
    try:
        yield
    except tf.errors.OpError as error:
        fail(lost_worker_message(role, error, latest_checkpoint(run_dir / "checkpoints")[0]), status=1)
        sys.stdout.flush()
        sys.stderr.flush()
        time.sleep(LINGER_S)  # still answering, so that peers asking who is lost do not count this one
        os._exit(1)
