"""``model/keras_network.py``: the model's shape and names, weight transfer to and from NumPy, the training
model, ``.keras`` round trips with optimizer state, and real training to 97% on MNIST."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from model import keras_losses as losses
from model import keras_optimizers as optimizers
from model.keras_layers import ScratchDense, ScratchSoftmax
from model.keras_network import build_model, compile_for_training, from_numpy, logits_model, to_numpy
from model.numpy_network import NumpyNetwork
from tests.model.conftest import BATCH, check


def test_model_takes_pixels_and_gives_probabilities():
    model = build_model()
    assert model.input_shape == (None, 784) and model.output_shape == (None, 10)
    assert model.inputs[0].name == "pixels" and model.output_names == ["probabilities"]
    assert [type(layer) for layer in model.layers[1:]] == [ScratchDense] * 3 + [ScratchSoftmax]
    assert [layer.name for layer in model.layers] == ["pixels", "hidden_1", "hidden_2", "logits", "probabilities"]
    assert [w.shape for w in model.get_weights()] == [(784, 128), (128,), (128, 64), (64,), (64, 10), (10,)]
    p = model.predict(np.random.default_rng(0).random((4, 784), dtype=np.float32), verbose=0)
    np.testing.assert_allclose(p.sum(axis=1), 1, atol=1e-6)
    assert (p > 0).all()


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_every_layer_is_initialised_by_the_network_activation_like_numpy(activation):
    """NumPy picks He or Glorot by the network's activation for every layer, the logits layer too."""
    model = build_model((784, 32, 10), activation)
    expected = "he_normal" if activation in ("relu", "leaky_relu") else "glorot_uniform"
    assert [layer.initializer for layer in model.layers if isinstance(layer, ScratchDense)] == [expected] * 2
    assert model.get_layer("hidden_1").activation == activation
    assert model.get_layer("logits").activation == "linear"


def test_seed_makes_the_initialisation_deterministic():
    a, b, c = build_model(seed=3), build_model(seed=3), build_model(seed=4)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])
    assert not np.array_equal(build_model(seed=None).get_weights()[0], build_model(seed=None).get_weights()[0])


@pytest.mark.parametrize("kwargs", [
    {"activation": "swish"}, {"sizes": (784,)}, {"sizes": (784, 0, 10)}, {"sizes": (784, 2.5, 10)},
])
def test_bad_arguments_give_the_numpy_messages(kwargs):
    with pytest.raises(ValueError) as numpy_error:
        NumpyNetwork(**kwargs)
    with pytest.raises(ValueError) as keras_error:
        build_model(**kwargs)
    assert str(keras_error.value) == str(numpy_error.value)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "leaky_relu"])
