"""Train the digit network, evaluate it on the official MNIST test set, and export a SavedModel.

    python training/train.py                                   # MNIST, our Keras mirror + our Adam
    python training/train.py --dataset digits --epochs 5       # offline 8x8 digits, seconds
    python training/train.py --engine numpy                    # the NumPy twin, same data and report
    python training/train.py --optimizer momentum --learning-rate 0.05 --epochs 10
    python training/train.py --resume --run-dir runs/20261128-210000   # continue a killed run
    python training/train.py --backend jax                     # the same Keras mirror on JAX (or torch)
    python training/train.py --strategy mirrored --replicas 2          # data parallel, docs/distributed.md
    MNIST_DATA_DIR=/path/to/mnist-idx-files python training/train.py   # offline machine

Defaults: 60 epochs, batch 256, Adam at 3e-3 with cosine decay, elastic distortions of alpha 34 and
sigma 5 prepared in a background thread, 10 % of the training set held out for validation; chosen on
the validation split (the README's Training section has what they reach). The test set is used once,
at the end; nothing is selected on it.

Every run is one sequence, ``main`` -> ``run``, nanoGPT-style: load data -> start or resume -> epochs ->
evaluate and report -> calibrate -> export -> metrics.json and summary, whatever the engine and strategy. Its two
flags: the engine (``make_engine``), and ``role.chief`` (``training/distributed.py``'s ``Role``):
always true but for the workers of a multi-worker run other than the chief, which train and write
nothing. On the TensorFlow backend the Keras engine is ``DistributedEngine`` under every strategy,
TensorFlow's default strategy for one device: it gives ``fit``'s weights bit for bit and an epoch in
less time (``bench/training_loop.py`` measures the two side by side), so one device needs no loop of
its own. ``fit`` (``KerasEngine``) trains on torch and JAX, which have no ``tf.distribute``; the NumPy
engine trains the NumPy network.

A run writes, in ``--run-dir`` (default ``runs/<UTC timestamp>``): ``args.json``, ``history.csv``,
``metrics.json``, ``training_curves.png``, ``confusion_matrix.png``, ``misclassified.png`` (the test
images the model gets wrong, worst first), ``augmentation.png`` (one digit under the run's
augmentation), ``tensorboard/`` and ``checkpoints/epoch-NNN.keras`` (model and optimizer state), and
exports the model to
``<export-dir>/<next version>/`` after checking that the reloaded export predicts what the trained
model predicts. Bad arguments exit with status 2 and one line, before any training.

``--backend`` (else ``KERAS_BACKEND``, else tensorflow) picks the Keras backend, set before anything
imports Keras (``training/backends.py``); a resumed run continues on its own. On torch and JAX the export
is written by a TensorFlow subprocess (``training/export_keras.py``): the same SavedModel either way.
TensorBoard logging uses ``tf.summary`` on every backend (TensorFlow is always installed).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.arguments import fail, parse_args
from training.atomic import write_json_atomic
from training.augment import Augmentation, EpochPrefetcher, examples
from training.checkpoints import checkpoint_path, resume_point
from training.data import load_dataset, train_validation_split
from training.mnist_files import DataError
from training.report import (plot_augmentation, plot_confusion_matrix, plot_misclassified, plot_training_curves,
                             write_history_csv)

# TensorFlow takes seconds to import, and reads TF_CPP_MIN_LOG_LEVEL when it does: the modules that use
# it (distributed, workers, engines, evaluation, provenance, export) are imported inside the steps that
# need them, after the arguments are checked, so that --help and bad arguments answer at once.
SUMMARY = __doc__.split("\n\n")[0]  # also the description shown by --help
SCALARS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")  # per epoch, to TensorBoard
AUGMENTATION_EXAMPLES = 23  # augmentation.png: the digit and 23 variants, a 4 x 6 grid


def main(argv=None) -> int:
    """Train, evaluate and export as the module docstring says; return the exit status."""
    args = parse_args(argv, description=SUMMARY)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hide TF's C++ start-up banner and tf.data notices
    # TensorFlow: imported after the arguments are checked (see the note at the imports)
    from training.distributed import SetupError, start_role
    from training.workers import exit_if_a_worker_is_lost

    try:
        role = start_role(args)  # first: a strategy's devices must be set before TensorFlow initialises
        data = load_data(args)
    except (SetupError, DataError) as exc:
        return fail(str(exc), status=2)
    with exit_if_a_worker_is_lost(role, args.run_dir):
        return run(args, role, data)


def run(args, role, data: "Data") -> int:
    """Start or resume, train the epochs; then, on the chief, evaluate and report, calibrate, export
    (unless ``--no-export``), write metrics.json and print the summary. The exit status: 2 if the engine is
    refused (nothing written), 1 if the export failed its check."""
    from training.distributed import ClippingRefused, SetupError, describe

    description = describe(args, role, len(data.fit[1])) if args.strategy != "none" else None
    try:
        engine, start_epoch, rows = start_or_resume(args, role, data, description)
    except (ClippingRefused, SetupError) as exc:
        return fail(str(exc), status=2)
    train_epochs(args, role, engine, data, start_epoch, rows)
    if not role.chief:
        print(f"{role.name}: trained to epoch {args.epochs}; the chief ({role.cluster.name(0)}) writes the run "
              "files and the export")
        return 0
    model = engine.probabilities_model()
    metrics = evaluate_and_report(args, model, data, rows)
    if description is not None:
        metrics["distributed"] = {key: value for key, value in description.items() if key != "text"}
    served = calibrate(model, data, metrics)
    if not args.no_export:
        exported = export(args, served, data, metrics)
        if exported is None:
            return 1  # the reloaded export failed its check (said on stderr): nothing was exported
        metrics["export"] = exported
    write_json_atomic(args.run_dir / "metrics.json", metrics)
    print_summary(args, metrics)
    return 0


# =============================================================================
# 1. Load data (the only way data enters: training/data.py)
# =============================================================================
@dataclass
class Data:
    """The images (float32, (n, 784)) and labels (int64) of a run, as (x, y) pairs: ``fit`` is trained
    on, ``validation`` measured after each epoch, ``test`` used once, at the end."""
    fit: tuple[np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]

    def sizes(self) -> tuple[int, int, int]:
        """The number of fit, validation and test images."""
        return len(self.fit[1]), len(self.validation[1]), len(self.test[1])


def load_data(args) -> Data:
    """``--dataset``'s official split, its training part cut to ``--limit-train`` images, then split
    (stratified, by ``--seed``) into fit and validation. Raises DataError if the data cannot be had."""
    (x_train, y_train), test = load_dataset(args.dataset, args.data_dir, seed=args.seed)
    if args.limit_train is not None:
        x_train, y_train = x_train[:args.limit_train], y_train[:args.limit_train]
    fit, validation = train_validation_split(x_train, y_train, args.validation_fraction, args.seed)
    return Data(fit, validation, test)


# =============================================================================
# 2. Start or resume
# =============================================================================
def start_or_resume(args, role, data: Data, description: dict | None):
    """Seed everything and build the engine (a resumed run's from its latest checkpoint; in a cluster,
    the workers' agreement checked); only then does the chief write: its ``checkpoints/`` folder and,
    for a new run, ``args.json``. Returns ``(engine, epochs already done, history rows)``; the history
    rows are the chief's only (it alone writes history.csv). Raises ``ClippingRefused`` or ``SetupError``
    (naming the checkpoint) with nothing written."""
    # TensorFlow: imported after the arguments are checked (see the note at the imports)
    from training.distributed import ClippingRefused, SetupError
    from training.engines import make_reproducible
    from training.workers import check_agreement

    make_reproducible(args.seed)
    start_epoch, checkpoint, rows = resume_point(args)
    try:
        engine = make_engine(args, role, steps_per_epoch(args, data), checkpoint)
        if role.cluster is not None:
            check_agreement(role, args, data, start_epoch)
    except (ClippingRefused, SetupError) as exc:
        raise type(exc)(f"{exc}{f' (checkpoint {checkpoint})' if checkpoint else ''}") from None
    if role.chief:
        (args.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        if not args.resume:
            write_json_atomic(args.run_dir / "args.json", vars(args))
    if args.resume:
        print(f"Resuming {args.run_dir} after epoch {start_epoch} of {args.epochs}")
    print_plan(args, data)
    if description is not None:
        print(description["text"], flush=True)
    return engine, start_epoch, rows if role.chief else []


def make_engine(args, role, steps: int, checkpoint: Path | None):
    """The engine of this run: the NumPy network; on TensorFlow, ``DistributedEngine`` over the role's
    strategy (the default one for one device); on torch and JAX, Keras's ``fit`` (``KerasEngine``)."""
    from training import distributed, engines

    if args.engine == "numpy":
        return engines.NumpyEngine(args, steps)
    if role.strategy is None:
        return engines.KerasEngine(args, steps, checkpoint)
    return distributed.make_engine(args, role.strategy, steps, checkpoint)


def print_plan(args, data: Data) -> None:
    """One line: the network, the data, the optimizer and the augmentation of this run."""
    n_fit, n_val, n_test = data.sizes()
    print(f"Training {args.engine} {'-'.join(map(str, args.sizes))} {args.activation} on {args.dataset} "
          f"(Keras backend {args.backend}): "
          f"{n_fit} train / {n_val} validation / {n_test} test images, {args.optimizer} "
          f"lr {args.learning_rate:g} ({args.schedule}), batch {args.batch_size}, {args.epochs} epochs, "
          f"augmentation {Augmentation.from_args(args).describe()}")


def steps_per_epoch(args, data: Data) -> int:
    """Gradient steps in one epoch: ceil(fit images / batch size)."""
    return math.ceil(len(data.fit[1]) / args.batch_size)


# =============================================================================
# 3. Train epochs
# =============================================================================
def train_epochs(args, role, engine, data: Data, start_epoch: int, rows: list[dict]) -> None:
    """Train from ``start_epoch`` to ``--epochs`` (each epoch's data from ``epoch_prefetcher``); the
    chief records each epoch as it ends (``record_epoch``)."""
    # TensorFlow: imported after the arguments are checked (see the note at the imports)
    import tensorflow as tf

    tensorboard = tf.summary.create_file_writer(str(args.run_dir / "tensorboard")) if role.chief else None
    with epoch_prefetcher(args, data) as prefetcher:
        for epoch in range(start_epoch, args.epochs):
            row = train_one_epoch(args, engine, data, epoch, prefetcher)
            if role.chief:
                record_epoch(args, engine, rows, row, tensorboard)


def epoch_prefetcher(args, data: Data) -> EpochPrefetcher:
    """Each epoch's data prepared in a background thread while the epoch before trains
    (``training.augment.EpochPrefetcher``: the same data as in line, a pure function of ``(seed, epoch)``)."""
    return EpochPrefetcher(*data.fit, args.seed, Augmentation.from_args(args), args.epochs)


def record_epoch(args, engine, rows: list[dict], row: dict, tensorboard) -> None:
    """After an epoch, in this order: ``row`` appended to ``rows`` and history.csv, the checkpoint saved,
    the scalars logged to ``tensorboard``. (History first: a run killed between the two writes resumes
    before that epoch and drops the extra row.)"""
    import tensorflow as tf

    rows.append(row)
    write_history_csv(args.run_dir / "history.csv", rows)
    engine.save_checkpoint(checkpoint_path(args.run_dir / "checkpoints", row["epoch"]))
    with tensorboard.as_default(step=row["epoch"]):
        for key in SCALARS:
            tf.summary.scalar(key, row[key])
    tensorboard.flush()


def train_one_epoch(args, engine, data: Data, epoch: int, prefetcher: EpochPrefetcher) -> dict:
    """Train epoch ``epoch`` (0-based) on its shuffled, augmented data (``training.augment.epoch_data``,
    prepared by ``prefetcher``); return its history row (NaN validation figures when there is no
    validation set). ``seconds``: the training; ``data_seconds``: computing the data;
    ``data_wait_seconds``: how long training waited for it."""
    prepared = prefetcher.get(epoch)
    started = time.perf_counter()
    logs = engine.train_epoch(prepared.x, prepared.y, data.validation, epoch)
    return {"epoch": epoch + 1, "loss": logs["loss"], "accuracy": logs["accuracy"],
            "val_loss": logs.get("val_loss", float("nan")), "val_accuracy": logs.get("val_accuracy", float("nan")),
            "learning_rate": engine.learning_rate(), "seconds": time.perf_counter() - started,
            "data_seconds": prepared.seconds, "data_wait_seconds": prepared.waited}


# =============================================================================
# 4. Evaluate on the official test set, and report
# =============================================================================
def evaluate_and_report(args, model, data: Data, rows: list[dict]) -> dict:
    """Evaluate ``model`` once on the test set, draw the training curves, the confusion matrix, the
    misclassified test images and one training digit under the run's augmentation, and return the run's
    metrics: test results, last validation figures, time, arguments, provenance."""
    # TensorFlow: imported after the arguments are checked (see the note at the imports)
    from training.backends import describe
    from training.evaluation import evaluate
    from training.provenance import dataset_info, git_commit, library_versions

    test, probabilities = evaluate(model, *data.test, args.loss, return_probabilities=True)
    title = (f"{args.engine} ({args.backend}) {'-'.join(map(str, args.sizes))} on {args.dataset}: "
             f"test accuracy {test['accuracy']:.2%}")
    plot_training_curves(rows, args.run_dir / "training_curves.png", title)
    plot_confusion_matrix(np.array(test["confusion_matrix"]), args.run_dir / "confusion_matrix.png", title)
    plot_misclassified(data.test[0], data.test[1], probabilities, args.run_dir / "misclassified.png", title)
    augmentation = Augmentation.from_args(args)
    digit = data.fit[0][0]  # the first training image of the split (the same for every engine and run of a seed)
    plot_augmentation(digit, examples(digit, augmentation, AUGMENTATION_EXAMPLES, args.seed),
                      args.run_dir / "augmentation.png", f"--augment {augmentation.describe()}")
    return {
        "test": test,
        "validation": {key: rows[-1][key] for key in ("val_loss", "val_accuracy")} if rows else {},
        "training_seconds": sum(row["seconds"] for row in rows),
        "data_seconds": total(rows, "data_seconds"),
        "data_wait_seconds": total(rows, "data_wait_seconds"),
        "epochs_completed": len(rows),
        "arguments": vars(args),
        "dataset": dataset_info(args, *data.sizes()),
        "versions": library_versions(),
        "backend": describe(args.backend),
        "git_commit": git_commit(),
    }


def total(rows: list[dict], key: str) -> float:
    """The sum of ``key`` over ``rows``, leaving out missing and NaN values (rows of a run resumed from
    before that column existed)."""
    return sum(value for row in rows if math.isfinite(value := row.get(key, float("nan"))))


# =============================================================================
# 5. Calibrate (temperature scaling on the validation split: training/calibration.py)
# =============================================================================
def calibrate(model, data: Data, metrics: dict):
    """Fit the temperature ``T`` on the validation split (1 without one), record it and the test set's
    calibration error before and after in ``metrics["calibration"]``, and return the model to export:
    ``model`` with ``softmax(logits / T)`` as its probabilities (the same classes)."""
    from training.calibration import calibrated_model, calibrate as fit_and_measure

    metrics["calibration"] = fit_and_measure(model, data.validation, data.test)
    return calibrated_model(model, metrics["calibration"]["temperature"])


# =============================================================================
# 6. Export
# =============================================================================
def export(args, model, data: Data, metrics: dict) -> dict | None:
    """Export ``model`` (the calibrated one) as the next version under ``--export-dir``, once the
    reloaded SavedModel is checked to predict what ``model`` predicts on the test images. Returns
    ``{"path", "version"}``, or None after printing why if that check failed (then nothing is exported).
    On torch and JAX a TensorFlow subprocess writes it (``training/export_keras.py``), checked against
    this backend's probabilities."""
    from training.provenance import hyperparameters

    test = metrics["test"]
    metadata = {"sizes": list(args.sizes), "activation": args.activation, "optimizer": args.optimizer,
                "hyperparameters": hyperparameters(args), "dataset": metrics["dataset"],
                "test_accuracy": test["accuracy"], "test_loss": test["loss"],
                "per_class_accuracy": test["per_class_accuracy"], "versions": metrics["versions"],
                "git_commit": metrics["git_commit"], "run_dir": str(args.run_dir), "backend": metrics["backend"],
                "calibration": metrics["calibration"]}
    if args.backend == "tensorflow":
        # TensorFlow: imported after the arguments are checked (see the note at the imports)
        from training.export import ExportVerificationError as ExportFailed, export_model, verify_export

        def write():
            return export_model(model, args.export_dir, metadata, verify=verify_export(model, data.test[0]))
    else:
        from training.export_keras import ExportFailed, export_through_tensorflow

        def write():
            return export_through_tensorflow(model, args.export_dir, metadata, data.test[0])
    try:
        path = write()
    except ExportFailed as exc:
        fail(f"{exc}; nothing was exported", status=1)
        return None
    return {"path": str(path), "version": int(path.name)}


# =============================================================================
# 7. Summary
# =============================================================================
def print_summary(args, metrics: dict) -> None:
    """The run's results in a few lines: test accuracy and loss, per class, time, calibration, where the
    files are."""
    from training.calibration import summary_line

    test = metrics["test"]
    print(f"\nTest accuracy {test['accuracy']:.2%}   test loss {test['loss']:.4f}   "
          f"({test['images']} images, {args.dataset})")
    print("Per-class accuracy: " + "  ".join(f"{digit}: {accuracy:.1%}"
                                             for digit, accuracy in enumerate(test["per_class_accuracy"])))
    print(f"Training time {metrics['training_seconds']:.1f} s for {metrics['epochs_completed']} epochs "
          f"(Keras backend {metrics['backend']['name']} {metrics['backend']['version']}); augmentation "
          f"{metrics['data_seconds']:.1f} s in a background thread, {metrics['data_wait_seconds']:.1f} s of it waited for")
    print(summary_line(metrics["calibration"]))
    print(f"Run files      {args.run_dir}/ (history.csv, metrics.json, training_curves.png, confusion_matrix.png, "
          f"misclassified.png, augmentation.png, tensorboard/, checkpoints/)")
    if "export" in metrics:
        print(f"SavedModel     {metrics['export']['path']} (version {metrics['export']['version']})")


if __name__ == "__main__":
    sys.exit(main())
