"""Activations and layers in Keras 3, written by hand from ``keras.ops`` primitives.

The activations are the ones of ``model/numpy_functions.py``, with the same names and the same
formulas (only the forward function: the backend's autodiff derives the rest)::

    sigmoid(z)     = 1 / (1 + exp(-z))              never overflows
    relu(z)        = max(z, 0) = z * (z > 0)        derivative 0 at z == 0, as in NumPy
    tanh(z)
    leaky_relu(z)  = z if z > 0 else 0.01 * z
    softmax(z)_k   = exp(z_k - max(z)) / sum_j exp(z_j - max(z))          row-wise, stable
    log_softmax(z)_k = (z_k - max(z)) - log(sum_j exp(z_j - max(z)))     row-wise, stable

``ScratchDense(units, activation)`` computes ``a = f(x @ W + b)`` with its own kernel ``W``
``(fan_in, units)`` and bias ``b`` ``(units,)``, initialised as ``model.numpy_net.initial_weights``
does: He normal ``W ~ N(0, 2 / fan_in)`` for the ReLU family, Glorot uniform
``W ~ U(-l, l), l = sqrt(6 / (fan_in + fan_out))`` otherwise, zero biases.
``ScratchSoftmax`` turns logits into probabilities. Only ``keras.ops`` is used (no ``tf.``), so the
layers run on any Keras backend. Both are registered serializable: ``.keras`` files round-trip.
"""

from __future__ import annotations

import keras
from keras import ops

from model.numpy_functions import HE_INIT_ACTIVATIONS, LEAKY_RELU_SLOPE

PACKAGE = "mnist_digits"


# ---------------------------------------------------------------- activations ----
def sigmoid(z):
    """sigma(z) = 1 / (1 + exp(-z)), written with e = exp(-|z|) <= 1 so it never overflows:
    1 / (1 + e) for z >= 0, e / (1 + e) for z < 0.

    (NumPy writes it as exp(-log(1 + exp(-z))); that form's autodiff goes through the kinks of
    max and |.| in logaddexp and gives sigma'(0) = 0 instead of 1/4, this one is exact everywhere.)
    """
    positive = z >= 0
    e = ops.exp(ops.where(positive, -z, z))
    s = 1 / (1 + e)
    return ops.where(positive, s, e * s)


def relu(z):
    """relu(z) = max(z, 0).

    Written as ``z * (z > 0)`` so that autodiff gives exactly ``relu'(z) = 1 if z > 0 else 0`` like
    ``numpy_functions.relu_derivative`` (the gradient of ``maximum(z, 0)`` is 1 at ``z == 0`` on
    TensorFlow, and backends differ there); also a little faster than ``where`` here.
    """
    return z * ops.cast(z > 0, z.dtype)


def tanh(z):
    """tanh(z)."""
    return ops.tanh(z)


def leaky_relu(z):
    """leaky_relu(z) = z if z > 0 else 0.01 * z."""
    return ops.where(z > 0, z, z * LEAKY_RELU_SLOPE)


def _shifted(z):
    # softmax and log-softmax are invariant to the shift, so no gradient flows through max(z):
    # autodiff then gives exactly J^T g instead of J^T g plus a rounding-noise term at the argmax.
    return z - ops.stop_gradient(ops.max(z, axis=-1, keepdims=True))


def softmax(z):
    """softmax(z)_k = exp(z_k - max(z)) / sum_j exp(z_j - max(z)), row-wise (stable)."""
    e = ops.exp(_shifted(z))
    return e / ops.sum(e, axis=-1, keepdims=True)


def log_softmax(z):
    """log softmax(z)_k = (z_k - max(z)) - log(sum_j exp(z_j - max(z))), row-wise (stable)."""
    shifted = _shifted(z)
    return shifted - ops.log(ops.sum(ops.exp(shifted), axis=-1, keepdims=True))


def linear(z):
    """linear(z) = z (the logits layer)."""
    return z


ACTIVATIONS = {
    "linear": linear,
    "sigmoid": sigmoid,
    "relu": relu,
    "tanh": tanh,
    "leaky_relu": leaky_relu,
    "softmax": softmax,
}
# The two kernel initialisers of numpy_net.initial_weights.
INITIALIZERS = ("he_normal", "glorot_uniform")


def initializer_for(activation: str | None) -> str:
    """``"he_normal"`` for the ReLU family, ``"glorot_uniform"`` otherwise (as ``initial_weights``)."""
    return "he_normal" if activation in HE_INIT_ACTIVATIONS else "glorot_uniform"


def kernel_initializer(name: str, seed=None) -> keras.initializers.Initializer:
    """He normal ``N(0, 2 / fan_in)`` (untruncated) or Glorot uniform ``U(-l, l)``,
    ``l = sqrt(6 / (fan_in + fan_out))``: the distributions of ``numpy_net.initial_weights``."""
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
      ``numpy_net.initial_weights`` picks for ``activation``. A logits layer has no activation of
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
