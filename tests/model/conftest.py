"""Helpers shared by the Keras-mirror tests (tests/model/test_keras_*.py) and by the per-backend runs of
the same checks (tests/backends/run_checks.py, which imports the plain functions below).

- ``mirror_report``: tests record the largest differences they observed; the lines are printed in a
  "Keras mirror: observed differences" section at the end of the run (the tolerances in the tests
  are then visibly justified, and drift shows before it fails).
- ``train_batches``: real MNIST training batches of 128, in file order.
- ``gradient_sequence``: 50 sets of real gradients of MNIST batches, taken along a NumPy Adam
  trajectory from ``NumpyNetwork(seed=0)`` so that they change as in training.
- ``max_abs_diff``, ``check``: comparisons that cannot pass on NaN (``not (diff <= tol)``).
- ``near_zero_hidden``: whether a batch puts a hidden pre-activation within 1e-5 of zero.
- the side-by-side runs both places make: ``first_batches``, ``adam_gradient_sequence``,
  ``trained_weights_per_activation``, ``gradient_errors``, ``same_training_steps`` (and
  ``STEP_OPTIMIZERS``, ``KINKED``).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import EndOfRunReport

BATCH = 128
NEAR_ZERO = 1e-5
ACTIVATIONS = ("relu", "sigmoid", "tanh", "leaky_relu")
KINKED = ("relu", "leaky_relu")  # activations with a kink at zero: batches near it are skipped
# name -> learning rate, for the training-step and free-running checks (NumPy and Keras optimizer names)
STEP_OPTIMIZERS = {"sgd": 0.1, "momentum": 0.05, "adagrad": 0.05, "rmsprop": 1e-3, "adam": 1e-3}

REPORT = EndOfRunReport("Keras mirror: observed differences")


@pytest.fixture(scope="session")
def mirror_report():
    return REPORT.add


def pytest_terminal_summary(terminalreporter):
    REPORT.print_to(terminalreporter)


def max_abs_diff(a, b) -> float:
    """Largest ``|a - b|`` over lists of arrays (NaN if any element is NaN)."""
    diffs = [np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))) for x, y in zip(a, b)]
    return float(np.max(diffs))


def relative_error(a, b) -> float:
    """``|a - b| / (|a| + |b|)`` in the Frobenius norm (as in test_numpy_network.py)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-30))


def check(value: float, tol: float, what: str) -> None:
    """``value <= tol``, written so that NaN fails."""
    if not (value <= tol):
        pytest.fail(f"{what}: {value:.3e} exceeds {tol:.0e}")


def near_zero_hidden(net, x, tol=NEAR_ZERO) -> bool:
    """True if some hidden pre-activation of ``net`` on ``x`` lies within ``tol`` of zero."""
    zs, _ = net._forward(np.asarray(x, net.dtype))
    return any(bool((np.abs(z) < tol).any()) for z in zs[:-1])


