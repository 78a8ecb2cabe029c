"""The Keras mirror against the NumPy twin on one Keras backend, in a process of its own (a process has one
Keras backend): measures, and writes the observed differences as JSON for tests/backends/test_backends.py,
which asserts the tolerances and reports the figures.

    python -m tests.backends.run_checks BACKEND --json OUT.json [--checks optimizers,builtins,...]

One process runs every check (Keras, the backend and MNIST are loaded once: about 40 s on torch, 60 s on
JAX, on one thread of a busy 2-core machine).

BACKEND is tensorflow, torch or jax; it is set (``KERAS_BACKEND``) before Keras is imported. Every
comparison starts from the same weights (``from_numpy``, or the same arrays on both sides) and real MNIST
batches of 128 (``MNIST_DATA_DIR``). Gradients come from the backend's own autodiff
(``tests/backends/autodiff.py``); training steps from that backend's Keras trainer. The checks:

- ``optimizers``: same gradients in, same update out: each optimizer variant of test_keras_optimizers.py
  and its NumPy twin, 20 steps on the same gradient sets; max |w diff| over the steps.
- ``builtins``: ours against Keras's built-in optimizers on this backend, 20 steps.
- ``gradients``: same weights in, same gradients out against ``NumpyNetwork.loss_and_gradients``
  (every activation, both losses: ``GRADIENT_CASES``; 10 batches each, ReLU-family batches with a
  pre-activation within 1e-5 of zero skipped); relative error per tensor and of the loss.
- ``steps``: the same training step (``train_on_batch``), weights re-synced from NumPy before each of 40
  steps, optimizer state carried on each side; max |w diff|. On JAX with jit on and off, on TensorFlow
  eager and XLA, on torch eager.
- ``torch_module`` (torch only): the model is a ``torch.nn.Module``; a plain PyTorch loop
  (``torch.optim.SGD``, ``F.cross_entropy``, ``loss.backward()``) trains it, against the NumPy twin.
- ``export`` (torch, jax): ``training.export_keras.export_through_tensorflow`` of a model trained a few
  steps on this backend; writes this backend's probabilities on the test set beside the export so that
  the parent can load the SavedModel in a fresh plain-TensorFlow process and compare.
- ``accuracy``: 3 epochs of free-running training on real MNIST (the recipe of
  test_keras_network.py's 97 % test), test accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from tests.model.conftest import (BATCH, KINKED, STEP_OPTIMIZERS, adam_gradient_sequence, first_batches,
                                  gradient_errors, max_abs_diff, near_zero_hidden, same_training_steps,
                                  trained_weights_per_activation)

CHECKS = ("optimizers", "builtins", "gradients", "steps", "torch_module", "export", "accuracy")
STEPS = 20          # optimizer steps per case (same gradients in, same update out; ours vs built-in)
TRAINING_STEPS = 40  # training steps (same training step)
TRAINED_STEPS = 40   # Adam steps behind the gradient check's weights (test_keras_mirror.py takes 100)
# (activation, loss) pairs of the gradient check: every activation and both losses (all 8 pairs are
# checked on TensorFlow by test_keras_mirror.py; here each pair costs a jit compile on JAX)
GRADIENT_CASES = (("relu", "cross_entropy"), ("sigmoid", "mse"), ("tanh", "cross_entropy"), ("leaky_relu", "mse"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("backend", choices=("tensorflow", "torch", "jax"))
    parser.add_argument("--json", type=Path, required=True, help="write the observed differences here")
    parser.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated subset of {CHECKS} (default: all)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the export check writes (default: a temp dir)")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------- data ----
def mnist():
    from training.data import load_mnist

    return load_mnist(os.environ.get("MNIST_DATA_DIR") or None)


def to_numpy(variables):
    import keras

    return [keras.ops.convert_to_numpy(v) for v in variables]


# -------------------------------------------------------------------------------------- checks ----
def check_optimizers(data) -> dict:
    """Every variant of test_keras_optimizers.py (two learning rates, epsilon 1e-3 cases) vs NumPy."""
    import keras

    from tests.model.test_keras_optimizers import CASES, VARIANTS, case_id, keras_variables

    start, sequence = data["gradients"]
    out = {}
    for name, lr, kwargs in CASES:
        numpy_class, keras_class, base = VARIANTS[name]
        ours_np, ours_k = numpy_class(lr, **base, **kwargs), keras_class(lr, **base, **kwargs)
        params, variables = [w.copy() for w in start], keras_variables(start)
        worst = 0.0
        for grads in sequence[:STEPS]:
            ours_np.step(params, grads)
            ours_k.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads], variables))
            worst = max(worst, max_abs_diff(params, to_numpy(variables)))
        out[case_id((name, lr, kwargs))] = {
            "max_diff": worst, "moved": max_abs_diff(params, start),
            "iterations": [int(keras.ops.convert_to_numpy(ours_k.iterations)), ours_np.iterations]}
    return out


def check_builtins(data) -> dict:
    """Ours vs Keras's built-in optimizer of the same name on this backend (test_keras_optimizers.BUILTIN)."""
    import keras

    from tests.model.test_keras_optimizers import BUILTIN, BUILTIN_CASES, EPSILON_VARIANTS, VARIANTS, keras_variables

    start, sequence = data["gradients"]
    out = {}
    for name, lr in BUILTIN_CASES:
        base_name, _, eps = name.partition("-")
        kwargs = {**VARIANTS[base_name][2], **(EPSILON_VARIANTS[base_name] if eps else {})}
        ours, theirs = VARIANTS[base_name][1](lr, **kwargs), BUILTIN[name](lr)
        ours_variables, their_variables = keras_variables(start), keras_variables(start)
        worst = 0.0
        for grads in sequence[:STEPS]:
            tensors = [keras.ops.convert_to_tensor(g) for g in grads]
            ours.apply_gradients(zip(tensors, ours_variables))
            theirs.apply_gradients(zip(tensors, their_variables))
            worst = max(worst, max_abs_diff(to_numpy(ours_variables), to_numpy(their_variables)))
        out[f"{name}-lr{lr:g}"] = {"max_diff": worst, "builtin_class": type(theirs).__module__ + "." +
                                   type(theirs).__name__}
    return out


