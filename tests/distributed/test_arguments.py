"""The distributed options refuse what cannot be distributed (exit 2, one line, nothing written), TF_CONFIG
is read as TensorFlow reads it, and the Kubernetes Indexed Job builds a TF_CONFIG that matches its
manifest. Fast: no worker is started (the clipping refusal from a checkpoint runs train.py once)."""

import json
import os
import re
import subprocess
import sys
import time
from argparse import Namespace

import pytest

from bench.support import REPO
from tests.distributed.support import TRAIN, environment, tf_config
from training.cluster import ClusterError, indexed_job_tf_config, parse_tf_config, worker_command

# What TensorFlow 2.21's C++ logger prints on stderr when it is imported, whatever TF_CPP_MIN_LOG_LEVEL says
# (absl's pre-initialisation notice and oneDNN's "I0000 ..." line): not ours, left out when counting lines.
TENSORFLOW_LOG = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)|[IWE]\d{4} \d\d:\d\d:\d\d")
TWO = tf_config(["127.0.0.1:2222", "127.0.0.1:2223"], 0)
THREE = tf_config(["127.0.0.1:2222", "127.0.0.1:2223", "127.0.0.1:2224"], 1)


def run_train(args, tf_config_value=None, timeout=120):
    env = environment(**({"TF_CONFIG": tf_config_value} if tf_config_value is not None else {}))
    return subprocess.run(TRAIN + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)


def assert_refused(result, message: str, run_dir):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("train.py: error: ") and message in lines[0], lines[0]
    assert not run_dir.exists(), "nothing may be written for refused arguments"


@pytest.mark.parametrize("args,config,message", [
    (["--strategy", "mirrored", "--replicas", "3", "--batch-size", "128"], None,
     "--batch-size 128 does not split evenly over 3 replicas (--batch-size is the global batch; use a multiple of 3"),
    (["--strategy", "mirrored", "--batch-size", "100", "--replicas", "8"], None,
     "--batch-size 100 does not split evenly over 8 replicas"),
    (["--strategy", "multi-worker"], THREE, "--batch-size 256 does not split evenly over 3 replicas"),
    (["--strategy", "mirrored", "--jit"], None, "--jit is not supported with --strategy mirrored"),
    (["--strategy", "multi-worker", "--jit"], TWO, "--jit is not supported with --strategy multi-worker"),
    (["--strategy", "mirrored", "--engine", "numpy"], None, "--engine numpy cannot be distributed"),
    (["--strategy", "mirrored", "--backend", "jax"], None,
     "--strategy mirrored runs on TensorFlow's tf.distribute: use --backend tensorflow (got --backend jax)"),
    (["--strategy", "multi-worker", "--engine", "numpy"], TWO, "--engine numpy cannot be distributed"),
    (["--replicas", "2"], None, "--replicas is for --strategy mirrored"),
    (["--strategy", "multi-worker", "--replicas", "2"], TWO, "--replicas is for --strategy mirrored"),
    (["--strategy", "mirrored", "--replicas", "0"], None, "--replicas must be between 1 and 64, got 0"),
    (["--strategy", "multi-worker", "--comm-timeout", "0"], TWO, "--comm-timeout must be a positive number"),
    (["--strategy", "multi-worker"], None, "--strategy multi-worker needs the TF_CONFIG environment variable"),
    (["--strategy", "multi-worker"], "{not json", "TF_CONFIG is not JSON"),
    (["--strategy", "multi-worker"], json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:2"]},
                                                 "task": {"type": "worker", "index": 0}}),
     "jobs ['ps'] are not supported"),
    (["--strategy", "multi-worker"], tf_config(["a:1", "b:2"], 2), "task worker 2 is not in the cluster"),
    (["--strategy", "bogus"], None, "argument --strategy: invalid choice: 'bogus'"),
], ids=lambda value: None)
def test_refusals_exit_2_with_one_line_before_anything_is_written(args, config, message, tmp_path):
    started = time.monotonic()
    run_dir = tmp_path / "run"
    assert_refused(run_train(args + ["--run-dir", run_dir, "--export-dir", tmp_path / "exports"], config),
                   message, run_dir)
    assert not (tmp_path / "exports").exists()
    assert time.monotonic() - started < 30, "refused at once, before TensorFlow"