# ---- side-by-side runs ----------------------------------------------------------------------------
def first_batches(x, y, count: int = 200) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(x, y), ...]``: the first ``count`` batches of ``BATCH``, in file order."""
    return [(x[i * BATCH:(i + 1) * BATCH], y[i * BATCH:(i + 1) * BATCH]) for i in range(count)]


def adam_gradient_sequence(train_batches, steps: int):
    """``(start_weights, [grads_1 .. grads_steps])``: real gradients of the first ``steps`` batches along
    a NumPy Adam(1e-3) trajectory from ``NumpyNetwork(seed=0)``, so that they change as in training."""
    from model import numpy_optimizers
    from model.numpy_network import NumpyNetwork

    net = NumpyNetwork(seed=0)
    start, optimizer, sequence = net.get_weights(), numpy_optimizers.Adam(1e-3), []
    for x, y in train_batches[:steps]:
        _, grads = net.loss_and_gradients(x, y)
        sequence.append(grads)
        optimizer.step(net.params, grads)
    return start, sequence


def trained_weights_per_activation(train_batches, steps: int) -> dict[str, list[np.ndarray]]:
    """Activation -> the weights of a ``NumpyNetwork(seed=1)`` after ``steps`` Adam(2e-3) steps on
    batches 100 onwards (40 steps: about 85 % accurate; 100: about 90 %): realistic weights, non-zero
    biases."""
    from model import numpy_optimizers
    from model.numpy_network import NumpyNetwork

    weights = {}
    for activation in ACTIVATIONS:
        net = NumpyNetwork(activation=activation, seed=1)
        optimizer = numpy_optimizers.Adam(2e-3)
        for x, y in train_batches[100:100 + steps]:
            optimizer.step(net.params, net.loss_and_gradients(x, y)[1])
        weights[activation] = net.get_weights()
    return weights


def gradient_errors(net, model, loss: str, x, y) -> tuple[list[float], float]:
    """Same weights in, same gradients out: the relative error (``relative_error``) of each gradient tensor
    of the Keras ``model`` (through this process's backend's autodiff, tests/backends/autodiff.py) against
    ``net.loss_and_gradients`` on ``(x, y)``, and the loss's relative error. ``AssertionError`` if the
    gradients' shapes differ."""
    from tests.backends.autodiff import loss_and_gradients

    expected_loss, expected = net.loss_and_gradients(x, y)
    got_loss, got = loss_and_gradients(model, loss, x, y)
    if [g.shape for g in got] != [g.shape for g in expected]:
        raise AssertionError(f"gradient shapes {[g.shape for g in got]} != {[g.shape for g in expected]}")
    errors = [relative_error(got_tensor, expected_tensor) for got_tensor, expected_tensor in zip(got, expected)]
    return errors, abs(got_loss - expected_loss) / abs(expected_loss)


def same_training_steps(name: str, train_batches, jit_compile: bool, steps: int = 40,
                        after_step=lambda taken, diff: None) -> dict:
    """The same training step on both sides, ``steps`` times: before each, the Keras weights are set to
    NumPy's (optimizer state is never copied, so that state bugs still show); both then step on the same
    real batch. Batches with a hidden pre-activation near zero are skipped by both. ``after_step(taken,
    diff)`` sees max |w_keras - w_numpy| after each step. Returns ``max_diff``, ``skipped``, ``taken``,
    ``jit_compile`` (the Keras model's) and ``iterations`` ([Keras's, NumPy's])."""
    import keras

    from model import numpy_optimizers
    from model.keras_network import compile_for_training, from_numpy
    from model.numpy_network import NumpyNetwork

    learning_rate = STEP_OPTIMIZERS[name]
    net = NumpyNetwork(seed=0)
    numpy_optimizer = numpy_optimizers.get(name, learning_rate)
    train = compile_for_training(from_numpy(net), name, learning_rate, jit_compile=jit_compile)
    worst, skipped, taken = 0.0, 0, 0
    for x, y in train_batches:
        if taken == steps:
            break
        if near_zero_hidden(net, x):
            skipped += 1  # neither side takes this batch
            continue
        train.set_weights(net.get_weights())
        train.train_on_batch(x, y)
        numpy_optimizer.step(net.params, net.loss_and_gradients(x, y)[1])
        taken += 1
        diff = max_abs_diff(train.get_weights(), net.params)
        after_step(taken, diff)
        worst = max(worst, diff)
    return {"max_diff": worst, "skipped": skipped, "taken": taken, "jit_compile": train.jit_compile,
            "iterations": [int(keras.ops.convert_to_numpy(train.optimizer.iterations)), numpy_optimizer.iterations]}


# ---- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def train_batches(mnist):
    """``[(x, y), ...]``: 200 real MNIST training batches of 128, in file order."""
    (x, y), _ = mnist
    return first_batches(x, y, 200)


@pytest.fixture(scope="session")
def gradient_sequence(train_batches):
    """``(start_weights, [grads_1 .. grads_50])``: real gradients of 50 MNIST batches along a NumPy
    Adam(1e-3) trajectory from ``NumpyNetwork(seed=0)``."""
    return adam_gradient_sequence(train_batches, 50)
