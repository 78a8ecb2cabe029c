"""Activations in Keras 3, written by hand from ``keras.ops`` primitives.

The activations of ``model/numpy_activations.py``, with the same names and the same formulas (only
the forward function: the backend's autodiff derives the rest)::

    sigmoid(z)     = 1 / (1 + exp(-z))              never overflows
    relu(z)        = max(z, 0) = z * (z > 0)        derivative 0 at z == 0, as in NumPy
    tanh(z)
    leaky_relu(z)  = z if z > 0 else 0.01 * z
    softmax(z)_k   = exp(z_k - max(z)) / sum_j exp(z_j - max(z))          row-wise, stable
    log_softmax(z)_k = (z_k - max(z)) - log(sum_j exp(z_j - max(z)))     row-wise, stable

Only ``keras.ops`` is used (no ``tf.``), so they run on any Keras backend.
"""

from __future__ import annotations

from keras import ops

from model.numpy_activations import LEAKY_RELU_SLOPE


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
    ``numpy_activations.relu_derivative`` (the gradient of ``maximum(z, 0)`` is 1 at ``z == 0`` on
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
