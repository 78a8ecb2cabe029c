"""`python training/train.py` end to end: run files, a verified export, versions, resume, bad arguments."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from service.contract import list_versions, next_version
from tests.conftest import REPO, mnist_dir
from training.arguments import RESUMABLE, build_parser
from training.data import load_digits_28
from training.checkpoints import latest_checkpoint

TRAIN = [sys.executable, str(REPO / "training" / "train.py")]
RUN_FILES = ("args.json", "history.csv", "metrics.json", "training_curves.png", "confusion_matrix.png",
             "misclassified.png", "augmentation.png")

# Loads an export the way a stranger would: plain TensorFlow, from another folder, no project imports.
LOAD_EXPORT = r"""
import json, sys
import numpy as np, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
data = np.load(sys.argv[2])
probabilities = serve(pixels=tf.constant(data["x"]))["probabilities"].numpy()
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("model", "training", "service"))
print(json.dumps({"accuracy": float((probabilities.argmax(1) == data["y"]).mean()), "shape": probabilities.shape,
                  "dtype": str(probabilities.dtype), "leaked": leaked,
                  "inputs": list(serve.structured_input_signature[1]), "outputs": list(serve.structured_outputs)}))
"""


def run_train(*args, timeout=600, **kwargs):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(TRAIN + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env, **kwargs)


def load_checkpoint_weights(path):
    import keras  # here, not at the top: TensorFlow takes seconds to import, and few tests here need it

    import model.keras_network  # noqa: F401 - registers the custom layers, losses and optimizers

    return keras.saving.load_model(path).get_weights()


def check_export_metadata(metrics: dict, export_base: Path) -> Path:
    """The export's folder and metadata agree with metrics.json (calibration included); returns the folder."""
    test = metrics["test"]
    version_dir = Path(metrics["export"]["path"])
    assert version_dir.parent == export_base and version_dir.name == str(metrics["export"]["version"])
    metadata = json.loads((version_dir / "assets.extra" / "metadata.json").read_text())
    assert metadata["version"] == metrics["export"]["version"]
    calibration = metrics["calibration"]  # training/calibration.py: T fitted on the validation split
    assert calibration["temperature"] > 0 and calibration["bins"] == 15
    assert calibration["fitted_on_validation_images"] == metrics["dataset"]["validation"]
    assert 0 <= calibration["test_ece_after"] <= 1 and 0 <= calibration["test_ece_before"] <= 1
    assert calibration["validation_nll_after"] <= calibration["validation_nll_before"]
    assert metadata["calibration"] == calibration
    assert metadata["test_accuracy"] == test["accuracy"]
    assert metadata["sizes"] == [784, 128, 64, 10]
    for key in ("created", "activation", "optimizer", "hyperparameters", "dataset", "per_class_accuracy", "versions"):
        assert key in metadata, key
    return version_dir