def check_gradients(data) -> dict:
    """``gradient_errors`` of each of ``GRADIENT_CASES`` on 10 batches (as test_keras_mirror.py)."""
    from model.keras_network import from_numpy
    from model.numpy_network import NumpyNetwork

    weights = trained_weights_per_activation(data["batches"], TRAINED_STEPS)
    out = {}
    for activation, loss in GRADIENT_CASES:
        net = NumpyNetwork(activation=activation, loss=loss)
        net.set_weights(weights[activation])
        model = from_numpy(net)
        worst_grad, worst_loss, skipped, compared = 0.0, 0.0, 0, 0
        for x, y in data["batches"][:10]:
            if activation in KINKED and near_zero_hidden(net, x):
                skipped += 1
                continue
            errors, loss_error = gradient_errors(net, model, loss, x, y)
            worst_grad, worst_loss = max([worst_grad, *errors]), max(worst_loss, loss_error)
            compared += 1
        out[f"{activation}/{loss}"] = {"max_relative_error": worst_grad, "loss_relative_error": worst_loss,
                                       "compared": compared, "skipped": skipped}
    return out


def check_steps(data, backend) -> dict:
    """``same_training_steps`` (as test_keras_mirror.py) for every optimizer, with each jit setting this
    backend has."""
    jits = {"tensorflow": (False, True), "jax": (True, False), "torch": (False,)}[backend]
    results = {}
    for jit in jits:
        for name in STEP_OPTIMIZERS:
            run = same_training_steps(name, data["batches"], jit, TRAINING_STEPS)
            results[f"{name}-jit-{'on' if jit else 'off'}"] = {**run, "jit_compile": bool(run["jit_compile"])}
    return results


def check_torch_module(data) -> dict:
    """A plain PyTorch training loop on the Keras model: its parameters are torch Parameters."""
    import torch
    import torch.nn.functional as F

    from model import numpy_optimizers
    from model.keras_network import from_numpy, logits_model
    from model.numpy_network import NumpyNetwork

    out = {}
    for label, momentum in (("sgd", 0.0), ("momentum", 0.9)):
        net = NumpyNetwork(seed=0)
        model = from_numpy(net)
        train = logits_model(model)
        is_module = isinstance(model, torch.nn.Module) and isinstance(train, torch.nn.Module)
        parameters = list(model.parameters())
        optimizer = torch.optim.SGD(parameters, lr=0.05, momentum=momentum)
        numpy_optimizer = numpy_optimizers.SGD(0.05, momentum=momentum)
        worst = 0.0
        for x, y in data["batches"][:20]:
            optimizer.zero_grad()
            loss = F.cross_entropy(train(torch.as_tensor(x)), torch.as_tensor(y))
            loss.backward()
            optimizer.step()
            numpy_optimizer.step(net.params, net.loss_and_gradients(x, y)[1])
            worst = max(worst, max_abs_diff(model.get_weights(), net.params))
        out[label] = {"is_module": bool(is_module), "parameters": len(parameters), "steps": 20, "max_diff": worst,
                      "moved": max_abs_diff(net.params, NumpyNetwork(seed=0).params)}
    return out


