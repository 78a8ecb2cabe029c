"""``model/keras_losses.py``: cross-entropy and MSE from the logits, against ``numpy_losses``.

The gradient at the logits is compared row by row: cross-entropy must give ``(p - y) / n`` for every
sample, including confidently wrong ones (true-class probability far below 1e-7), which a loss
computed from clipped probabilities (Keras' built-in on a softmax output) silently zeroes.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from model import keras_losses as losses
from model import numpy_activations as nf
from model import numpy_losses
from tests.model.conftest import check

N, K = 128, 10


def loss_and_logit_gradient(loss, y, z):
    z = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = loss(y, z)
    return float(value), tape.gradient(value, z).numpy()


def numpy_loss_and_logit_gradient(name, y, z):
    one_hot = np.eye(K, dtype=np.float32)[y]
    return numpy_losses.LOSSES[name](z, nf.softmax(z), one_hot)


@pytest.fixture(scope="module")
def confident_logits():
    """Logits for 128 rows where half the rows are confidently wrong: the true class has
    p < 1e-7 (down to ~1e-30), the other half confidently right."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, K, N)
    z = rng.normal(0, 3, (N, K)).astype(np.float32)
    wrong = np.arange(N) % 2 == 0
    z[wrong, y[wrong]] -= rng.uniform(20, 70, wrong.sum()).astype(np.float32)
    z[~wrong, y[~wrong]] += 25
    p_true = nf.softmax(z.astype(np.float64))[np.arange(N), y]
    assert (p_true[wrong] < 1e-7).all() and p_true[wrong].min() < 1e-25
    return z, y, wrong


# Every gradient element within this fraction of the largest one. Cross-entropy's (p - y)/n is one
# subtraction per element: a couple of float32 ulps (observed 1.8e-7). MSE's p * (g - sum_k g_k p_k)
# cancels terms of size |g| to results up to 4x smaller, and autodiff through the softmax sums in
# another order than NumPy's closed form: about 12 ulps of the largest element observed (1.4e-6).
GRADIENT_TOL = {"cross_entropy": 1e-6, "mse": 1e-5}


@pytest.mark.parametrize("name", sorted(numpy_losses.LOSSES))
@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_loss_and_logit_gradient_match_numpy_row_by_row(name, scale, mirror_report):
    """Ordinary logits (and 10x larger ones): loss to 1e-6 relative, every gradient element to
    GRADIENT_TOL of the largest one."""
    rng = np.random.default_rng(3)
    z = (rng.normal(0, 2, (N, K)) * scale).astype(np.float32)
    y = rng.integers(0, K, N)
    loss, grad = loss_and_logit_gradient(losses.get(name), y, z)
    expected_loss, expected_grad = numpy_loss_and_logit_gradient(name, y, z)
    loss_diff = abs(loss - expected_loss) / abs(expected_loss)
    grad_diff = float(np.abs(grad - expected_grad).max() / np.abs(expected_grad).max())
    check(loss_diff, 1e-6, f"{name}: relative loss difference")
    check(grad_diff, GRADIENT_TOL[name], f"{name}: gradient difference relative to its largest element")
    mirror_report(f"loss {name:<13} logits x{scale:<4g} relative loss diff {loss_diff:.1e}, "
                  f"logit gradient diff {grad_diff:.1e} (of max)")


def test_cross_entropy_gradient_is_p_minus_y_over_n_even_when_confidently_wrong(confident_logits, mirror_report):
    z, y, wrong = confident_logits
    loss, grad = loss_and_logit_gradient(losses.CrossEntropy(), y, z)
    expected_loss, expected_grad = numpy_loss_and_logit_gradient("cross_entropy", y, z)
    p = nf.softmax(z)
    np.testing.assert_array_equal(expected_grad, (p - np.eye(K, dtype=np.float32)[y]) / np.float32(N))
    row_diff = np.abs(grad - expected_grad).max(axis=1)
    # Entries are at most 1/n = 7.8e-3 in size, where a float32 ulp is 9.3e-10: 4e-9 is 4 ulps.
    check(float(row_diff.max()), 4e-9, "cross-entropy: max |dL/dz - (p - y)/n| over rows")
    # The confidently wrong rows get the full push: -1/n at the true class.
    np.testing.assert_allclose(grad[wrong, y[wrong]], -1 / N, rtol=1e-6)
    check(abs(loss - expected_loss) / expected_loss, 1e-6, "cross-entropy: relative loss difference")
    assert loss > 20  # dominated by the wrong rows, -log p far beyond -log(1e-7) = 16.1
    mirror_report(f"cross-entropy, confidently wrong batch: max row |dL/dz - (p-y)/n| {row_diff.max():.1e}, "
                  f"relative loss diff {abs(loss - expected_loss) / expected_loss:.1e}")


