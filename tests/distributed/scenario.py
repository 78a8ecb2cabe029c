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


class Scenario:
    """A strategy (made first: TensorFlow must not start before it), the data, and what is recorded:
    ``weights`` keyed ``<optimizer>/<how>/<index>`` and the ``report``."""

    def __init__(self, args):
        from training.cluster import TF_CONFIG, parse_tf_config
        from training.distributed import make_strategy

        self.rank = parse_tf_config(os.environ[TF_CONFIG]).rank if args.mode == "multi-worker" else 0
        self.strategy = make_strategy(argparse.Namespace(strategy=args.mode, replicas=args.replicas,
                                                         comm_timeout=args.comm_timeout))
        data = np.load(args.data)
        self.images, self.labels, self.batch = data["x"], data["y"], args.batch
        self.weights: dict[str, np.ndarray] = {}
        self.report = {"rank": self.rank, "replicas": self.strategy.num_replicas_in_sync, "replica_rows": {},
                       "variables": {}, "fit_error": None}

    def new_trainer(self, name: str):
        """``from_numpy(NumpyNetwork(seed=0))`` compiled with optimizer ``name`` at train.py's default rate."""
        from model.keras_network import compile_for_training, from_numpy
        from model.numpy_network import NumpyNetwork
        from training.arguments import DEFAULT_LEARNING_RATES

        return compile_for_training(from_numpy(NumpyNetwork(seed=0)), name, DEFAULT_LEARNING_RATES[name])

    def record(self, key: str, model) -> None:
        self.weights.update({f"{key}/{index}": weight for index, weight in enumerate(model.get_weights())})

    def train_loop(self, name: str, rows: int, key: str):
        """One epoch on the first ``rows`` rows through ``DistributedEngine``; its weights recorded under
        ``key``; the engine."""
        from training.distributed import DistributedEngine

        engine = DistributedEngine(self.strategy, lambda: self.new_trainer(name), self.batch, verbose=False)
        no_validation = (self.images[:0], self.labels[:0])
        engine.train_epoch(self.images[:rows], self.labels[:rows], no_validation, 0)
        self.record(key, engine.trainer)
        return engine

    def fit(self, name: str, rows: int):
        """A new trainer made under the strategy, trained with ``model.fit`` on the first ``rows`` rows
        (raises what ``fit`` raises)."""
        with self.strategy.scope():
            model = self.new_trainer(name)
        model.fit(self.images[:rows], self.labels[:rows], batch_size=self.batch, shuffle=False, verbose=0)
        return model

    def write(self, out: Path) -> None:
        """``out/<rank>.npz`` and ``out/<rank>.json``."""
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / f"{self.rank}.npz", **self.weights)
        (out / f"{self.rank}.json").write_text(json.dumps(self.report, indent=1))


def variable_types(trainer) -> list[str]:
    """The kinds of the trainer's and its optimizer's variables: their value types, and whether distributed."""
    import tensorflow as tf

    return sorted({f"{type(variable.value).__name__}, "
                   f"distributed={isinstance(variable.value, tf.distribute.DistributedValues)}"
                   for variable in trainer.trainable_variables + trainer.optimizer.variables})


def main(argv=None) -> int:
    args = parse_args(argv)
    scenario = Scenario(args)
    mirrored, rows = args.mode == "mirrored", args.steps * args.batch
    for name in args.optimizers.split(","):
        engine = scenario.train_loop(name, rows, f"{name}/loop")
        scenario.report["replica_rows"][name] = engine.replica_rows
        scenario.report["variables"][name] = variable_types(engine.trainer)
        if mirrored:
            scenario.record(f"{name}/fit", scenario.fit(name, rows))
    if args.uneven:
        engine = scenario.train_loop("sgd", rows + args.uneven, "sgd/loop-uneven")
        scenario.report["replica_rows"]["sgd-uneven"] = engine.replica_rows
        if mirrored:
            scenario.record("sgd/fit-uneven", scenario.fit("sgd", rows + args.uneven))
    if args.mode == "multi-worker":
        try:
            scenario.fit("sgd", rows)
        except Exception as error:  # noqa: BLE001 - recorded: the test pins which error it is
            scenario.report["fit_error"] = f"{type(error).__name__}: {str(error)[:300]}"
    scenario.write(args.out)
    import keras

    keras.backend.clear_session()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
