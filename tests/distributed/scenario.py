"""One process of the equivalence tests (test_equivalence.py): trains the same starting weights with each
optimizer for a few global batches under a strategy, and writes what it saw.

    python -m tests.distributed.scenario --mode mirrored --replicas 2 --data d.npz --batch 128 --out DIR
    TF_CONFIG=... python -m tests.distributed.scenario --mode multi-worker --data d.npz --batch 128 --out DIR

Every optimizer starts from ``from_numpy(NumpyNetwork(seed=0))`` with train.py's default learning rate
(constant) and trains ``--steps`` global batches of ``--batch`` rows (the first rows of ``--data``)
through ``training.distributed.DistributedEngine``, the loop train.py uses. Mirrored mode also trains
the same batches through ``model.fit`` under the strategy, and with ``--uneven`` the loop and ``fit``
once more on ``steps * batch + uneven`` rows (a short last batch). Multi-worker mode then tries
``fit`` (which fails in Keras 3.15.1, keras-team/keras#20585) and records the error.

Writes ``OUT/<rank>.npz`` (weights, keyed ``<optimizer>/<how>/<index>``) and ``OUT/<rank>.json``: the
replicas in sync, the rows each local replica trained on per step, the types of the variables, the
fit error. ``rank`` is the worker's position in TF_CONFIG (0 without one).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("mirrored", "multi-worker"), required=True)
    parser.add_argument("--replicas", type=int, default=2, help="mirrored: logical CPU devices")
    parser.add_argument("--data", type=Path, required=True, help="npz with x (n, 784) float32 and y (n,) int64")
    parser.add_argument("--batch", type=int, required=True, help="the global batch")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--uneven", type=int, default=0, help="also train steps*batch + this many rows (SGD)")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--comm-timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from training.cluster import TF_CONFIG, parse_tf_config
    from training.distributed import make_strategy

    rank = parse_tf_config(os.environ[TF_CONFIG]).rank if args.mode == "multi-worker" else 0
    strategy = make_strategy(argparse.Namespace(strategy=args.mode, replicas=args.replicas,
                                                comm_timeout=args.comm_timeout))
    import keras
    import tensorflow as tf

    from model.keras_network import compile_for_training, from_numpy
    from model.numpy_network import NumpyNetwork
    from training.arguments import DEFAULT_LEARNING_RATES
    from training.distributed import DistributedEngine

    data = np.load(args.data)
    x, y = data["x"], data["y"]
    rows = args.steps * args.batch
    no_validation = (x[:0], y[:0])
    weights, report = {}, {"rank": rank, "replicas": strategy.num_replicas_in_sync, "replica_rows": {},
                           "variables": {}, "fit_error": None}

    def trainer(name):
        return lambda: compile_for_training(from_numpy(NumpyNetwork(seed=0)), name, DEFAULT_LEARNING_RATES[name])

    def loop(name, n_rows):
        engine = DistributedEngine(strategy, trainer(name), args.batch, verbose=False)
        engine.train_epoch(x[:n_rows], y[:n_rows], no_validation, 0)
        return engine

    for name in args.optimizers.split(","):
        engine = loop(name, rows)
        weights.update({f"{name}/loop/{i}": w for i, w in enumerate(engine.trainer.get_weights())})
        report["replica_rows"][name] = engine.replica_rows
        report["variables"][name] = sorted({
            f"{type(v.value).__name__}, distributed={isinstance(v.value, tf.distribute.DistributedValues)}"
            for v in engine.trainer.trainable_variables + engine.trainer.optimizer.variables})
        if args.mode == "mirrored":
            with strategy.scope():
                fitted = trainer(name)()
            fitted.fit(x[:rows], y[:rows], batch_size=args.batch, shuffle=False, verbose=0)
            weights.update({f"{name}/fit/{i}": w for i, w in enumerate(fitted.get_weights())})

    if args.uneven:
        n_rows = rows + args.uneven
        engine = loop("sgd", n_rows)
        weights.update({f"sgd/loop-uneven/{i}": w for i, w in enumerate(engine.trainer.get_weights())})
        report["replica_rows"]["sgd-uneven"] = engine.replica_rows
        if args.mode == "mirrored":
            with strategy.scope():
                fitted = trainer("sgd")()
            fitted.fit(x[:n_rows], y[:n_rows], batch_size=args.batch, shuffle=False, verbose=0)
            weights.update({f"sgd/fit-uneven/{i}": w for i, w in enumerate(fitted.get_weights())})

    if args.mode == "multi-worker":
        with strategy.scope():
            fitted = trainer("sgd")()
        try:
            fitted.fit(x[:rows], y[:rows], batch_size=args.batch, shuffle=False, verbose=0)
        except Exception as error:  # noqa: BLE001 - recorded: the test pins which error it is
            report["fit_error"] = f"{type(error).__name__}: {str(error)[:300]}"

    args.out.mkdir(parents=True, exist_ok=True)
    np.savez(args.out / f"{rank}.npz", **weights)
    (args.out / f"{rank}.json").write_text(json.dumps(report, indent=1))
    keras.backend.clear_session()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
