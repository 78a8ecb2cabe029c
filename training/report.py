"""What a training run leaves behind for people: history.csv and four matplotlib figures (training
curves, confusion matrix, misclassified test images, one digit under the run's augmentation).

Every file is written to a temporary path beside its destination and renamed into place, so a run
killed at any moment leaves either the previous complete file or the new one.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from training.atomic import write_bytes_atomic

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds",
                   "data_seconds", "data_wait_seconds")
MISCLASSIFIED_SHOWN = 48  # misclassified.png: the 48 most confident mistakes, 8 per row


# --------------------------------------------------------------------- history ----
def write_history_csv(path, rows: list[dict]) -> None:
    """One row per completed epoch, columns ``HISTORY_COLUMNS``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_bytes_atomic(path, buffer.getvalue().encode())


def read_history_csv(path) -> list[dict]:
    """The rows ``write_history_csv`` wrote (``epoch`` an int, the rest floats, an empty cell NaN: a
    column added after the row was written); [] if there is no file."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v) if v else float("nan")) for k, v in row.items()}
                for row in csv.DictReader(f)]


# ----------------------------------------------------------------------- plots ----
def _pyplot():
    """matplotlib's pyplot, drawing to files only (the Agg backend: no display needed)."""
    import matplotlib  # here, not at the top: half a second to import, and train.py --help imports this module

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_figure(fig, path) -> None:
    """``fig`` as a PNG at ``path``, written atomically."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    write_bytes_atomic(path, buffer.getvalue())


def plot_training_curves(rows: list[dict], path, title: str = "") -> None:
    """Loss and accuracy (train and validation) and the learning rate, per epoch."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (ax_loss, ax_acc, ax_lr) = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, label in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        ax.plot(epochs, [r[key] for r in rows], marker=".", label=f"train {label}")
        val = [r[f"val_{key}"] for r in rows]
        if not all(np.isnan(val)):
            ax.plot(epochs, val, marker=".", label=f"validation {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    ax_loss.set_yscale("log")
    ax_lr.plot(epochs, [r["learning_rate"] for r in rows], marker=".", color="tab:green")
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate (end of epoch)")
    ax_lr.grid(alpha=0.3)
    fig.suptitle(title)
    _save_figure(fig, path)
    plt.close(fig)


def plot_confusion_matrix(confusion: np.ndarray, path, title: str = "") -> None:
    """Counts per (true, predicted) class, with the off-diagonal errors readable."""
    plt = _pyplot()
    classes = confusion.shape[0]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(np.log1p(confusion), cmap="Blues")
    for true in range(classes):
        for predicted in range(classes):
            ax.text(predicted, true, str(confusion[true, predicted]), ha="center", va="center", fontsize=7,
                    color="white" if true == predicted else "black")
    ax.set_xticks(range(classes))
    ax.set_yticks(range(classes))
    ax.set_xlabel("predicted digit")
    ax.set_ylabel("true digit")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    _save_figure(fig, path)
    plt.close(fig)


def plot_misclassified(x: np.ndarray, y: np.ndarray, probabilities: np.ndarray, path, title: str = "",
                       limit: int = MISCLASSIFIED_SHOWN) -> None:
    """The images the model gets wrong (``argmax probabilities != y``), worst first: by decreasing
    confidence ``max_k p_k`` in the wrong prediction, at most ``limit`` of them, 8 per row, each titled
    ``label -> prediction (confidence)``."""
    plt = _pyplot()
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != y)
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][:limit]
    columns = 8
    rows = max(1, -(-len(shown) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.35 * columns, 1.55 * rows + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, index in zip(axes.ravel(), shown):
        ax.imshow(x[index].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{y[index]} \u2192 {predicted[index]} ({confidence[index]:.0%})", fontsize=8,
                     color="tab:red")
    if not len(shown):
        axes[0, 0].text(0, 0.5, "no test image misclassified", fontsize=10)
    fig.suptitle(f"{title}\n{len(wrong)} of {len(y)} test images misclassified"
                 + (f"; the {len(shown)} most confident mistakes" if len(wrong) > len(shown) else "")
                 + ": label \u2192 prediction (confidence)", fontsize=9)
    _save_figure(fig, path)
    plt.close(fig)


def plot_augmentation(image: np.ndarray, variants: np.ndarray, path, title: str = "") -> None:
    """One digit as it is, then ``variants`` (k, 784): what the run's augmentation makes of it, 6 per row."""
    plt = _pyplot()
    images = [image, *variants]
    columns = 6
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.4 * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for number, (ax, picture) in enumerate(zip(axes.ravel(), images)):
        ax.imshow(np.asarray(picture).reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title("original" if number == 0 else f"#{number}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    _save_figure(fig, path)
    plt.close(fig)
