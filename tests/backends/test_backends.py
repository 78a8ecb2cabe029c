"""The Keras mirror on PyTorch and JAX: one ``model/``, three backends, the NumPy twin's numbers.

TensorFlow, the default backend, is proven by tests/model (the same checks, in the test process, with
more steps and every activation/loss pair). The other backends are each measured in a process of its
own (``python -m tests.backends.run_checks BACKEND``, see its docstring for what each check does); the
tests here assert what it observed, with the tolerances of tests/model (where the reasons for each are
written down), and add the figures to the report:

- same gradients in, same update out        every optimizer variant x 20 steps vs NumPy: <= 2e-6
- ours vs Keras's built-in optimizers       bit-identical on TensorFlow and JAX; on torch Keras swaps its
                                            built-ins for ``torch._foreach`` rewrites (other operation
                                            order), so there it is bounded: <= 2e-6
- same weights in, same gradients out       the backend's own autodiff vs NumPy's backward pass: <= 1e-5
                                            relative per tensor, loss <= 1e-6 relative
- same training step                        weights re-synced each of 40 steps, optimizer state carried:
                                            <= 1e-4 (JAX: jit on and off; TensorFlow: eager and XLA)
- torch: the model is a ``torch.nn.Module`` trained by a plain PyTorch loop: <= 1e-5 from NumPy
- export from torch and JAX                 the SavedModel, loaded with plain ``tf.saved_model.load`` in a
                                            fresh process, gives the source backend's probabilities
                                            within 1e-5, same classes
- free-running training, 3 epochs of MNIST  >= 97 % on torch and JAX (TensorFlow: test_keras_network.py)
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.backends.conftest import child_env
from tests.model.conftest import check

# Every test here reads the measurements of a child process per backend (about a minute each): slow, run
# by .ci/checks.d/30-backends.sh (or `python -m pytest tests/backends -m slow`).
pytestmark = pytest.mark.slow

# tensorflow works too (python -m tests.backends.run_checks tensorflow --json OUT), and is left to tests/model
BACKENDS = ("torch", "jax")
OPTIMIZER_TOL = 2e-6
GRADIENT_TOL = 1e-5
STEP_TOL = 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_gradients_in_same_update_out(backend, backend_checks, mirror_report):
    """Each optimizer variant (sgd, momentum, nesterov, adagrad, rmsprop, adam; two learning rates; epsilon
    1e-3 cases) and its NumPy twin, 20 steps on the same real gradients: max |w diff| <= 2e-6."""
    result = backend_checks(backend)["optimizers"]
    assert {case.split("-lr")[0] for case in result} == {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"}
    for case, figures in result.items():
        check(figures["max_diff"], OPTIMIZER_TOL, f"{backend} {case}: max |w_numpy - w_keras| over 20 steps")
        assert figures["iterations"] == [20, 20], case
        assert figures["moved"] > 100 * OPTIMIZER_TOL, f"{backend} {case}: the weights hardly moved"
    worst = max(figures["max_diff"] for figures in result.values())
    mirror_report(f"{backend:<10} optimizer mirror, {len(result)} cases x 20 steps: max |diff| {worst:.1e} "
                  f"(weights moved >= {min(f['moved'] for f in result.values()):.1e})")


@pytest.mark.parametrize("backend", BACKENDS)
def test_our_optimizers_against_the_keras_builtins_of_the_backend(backend, backend_checks, mirror_report):
    """Bit-identical to Keras's built-ins on JAX (as on TensorFlow). On torch, Keras replaces its built-in
    optimizers with ``keras.src.backend.torch.optimizers`` rewrites on ``torch._foreach_*`` ops, which
    order the float32 operations differently: within 2e-6 (observed a few 1e-7)."""
    result = backend_checks(backend)["builtins"]
    worst = max(figures["max_diff"] for figures in result.values())
    classes = {figures["builtin_class"].rsplit(".", 1)[0] for figures in result.values()}
    if backend == "torch":
        assert all(name.startswith("keras.src.backend.torch.optimizers.") for name in classes), classes
        for case, figures in result.items():
            check(figures["max_diff"], OPTIMIZER_TOL, f"torch {case}: max |ours - keras built-in|")
        kind = f"within {OPTIMIZER_TOL:.0e} (torch._foreach rewrites)"
    else:
        bad = {case: figures["max_diff"] for case, figures in result.items() if figures["max_diff"] != 0.0}
        assert not bad, f"{backend}: ours and Keras's built-ins differ: {bad}"
        kind = "bit-identical"
    mirror_report(f"{backend:<10} ours vs Keras built-in, {len(result)} cases x 20 steps: max |diff| {worst:.1e} "
                  f"({kind})")


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_weights_in_same_gradients_out(backend, backend_checks, mirror_report):
    """Gradients from the backend's own autodiff (tests/backends/autodiff.py: GradientTape, torch.autograd,
    jax.value_and_grad) equal ``NumpyNetwork.loss_and_gradients``: relative error <= 1e-5 per tensor."""
    result = backend_checks(backend)["gradients"]
    assert len(result) == 4  # each activation, each loss (run_checks.GRADIENT_CASES)
    for case, figures in result.items():
        check(figures["max_relative_error"], GRADIENT_TOL, f"{backend} {case}: gradient relative error")
        check(figures["loss_relative_error"], 1e-6, f"{backend} {case}: loss relative error")
        assert figures["compared"] >= 5, f"{backend} {case}: only {figures['compared']} batches compared"
    worst = max(figures["max_relative_error"] for figures in result.values())
    compared = sum(figures["compared"] for figures in result.values())
    skipped = sum(figures["skipped"] for figures in result.values())
    mirror_report(f"{backend:<10} gradients, {', '.join(result)}: {compared} batches compared, {skipped} "
                  f"skipped (near-zero ReLU input); max relative error {worst:.1e}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_training_step(backend, backend_checks, mirror_report):
    """``train_on_batch`` on the backend's trainer against NumPy, weights re-synced before each of 40 steps,
    optimizer state carried on each side: max |w diff| <= 1e-4, for SGD, momentum, AdaGrad, RMSprop and
    Adam; on JAX jit-compiled and not, on TensorFlow eager and XLA."""
    result = backend_checks(backend)["steps"]
    expected_modes = {"tensorflow": {"on", "off"}, "jax": {"on", "off"}, "torch": {"off"}}[backend]
    assert {case.rsplit("-", 1)[1] for case in result} == expected_modes
    assert {case.split("-jit")[0] for case in result} == {"sgd", "momentum", "adagrad", "rmsprop", "adam"}
    for case, figures in result.items():
        check(figures["max_diff"], STEP_TOL, f"{backend} {case}: max |w_keras - w_numpy| over 40 steps")
        assert figures["taken"] == 40 and figures["iterations"] == [40, 40], case
        assert figures["jit_compile"] is case.endswith("-on"), f"{backend} {case}: jit_compile {figures['jit_compile']}"
    for mode in sorted(expected_modes):
        cases = {case: f for case, f in result.items() if case.endswith(mode)}
        worst = max(f["max_diff"] for f in cases.values())
        mirror_report(f"{backend:<10} training step, jit {mode:<3}, 5 optimizers x 40 steps: max |w diff| {worst:.1e}")


def test_the_torch_model_is_a_torch_module_a_plain_torch_loop_trains(backend_checks, mirror_report):
    """On torch the Keras model is a ``torch.nn.Module``: ``torch.optim.SGD`` over ``model.parameters()``,
    ``F.cross_entropy`` of its logits and ``loss.backward()`` train it, 20 steps, to the NumPy twin's
    weights (<= 1e-5), plain and with momentum 0.9 (torch's ``v = mu v + g; w -= lr v`` is Keras's and
    NumPy's ``v = mu v - lr g; w += v`` rescaled)."""
    result = backend_checks("torch")["torch_module"]
    for label, figures in result.items():
        assert figures["is_module"], "the Keras model is not a torch.nn.Module"
        assert figures["parameters"] == 6  # W1, b1, W2, b2, W3, b3
        check(figures["max_diff"], 1e-5, f"plain torch loop ({label}): max |w_torch - w_numpy|")
        assert figures["moved"] > 100 * 1e-5, f"{label}: the weights hardly moved"
        mirror_report(f"torch      plain PyTorch loop ({label}, 20 steps): max |w diff| {figures['max_diff']:.1e} "
                      f"(weights moved up to {figures['moved']:.1e})")


# Loads an export as the service does: plain TensorFlow, a fresh process, another folder, no project imports.
LOAD_EXPORT = r"""
import json, sys
import numpy as np, tensorflow as tf
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
x, expected = np.load(sys.argv[2]), np.load(sys.argv[3])
p = serve(pixels=tf.constant(x))["probabilities"].numpy()
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("model", "training", "service", "tests"))
print(json.dumps({"max_diff": float(np.abs(p - expected).max()), "same_class": float((p.argmax(1) == expected.argmax(1)).mean()),
                  "shape": p.shape, "dtype": str(p.dtype), "leaked": leaked,
                  "inputs": list(serve.structured_input_signature[1]), "outputs": list(serve.structured_outputs)}))
"""


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_an_export_from_the_backend_loads_in_plain_tensorflow(backend, backend_checks, tmp_path, mirror_report):
    """A model trained on torch or JAX, exported through the TensorFlow subprocess: the SavedModel loads
    with plain ``tf.saved_model.load`` in a fresh process (which imports nothing of the project)
    and gives the source backend's probabilities on the 10,000 test images: same classes, max |diff| <= 1e-5."""
    result = backend_checks(backend)["export"]
    done = subprocess.run([sys.executable, "-c", LOAD_EXPORT, result["path"], result["images"],
                           result["probabilities"]], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**child_env(), "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["inputs"] == ["pixels"] and loaded["outputs"] == ["probabilities"]
    assert loaded["shape"] == [10000, 10] and loaded["dtype"] == "float32"
    assert loaded["leaked"] == []
    assert loaded["same_class"] == 1.0
    check(loaded["max_diff"], 1e-5, f"{backend} export: max |p_savedmodel - p_{backend}|")
    metadata = json.loads(open(f"{result['path']}/assets.extra/metadata.json").read())
    assert metadata["backend"]["name"] == backend and metadata["backend"]["version"]
    mirror_report(f"{backend:<10} export -> plain tf.saved_model.load: same class on all 10k test images, "
                  f"max |p diff| {loaded['max_diff']:.1e}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_free_running_training_reaches_97_percent(backend, backend_checks, mirror_report):
    """3 epochs on real MNIST (Adam, cosine decay from 3e-3, batch 128; test_keras_network.py's recipe,
    which checks TensorFlow) reach >= 97 % test accuracy on the backend (observed 97.7-97.8 %)."""
    result = backend_checks(backend)["accuracy"]
    assert result["test_accuracy"] >= 0.97, f"{backend}: test accuracy {result['test_accuracy']:.4f}, " \
                                            f"training accuracy {result['train_accuracy']}"
    mirror_report(f"{backend:<10} free running, 3 epochs of MNIST: test accuracy {result['test_accuracy']:.2%} "
                  f"(fit {result['fit_seconds']:.0f} s)")
