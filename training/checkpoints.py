"""Where a run keeps its epochs: ``<run-dir>/checkpoints/epoch-NNN.keras`` (model, compiled loss and
optimizer state after epoch NNN) beside ``history.csv``, and the point a resumed run starts from.

The same files serve every engine and strategy, so a run can be resumed with or without a strategy.
"""

from __future__ import annotations

import re
from pathlib import Path

from training.report import read_history_csv


def checkpoint_path(folder: Path, epoch: int) -> Path:
    """``folder/epoch-NNN.keras``: the model and optimizer state after ``epoch`` (1-based) epochs."""
    return folder / f"epoch-{epoch:03d}.keras"


def latest_checkpoint(folder: Path) -> tuple[int, Path | None]:
    """``(epoch, path)`` of the highest-numbered ``epoch-N.keras`` in ``folder`` (numerically: 1000 after
    999), or ``(0, None)`` if there is none."""
    saved = [(int(match[1]), path) for path in folder.glob("epoch-*.keras")
             if (match := re.fullmatch(r"epoch-(\d+)\.keras", path.name))]
    return max(saved, default=(0, None))


def resume_point(args) -> tuple[int, Path | None, list[dict]]:
    """``(epochs done, checkpoint, history rows)``: ``(0, None, [])`` for a new run; with ``--resume``,
    the run's latest checkpoint and its history rows up to that epoch (a row written after that
    checkpoint is dropped, its epoch trained again)."""
    if not args.resume:
        return 0, None, []
    start_epoch, checkpoint = latest_checkpoint(args.run_dir / "checkpoints")
    rows = [row for row in read_history_csv(args.run_dir / "history.csv") if row["epoch"] <= start_epoch]
    return start_epoch, checkpoint, rows
