"""Keras's progress bar for a run that trains one epoch per call (so the numbering is the run's)."""

import sys

import keras


class EpochProgress(keras.callbacks.Callback):
    """Prints ``Epoch e/E`` and a ``keras.utils.Progbar`` over the epoch's steps: live on a terminal,
    one line per epoch otherwise (logs, CI). A callback of ``fit``; ``DistributedEngine`` calls the same
    three methods itself, without per-step figures (reading them each step would cost a
    synchronisation of every replica)."""

    def __init__(self, epoch: int, epochs: int, steps: int):
        super().__init__()
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.live = sys.stdout.isatty()

    def on_epoch_begin(self, epoch, logs=None):
        print(f"Epoch {self.epoch + 1}/{self.epochs}", flush=True)
        self.bar = keras.utils.Progbar(self.steps, verbose=1 if self.live else 2,
                                       stateful_metrics=["loss", "accuracy", "val_loss", "val_accuracy"])

    def on_train_batch_end(self, batch, logs=None):
        if self.live:
            self.bar.update(batch + 1, [(k, float(logs[k])) for k in ("loss", "accuracy") if k in (logs or {})])

    def on_epoch_end(self, epoch, logs=None):
        self.bar.update(self.steps, [(k, float(v)) for k, v in (logs or {}).items()], finalize=True)
