"""``model/keras_layers.py``: the keras.ops activations against numpy_activations, and the ScratchDense /
ScratchSoftmax layers (shapes, initialisers, config, no built-in shortcuts)."""

from __future__ import annotations

import ast
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from model import keras_activations as activations
from model import keras_layers as layers
from model import numpy_activations as nf
from tests.model.conftest import check

MODEL_DIR = Path(__file__).resolve().parents[2] / "model"
Z = np.array([-1000.0, -100.0, -20.0, -3.0, -1e-3, -1e-30, 0.0, 1e-30, 1e-3, 0.5, 3.0, 20.0, 100.0, 1000.0],
             dtype=np.float32)


def value_and_derivative(fn, z):
    z = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(z)
        a = fn(z)
    return a.numpy(), tape.gradient(a, z).numpy()


@pytest.mark.parametrize("name", sorted(nf.ACTIVATIONS))
def test_activation_and_its_autodiff_derivative_match_numpy(name, mirror_report):
    """Values to 2 float32 ulps (exp/tanh implementations differ in the last bit) and autodiff
    derivatives to 2e-7, at every point including 0 (relu'(0) = 0, leaky_relu'(0) = 0.01,
    sigmoid'(0) = 1/4) and +-1000 (no overflow, no NaN)."""
    f, df = nf.ACTIVATIONS[name]
    expected = f(Z)
    a, da = value_and_derivative(getattr(activations, name), Z)
    assert a.dtype == np.float32 and np.isfinite(a).all() and np.isfinite(da).all()
    value_diff = float(np.max(np.abs(a - expected) / np.maximum(np.abs(expected), 1e-30) * (expected != 0)
                              + np.abs(a - expected) * (expected == 0)))
    check(value_diff, 2.4e-7, f"{name}: relative value difference")
    derivative_diff = float(np.max(np.abs(da - df(Z, expected))))
    check(derivative_diff, 2e-7, f"{name}: derivative difference")
    mirror_report(f"activation {name:<11} max relative value diff {value_diff:.1e}, derivative diff "
                  f"{derivative_diff:.1e}")


def test_derivatives_at_zero_are_numpys():
    zero = np.zeros(1, np.float32)
    for name, expected in [("relu", 0.0), ("leaky_relu", 0.01), ("sigmoid", 0.25), ("tanh", 1.0)]:
        _, d = value_and_derivative(getattr(activations, name), zero)
        assert d[0] == pytest.approx(expected, rel=1e-6), name


def test_softmax_and_log_softmax_match_numpy_and_stay_finite():
    z = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4], [3.0, 1.0, 0.2], [50.0, -50.0, 0.0]],
                 dtype=np.float32)
    p = keras.ops.convert_to_numpy(activations.softmax(z))
    lp = keras.ops.convert_to_numpy(activations.log_softmax(z))
    np.testing.assert_allclose(p, nf.softmax(z), rtol=2.4e-7, atol=1e-30)
    np.testing.assert_allclose(lp, nf.log_softmax(z), rtol=2.4e-7, atol=1e-6)
    assert np.isfinite(lp).all() and lp.min() < -1999  # log p far below log(1e-7): no clipping
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-6)


def test_scratch_dense_computes_f_of_x_w_plus_b():
    layer = layers.ScratchDense(4, "tanh", seed=1, name="under_test")
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    out = keras.ops.convert_to_numpy(layer(x))
    assert out.shape == (3, 4)
    assert [w.name for w in layer.weights] == ["kernel", "bias"]
    assert [w.path for w in layer.weights] == ["under_test/kernel", "under_test/bias"]
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    assert kernel.shape == (5, 4) and bias.shape == (4,) and not bias.any()
    np.testing.assert_allclose(out, np.tanh(x @ kernel + bias), rtol=1e-6, atol=1e-7)
    layer.bias.assign(np.arange(4, dtype=np.float32))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), np.tanh(x @ kernel + np.arange(4)),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("activation,initializer", [
    ("relu", "he_normal"), ("leaky_relu", "he_normal"), ("sigmoid", "glorot_uniform"),
    ("tanh", "glorot_uniform"), (None, "glorot_uniform"), ("softmax", "glorot_uniform"),
])
def test_initialisers_are_numpys(activation, initializer):
    """He normal N(0, 2/fan_in) untruncated for the ReLU family, Glorot uniform U(-l, l) otherwise,
    as numpy_network.initial_weights (the same distributions; the random numbers differ)."""
    layer = layers.ScratchDense(128, activation, seed=3)
    layer.build((None, 784))
    assert layer.initializer == initializer
    w = keras.ops.convert_to_numpy(layer.kernel)
    limit = np.sqrt(6 / (784 + 128))
    if initializer == "he_normal":
        assert w.std() == pytest.approx(np.sqrt(2 / 784), rel=0.02)
        assert np.abs(w).max() > 2.5 * np.sqrt(2 / 784)  # untruncated: tails beyond 2 sigma exist
    else:
        assert w.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
    assert abs(w.mean()) < 0.05 * w.std()


