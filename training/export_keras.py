"""Export a model trained on any Keras backend to the same SavedModel, through a TensorFlow process.

The service loads plain TensorFlow SavedModels (``service/contract.py``) and never knows which backend
trained them. Keras 3.15's own ``model.export`` is not the way there from torch or JAX (on JAX it embeds
StableHLO in an ``XlaCallModule`` op and names the output ``output_0``; on torch it needs torch_xla).
Instead, the source process (torch or JAX)

1. saves the probabilities model as a ``.keras`` file (backend-neutral: weights and config),
2. computes its own probabilities on the verification images (the whole test set),
3. runs ``python -m training.export_keras MODEL.keras --export-dir DIR --inputs X.npy --expected P.npy
   --metadata META.json --result RESULT.json`` with ``KERAS_BACKEND=tensorflow``: that process loads the
   ``.keras`` file and writes the export with ``training/export.py``, whose check compares the reloaded
   SavedModel with the *source backend's* probabilities (same classes, max |diff| <= 1e-5) before the
   version is renamed into place.

``export_through_tensorflow`` does the source side; ``main`` is the TensorFlow side. A failure of the
subprocess (the check, a crash, a timeout) raises ``ExportFailed`` with its reason: nothing is
published, since ``export_model`` writes into a hidden ``.tmp-*`` folder and renames it only once it
is complete and verified (a killed subprocess can leave such a folder behind; readers ignore them).
The temporary files of steps 1-3 are removed in every case.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PROG = "export_keras"
VERIFICATION_FAILED = 3  # the exit status of main when the reloaded export disagrees
DEFAULT_TIMEOUT_S = 600


class ExportFailed(RuntimeError):
    """The TensorFlow export process did not publish a verified version (its reason in the message)."""


def export_through_tensorflow(model, export_base, metadata: dict, x, timeout: float = DEFAULT_TIMEOUT_S,
                              python: str = sys.executable) -> Path:
    """Export ``model`` (the probabilities model, on this process's backend) as the next version under
    ``export_base`` through a ``KERAS_BACKEND=tensorflow`` subprocess; the export must reproduce this
    process's probabilities on ``x``. Returns the version folder; raises ``ExportFailed``."""
    from training.atomic import write_json_atomic

    export_base = Path(export_base).resolve()
    with tempfile.TemporaryDirectory(prefix="mnist-export-") as scratch:
        scratch = Path(scratch)
        files = {name: scratch / name for name in ("model.keras", "inputs.npy", "expected.npy", "metadata.json",
                                                   "result.json")}
        model.save(files["model.keras"])
        x = np.asarray(x, dtype=np.float32)
        np.save(files["inputs.npy"], x)
        np.save(files["expected.npy"], np.asarray(model.predict(x, batch_size=2048, verbose=0), dtype=np.float32))
        write_json_atomic(files["metadata.json"], metadata)
        command = [python, "-m", "training.export_keras", str(files["model.keras"]), "--export-dir", str(export_base),
                   "--inputs", str(files["inputs.npy"]), "--expected", str(files["expected.npy"]),
                   "--metadata", str(files["metadata.json"]), "--result", str(files["result.json"])]
        env = {**os.environ, "KERAS_BACKEND": "tensorflow",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        sys.stdout.flush()
        try:
            done = subprocess.run(command, env=env, stdout=None, stderr=subprocess.PIPE, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ExportFailed(f"the TensorFlow export process did not finish in {timeout:g} s") from None
        except OSError as exc:
            raise ExportFailed(f"could not start the TensorFlow export process ({exc})") from None
        if done.returncode != 0:
            raise ExportFailed(_reason(done.returncode, done.stderr))
        try:
            result = json.loads(files["result.json"].read_text())
        except (OSError, ValueError) as exc:
            raise ExportFailed(f"the TensorFlow export process wrote no result ({exc})") from None
    return Path(result["path"])


def _reason(status: int, stderr: str) -> str:
    """One line: why the export process failed (its own error line, else the end of its output)."""
    lines = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    mine = [line for line in lines if line.startswith(f"{PROG}: error: ")]
    if mine:
        return mine[-1][len(f"{PROG}: error: "):]
    if status < 0:
        return f"the TensorFlow export process was killed by signal {-status}"
    return (f"the TensorFlow export process failed with exit status {status}"
            + (f": {lines[-1]}" if lines else ""))


# =============================================================================
# The TensorFlow side
# =============================================================================
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description="Export a .keras model as the next SavedModel version, "
                                     "on the TensorFlow backend, checked against given probabilities.")
    parser.add_argument("model", type=Path, help="the probabilities model, a .keras file")
    parser.add_argument("--export-dir", type=Path, required=True, help="the export base (versions in it)")
    parser.add_argument("--inputs", type=Path, required=True, help=".npy of the verification images (n, 784)")
    parser.add_argument("--expected", type=Path, required=True,
                        help=".npy of the source backend's probabilities on them (n, 10)")
    parser.add_argument("--metadata", type=Path, default=None, help="JSON for assets.extra/metadata.json")
    parser.add_argument("--result", type=Path, default=None, help="write {path, version} here as JSON")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from training import backends

    backends.activate("tensorflow")  # before Keras is imported: the exporter traces a TensorFlow graph
    import keras

    import model.keras_network  # noqa: F401 - registers the custom layers for load_model
    from training.atomic import write_json_atomic
    from training.export import ExportVerificationError, export_model, verify_probabilities

    x, expected = np.load(args.inputs), np.load(args.expected)
    metadata = json.loads(args.metadata.read_text()) if args.metadata else {}
    loaded = keras.saving.load_model(args.model, compile=False)
    try:
        path = export_model(loaded, args.export_dir, metadata, verify=verify_probabilities(x, expected))
    except ExportVerificationError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return VERIFICATION_FAILED
    if args.result is not None:
        write_json_atomic(args.result, {"path": str(path), "version": int(path.name)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
