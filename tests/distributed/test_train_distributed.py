"""``train.py --strategy multi-worker`` end to end with real worker processes on 127.0.0.1 and real MNIST:
the chief alone writes the run and one servable export, whose accuracy matches one process, and one
process without a strategy resumes the run where the workers would have ended it; a worker
killed mid-epoch makes every other worker exit non-zero within --comm-timeout, naming it, leaving no
export and no half-written file; the orchestrators' restart (``python -m training.cluster worker``)
then resumes every worker from the chief's last checkpoint and finishes the run; workers started with
different arguments refuse to train."""

import csv
import json
import shutil
import subprocess
import sys
import time

import pytest

from bench.support import REPO
from service.contract import list_versions
from tests.conftest import mnist_dir
from tests.distributed.support import TRAIN, Cluster, environment
from tests.distributed.test_equivalence import max_abs_diff
from tests.training.test_train import check_run, load_checkpoint_weights

pytestmark = pytest.mark.slow

# 5,400 fit images: 113 steps of 48 (the last 24 rows: 12 + 12 over 2 workers, 8 + 8 + 8 over 3)
ARGS = ["--limit-train", 6000, "--epochs", 2, "--batch-size", 48]
TIMEOUT = 600
COMM_TIMEOUT = 30  # the fault test's --comm-timeout: the survivors must exit within it


def history_epochs(run_dir):
    with open(run_dir / "history.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_two_workers_train_and_the_chief_alone_exports_a_servable_model_as_good_as_one_process(
        tmp_path, mnist, distributed_report):
    (_, _), (x_test, y_test) = mnist
    data = ["--data-dir", mnist_dir()]
    runs, exports = tmp_path / "runs", tmp_path / "exports"

    def worker(index):  # worker 1 gets folders of its own, to show that it writes nothing anywhere
        return TRAIN + ARGS + data + ["--strategy", "multi-worker", "--comm-timeout", 120,
                                      "--run-dir", runs / f"run-{index}", "--export-dir", exports / f"base-{index}"]

    started = time.monotonic()
    workers = Cluster(worker, 2, tmp_path / "logs")
    single = Cluster(TRAIN + ARGS + data + ["--run-dir", runs / "single", "--no-export"], 1, tmp_path / "logs",
                     "single", with_tf_config=False)
    assert workers.wait(TIMEOUT) == [0, 0], workers.tails()
    assert single.wait(TIMEOUT) == [0], single.tails()
    distributed_report(f"end to end, 2 workers and 1 process side by side: {time.monotonic() - started:.0f} s")

    run_dir, export_base = runs / "run-0", exports / "base-0"
    assert not (runs / "run-1").exists() and not (exports / "base-1").exists(), "worker 1 wrote files"
    assert "worker 1 (127.0.0.1:" in workers.log(1) and "writes the run files and the export" in workers.log(1)
    metrics = check_run(run_dir, export_base, 2, x_test, y_test, tmp_path)  # also loads and scores the export
    assert list_versions(export_base) == [1]
    assert {key: metrics["distributed"][key] for key in ("strategy", "workers", "replicas", "rows_per_replica")} == \
        {"strategy": "multi-worker", "workers": 2, "replicas": 2, "rows_per_replica": 24}
    assert metrics["distributed"]["last_batch"] == {"rows": 24, "split": [12, 12]}
    one_process = json.loads((runs / "single" / "metrics.json").read_text())["test"]["accuracy"]
    two_workers = metrics["test"]["accuracy"]
    distributed_report(f"end to end test accuracy: 2 workers {two_workers:.2%}, one process {one_process:.2%}")
    assert abs(two_workers - one_process) <= 0.003
    assert history_epochs(run_dir) == [1, 2]

    # The run resumed after epoch 1 in one process, without a strategy, ends where the 2 workers ended.
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(run_dir, resumed_dir)
    (resumed_dir / "checkpoints" / "epoch-002.keras").unlink()
    (resumed_dir / "metrics.json").unlink()
    started = time.monotonic()
    resumed = subprocess.run(TRAIN + ["--resume", "--run-dir", resumed_dir, "--export-dir", tmp_path / "exports-resumed"],
                             capture_output=True, text=True, timeout=TIMEOUT, cwd=REPO, env=environment())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming {resumed_dir} after epoch 1 of 2" in resumed.stdout
    difference = max_abs_diff(load_checkpoint_weights(run_dir / "checkpoints" / "epoch-002.keras"),
                              load_checkpoint_weights(resumed_dir / "checkpoints" / "epoch-002.keras"))
    distributed_report(f"2-worker run resumed after epoch 1 by one process without a strategy: epoch 2's weights "
                       f"{difference:.1e} from the 2 workers' ({time.monotonic() - started:.0f} s)")
    assert difference <= 1e-5