def test_initialisation_is_deterministic_per_seed_and_can_be_chosen():
    def kernel(**kwargs):
        layer = layers.ScratchDense(8, "relu", **kwargs)
        layer.build((None, 6))
        return keras.ops.convert_to_numpy(layer.kernel)

    np.testing.assert_array_equal(kernel(seed=4), kernel(seed=4))
    assert not np.array_equal(kernel(seed=4), kernel(seed=5))
    assert not np.array_equal(kernel(), kernel())
    glorot = layers.ScratchDense(8, "relu", initializer="glorot_uniform", seed=1)
    glorot.build((None, 6))
    assert np.abs(keras.ops.convert_to_numpy(glorot.kernel)).max() <= np.sqrt(6 / 14)


def test_config_round_trips_and_the_layer_is_registered():
    layer = layers.ScratchDense(7, "leaky_relu", seed=11, initializer="glorot_uniform", name="mine")
    config = layer.get_config()
    assert {k: config[k] for k in ("units", "activation", "seed", "initializer", "name")} == \
        {"units": 7, "activation": "leaky_relu", "seed": 11, "initializer": "glorot_uniform", "name": "mine"}
    assert layers.ScratchDense.from_config(config).get_config() == config
    revived = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(revived) is layers.ScratchDense and revived.get_config() == config
    assert keras.saving.get_registered_object("mnist_digits>ScratchDense") is layers.ScratchDense
    assert keras.saving.get_registered_object("mnist_digits>ScratchSoftmax") is layers.ScratchSoftmax
    assert layers.ScratchDense(3).get_config()["activation"] == "linear"


@pytest.mark.parametrize("kwargs,message", [
    ({"units": 0}, "units must be a positive integer, got 0"),
    ({"units": 2.5}, "units must be a positive integer, got 2.5"),
    ({"units": 3, "activation": "swish"}, "unknown activation 'swish'"),
    ({"units": 3, "initializer": "lecun"}, "unknown initializer 'lecun'"),
])
def test_bad_arguments_name_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        layers.ScratchDense(**kwargs)


def test_scratch_softmax_layer_gives_probabilities():
    z = np.array([[2.0, 1.0, -1.0], [1000.0, 0.0, 0.0]], np.float32)
    p = keras.ops.convert_to_numpy(layers.ScratchSoftmax()(z))
    np.testing.assert_allclose(p, nf.softmax(z), rtol=2.4e-7)


def dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def test_model_code_uses_only_keras_ops_and_no_builtin_shortcuts():
    """No TensorFlow (backend-agnostic), no keras.activations, no keras.layers.Dense in model/."""
    forbidden_modules = ("tensorflow", "keras.activations", "keras.src")
    for path in sorted(MODEL_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            used = []
            if isinstance(node, ast.Import):
                used = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                used = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Attribute):
                used = [dotted(node)]
            elif isinstance(node, ast.Name):
                used = [node.id]
            for name in used:
                assert name != "tf" and not name.startswith("tf."), f"{path.name}:{node.lineno} uses {name}"
                assert not name.startswith(forbidden_modules), f"{path.name}:{node.lineno} uses {name}"
                assert name not in ("keras.layers.Dense", "layers.Dense", "keras.activations"), \
                    f"{path.name}:{node.lineno} uses {name}"