def test_clipping_cross_entropy_on_probabilities_would_zero_those_gradients(confident_logits):
    """Why the loss takes logits: Keras' built-in cross-entropy on a hand-written softmax output
    (ours; on ``keras.ops.softmax`` Keras recognises the op and recovers the logits) clips p at 1e-7
    and gives those rows no push towards the true class (below 1e-12 there against our -1/n = -7.8e-3,
    and rounding-level, < 1e-6, elsewhere in the row)."""
    from model.keras_activations import softmax

    z, y, wrong = confident_logits
    builtin = keras.losses.SparseCategoricalCrossentropy()
    _, grad = loss_and_logit_gradient(lambda yy, zz: builtin(yy, softmax(zz)), y, z)
    assert np.abs(grad[wrong, y[wrong]]).max() < 1e-12
    assert np.abs(grad[wrong]).max() < 1e-6
    ours = loss_and_logit_gradient(losses.CrossEntropy(), y, z)[1]
    np.testing.assert_allclose(ours[wrong, y[wrong]], -1 / N, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(numpy_losses.LOSSES))
def test_mse_and_cross_entropy_with_confidently_wrong_rows_match_numpy(name, confident_logits, mirror_report):
    z, y, _ = confident_logits
    loss, grad = loss_and_logit_gradient(losses.get(name), y, z)
    expected_loss, expected_grad = numpy_loss_and_logit_gradient(name, y, z)
    check(abs(loss - expected_loss) / expected_loss, 1e-6, f"{name}: relative loss difference")
    grad_diff = float(np.abs(grad - expected_grad).max() / np.abs(expected_grad).max())
    check(grad_diff, GRADIENT_TOL[name], f"{name}: gradient difference relative to its largest element")
    mirror_report(f"loss {name:<13} confidently wrong rows: logit gradient diff {grad_diff:.1e} (of max)")


@pytest.mark.parametrize("name", sorted(numpy_losses.LOSSES))
def test_labels_as_ids_column_or_one_hot_give_the_same_loss(name):
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1, (6, K)).astype(np.float32)
    y = rng.integers(0, K, 6)
    loss = losses.get(name)
    values = [float(loss(labels, z)) for labels in
              (y, y.reshape(-1, 1), np.eye(K, dtype=np.float32)[y], y.astype(np.float32))]
    assert values == [values[0]] * 4
    assert values[0] == pytest.approx(float(numpy_losses.LOSSES[name](z, nf.softmax(z), np.eye(K)[y])[0]), rel=1e-6)
    with pytest.raises(ValueError, match="labels must be class ids"):
        loss(np.zeros((6, 3)), z)


def test_reduction_is_the_numpy_batch_mean():
    z = np.random.default_rng(1).normal(0, 1, (5, K)).astype(np.float32)
    y = np.arange(5)
    per_row = losses.CrossEntropy(reduction=None)(y, z)
    assert per_row.shape == (5,)
    assert float(losses.CrossEntropy()(y, z)) == pytest.approx(float(np.sum(per_row)) / 5, rel=1e-7)


def test_get_by_name_and_serialization():
    assert isinstance(losses.get("cross_entropy"), losses.CrossEntropy)
    assert isinstance(losses.get("mse"), losses.MeanSquaredError)
    with pytest.raises(ValueError, match="unknown loss 'hinge'; choose one of cross_entropy, mse"):
        losses.get("hinge")
    for loss in (losses.CrossEntropy(), losses.MeanSquaredError(reduction="sum", name="m")):
        config = loss.get_config()
        revived = keras.losses.deserialize(keras.losses.serialize(loss))
        assert type(revived) is type(loss) and revived.get_config() == config
    assert keras.saving.get_registered_object("mnist_digits>CrossEntropy") is losses.CrossEntropy