def check_run(run_dir: Path, export_base: Path, epochs: int, x_test, y_test, tmp_path):
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), f"{name} missing from {sorted(p.name for p in run_dir.iterdir())}"
    assert any((run_dir / "tensorboard").iterdir()), "no TensorBoard event files"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == \
        [f"epoch-{e:03d}.keras" for e in range(1, epochs + 1)]
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds",
                            "data_seconds", "data_wait_seconds"}
    assert all(0 <= float(r["data_wait_seconds"]) and 0 < float(r["data_seconds"]) for r in rows)
    assert all(0 <= float(r["val_accuracy"]) <= 1 for r in rows)
    learning_rates = [float(r["learning_rate"]) for r in rows]  # cosine decay: down to 0 at the last step
    assert learning_rates[0] > 0 and learning_rates == sorted(learning_rates, reverse=True)

    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics["test"]
    assert test["images"] == len(y_test)
    assert len(test["per_class_accuracy"]) == 10
    confusion = np.array(test["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == len(y_test)
    assert np.trace(confusion) / confusion.sum() == pytest.approx(test["accuracy"])
    assert {"tensorflow", "keras", "numpy", "python"} <= set(metrics["versions"])
    assert metrics["epochs_completed"] == epochs

    version_dir = check_export_metadata(metrics, export_base)

    # The export, loaded in a fresh process from another folder without the project, scores the same.
    np.savez(tmp_path / "test.npz", x=x_test, y=y_test)
    out = subprocess.run([sys.executable, "-c", LOAD_EXPORT, str(version_dir), str(tmp_path / "test.npz")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["leaked"] == []
    assert loaded["inputs"] == ["pixels"] and loaded["outputs"] == ["probabilities"]
    assert loaded["shape"] == [len(y_test), 10] and loaded["dtype"] == "float32"
    assert loaded["accuracy"] == pytest.approx(test["accuracy"], abs=1e-9)
    return metrics


def test_digits_end_to_end_exports_a_verified_servable_model(tmp_path):
    run_dir, export_base = tmp_path / "run", tmp_path / "exports"
    result = run_train("--dataset", "digits", "--epochs", 4, "--run-dir", run_dir, "--export-dir", export_base)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Export verified on 359 test images" in result.stdout
    assert "Test accuracy" in result.stdout and "Per-class accuracy" in result.stdout
    (_, _), (x_test, y_test) = load_digits_28(seed=0)
    metrics = check_run(run_dir, export_base, 4, x_test, y_test, tmp_path)
    assert metrics["test"]["accuracy"] > 0.8
    assert metrics["dataset"]["name"] == "digits"
    calibration = metrics["calibration"]
    assert (f"Calibration    temperature {calibration['temperature']:.3f} fitted on 144 validation images: test ECE "
            f"{calibration['test_ece_before']:.2%} -> {calibration['test_ece_after']:.2%} (15 bins)") in result.stdout


def test_without_a_validation_split_the_temperature_is_1_and_the_summary_says_so(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train("--dataset", "digits", "--epochs", 1, "--validation-fraction", 0, "--run-dir", run_dir,
                       "--no-export")
    assert result.returncode == 0, result.stderr[-3000:]
    calibration = json.loads((run_dir / "metrics.json").read_text())["calibration"]
    assert calibration["temperature"] == 1.0 and calibration["fitted_on_validation_images"] == 0
    assert calibration["test_ece_after"] == calibration["test_ece_before"]
    assert (f"Calibration    none: no validation split (--validation-fraction 0), so temperature 1; test ECE "
            f"{calibration['test_ece_before']:.2%}") in result.stdout


def test_mnist_slice_end_to_end_with_the_numpy_engine(tmp_path, mnist):
    (_, _), (x_test, y_test) = mnist
    run_dir, export_base = tmp_path / "run", tmp_path / "exports"
    result = run_train("--engine", "numpy", "--limit-train", 6000, "--epochs", 3, "--batch-size", 32,
                       "--data-dir", mnist_dir(), "--run-dir", run_dir, "--export-dir", export_base)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = check_run(run_dir, export_base, 3, x_test, y_test, tmp_path)
    assert metrics["test"]["accuracy"] > 0.9
    assert metrics["dataset"]["sha256"]["train-images-idx3-ubyte.gz"].startswith("440fcabf")


def test_two_exports_are_versions_1_and_2_and_temporary_folders_are_ignored(tmp_path):
    export_base = tmp_path / "exports"
    (export_base / ".tmp-7-killed").mkdir(parents=True)   # a killed export leaves this behind
    (export_base / ".tmp-7-killed" / "saved_model.pb").write_bytes(b"half")
    (export_base / "notes").mkdir()
    for expected, run in ((1, "a"), (2, "b")):
        result = run_train("--dataset", "digits", "--epochs", 1, "--run-dir", tmp_path / run,
                           "--export-dir", export_base)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"{export_base / str(expected)} (version {expected})" in result.stdout
    assert list_versions(export_base) == [1, 2]
    assert next_version(export_base) == 3
    assert not [p for p in export_base.iterdir() if p.name.startswith(".tmp-") and p.name != ".tmp-7-killed"]


def test_same_seed_same_weights(tmp_path):
    for run in ("a", "b"):
        result = run_train("--dataset", "digits", "--epochs", 2, "--run-dir", tmp_path / run, "--no-export")
        assert result.returncode == 0, result.stderr[-3000:]
    first = load_checkpoint_weights(tmp_path / "a" / "checkpoints" / "epoch-002.keras")
    second = load_checkpoint_weights(tmp_path / "b" / "checkpoints" / "epoch-002.keras")
    for weights, same_weights in zip(first, second):
        np.testing.assert_array_equal(weights, same_weights)


def test_a_run_killed_mid_training_and_resumed_ends_like_an_uninterrupted_one(tmp_path, mnist):
    # elastic composed with the affine distortion, prepared in the background thread: the data of every
    # epoch is still a pure function of (seed, epoch), so the resumed run ends with the same weights
    common = ["--limit-train", 12000, "--epochs", 3, "--batch-size", 32, "--data-dir", mnist_dir(), "--no-export",
              "--augment", "elastic", "--rotation", 10, "--scale", 0.1, "--shear", 10, "--translate", 1,
              "--elastic-alpha", 25]
    reference = run_train(*common, "--run-dir", tmp_path / "whole")
    assert reference.returncode == 0, reference.stderr[-3000:]

    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(TRAIN + [str(a) for a in common] + ["--run-dir", str(killed_dir)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    first = killed_dir / "checkpoints" / "epoch-001.keras"
    deadline = time.monotonic() + 300
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # during epoch 2: no chance to clean up
    process.wait(timeout=30)
    assert first.exists()
    completed = len(list((killed_dir / "checkpoints").glob("epoch-*.keras")))
    assert completed < 3, "the run finished before it could be killed; make the epochs longer"

    resumed = run_train("--resume", "--run-dir", killed_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming {killed_dir} after epoch {completed} of 3" in resumed.stdout
    assert "augmentation elastic (rotation 10, scale 0.1, shear 10, translate 1, alpha 25, sigma 5)" in resumed.stdout
    assert "SavedModel" not in resumed.stdout, "the resumed run must keep the run's --no-export"
    with open(killed_dir / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]
    whole = load_checkpoint_weights(tmp_path / "whole" / "checkpoints" / "epoch-003.keras")
    again = load_checkpoint_weights(killed_dir / "checkpoints" / "epoch-003.keras")
    for weights, same_weights in zip(whole, again):
        np.testing.assert_array_equal(weights, same_weights)


# Runs train.py's main() in a process that dies (os._exit, no clean-up, like SIGKILL) just before the
# given file is renamed into place for the given time: argv[1] file name, argv[2] count, then train.py's arguments.
KILL_BEFORE_WRITE = r"""
import os, sys
from pathlib import Path

target, count = sys.argv[1], int(sys.argv[2])
real_replace, renames = os.replace, []

def replace(source, destination, *args, **kwargs):
    if Path(destination).name == target:
        renames.append(destination)
        if len(renames) == count:
            os._exit(137)
    return real_replace(source, destination, *args, **kwargs)

os.replace = replace
from training.train import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("target,count", [("history.csv", 2), ("epoch-002.keras", 1)],
                         ids=["killed-before-history-row-2", "killed-before-checkpoint-2"])
def test_a_run_killed_between_an_epochs_two_writes_resumes_with_every_history_row(tmp_path, target, count):
    run_dir = tmp_path / "run"
    common = ["--dataset", "digits", "--epochs", "3", "--no-export"]
    killed = subprocess.run([sys.executable, "-c", KILL_BEFORE_WRITE, target, str(count), *common,
                             "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=600, cwd=REPO,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert killed.returncode == 137, killed.stderr[-3000:]
    resumed = run_train("--resume", "--run-dir", run_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming {run_dir} after epoch 1 of 3" in resumed.stdout
    with open(run_dir / "history.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == \
        ["epoch-001.keras", "epoch-002.keras", "epoch-003.keras"]


def test_the_latest_checkpoint_is_the_highest_epoch_number_not_the_last_name(tmp_path):
    assert latest_checkpoint(tmp_path) == (0, None)
    for name in ("epoch-002.keras", "epoch-999.keras", "epoch-1000.keras", ".tmp-epoch-1001.keras"):
        (tmp_path / name).touch()
    assert latest_checkpoint(tmp_path) == (1000, tmp_path / "epoch-1000.keras")


@pytest.mark.parametrize("args,message", [
    (["--optimizer", "adamw"], "argument --optimizer: invalid choice: 'adamw'"),
    (["--sizes", "784,abc,10"], "--sizes must be comma-separated integers like 784,128,64,10, got '784,abc,10'"),
    (["--sizes", "100,64,10"], "--sizes must start with 784 (28x28 pixels) for mnist, got 100"),
    (["--sizes", "784,64,7"], "--sizes must end with 10 (one output per digit), got 7"),
    (["--data-dir", "/nonexistent/mnist"], "--data-dir /nonexistent/mnist is not a folder"),
    (["--learning-rate", "-1"], "--learning-rate must be a positive number, got -1.0"),
    (["--learning-rate", "inf"], "--learning-rate must be a positive number, got inf"),
    (["--validation-fraction", "1.5"], "--validation-fraction must be in [0, 1), got 1.5"),
    (["--resume"], "--resume needs --run-dir pointing at an earlier run"),
    (["--elastic-sigma", "-1"], "--elastic-sigma must be in (0, 28] pixels, got -1"),
    (["--elastic-sigma", "0"], "--elastic-sigma must be in (0, 28] pixels, got 0"),
    (["--elastic-alpha", "-5"], "--elastic-alpha must be 0 or more, got -5"),
    (["--rotation", "181"], "--rotation must be in [0, 180], got 181"),
    (["--augment", "affine", "--rotation", "nan"], "--rotation must be in [0, 180], got nan"),
    (["--augment", "affine", "--scale", "1"], "--scale must be in [0, 1), got 1"),
    (["--shear", "-10"], "--shear must be in [0, 60], got -10"),
    (["--translate", "15"], "--translate must be in [0, 14], got 15"),
    (["--augment-shift", "-1"], "--augment-shift must be 0 or more, got -1"),
    (["--augment", "shift", "--rotation", "10"], "--rotation applies to --augment affine or elastic, not to "
                                                 "--augment shift"),
    (["--augment", "affine", "--elastic-alpha", "30"], "--elastic-alpha applies to --augment elastic, not to "
                                                       "--augment affine"),
    (["--augment", "elastic", "--augment-shift", "2"], "--augment-shift applies to --augment shift, not to "
                                                       "--augment elastic"),
    (["--augment", "blur"], "argument --augment: invalid choice: 'blur'"),
])
def test_bad_arguments_exit_2_with_one_clear_line(args, message, tmp_path):
    started = time.monotonic()
    result = run_train(*args, "--run-dir", tmp_path / "run") if "--resume" not in args else run_train(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("train.py: error: ") and message in lines[0], lines[0]
    assert not (tmp_path / "run").exists(), "nothing may be written for bad arguments"
    assert time.monotonic() - started < 30


def test_resume_with_an_unreadable_args_json_is_a_clear_error(tmp_path):
    for name, text in (("corrupt", "{not json"), ("incomplete", json.dumps({"sizes": [784, 10]}))):
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "args.json").write_text(text)
        result = run_train("--resume", "--run-dir", run_dir)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"cannot resume {run_dir}: its args.json is unreadable or incomplete" in lines[0]


def help_entries(help_text: str) -> dict[str, str]:
    """Option -> its entry in the "options:" part of ``--help`` (invocation and help text, whitespace
    removed so that line wrapping does not matter)."""
    entries, option = {}, None
    for line in help_text.split("\noptions:\n", 1)[1].splitlines():
        if match := re.match(r"  (?:-\w, )?(--?[\w-]+)", line):
            option = match[1]
            entries[option] = ""
        entries[option] += "".join(line.split())
    return entries


def test_help_explains_every_option():
    result = run_train("--help")
    assert result.returncode == 0 and result.stderr == ""
    entries = help_entries(result.stdout)
    options = [action for action in build_parser()._actions if action.dest != "help"]
    assert len(options) == len(entries) - 1, "one --help entry per option, besides -h"
    for action in options:
        option = action.option_strings[-1]
        words = (action.help or "").split()
        assert len(words) >= 2 and action.help not in (action.dest, action.metavar), f"{option}: no real help text"
        assert option in entries, f"{option} missing from --help"
        assert "".join(words) in entries[option], f"{option}'s help text is not in its --help entry"


def test_every_option_is_restored_on_resume_or_given_each_time():
    # data_dir falls back to the saved one; the strategy options may change on resume (the global batch and the
    # data of each epoch do not depend on them: docs/distributed.md)
    given_each_time = {"run_dir", "data_dir", "resume", "strategy", "replicas", "comm_timeout"}
    options = {action.dest for action in build_parser()._actions if action.dest != "help"}
    assert options == set(RESUMABLE) | given_each_time
    assert not set(RESUMABLE) & given_each_time


@pytest.mark.parametrize("argv,expected", [
    ([], {"augment": "elastic", "augment_shift": 0, "rotation": 0.0, "elastic_alpha": 34.0, "elastic_sigma": 5.0}),
    (["--augment-shift", "3"], {"augment": "shift", "augment_shift": 3, "rotation": 0.0, "elastic_alpha": 0.0}),
    (["--augment-shift", "0"], {"augment": "none", "augment_shift": 0, "elastic_sigma": 0.0}),
    (["--augment", "affine", "--shear", "5"], {"augment": "affine", "rotation": 10.0, "scale": 0.1, "shear": 5.0,
                                               "translate": 2.0, "elastic_alpha": 0.0}),
    (["--augment", "elastic", "--rotation", "10", "--elastic-alpha", "25"],
     {"augment": "elastic", "rotation": 10.0, "scale": 0.0, "elastic_alpha": 25.0, "elastic_sigma": 5.0}),
])
def test_augment_and_its_strengths_take_the_defaults_of_the_kind(argv, expected, tmp_path, monkeypatch):
    from training.arguments import parse_args

    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")  # parse_args sets it; restored after the test
    args = parse_args(argv + ["--run-dir", str(tmp_path / "run")])
    assert {key: getattr(args, key) for key in expected} == expected
    assert (args.epochs, args.batch_size, args.learning_rate) == (60, 256, 0.003)


def test_a_run_saved_before_augment_existed_resumes_with_its_whole_pixel_shifts(tmp_path, monkeypatch):
    """Its args.json has augment_shift only: it resumes as --augment shift (or none for 0) with that
    shift, whose draws are unchanged (tests/training/test_augment.py), so it ends as it would have."""
    from training.arguments import parse_args

    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    saved = {"sizes": [784, 128, 64, 10], "activation": "relu", "loss": "cross_entropy", "optimizer": "adam",
             "learning_rate": 0.002, "schedule": "cosine", "epochs": 30, "batch_size": 128, "augment_shift": 2,
             "validation_fraction": 0.1, "seed": 0, "dataset": "mnist", "limit_train": None, "engine": "keras",
             "jit": False, "export_dir": "exports/mnist", "no_export": False, "backend": "tensorflow"}
    for shift, kind in ((2, "shift"), (0, "none")):
        run_dir = tmp_path / kind
        run_dir.mkdir()
        (run_dir / "args.json").write_text(json.dumps({**saved, "augment_shift": shift}))
        args = parse_args(["--resume", "--run-dir", str(run_dir)])
        assert (args.augment, args.augment_shift, args.elastic_alpha, args.rotation) == (kind, shift, 0.0, 0.0)
        assert (args.epochs, args.batch_size, args.learning_rate) == (30, 128, 0.002)