def test_help_says_what_each_strategy_does():
    result = run_train(["--help"])
    assert result.returncode == 0
    text = "".join(result.stdout.split())  # argparse wraps lines at spaces and hyphens
    for words in ("none: one process on one device", "mirrored: synchronous data parallelism in one process",
                  "multi-worker: the same, one process per worker", "TF_CONFIG", "worker 0 is the chief",
                  "--batch-size is the global batch", "--comm-timeout SECONDS", "--replicas N"):
        assert "".join(words.split()) in text, words


def test_tf_config_is_read_as_tensorflow_reads_it():
    cluster = parse_tf_config(THREE)
    assert (cluster.size, cluster.rank, cluster.is_chief) == (3, 1, False)
    assert cluster.name(1) == "worker 1 (127.0.0.1:2223)" and cluster.device_name(2) == "/job:worker/replica:0/task:2"
    # with a "chief" job, the chief is task 0 of the cluster and the workers follow (TensorFlow's rule)
    with_chief = parse_tf_config(json.dumps({"cluster": {"chief": ["c:1"], "worker": ["w0:1", "w1:1"]},
                                             "task": {"type": "worker", "index": 0}}))
    assert (with_chief.size, with_chief.rank, with_chief.is_chief) == (3, 1, False)
    assert parse_tf_config(json.dumps({"cluster": {"chief": ["c:1"], "worker": ["w0:1"]},
                                       "task": {"type": "chief", "index": 0}})).is_chief
    for bad in ("", '{"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}',
                '{"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}}',
                '{"cluster": {"worker": ["no-port"]}, "task": {"type": "worker", "index": 0}}',
                '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": true}}'):
        with pytest.raises(ClusterError):
            parse_tf_config(bad)


def test_an_indexed_job_pod_builds_its_tf_config_from_its_completion_index():
    env = {"JOB_COMPLETION_INDEX": "2", "WORKERS": "3", "JOB_NAME": "mnist-train", "SERVICE_NAME": "mnist-train-workers"}
    config = json.loads(indexed_job_tf_config(env))
    assert config == {"cluster": {"worker": [f"mnist-train-{i}.mnist-train-workers:2222" for i in range(3)]},
                      "task": {"type": "worker", "index": 2}}
    assert parse_tf_config(json.dumps(config)).rank == 2
    with pytest.raises(ClusterError):
        indexed_job_tf_config({**env, "JOB_COMPLETION_INDEX": "3"})
    out = subprocess.run([sys.executable, "-m", "training.cluster", "indexed-job"], capture_output=True, text=True,
                         cwd=REPO, env={**os.environ, **env}, timeout=60)
    assert out.returncode == 0 and json.loads(out.stdout) == config


def test_the_kubernetes_manifest_agrees_with_the_tf_config_it_builds():
    yaml = pytest.importorskip("yaml")
    documents = [d for d in yaml.safe_load_all((REPO / "deploy" / "kubernetes-train.yaml").read_text()) if d]
    service = next(d for d in documents if d["kind"] == "Service")
    job = next(d for d in documents if d["kind"] == "Job")
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == int(env["WORKERS"])
    assert service["spec"]["clusterIP"] == "None", "the workers' Service must be headless (one DNS name per pod)"
    assert pod["subdomain"] == service["metadata"]["name"] == env["SERVICE_NAME"]
    assert env["JOB_NAME"] == job["metadata"]["name"]
    assert service["spec"]["selector"].items() <= job["spec"]["template"]["metadata"]["labels"].items()
    port = int(env.get("WORKER_PORT", "2222"))
    assert [p["port"] for p in service["spec"]["ports"]] == [port]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    assert container["command"] == ["python", "-m", "training.cluster", "worker"]
    assert any(arg.startswith("--run-dir=/runs/") for arg in container["args"])
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    claims = {volume["name"]: volume.get("persistentVolumeClaim", {}).get("claimName") for volume in pod["volumes"]}
    shared = next(d for d in documents if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claims[mounts["/runs"]])
    assert shared["spec"]["accessModes"] == ["ReadWriteMany"], "every worker reads the chief's checkpoints"


