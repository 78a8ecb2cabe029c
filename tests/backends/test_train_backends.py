"""``python training/train.py --backend {tensorflow,torch,jax}``: the same run on every backend, a verified
export from each, the same seed giving the same weights, resume on the run's own backend, and bad input.

Decisions tested here:
- ``--backend`` wins over ``KERAS_BACKEND``, which wins over the default (tensorflow); the choice is made
  while the arguments are parsed, before anything imports Keras.
- A resumed run continues on the backend it was trained on; asking for another one (``--backend`` or
  ``KERAS_BACKEND``) is an error (exit 2, one line), never a run trained on two backends.
- An unknown backend, or one whose package is not installed, is one line and exit status 2 with nothing
  written.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from bench.support import REPO
from tests.backends.conftest import child_env, require_backend
from tests.training.test_train import check_run, load_checkpoint_weights
from training.data import load_digits_28

TRAIN = [sys.executable, str(REPO / "training" / "train.py")]
SHORT = ["--dataset", "digits", "--epochs", "2"]


def run_train(*args, timeout=600, **env):
    return subprocess.run(TRAIN + [str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=child_env(**env))


def one_error_line(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("train.py: error: "), lines[0]
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_two_runs_same_weights_a_verified_export_and_resume_on_the_runs_own_backend(backend, tmp_path,
                                                                                     mirror_report):
    """Run A (with export) and run B (without) on the same seed end with identical weights (torch:
    deterministic algorithms; JAX: XLA on CPU). A's run files and export pass test_train.py's checks,
    including a plain-TensorFlow fresh-process load that scores A's test accuracy, and record the backend
    and its version. B, its last checkpoint removed, resumes on its own backend to the same weights;
    asking for another backend on resume is refused."""
    require_backend(backend)
    export_base = tmp_path / "exports"
    a = run_train(*SHORT, "--backend", backend, "--run-dir", tmp_path / "a", "--export-dir", export_base)
    assert a.returncode == 0, a.stderr[-3000:]
    assert f"(Keras backend {backend})" in a.stdout and "Export verified on 359 test images" in a.stdout
    b = run_train(*SHORT, "--run-dir", tmp_path / "b", "--no-export", KERAS_BACKEND=backend)  # from the environment
    assert b.returncode == 0, b.stderr[-3000:]
    assert f"(Keras backend {backend})" in b.stdout

    weights_a = load_checkpoint_weights(tmp_path / "a" / "checkpoints" / "epoch-002.keras")
    weights_b = load_checkpoint_weights(tmp_path / "b" / "checkpoints" / "epoch-002.keras")
    for wa, wb in zip(weights_a, weights_b):
        np.testing.assert_array_equal(wa, wb)

    (_, _), (x_test, y_test) = load_digits_28(seed=0)
    metrics = check_run(tmp_path / "a", export_base, 2, x_test, y_test, tmp_path)
    assert metrics["backend"]["name"] == backend and metrics["backend"]["version"]
    assert metrics["versions"][backend] == metrics["backend"]["version"]
    assert json.loads((tmp_path / "a" / "args.json").read_text())["backend"] == backend
    metadata = json.loads((export_base / "1" / "assets.extra" / "metadata.json").read_text())
    assert metadata["backend"] == metrics["backend"] and metadata["hyperparameters"]["backend"] == backend

    other = "tensorflow"
    refused = run_train("--resume", "--run-dir", tmp_path / "b", "--backend", other)
    line = one_error_line(refused)
    assert f"was trained on the {backend} backend and resumes on it only, not on --backend {other}" in line
    refused = run_train("--resume", "--run-dir", tmp_path / "b", KERAS_BACKEND=other)
    assert f"not on KERAS_BACKEND={other}" in one_error_line(refused)

    (tmp_path / "b" / "checkpoints" / "epoch-002.keras").unlink()  # as if killed during epoch 2
    # --backend naming the run's own backend wins over a KERAS_BACKEND asking for another
    resumed = run_train("--resume", "--run-dir", tmp_path / "b", "--backend", backend, KERAS_BACKEND=other)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming {tmp_path / 'b'} after epoch 1 of 2" in resumed.stdout
    assert f"(Keras backend {backend})" in resumed.stdout
    again = load_checkpoint_weights(tmp_path / "b" / "checkpoints" / "epoch-002.keras")
    for wa, wb in zip(weights_a, again):
        np.testing.assert_array_equal(wa, wb)
    mirror_report(f"{backend:<10} train.py: two runs and a resumed one bit-identical; export verified, "
                  f"test accuracy {metrics['test']['accuracy']:.2%} on digits after 2 epochs")


@pytest.mark.parametrize("args,env,message", [
    (["--backend", "mxnet"], {}, "--backend: unknown backend 'mxnet'; choose one of tensorflow, torch, jax"),
    ([], {"KERAS_BACKEND": "theano"}, "KERAS_BACKEND: unknown backend 'theano'; choose one of tensorflow, torch, jax"),
    (["--backend", "torch", "--jit"], {}, "--jit compiles with XLA on the tensorflow backend"),
], ids=["unknown-flag", "unknown-environment", "jit-on-torch"])
def test_a_bad_backend_exits_2_with_one_line_and_writes_nothing(args, env, message, tmp_path):
    if "torch" in args:
        require_backend("torch")
    result = run_train(*args, "--run-dir", tmp_path / "run", **env)
    assert message in one_error_line(result)
    assert not (tmp_path / "run").exists()


# train.py's main() in a process where importlib.util.find_spec cannot find argv[1] (as if not installed)
HIDE_PACKAGE = r"""
import importlib.util, sys
real, hidden = importlib.util.find_spec, sys.argv[1]
importlib.util.find_spec = lambda name, *a, **k: None if name.split(".")[0] == hidden else real(name, *a, **k)
from training.train import main
status = main(sys.argv[2:])
print("keras imported:", "keras" in sys.modules, file=sys.stderr if status else sys.stdout)
sys.exit(status)
"""


@pytest.mark.parametrize("backend,how", [("jax", "flag"), ("torch", "environment")])
def test_a_backend_whose_package_is_missing_exits_2_naming_the_package_and_the_requirements_file(backend, how,
                                                                                                  tmp_path):
    args = ["--backend", backend] if how == "flag" else []
    env = {"KERAS_BACKEND": backend} if how == "environment" else {}
    result = subprocess.run([sys.executable, "-c", HIDE_PACKAGE, backend, *args, "--run-dir", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=120, cwd=REPO, env=child_env(**env))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [f"train.py: error: the {backend} backend needs the package '{backend}', which is not installed: "
                     "pip install -r requirements-backends.txt"], result.stderr
    assert not (tmp_path / "run").exists()


# Parses arguments the way train.py does, then reports what was imported and what KERAS_BACKEND says.
PARSE_ONLY = r"""
import json, os, sys
from training.arguments import parse_args
args = parse_args(sys.argv[1:])
print(json.dumps({"backend": args.backend, "environment": os.environ.get("KERAS_BACKEND"),
                  "imported": sorted(m for m in ("keras", "tensorflow", "torch", "jax") if m in sys.modules)}))
