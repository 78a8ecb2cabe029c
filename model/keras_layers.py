"""Layers in Keras 3, written by hand from ``keras.ops``: ``ScratchDense`` and ``ScratchSoftmax``.

``ScratchDense(units, activation)`` computes ``a = f(x @ W + b)`` with its own kernel ``W``
``(fan_in, units)`` and bias ``b`` ``(units,)``, initialised as ``model.numpy_network.initial_weights``
does: He normal ``W ~ N(0, 2 / fan_in)`` for the ReLU family, Glorot uniform
``W ~ U(-l, l), l = sqrt(6 / (fan_in + fan_out))`` otherwise, zero biases. The activations ``f`` are
those of ``model/keras_activations.py``. ``ScratchSoftmax`` turns logits into probabilities. Only
``keras.ops`` is used (no ``tf.``), so the layers run on any Keras backend. Both are registered
serializable: ``.keras`` files round-trip.
"""

from __future__ import annotations

import keras
from keras import ops

from model.keras_activations import ACTIVATIONS, softmax
from model.numpy_activations import HE_INIT_ACTIVATIONS

PACKAGE = "mnist_digits"


# The two kernel initialisers of numpy_network.initial_weights.
INITIALIZERS = ("he_normal", "glorot_uniform")


def initializer_for(activation: str | None) -> str:
    """``"he_normal"`` for the ReLU family, ``"glorot_uniform"`` otherwise (as ``initial_weights``)."""
    return "he_normal" if activation in HE_INIT_ACTIVATIONS else "glorot_uniform"


def kernel_initializer(name: str, seed=None) -> keras.initializers.Initializer:
    """He normal ``N(0, 2 / fan_in)`` (untruncated) or Glorot uniform ``U(-l, l)``,
    ``l = sqrt(6 / (fan_in + fan_out))``: the distributions of ``numpy_network.initial_weights``."""
    if name == "he_normal":
        return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal", seed=seed)
    if name == "glorot_uniform":
        return keras.initializers.VarianceScaling(1.0, "fan_avg", "uniform", seed=seed)
    raise ValueError(f"unknown initializer {name!r}; choose one of {', '.join(sorted(INITIALIZERS))}")


def _check_activation(activation) -> str:
    name = "linear" if activation is None else activation
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of "
                         f"{', '.join(sorted(ACTIVATIONS))} (or None for linear)")
    return name


# --------------------------------------------------------------------- layers ----
@keras.saving.register_keras_serializable(package=PACKAGE)
class ScratchDense(keras.layers.Layer):
    """``a = f(x @ W + b)``: a fully connected layer built from ``keras.ops``.

    ``ScratchDense(units, activation=None, seed=None, initializer=None, **kwargs)``

    - ``activation``: ``None``/``"linear"``, ``"sigmoid"``, ``"relu"``, ``"tanh"``, ``"leaky_relu"``
      (slope 0.01) or ``"softmax"``.
    - ``initializer``: ``"he_normal"`` or ``"glorot_uniform"`` for the kernel; by default the one
      ``numpy_network.initial_weights`` picks for ``activation``. A logits layer has no activation of
      its own, so ``build_model`` passes the network's choice (NumPy initialises every layer,
      the last included, by the network's activation).
    - ``seed``: an int makes the initial kernel deterministic; biases start at zero.

    Weights: ``kernel`` ``(fan_in, units)`` (the NumPy ``W`` layout) and ``bias`` ``(units,)``.
    """

    def __init__(self, units, activation=None, seed=None, initializer=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, int) or units <= 0:
            raise ValueError(f"units must be a positive integer, got {units!r}")
        self.units = units
        self.activation = _check_activation(activation)
        self.initializer = initializer_for(self.activation) if initializer is None else initializer
        kernel_initializer(self.initializer)  # validates the name
        self.seed = seed
        self._activation_fn = ACTIVATIONS[self.activation]
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        fan_in = input_shape[-1]
        if fan_in is None:
            raise ValueError(f"{self.name}: the last input dimension must be known, got {input_shape}")
        self.kernel = self.add_weight(shape=(fan_in, self.units), name="kernel",
                                      initializer=kernel_initializer(self.initializer, self.seed))
        self.bias = self.add_weight(shape=(self.units,), name="bias", initializer="zeros")
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: fan_in})

    def call(self, inputs):
        # ops.add (not +): on TensorFlow it becomes BiasAdd, which fuses with the MatMul.
        return self._activation_fn(ops.add(ops.matmul(inputs, self.kernel), self.bias))

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "seed": self.seed, "initializer": self.initializer}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ScratchSoftmax(keras.layers.Layer):
    """Logits to class probabilities: ``p_k = exp(z_k - max(z)) / sum_j exp(z_j - max(z))`` row-wise."""

    def call(self, inputs):
        return softmax(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape
