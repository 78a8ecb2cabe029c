"""The NumPy network: gradients against finite differences, shapes and dtypes, errors, training."""

import numpy as np
import pytest

from model import numpy_optimizers as opt
from model.numpy_activations import ACTIVATIONS, sigmoid, softmax
from model.numpy_losses import LOSSES
from model.numpy_network import NumpyNetwork
from tests.model.conftest import relative_error

SMALL = (6, 5, 4, 3)


def numerical_gradients(net, x, y, eps=1e-6):
    """Central differences (L(w + eps) - L(w - eps)) / (2 eps) for every parameter element."""
    grads = []
    for p in net.params:
        g = np.zeros_like(p)
        for index in np.ndindex(p.shape):
            saved = p[index]
            p[index] = saved + eps
            plus, _ = net.loss_and_gradients(x, y)
            p[index] = saved - eps
            minus, _ = net.loss_and_gradients(x, y)
            p[index] = saved
            g[index] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_gradients_match_finite_differences(activation, loss, rng):
    net = NumpyNetwork(SMALL, activation=activation, loss=loss, seed=3, dtype=np.float64)
    # Non-zero biases so that a wrong bias gradient (the tutorial's bug) cannot hide.
    for b in net.biases:
        b[...] = rng.normal(0, 0.5, b.shape)
    x = rng.normal(0, 1, (7, SMALL[0]))
    y = rng.integers(0, SMALL[-1], 7)
    _, analytic = net.loss_and_gradients(x, y)
    numeric = numerical_gradients(net, x, y)
    assert len(analytic) == 2 * (len(SMALL) - 1)
    for i, (a, n) in enumerate(zip(analytic, numeric)):
        assert a.shape == n.shape
        err = relative_error(a, n)
        assert err < 1e-6, f"parameter {i} ({activation}, {loss}): relative error {err:.2e}"


def test_mse_uses_the_full_softmax_jacobian(rng):
    """The tutorial's MSE uses only diag(J) = p(1-p); the full Jacobian gives a different, correct gradient."""
    net = NumpyNetwork(SMALL, loss="mse", seed=0, dtype=np.float64)
    x, y = rng.normal(0, 1, (5, 6)), rng.integers(0, 3, 5)
    zs, acts = net._forward(x)
    p = acts[-1]
    one_hot = np.eye(3)[y]
    _, delta = LOSSES["mse"](zs[-1], p, one_hot)
    diagonal_only = 2 * (p - one_hot) / p.size * p * (1 - p)
    assert not np.allclose(delta, diagonal_only)
    # The full-Jacobian gradient at the logits sums to zero per row (softmax is shift-invariant).
    assert np.abs(delta.sum(axis=1)).max() < 1e-12


def test_cross_entropy_gradient_is_p_minus_y_over_batch(rng):
    net = NumpyNetwork(SMALL, seed=0, dtype=np.float64)
    x, y = rng.normal(0, 1, (4, 6)), np.array([0, 1, 2, 0])
    zs, acts = net._forward(x)
    loss, delta = LOSSES["cross_entropy"](zs[-1], acts[-1], np.eye(3)[y])
    np.testing.assert_allclose(delta, (acts[-1] - np.eye(3)[y]) / 4, rtol=0, atol=1e-15)
    assert loss == pytest.approx(-np.log(acts[-1][np.arange(4), y]).mean(), rel=1e-12)


def test_batch_gradient_is_the_mean_of_per_sample_gradients(rng):
    net = NumpyNetwork(SMALL, seed=1, dtype=np.float64)
    x, y = rng.normal(0, 1, (8, 6)), rng.integers(0, 3, 8)
    _, batch = net.loss_and_gradients(x, y)
    per_sample = [net.loss_and_gradients(x[i:i + 1], y[i:i + 1])[1] for i in range(8)]
    for i, g in enumerate(batch):
        np.testing.assert_allclose(g, np.mean([s[i] for s in per_sample], axis=0), atol=1e-12)


def test_shapes_dtypes_and_keras_weight_order():
    net = NumpyNetwork()
    assert net.sizes == (784, 128, 64, 10)
    shapes = [w.shape for w in net.get_weights()]
    assert shapes == [(784, 128), (128,), (128, 64), (64,), (64, 10), (10,)]
    assert all(w.dtype == np.float32 for w in net.get_weights())
    assert all(not b.any() for b in net.biases)
    x = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    p = net.forward(x)
    assert p.shape == (3, 10) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-6)
    assert net.predict(x).shape == (3,)


@pytest.mark.parametrize("activation,expected_std", [
    ("relu", np.sqrt(2 / 784)), ("leaky_relu", np.sqrt(2 / 784)),
    ("sigmoid", np.sqrt(6 / (784 + 128)) / np.sqrt(3)), ("tanh", np.sqrt(6 / (784 + 128)) / np.sqrt(3)),
])
def test_initialisation_he_for_relu_glorot_for_saturating(activation, expected_std):
    w = NumpyNetwork(activation=activation, seed=0).weights[0]
    assert w.std() == pytest.approx(expected_std, rel=0.02)
    if activation in ("sigmoid", "tanh"):  # Glorot uniform is bounded by its limit
        assert np.abs(w).max() <= np.sqrt(6 / (784 + 128))


