"""What produced a run, recorded in its metrics.json and its export's metadata: the code's commit, the
library versions, the data and the hyperparameters."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training import backends
from training.arguments import STRENGTHS
from training.mnist_files import mnist_checksums

REPO = Path(__file__).resolve().parents[1]


def git_commit() -> str | None:
    """The repository's HEAD commit, with ``-dirty`` if tracked files changed; None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def library_versions() -> dict:
    """The versions of Python, NumPy, TensorFlow and Keras, and of Keras's backend library if that is
    torch or JAX."""
    versions = {"python": platform.python_version(), "numpy": np.__version__, "tensorflow": tf.__version__,
                "keras": keras.__version__}
    backend = keras.backend.backend()
    if backend != "tensorflow":
        versions[backend] = backends.version(backend)
    return versions


def dataset_info(args, n_train: int, n_val: int, n_test: int) -> dict:
    """The dataset's name and split sizes, and for MNIST the SHA-256 of its four files."""
    info = {"name": args.dataset, "train": n_train, "validation": n_val, "test": n_test}
    if args.dataset == "mnist":
        info["sha256"] = mnist_checksums()
    return info


def hyperparameters(args) -> dict:
    """The arguments that shape training (for the export's metadata)."""
    return {"learning_rate": args.learning_rate, "schedule": args.schedule, "epochs": args.epochs,
            "batch_size": args.batch_size, "augment": args.augment,
            **{key: getattr(args, key) for key in STRENGTHS},
            "validation_fraction": args.validation_fraction, "seed": args.seed, "loss": args.loss,
            "engine": args.engine, "backend": args.backend}
