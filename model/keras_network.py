"""The network of ``model/numpy_network.py`` in Keras 3, built from ``model/keras_layers.py``.

``build_model`` gives the *probabilities* model, the one that is served::

    pixels (None, 784) -> ScratchDense(128, f) -> ScratchDense(64, f) -> ScratchDense(10) "logits"
                       -> ScratchSoftmax "probabilities" (None, 10)

Training goes through ``logits_model(model)``, a second ``keras.Model`` over the same layers (and so
the same variables) whose output is the logits: the losses of ``model/keras_losses.py`` take logits, so
cross-entropy keeps its exact gradient ``(p - y) / n`` for every sample (see that module).
``compile_for_training`` returns it compiled with our loss and optimizer; weights trained through it
are the probabilities model's weights.

``to_numpy`` / ``from_numpy`` move weights between this model and ``NumpyNetwork``; both store them
as ``[W1, b1, W2, b2, ...]`` with ``W`` of shape ``(fan_in, fan_out)``, which is also the order of
``keras.Model.get_weights()``.
"""

from __future__ import annotations

import keras
import numpy as np

from model import keras_losses
from model import keras_optimizers
from model.keras_layers import ScratchDense, ScratchSoftmax, initializer_for
from model.numpy_activations import ACTIVATIONS as NUMPY_ACTIVATIONS
from model.numpy_losses import LOSSES as NUMPY_LOSSES
from model.numpy_network import NumpyNetwork, check_choice, check_sizes

INPUT_NAME = "pixels"
LOGITS_NAME = "logits"
OUTPUT_NAME = "probabilities"


def build_model(sizes=(784, 128, 64, 10), activation="relu", seed=0) -> keras.Model:
    """The probabilities model: input ``pixels`` ``(None, sizes[0])``, hidden ``ScratchDense``
    layers ``hidden_1 ..`` with ``activation``, a linear ``logits`` layer and ``probabilities``
    (row-wise softmax) as output.

    Kernels are initialised like ``NumpyNetwork`` (He normal for the ReLU family, Glorot uniform
    otherwise, for every layer including the logits layer; zero biases), with the Keras random
    generator: the same distributions, not the same numbers. Layer ``i`` (0-based) gets the seed
    ``seed + i``; ``seed=None`` draws a fresh initialisation. For the very weights of a
    ``NumpyNetwork``, use ``from_numpy``.
    """
    sizes = check_sizes(sizes)
    activation = check_choice("activation", activation, NUMPY_ACTIVATIONS)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an integer or None, got {seed!r}")
    initializer = initializer_for(activation)

    def layer_seed(i):
        return None if seed is None else seed + i

    inputs = keras.Input((sizes[0],), name=INPUT_NAME)
    x = inputs
    for i, units in enumerate(sizes[1:-1]):
        x = ScratchDense(units, activation, seed=layer_seed(i), initializer=initializer,
                         name=f"hidden_{i + 1}")(x)
    logits = ScratchDense(sizes[-1], None, seed=layer_seed(len(sizes) - 2), initializer=initializer,
                          name=LOGITS_NAME)(x)
    probabilities = ScratchSoftmax(name=OUTPUT_NAME)(logits)
    return keras.Model(inputs, probabilities, name="mnist_mlp")


def logits_model(model: keras.Model) -> keras.Model:
    """A model over the same layers (same variables) as ``model`` whose output is the ``logits`` layer."""
    try:
        logits = model.get_layer(LOGITS_NAME)
    except ValueError:
        raise ValueError(f"model {model.name!r} has no layer named {LOGITS_NAME!r}; "
                         "build it with build_model or from_numpy") from None
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # the input structure of `model`
    return keras.Model(inputs, logits.output, name=f"{model.name}_{LOGITS_NAME}")


def predict_in_batches(model: keras.Model, x, batch_size: int = 2048):
    """``model(x)`` as a NumPy array, called eagerly on ``batch_size`` rows at a time: what ``model.predict``
    gives, without the tf.function it builds per model, which TensorFlow traces again for every new input shape
    (each set's last, shorter batch) and warns about ("triggered tf.function retracing")."""
    return np.concatenate([keras.ops.convert_to_numpy(model(x[start:start + batch_size], training=False))
                           for start in range(0, len(x), batch_size)])


