"""What a training run leaves behind for people: history.csv and two matplotlib figures.

Every file is written to a temporary path beside its destination and renamed into place, so a run
killed at any moment leaves either the previous complete file or the new one.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from training.atomic import write_bytes_atomic

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


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
    """The rows ``write_history_csv`` wrote (``epoch`` an int, the rest floats); [] if there is no file."""
    if not Path(path).exists():
        return []
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


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