def test_weights_move_between_numpy_and_keras_unchanged(activation, mnist_small):
    """``[W1, b1, ...]`` is the order of keras ``get_weights``: the copies are bit for bit."""
    (x, _), _ = mnist_small
    net = NumpyNetwork((784, 48, 32, 10), activation=activation, seed=2)
    for b in net.biases:
        b[...] = np.random.default_rng(0).normal(0, 0.1, b.shape)
    model = from_numpy(net)
    assert [v.path for v in model.weights] == [f"{name}/{kind}" for name in ("hidden_1", "hidden_2", "logits")
                                               for kind in ("kernel", "bias")]
    for a, b in zip(model.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(a, b)
    back = to_numpy(model, loss="mse")
    assert (back.sizes, back.activation, back.loss) == (net.sizes, activation, "mse")
    for a, b in zip(back.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(a, b)
    diff = float(np.abs(model.predict(x[:1000], verbose=0) - net.forward(x[:1000])).max())
    check(diff, 1e-6, "probabilities of the same weights")
    np.testing.assert_array_equal(to_numpy(logits_model(model)).params[0], net.params[0])


def test_to_numpy_refuses_what_numpy_cannot_represent():
    inputs = keras.Input((6,))
    mixed = keras.Model(inputs, ScratchDense(3)(ScratchDense(4, "tanh")(ScratchDense(5, "relu")(inputs))))
    with pytest.raises(ValueError, match="one hidden activation"):
        to_numpy(mixed)
    other = keras.Model(inputs, keras.layers.Identity()(ScratchDense(3)(inputs)))
    with pytest.raises(ValueError, match="stack of ScratchDense layers"):
        to_numpy(other)
    single = build_model((6, 3), "tanh")
    assert to_numpy(single).sizes == (6, 3)


def test_logits_model_shares_the_variables():
    model = build_model()
    train = logits_model(model)
    assert [id(v) for v in train.weights] == [id(v) for v in model.weights]
    assert train.output_shape == (None, 10) and train.layers[-1].name == "logits"
    x = np.random.default_rng(1).random((3, 784), dtype=np.float32)
    z = train.predict(x, verbose=0)
    np.testing.assert_allclose(model.predict(x, verbose=0), np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-5)
    with pytest.raises(ValueError, match="no layer named 'logits'"):
        inputs = keras.Input((3,))
        logits_model(keras.Model(inputs, ScratchDense(2)(inputs)))


def test_compile_for_training_uses_our_parts_and_integer_labels(mnist_small):
    (x, y), _ = mnist_small
    model = build_model()
    train = compile_for_training(model, "nesterov", 0.05)
    assert isinstance(train.optimizer, optimizers.ScratchSGD) and train.optimizer.nesterov
    assert isinstance(train.loss, losses.CrossEntropy)
    before = model.get_weights()[0].copy()
    logs = train.train_on_batch(x[:BATCH], y[:BATCH], return_dict=True)
    assert set(logs) == {"loss", "accuracy"} and np.isfinite(logs["loss"])
    assert not np.array_equal(model.get_weights()[0], before), "training the logits model trains the model"
    # (n, 1) class ids train exactly as (n,) ones (two models: Keras's accuracy metric keeps one shape)
    flat, column = (compile_for_training(build_model(seed=0), "adam") for _ in range(2))
    flat_logs = flat.train_on_batch(x[:BATCH], y[:BATCH], return_dict=True)
    column_logs = column.train_on_batch(x[:BATCH], y[:BATCH].reshape(-1, 1), return_dict=True)
    assert column_logs == pytest.approx(flat_logs, rel=1e-6)
    for a, b in zip(flat.get_weights(), column.get_weights()):
        np.testing.assert_array_equal(a, b)
    mse = compile_for_training(build_model(), optimizers.ScratchAdam(2e-3), loss="mse")
    assert isinstance(mse.loss, losses.MeanSquaredError) and mse.optimizer.get_config()["learning_rate"] == \
        pytest.approx(2e-3)
    with pytest.raises(ValueError, match="optimizer arguments"):
        compile_for_training(build_model(), optimizers.ScratchAdam(), beta_1=0.5)
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        compile_for_training(build_model(), "adamw")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        compile_for_training(build_model(), loss="hinge")


@pytest.mark.parametrize("name", ["adam", "momentum", "adagrad"])
def test_keras_file_round_trip_with_optimizer_state(name, tmp_path, train_batches):
    """Save the compiled training model mid-training, reload it: identical predictions, optimizer
    state and hyperparameters, and identical weights after training both further."""
    model = build_model(seed=5)
    train = compile_for_training(model, name, 0.01)
    x = np.concatenate([b[0] for b in train_batches[:8]])
    y = np.concatenate([b[1] for b in train_batches[:8]])
    train.fit(x[:4 * BATCH], y[:4 * BATCH], batch_size=BATCH, shuffle=False, verbose=0)
    path = tmp_path / "train.keras"
    train.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded.optimizer) is type(train.optimizer)
    assert reloaded.optimizer.get_config() == train.optimizer.get_config()
    assert isinstance(reloaded.loss, losses.CrossEntropy)
    assert len(reloaded.optimizer.variables) == len(train.optimizer.variables) > 2  # iterations, lr, slots
    for a, b in zip(reloaded.optimizer.variables, train.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), train.predict(x, verbose=0))
    for m in (train, reloaded):
        m.fit(x[4 * BATCH:], y[4 * BATCH:], batch_size=BATCH, shuffle=False, verbose=0)
    for a, b in zip(reloaded.get_weights(), train.get_weights()):
        np.testing.assert_array_equal(a, b)
    # The probabilities model (what is served) round-trips too, and converts to NumPy.
    model.save(tmp_path / "model.keras")
    served = keras.saving.load_model(tmp_path / "model.keras")
    assert [type(layer) for layer in served.layers[1:]] == [ScratchDense] * 3 + [ScratchSoftmax]
    np.testing.assert_array_equal(served.predict(x, verbose=0), model.predict(x, verbose=0))
    assert to_numpy(served).sizes == (784, 128, 64, 10)


def test_scratch_model_trains_to_97_percent_on_mnist(mnist, mirror_report):
    """``model.fit`` with our layers, loss and optimizer (Adam with a cosine-decay schedule from 3e-3,
    batch 128, data shuffled once with a fixed seed): >= 97% on the official 10k test set in three
    epochs. Observed 97.6% for seeds 0, 1, 2 (a constant learning rate plateaus at 97.1-97.4%)."""
    (x, y), (xt, yt) = mnist
    order = np.random.default_rng(0).permutation(len(x))
    epochs, steps = 3, -(-len(x) // BATCH)
    model = build_model(seed=0)
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=epochs * steps)
    train = compile_for_training(model, "adam", schedule)
    history = train.fit(x[order], y[order], batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0)
    accuracy = float((model.predict(xt, batch_size=2048, verbose=0).argmax(1) == yt).mean())
    assert accuracy >= 0.97, f"test accuracy {accuracy:.4f}, training accuracy {history.history['accuracy']}"
    mirror_report(f"ScratchDense + ScratchAdam (cosine 3e-3), 3 epochs: test accuracy {accuracy:.2%}")