def test_a_worker_killed_mid_epoch_stops_every_other_worker_then_a_restart_resumes_the_run(
        tmp_path, mnist, distributed_report):
    run_dir, export_base = tmp_path / "run", tmp_path / "exports"
    options = ARGS + ["--data-dir", mnist_dir(), "--run-dir", run_dir, "--export-dir", export_base]
    workers = Cluster(TRAIN + options + ["--strategy", "multi-worker", "--comm-timeout", COMM_TIMEOUT], 3,
                      tmp_path / "logs", "first")
    first_checkpoint = run_dir / "checkpoints" / "epoch-001.keras"
    deadline = time.monotonic() + TIMEOUT
    while not first_checkpoint.exists():
        assert time.monotonic() < deadline and all(status is None for status in workers.poll()), \
            "no first checkpoint:\n" + workers.tails()
        time.sleep(0.05)
    time.sleep(0.5)  # into epoch 2
    workers.kill(1)
    killed = time.monotonic()
    statuses = workers.wait(COMM_TIMEOUT + 60)
    survivors_seconds = time.monotonic() - killed
    distributed_report(f"worker 1 of 3 killed mid-epoch: workers 0 and 2 exited {statuses[0]} and {statuses[2]} "
                       f"after {survivors_seconds:.1f} s (--comm-timeout {COMM_TIMEOUT})")
    assert statuses[0] != 0 and statuses[2] != 0, workers.tails()
    assert survivors_seconds <= COMM_TIMEOUT, f"the survivors took {survivors_seconds:.0f} s to stop"
    lost = f"lost {workers_name(workers, 1)}: it no longer answers"
    for index in (0, 2):
        last_line = workers.log(index).strip().splitlines()[-1]
        assert last_line.startswith(f"train.py: error: {workers_name(workers, index)}: {lost}"), last_line
        assert "start every worker again with --resume" in last_line
    # nothing half-written, no export: the run folder holds what epoch 1 completed, and nothing else
    assert history_epochs(run_dir) == [1]
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["epoch-001.keras"]
    assert not (run_dir / "metrics.json").exists()
    assert not [path for path in tmp_path.rglob("*") if path.name.startswith(".tmp")]
    assert not export_base.exists() or list_versions(export_base) == []

    # What Kubernetes and compose do: restart every worker with its command; the folder holds the run,
    # so each one resumes from the chief's last complete checkpoint.
    started = time.monotonic()
    restarted = Cluster([sys.executable, "-m", "training.cluster", "worker"] + options + ["--comm-timeout", 120], 3,
                        tmp_path / "logs", "restarted")
    assert restarted.wait(TIMEOUT) == [0, 0, 0], restarted.tails()
    distributed_report(f"restart of 3 workers with --resume: {time.monotonic() - started:.0f} s")
    for index in range(3):
        assert f"Resuming {run_dir} after epoch 1 of 2" in restarted.log(index)
    assert history_epochs(run_dir) == [1, 2]
    assert list_versions(export_base) == [1]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and metrics["distributed"]["workers"] == 3
    assert metrics["test"]["accuracy"] > 0.9


def workers_name(cluster: Cluster, index: int) -> str:
    return f"worker {index} ({cluster.addresses[index]})"


def test_workers_started_with_different_arguments_refuse_to_train(tmp_path):
    run_dir = tmp_path / "run"

    def worker(index):
        return TRAIN + ["--dataset", "digits", "--epochs", 1, "--seed", index, "--strategy", "multi-worker",
                        "--run-dir", run_dir, "--no-export"]

    workers = Cluster(worker, 2, tmp_path / "logs")
    assert workers.wait(TIMEOUT) == [2, 2], workers.tails()
    for index in range(2):
        assert workers.log(index).strip().splitlines()[-1] == (
            f"train.py: error: the workers were not given the same arguments or data (this is "
            f"{workers_name(workers, index)}): start every worker with the same command line and data")
    assert not run_dir.exists()