def check_export(data, backend, work_dir: Path) -> dict:
    """Train a few steps on this backend, export through the TensorFlow subprocess, and leave this
    backend's probabilities on the test set beside the export for the parent's fresh-process check."""
    from model.keras_network import build_model, compile_for_training
    from training.backends import describe
    from training.export_keras import export_through_tensorflow

    model = build_model(seed=0)
    train = compile_for_training(model, "adam", 2e-3, jit_compile=backend == "jax")
    for x, y in data["batches"][:30]:
        train.train_on_batch(x, y)
    x_test = data["test"][0]
    probabilities = model.predict(x_test, batch_size=2048, verbose=0)
    export_base = work_dir / "exports"
    path = export_through_tensorflow(model, export_base, {"backend": describe(backend)}, x_test)
    np.save(work_dir / "source_probabilities.npy", probabilities)
    np.save(work_dir / "test_images.npy", x_test)
    return {"path": str(path), "probabilities": str(work_dir / "source_probabilities.npy"),
            "images": str(work_dir / "test_images.npy"), "test_accuracy": float((probabilities.argmax(1)
                                                                                 == data["test"][1]).mean())}


def check_accuracy(data, backend) -> dict:
    """3 epochs, Adam with cosine decay from 3e-3, batch 128, data shuffled once with seed 0 (the recipe of
    test_keras_network.test_scratch_model_trains_to_97_percent_on_mnist); on JAX jit-compiled."""
    import keras

    from model.keras_network import build_model, compile_for_training

    (x, y), (xt, yt) = data["train"], data["test"]
    order = np.random.default_rng(0).permutation(len(x))
    epochs, steps = 3, -(-len(x) // BATCH)
    keras.utils.set_random_seed(0)
    model = build_model(seed=0)
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=epochs * steps)
    train = compile_for_training(model, "adam", schedule, jit_compile=backend == "jax")
    started = time.perf_counter()
    history = train.fit(x[order], y[order], batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0)
    seconds = time.perf_counter() - started
    accuracy = float((model.predict(xt, batch_size=2048, verbose=0).argmax(1) == yt).mean())
    return {"test_accuracy": accuracy, "train_accuracy": [float(a) for a in history.history["accuracy"]],
            "fit_seconds": seconds}


def main(argv=None) -> int:
    args = parse_args(argv)
    from training import backends

    backends.activate(args.backend)  # before anything imports Keras
    checks = [c.strip() for c in args.checks.split(",") if c.strip()]
    unknown = set(checks) - set(CHECKS)
    if unknown:
        raise SystemExit(f"unknown checks {sorted(unknown)}; choose from {CHECKS}")
    import keras

    if keras.backend.backend() != args.backend:
        raise SystemExit(f"Keras started on {keras.backend.backend()}, not {args.backend}")
    keras.utils.set_random_seed(0)  # (not backends.make_reproducible: TF op determinism turns XLA off)
    (x, y), test = mnist()
    train_batches = first_batches(x, y)
    data = {"batches": train_batches, "train": (x, y), "test": test,
            "gradients": adam_gradient_sequence(train_batches, STEPS)}
    work_dir = args.work_dir or Path(__import__("tempfile").mkdtemp(prefix=f"backend-checks-{args.backend}-"))
    runners = {"optimizers": lambda: check_optimizers(data), "builtins": lambda: check_builtins(data),
               "gradients": lambda: check_gradients(data), "steps": lambda: check_steps(data, args.backend),
               "torch_module": lambda: check_torch_module(data),
               "export": lambda: check_export(data, args.backend, work_dir),
               "accuracy": lambda: check_accuracy(data, args.backend)}
    result = {"backend": args.backend, "keras_backend": keras.backend.backend(),
              "version": backends.version(args.backend), "keras": keras.__version__, "seconds": {}}
    for name in checks:
        if name == "torch_module" and args.backend != "torch" or name == "export" and args.backend == "tensorflow":
            continue  # torch only; TensorFlow exports in-process (tests/training/test_train.py)
        started = time.perf_counter()
        result[name] = runners[name]()
        result["seconds"][name] = round(time.perf_counter() - started, 2)
        print(f"{args.backend}: {name} done in {result['seconds'][name]:.1f} s", file=sys.stderr, flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