def compile_for_training(model: keras.Model, optimizer="adam", learning_rate=1e-3, loss="cross_entropy",
                         jit_compile=False, **optimizer_kwargs) -> keras.Model:
    """``logits_model(model)`` compiled for ``fit``/``train_on_batch`` with integer class-id labels.

    - ``optimizer``: a name for ``model.optimizers.get`` (``sgd``, ``momentum``, ``nesterov``,
      ``adagrad``, ``rmsprop``, ``adam``), built with ``learning_rate`` (a float or a schedule) and
      ``optimizer_kwargs``; or an optimizer instance, used as it is (``learning_rate`` is then
      ignored and ``optimizer_kwargs`` must be empty).
    - ``loss``: ``cross_entropy``, ``mse`` or a loss instance taking ``(y_true, logits)``.
    - metrics: ``accuracy`` (``SparseCategoricalAccuracy``; the argmax of the logits is the argmax of
      the probabilities).
    - ``jit_compile``: passed to ``compile`` (Keras resolves ``"auto"`` to False on CPU).

    Training the returned model trains ``model``: the two share their variables.
    """
    train = logits_model(model)
    if isinstance(optimizer, str):
        optimizer = keras_optimizers.get(optimizer, learning_rate, **optimizer_kwargs)
    elif optimizer_kwargs:
        raise ValueError(f"optimizer arguments {sorted(optimizer_kwargs)} given with an optimizer instance; "
                         "pass the optimizer by name, or set them on the instance")
    if isinstance(loss, str):
        loss = keras_losses.get(loss)
    train.compile(optimizer=optimizer, loss=loss,
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  jit_compile=jit_compile)
    return train


def _dense_layers(model: keras.Model) -> list[ScratchDense]:
    dense, others = [], []
    for layer in model.layers:
        if isinstance(layer, ScratchDense):
            dense.append(layer)
        elif not isinstance(layer, (keras.layers.InputLayer, ScratchSoftmax)):
            others.append(layer)
    if others or not dense:
        raise ValueError(f"to_numpy needs a stack of ScratchDense layers (as build_model makes), got "
                         f"layers {[type(layer).__name__ for layer in model.layers]}")
    return dense


def to_numpy(model: keras.Model, loss="cross_entropy") -> NumpyNetwork:
    """A ``NumpyNetwork`` with the sizes, activation and (copied) weights of ``model`` (the probabilities
    model or its ``logits_model``), and the given loss."""
    loss = check_choice("loss", loss, NUMPY_LOSSES)
    dense = _dense_layers(model)
    sizes = (dense[0].kernel.shape[0], *(layer.units for layer in dense))
    hidden = sorted({layer.activation for layer in dense[:-1]})
    if len(hidden) > 1:
        raise ValueError(f"NumpyNetwork has one hidden activation, the model mixes {hidden}")
    if dense[-1].activation not in ("linear", "softmax"):
        raise ValueError(f"the last ScratchDense must give logits (activation None) or probabilities "
                         f"(softmax), got {dense[-1].activation!r}")
    if hidden:
        activation = check_choice("activation", hidden[0], NUMPY_ACTIVATIONS)
    else:
        # No hidden layer: the activation only chose the initialiser, the weights are copied anyway.
        activation = "relu" if dense[-1].initializer == "he_normal" else "sigmoid"
    net = NumpyNetwork(sizes, activation=activation, loss=loss)
    net.set_weights([keras.ops.convert_to_numpy(w) for layer in dense for w in (layer.kernel, layer.bias)])
    return net


def from_numpy(net: NumpyNetwork) -> keras.Model:
    """The probabilities model (``build_model``) with the sizes, activation and weights of ``net``."""
    model = build_model(net.sizes, net.activation, seed=None)
    model.set_weights([w.astype(keras.backend.floatx()) for w in net.get_weights()])
    return model