def test_initialisation_is_deterministic_per_seed():
    a, b, c = NumpyNetwork(seed=5), NumpyNetwork(seed=5), NumpyNetwork(seed=6)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.weights[0], c.weights[0])


def test_set_weights_round_trips_and_checks_shapes():
    a, b = NumpyNetwork(seed=1), NumpyNetwork(seed=2)
    b.set_weights(a.get_weights())
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    with pytest.raises(ValueError, match=r"shape \(3, 3\), expected \(784, 128\)"):
        b.set_weights([np.zeros((3, 3))] + a.get_weights()[1:])
    with pytest.raises(ValueError, match="expected 6 arrays"):
        b.set_weights(a.get_weights()[:2])


def test_one_hot_and_class_id_labels_agree(rng):
    net = NumpyNetwork(SMALL, seed=0)
    x, y = rng.random((5, 6), dtype=np.float32), np.array([0, 2, 1, 1, 0])
    loss_ids, g_ids = net.loss_and_gradients(x, y)
    loss_hot, g_hot = net.loss_and_gradients(x, np.eye(3, dtype=np.float32)[y])
    assert loss_ids == loss_hot
    for a, b in zip(g_ids, g_hot):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kwargs,message", [
    ({"activation": "swish"}, "unknown activation 'swish'"),
    ({"loss": "hinge"}, "unknown loss 'hinge'"),
    ({"sizes": (784,)}, r"at least an input and an output size, got \(784,\)"),
    ({"sizes": (784, 0, 10)}, "positive integers, got 0"),
    ({"sizes": (784, -5, 10)}, "positive integers, got -5"),
    ({"sizes": (784, 2.5, 10)}, "positive integers, got 2.5"),
])
def test_bad_constructor_arguments_name_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NumpyNetwork(**kwargs)


def test_bad_inputs_and_labels_name_the_problem():
    net = NumpyNetwork(SMALL)
    with pytest.raises(ValueError, match=r"shape \(n, 6\), got \(2, 5\)"):
        net.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\], got \[3\]"):
        net.loss_and_gradients(np.zeros((2, 6)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"class ids in \[0, 2\], got \[-1\]"):
        net.loss_and_gradients(np.zeros((2, 6)), np.array([-1, 0]))
    with pytest.raises(ValueError, match="2 inputs but 3 labels"):
        net.loss_and_gradients(np.zeros((2, 6)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        opt.get("adamw")


def test_softmax_and_sigmoid_are_stable_for_extreme_inputs():
    z = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        p = softmax(z)
        s = sigmoid(np.array([-1000.0, 0.0, 1000.0], dtype=np.float32))
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-7)
    np.testing.assert_allclose(s, [0, 0.5, 1], atol=1e-7)
    assert s.dtype == np.float32


def test_training_on_a_few_thousand_mnist_images_beats_chance_by_far(mnist_small):
    (x, y), (xt, yt) = mnist_small
    net = NumpyNetwork(seed=0)
    history = net.fit(x, y, epochs=2, batch_size=32, optimizer=opt.SGD(0.1, momentum=0.9), verbose=False)
    loss, accuracy = net.evaluate(xt, yt)
    assert accuracy > 0.85, accuracy
    assert history["loss"][1] < history["loss"][0]
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}


def test_default_network_with_adam_reaches_97_percent_on_the_official_test_set(mnist):
    (x, y), (xt, yt) = mnist
    net = NumpyNetwork(seed=0)
    history = net.fit(x, y, epochs=6, batch_size=128, optimizer=opt.Adam(1e-3),
                      validation_data=(xt[:2000], yt[:2000]), verbose=False)
    _, accuracy = net.evaluate(xt, yt)
    assert accuracy >= 0.97, f"test accuracy {accuracy:.4f}, history {history['val_accuracy']}"


@pytest.mark.parametrize("hidden", [(32,), (64, 32), (48, 32, 16), (32, 32, 32, 32), (40, 32, 24, 16, 12)])
def test_any_number_of_hidden_layers_trains(hidden, mnist_small):
    (x, y), (xt, yt) = mnist_small
    net = NumpyNetwork((784, *hidden, 10), seed=0)
    assert len(net.weights) == len(hidden) + 1
    before = net.evaluate(xt, yt)[0]
    net.fit(x, y, epochs=1, batch_size=64, optimizer=opt.Adam(2e-3), verbose=False)
    loss, accuracy = net.evaluate(xt, yt)
    assert loss < before and accuracy > 0.6, (hidden, loss, accuracy)


def test_fit_without_shuffle_visits_batches_in_order(rng):
    """With shuffle=False one epoch equals manual steps over consecutive batches (the Keras mirror relies on it)."""
    x, y = rng.random((10, 6), dtype=np.float32), rng.integers(0, 3, 10)
    a, b = NumpyNetwork(SMALL, seed=0), NumpyNetwork(SMALL, seed=0)
    a.fit(x, y, epochs=1, batch_size=4, optimizer=opt.Adam(0.01), shuffle=False, verbose=False)
    optimizer = opt.Adam(0.01)
    for start in range(0, 10, 4):
        optimizer.step(b.params, b.loss_and_gradients(x[start:start + 4], y[start:start + 4])[1])
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