"""


@pytest.mark.parametrize("args,env,expected", [
    ([], {}, "tensorflow"),
    ([], {"KERAS_BACKEND": "jax"}, "jax"),
    (["--backend", "torch"], {"KERAS_BACKEND": "jax"}, "torch"),
], ids=["default", "environment", "flag-wins"])
def test_the_backend_is_chosen_before_anything_imports_keras(args, env, expected, tmp_path):
    if expected != "tensorflow":
        require_backend(expected)
    result = subprocess.run([sys.executable, "-c", PARSE_ONLY, *args, "--run-dir", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=60, cwd=REPO, env=child_env(**env))
    assert result.returncode == 0, result.stderr
    parsed = json.loads(result.stdout)
    assert parsed == {"backend": expected, "environment": expected, "imported": []}


def test_a_run_from_before_backends_resumes_on_tensorflow_and_refuses_another(tmp_path):
    """An args.json without "backend" (written before --backend existed) is a TensorFlow run."""
    run_dir = tmp_path / "old"
    args = {"sizes": [784, 16, 10], "activation": "relu", "loss": "cross_entropy", "optimizer": "adam",
            "learning_rate": 0.002, "schedule": "cosine", "epochs": 1, "batch_size": 128, "augment_shift": 0,
            "validation_fraction": 0.1, "seed": 0, "dataset": "digits", "limit_train": None, "engine": "keras",
            "jit": False, "export_dir": str(tmp_path / "exports"), "no_export": True}
    run_dir.mkdir()
    (run_dir / "args.json").write_text(json.dumps(args))
    result = subprocess.run([sys.executable, "-c", PARSE_ONLY, "--resume", "--run-dir", str(run_dir)],
                            capture_output=True, text=True, timeout=60, cwd=REPO, env=child_env())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["backend"] == "tensorflow"
    refused = subprocess.run([sys.executable, "-c", PARSE_ONLY, "--resume", "--run-dir", str(run_dir)],
                             capture_output=True, text=True, timeout=60, cwd=REPO, env=child_env(KERAS_BACKEND="jax"))
    assert refused.returncode == 2
    assert refused.stderr.strip() == (f"train.py: error: cannot resume {run_dir}: it was trained on the tensorflow "
                                      "backend and resumes on it only, not on KERAS_BACKEND=jax (pass --backend "
                                      "tensorflow or leave the backend out)")
