"""The engines ``train.py`` drives besides ``training.distributed.DistributedEngine``: Keras's ``fit``
(the torch and JAX backends) and the NumPy network; and what every Keras engine builds its model from.

Every engine takes the same epochs of data and gives the same things back: the epoch's logs, the
learning rate, a checkpoint file, and a Keras model of probabilities to evaluate and export. On the
TensorFlow backend the Keras mirror trains through ``DistributedEngine`` under every strategy, the
default one (one device) included: ``train.py``'s docstring says why, and ``bench/training_loop.py``
measures it against ``fit``.
"""

from __future__ import annotations

from pathlib import Path

import keras
from threadpoolctl import threadpool_limits

from model import numpy_optimizers
from model.keras_network import build_model, compile_for_training, from_numpy
from model.keras_optimizers import get as get_keras_optimizer
from model.numpy_network import NumpyNetwork
from training import backends
from training.atomic import save_keras_atomic
from training.progress import EpochProgress


BLAS_THREADS = 1  # the NumPy engine's; see NumpyEngine


def make_reproducible(seed: int) -> None:
    """Seed Python, NumPy and the Keras backend, and make the backend's ops deterministic (TensorFlow's
    op determinism, PyTorch's deterministic algorithms; see ``training/backends.py``): the same seed
    then gives the same weights, bit for bit."""
    backends.make_reproducible(seed)


def keras_optimizer(args, steps_per_epoch: int, **optimizer_kwargs):
    """Our Keras optimizer of ``args`` at ``--learning-rate``, with cosine decay over all
    ``epochs * steps_per_epoch`` steps if asked (``optimizer_kwargs`` go to the optimizer)."""
    learning_rate = args.learning_rate
    if args.schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=args.epochs * steps_per_epoch)
    return get_keras_optimizer(args.optimizer, learning_rate=learning_rate, **optimizer_kwargs)


def new_trainer(args, steps_per_epoch: int, jit_compile: bool = False, **optimizer_kwargs) -> keras.Model:
    """A freshly initialised logits model (``--sizes``, ``--activation``, ``--seed``) compiled with the
    loss and optimizer of ``args`` (``keras_optimizer``); ``jit_compile`` is ``fit``'s."""
    return compile_for_training(build_model(args.sizes, args.activation, args.seed),
                                keras_optimizer(args, steps_per_epoch, **optimizer_kwargs), loss=args.loss,
                                jit_compile=jit_compile)


class KerasEngine:
    """``ScratchDense`` layers trained through their logits with our Keras optimizer, by Keras's ``fit``:
    the loop of the torch and JAX backends, where there is no ``tf.distribute``.

    The engine interface (``NumpyEngine`` has the same): ``train_epoch`` trains one epoch and returns
    its logs (loss, accuracy and, with a validation set, val_loss and val_accuracy); ``learning_rate``
    is the current one; ``save_checkpoint`` writes a ``.keras`` file; ``probabilities_model`` is a
    Keras model of the weights that outputs probabilities, to evaluate and export.
    """

    def __init__(self, args, steps_per_epoch: int, checkpoint: Path | None = None):
        self.args = args
        self.steps_per_epoch = steps_per_epoch
        if checkpoint is not None:  # model, compiled loss and optimizer state, as they were
            self.trainer = keras.saving.load_model(checkpoint)
        else:  # always XLA on JAX
            self.trainer = new_trainer(args, steps_per_epoch, backends.jit_compile(keras.backend.backend(), args.jit))

    def train_epoch(self, x, y, validation, epoch: int) -> dict:
        """One pass over ``(x, y)`` in order (the caller shuffles), with Keras's progress bar."""
        history = self.trainer.fit(
            x, y, batch_size=self.args.batch_size, epochs=1, shuffle=False, verbose=0,
            validation_data=validation if len(validation[0]) else None,
            callbacks=[EpochProgress(epoch, self.args.epochs, self.steps_per_epoch)])
        return {k: float(v[-1]) for k, v in history.history.items()}

    def learning_rate(self) -> float:
        """The optimizer's learning rate now (after the schedule's latest step)."""
        return float(keras.ops.convert_to_numpy(self.trainer.optimizer.learning_rate))

    def save_checkpoint(self, path: Path) -> None:
        """Model, compiled loss and optimizer state: what ``--resume`` restarts from."""
        save_keras_atomic(self.trainer, path)

    def probabilities_model(self) -> keras.Model:
        """A fresh probabilities model with the trained weights."""
        model = build_model(self.args.sizes, self.args.activation, self.args.seed)
        model.set_weights(self.trainer.get_weights())
        return model


class NumpyEngine:
    """``NumpyNetwork`` with a NumPy optimizer; exported by copying its weights into the Keras model.

    It trains on one BLAS thread (``BLAS_THREADS``, for the whole process): the other core prepares the
    next epoch's augmented data (``training.augment.EpochPrefetcher``). With OpenBLAS's default of one
    thread per core, its threads spin waiting for a core that the augmentation or another process
    holds, and an epoch takes several times longer; with one thread it does not (``python -m
    bench.numpy_training --threads 1`` and ``--threads 2`` beside another busy process show it). One
    thread also makes the result independent of the core count.
    """

    def __init__(self, args, steps_per_epoch: int):
        self.args = args
        # for the rest of the process, set before the augmentation thread starts (OpenBLAS's thread count is
        # global, and changing it while another thread is inside a BLAS call is not safe)
        self.blas_limit = threadpool_limits(limits=BLAS_THREADS, user_api="blas")
        self.net = NumpyNetwork(args.sizes, args.activation, args.loss, args.seed)
        learning_rate = args.learning_rate
        if args.schedule == "cosine":
            learning_rate = numpy_optimizers.cosine_decay(learning_rate, args.epochs * steps_per_epoch)
        self.optimizer = numpy_optimizers.get(args.optimizer, learning_rate=learning_rate)

    def train_epoch(self, x, y, validation, epoch: int) -> dict:
        """One pass over ``(x, y)`` in order (the caller shuffles), then one summary line."""
        history = self.net.fit(x, y, epochs=1, batch_size=self.args.batch_size, optimizer=self.optimizer,
                               validation_data=validation if len(validation[0]) else None,
                               shuffle=False, verbose=False)
        logs = {k: v[-1] for k, v in history.items() if k != "seconds"}
        line = f"Epoch {epoch + 1}/{self.args.epochs} - loss: {logs['loss']:.4f} - accuracy: {logs['accuracy']:.4f}"
        if len(validation[0]):
            line += f" - val_loss: {logs['val_loss']:.4f} - val_accuracy: {logs['val_accuracy']:.4f}"
        print(line, flush=True)
        return logs

    def learning_rate(self) -> float:
        """The optimizer's learning rate now (after the schedule's latest step)."""
        return self.optimizer.current_learning_rate()

    def save_checkpoint(self, path: Path) -> None:
        """The weights, as a Keras model (no optimizer state: a NumPy run cannot be resumed)."""
        save_keras_atomic(self.probabilities_model(), path)  # weights only: no optimizer to resume

    def probabilities_model(self) -> keras.Model:
        """The Keras model with the NumPy network's weights copied in."""
        return from_numpy(self.net)