def test_a_worker_started_by_an_orchestrator_resumes_the_run_its_folder_holds(tmp_path):
    run_dir = tmp_path / "run"
    options = ["--run-dir", str(run_dir), "--epochs", "3"]
    assert worker_command(options)[2:] == ["--strategy", "multi-worker", *options]
    run_dir.mkdir()
    (run_dir / "args.json").write_text("{}")  # the chief started the run: a restarted worker resumes it
    assert worker_command([f"--run-dir={run_dir}"])[2:] == ["--strategy", "multi-worker", "--resume", f"--run-dir={run_dir}"]
    (run_dir / "metrics.json").write_text("{}")  # the run is complete: nothing to do
    assert worker_command(options) is None
    with pytest.raises(ClusterError, match="--run-dir"):
        worker_command(["--epochs", "3"])
    env = {**environment(), "JOB_COMPLETION_INDEX": "0", "WORKERS": "2", "JOB_NAME": "j", "SERVICE_NAME": "s"}
    done = subprocess.run([sys.executable, "-m", "training.cluster", "worker", *options], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=60)
    assert done.returncode == 0 and "is complete (metrics.json exists): nothing to do" in done.stdout


def test_clipping_is_refused_where_the_optimizer_is_built():
    pytest.importorskip("tensorflow")
    from training.distributed import ClippingRefused, new_trainer

    args = Namespace(learning_rate=1e-3, schedule="constant", epochs=1, optimizer="adam", sizes=(784, 16, 10),
                     activation="relu", seed=0, loss="cross_entropy")
    assert new_trainer(args, 10).optimizer.clipnorm is None
    for setting in ({"clipnorm": 1.0}, {"clipvalue": 0.5}, {"global_clipnorm": 2.0}):
        with pytest.raises(ClippingRefused, match="replica's partial gradient"):
            new_trainer(args, 10, **setting)


def test_a_checkpoint_that_clips_is_refused_on_resume_with_one_line_and_nothing_written(tmp_path):
    """A run resumed under a strategy from a checkpoint whose optimizer clips: refused before training."""
    import keras

    from model.keras_network import build_model, compile_for_training
    from model.keras_optimizers import ScratchAdam
    from training.arguments import parse_args

    run_dir = tmp_path / "run"
    args = parse_args(["--dataset", "digits", "--epochs", "2", "--run-dir", str(run_dir), "--no-export"])
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "args.json").write_text(json.dumps({k: (str(v) if hasattr(v, "parts") else v)
                                                   for k, v in vars(args).items()}))
    trainer = compile_for_training(build_model(seed=0), ScratchAdam(1e-3, clipnorm=1.0))
    trainer.optimizer.build(trainer.trainable_variables)
    trainer.save(run_dir / "checkpoints" / "epoch-001.keras")
    keras.backend.clear_session()
    before = sorted((p.relative_to(run_dir), p.stat().st_mtime_ns) for p in run_dir.rglob("*"))
    result = run_train(["--resume", "--run-dir", run_dir, "--strategy", "mirrored", "--replicas", "2"], timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.strip().splitlines() if not TENSORFLOW_LOG.match(line)]
    assert len(lines) == 1 and lines[0].startswith("train.py: error: gradient clipping (clipnorm=1.0) cannot be "
                                                   "distributed"), result.stderr[-3000:]
    assert "epoch-001.keras" in lines[0]
    assert sorted((p.relative_to(run_dir), p.stat().st_mtime_ns) for p in run_dir.rglob("*")) == before


def test_the_compose_workers_form_one_cluster_of_their_service_names():
    yaml = pytest.importorskip("yaml")
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    workers = {name: service for name, service in services.items() if "train-distributed" in service.get("profiles", [])}
    clusters = {name: parse_tf_config(service["environment"]["TF_CONFIG"]) for name, service in workers.items()}
    assert sorted(clusters) == ["train-worker-0", "train-worker-1"]
    for name, cluster in clusters.items():
        assert cluster.tasks == (("worker", 0, "train-worker-0:2222"), ("worker", 1, "train-worker-1:2222"))
        assert name == f"train-worker-{cluster.rank}"
        assert workers[name]["entrypoint"] == ["python", "-m", "training.cluster", "worker"]
        assert any(arg.startswith("--run-dir=") for arg in workers[name]["command"])
        assert "runs:/src/runs" in workers[name]["volumes"], "the run folder must be shared to resume"
