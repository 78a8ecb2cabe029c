"""The Keras mirror computes what ``NumpyNetwork`` computes: gradients, training steps, trained models.

Why layers of proof, each with its own tolerance. The two implementations sum in different orders
(OpenBLAS vs TensorFlow's kernels), so their float32 results differ in the last bits (relative
~1e-7). Two effects then make free-running trajectories drift apart although both are correct:

1. ReLU branches. A hidden pre-activation within rounding noise of zero can be positive on one side
   and negative on the other; that unit then passes gradient on one side only. The gradient and
   training-step checks therefore skip batches that put any ReLU pre-activation within 1e-5 of zero
   (both sides skip them; each test reports how many). Sigmoid has no branch and skips nothing.
2. Adaptive optimizers. RMSprop and Adam divide by the running gradient magnitude, which turns
   last-bit noise in near-zero gradient elements into steps of the size of the learning rate;
   after that the trajectories are merely close, not equal. Free-running RMSprop/Adam are
   therefore compared by what the models predict, not weight by weight.

The optimizer arithmetic itself is proven exact in test_keras_optimizers.py (same gradients in,
same update out). Here:

- same weights in, same gradients out      relative error per tensor <= 1e-5 (observed 3e-7, up to
  6e-6 for MSE with a saturated softmax)
- same training step (weights reset to NumPy's before each of 40 steps, optimizer state never
  copied so that state bugs still show)     max |w diff| <= 1e-4, eager graph and XLA
- same model (50 free-running steps, Keras through ``fit``)  SGD/momentum/AdaGrad weights within
  1e-5; RMSprop/Adam same predicted class on >= 99.9% of the 10k test images, probabilities within 1e-3
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from model import numpy_optimizers as np_opt
from model.keras_network import compile_for_training, from_numpy
from model.numpy_network import NumpyNetwork
from tests.model.conftest import (ACTIVATIONS, BATCH, KINKED, STEP_OPTIMIZERS, check, gradient_errors,
                                  max_abs_diff, near_zero_hidden, same_training_steps,
                                  trained_weights_per_activation)


@pytest.fixture(scope="module")
def trained_weights(train_batches):
    """Activation -> NumPy weights after 100 Adam steps on real MNIST (about 90% accurate)."""
    return trained_weights_per_activation(train_batches, 100)


def confidently_wrong(net, x, y):
    """Make ``net`` confidently wrong on real images: shift the output classes by one and sharpen
    the logits, so the true class gets p < 1e-7 on most rows."""
    params = net.get_weights()
    params[-2], params[-1] = np.roll(params[-2], 1, axis=1) * 8, np.roll(params[-1], 1) * 8
    net.set_weights(params)
    zs, _ = net._forward(x)
    p_true = np.exp(zs[-1].astype(np.float64) - np.log(np.exp(zs[-1].astype(np.float64)).sum(1, keepdims=True)))
    return p_true[np.arange(len(y)), y]


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_same_weights_in_same_gradients_out(activation, loss, trained_weights, train_batches, mirror_report):
    """For the same weights and real MNIST batches of 128, the Keras model's autodiff gradients
    equal ``NumpyNetwork.loss_and_gradients``: relative error (Frobenius) <= 1e-5 per tensor, loss
    within 1e-6 relative. Ten batches at the trained weights, then one with confidently wrong
    predictions (true class p < 1e-7 on most rows). ReLU batches with a pre-activation within 1e-5
    of zero are skipped (see the module docstring) and counted; so are leaky ReLU ones (the slope
    changes there); sigmoid and tanh are smooth and skip nothing.

    Observed: ~3e-7 on ordinary batches (a few float32 ulps), up to ~6e-6 for MSE on the confidently
    wrong batch: with a saturated softmax, ``p * (g - sum_k g_k p_k)`` cancels two nearly equal
    terms, and NumPy's closed form and autodiff through the softmax round differently there."""
    net = NumpyNetwork(activation=activation, loss=loss)
    net.set_weights(trained_weights[activation])
    model = from_numpy(net)
    batches = [(x, y, False) for x, y in train_batches[:10]]
    wrong_x, wrong_y = train_batches[10]
    batches.append((wrong_x, wrong_y, True))
    worst_grad, worst_loss, skipped, compared, confident_rows = 0.0, 0.0, 0, 0, 0
    for x, y, make_wrong in batches:
        if make_wrong:
            p_true = confidently_wrong(net, x, y)
            confident_rows = int((p_true < 1e-7).sum())
            assert confident_rows >= BATCH // 2, f"only {confident_rows} confidently wrong rows"
            model.set_weights(net.get_weights())
        if activation in KINKED and near_zero_hidden(net, x):
            skipped += 1
            assert not make_wrong, "the confidently wrong batch must not be skipped: pick another"
            continue
        errors, loss_error = gradient_errors(net, model, loss, x, y)
        batch_kind = " (confidently wrong)" if make_wrong else ""
        for index, error in enumerate(errors):
            check(error, 1e-5, f"{activation}/{loss} parameter {index}{batch_kind}")
        check(loss_error, 1e-6, f"{activation}/{loss} loss{batch_kind}")
        worst_grad, worst_loss = max([worst_grad, *errors]), max(worst_loss, loss_error)
        compared += 1
    assert compared >= 7, f"only {compared} of {len(batches)} batches compared"
    mirror_report(f"gradients {activation:<10} {loss:<13} {compared} batches compared, {skipped} skipped "
                  f"(near-zero ReLU input); max relative error {worst_grad:.1e}, loss {worst_loss:.1e}; "
                  f"{confident_rows}/128 rows with p_true < 1e-7")


def same_training_step(name, train_batches, jit_compile, steps=40, tol=1e-4):
    """``same_training_steps`` with max |w diff| <= ``tol`` after every step, every step taken and counted
    on both sides; returns (max diff, skipped batches)."""
    def within_tolerance(taken, diff):
        check(diff, tol, f"{name} (jit_compile={jit_compile}) step {taken}: max |w_keras - w_numpy|")

    run = same_training_steps(name, train_batches, jit_compile, steps, after_step=within_tolerance)
    assert run["jit_compile"] is jit_compile
    assert run["taken"] == steps, f"only {run['taken']} steps in {len(train_batches)} batches"
    assert run["iterations"] == [steps, steps]
    return run["max_diff"], run["skipped"]


@pytest.mark.parametrize("name", sorted(STEP_OPTIMIZERS))
def test_same_training_step(name, train_batches, mirror_report):
    """40 ``train_on_batch`` steps against 40 NumPy steps from the same weights: max |w diff| <= 1e-4
    after every step (observed below 1e-6: rounding of the gradients only)."""
    worst, skipped = same_training_step(name, train_batches, jit_compile=False)
    mirror_report(f"training step {name:<9} 40 steps, {skipped} batches skipped, max |w diff| {worst:.1e}")


@pytest.mark.parametrize("name", sorted(STEP_OPTIMIZERS))
def test_same_training_step_under_xla(name, train_batches, mirror_report):
    """The same with ``jit_compile=True`` forced on (Keras turns XLA off on CPU by default): XLA fuses
    and reorders the arithmetic, which must not change the result beyond rounding."""
    worst, skipped = same_training_step(name, train_batches, jit_compile=True)
    mirror_report(f"training step {name:<9} XLA, 40 steps, {skipped} batches skipped, max |w diff| {worst:.1e}")


@pytest.fixture(scope="module")
def free_running(mnist):
    """Train NumPy (``NumpyNetwork.fit``) and Keras (``model.fit``, ``shuffle=False``) 50 steps of
    128 from the same weights on the same batches; returns name -> (numpy net, keras model)."""
    (x, y), _ = mnist
    x, y = x[:50 * BATCH], y[:50 * BATCH]
    cache = {}

    def run(name):
        if name not in cache:
            lr = STEP_OPTIMIZERS[name]
            net = NumpyNetwork(seed=0)
            model = from_numpy(net)
            train = compile_for_training(model, name, lr)
            history = train.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
            net.fit(x, y, epochs=1, batch_size=BATCH, optimizer=np_opt.get(name, lr), shuffle=False, verbose=False)
            assert int(keras.ops.convert_to_numpy(train.optimizer.iterations)) == 50
            assert history.history["accuracy"][0] > 0.5
            cache[name] = net, model
        return cache[name]

    return run


@pytest.mark.parametrize("name", ["sgd", "momentum", "adagrad"])
def test_same_model_free_running_weights(name, free_running, mirror_report):
    """Non-adaptive optimizers: rounding differences stay rounding differences, weights within 1e-5
    after 50 free-running steps (no batch skipped: a ReLU flip moves a weight by ~lr * x * delta / n,
    far below 1e-5 here)."""
    net, model = free_running(name)
    diff = max_abs_diff(model.get_weights(), net.params)
    moved = max_abs_diff(net.params, NumpyNetwork(seed=0).params)
    check(diff, 1e-5, f"{name}: max |w_keras - w_numpy| after 50 free-running steps")
    mirror_report(f"free running {name:<9} 50 steps: max |w diff| {diff:.1e} (weights moved up to {moved:.1e})")


@pytest.mark.parametrize("name", ["rmsprop", "adam", "sgd", "momentum", "adagrad"])
def test_same_model_free_running_predictions(name, free_running, mnist, mirror_report):
    """All optimizers, adaptive ones included: after 50 free-running steps the two models predict the
    same class for >= 99.9% of the 10k test images and probabilities within 1e-3."""
    _, (xt, _) = mnist
    net, model = free_running(name)
    p_numpy = net.forward(xt)
    p_keras = model.predict(xt, batch_size=2048, verbose=0)
    same = float((p_numpy.argmax(1) == p_keras.argmax(1)).mean())
    prob_diff = float(np.abs(p_numpy - p_keras).max())
    weight_diff = max_abs_diff(model.get_weights(), net.params)
    assert same >= 0.999, f"{name}: same predicted class on only {same:.4%} of the test images"
    check(prob_diff, 1e-3, f"{name}: max |p_keras - p_numpy| on the test set")
    mirror_report(f"free running {name:<9} 50 steps: same class on {same:.2%} of 10k test images, "
                  f"max |p diff| {prob_diff:.1e}, max |w diff| {weight_diff:.1e}")
