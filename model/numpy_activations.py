"""Activations in NumPy, each forward beside its derivative; softmax and log-softmax.

Every activation is a pair ``(f, df)`` where ``df(z, a)`` is ``f'(z)`` given the pre-activation ``z``
and the output ``a = f(z)`` (whichever is cheaper to use). ``model/keras_activations.py`` writes the
same formulas with ``keras.ops``; the two files read side by side.
"""

from __future__ import annotations

import numpy as np

LEAKY_RELU_SLOPE = 0.01


def sigmoid(z):
    """sigma(z) = 1 / (1 + exp(-z)), written as exp(-log(1 + exp(-z))) so it never overflows."""
    return np.exp(-np.logaddexp(0, -z)).astype(z.dtype, copy=False)


def sigmoid_derivative(z, a):
    """sigma'(z) = sigma(z) * (1 - sigma(z))."""
    return a * (1 - a)


def relu(z):
    """relu(z) = max(z, 0)."""
    return np.maximum(z, 0)


def relu_derivative(z, a):
    """relu'(z) = 1 if z > 0 else 0."""
    return (z > 0).astype(z.dtype)


def tanh(z):
    """tanh(z)."""
    return np.tanh(z)


def tanh_derivative(z, a):
    """tanh'(z) = 1 - tanh(z)^2."""
    return 1 - a * a


def leaky_relu(z):
    """leaky_relu(z) = z if z > 0 else 0.01 * z."""
    return np.where(z > 0, z, z * z.dtype.type(LEAKY_RELU_SLOPE))


def leaky_relu_derivative(z, a):
    """leaky_relu'(z) = 1 if z > 0 else 0.01."""
    return np.where(z > 0, z.dtype.type(1), z.dtype.type(LEAKY_RELU_SLOPE))


ACTIVATIONS = {
    "sigmoid": (sigmoid, sigmoid_derivative),
    "relu": (relu, relu_derivative),
    "tanh": (tanh, tanh_derivative),
    "leaky_relu": (leaky_relu, leaky_relu_derivative),
}
# He initialisation suits the ReLU family, Glorot/Xavier the saturating ones.
HE_INIT_ACTIVATIONS = ("relu", "leaky_relu")


def softmax(z):
    """softmax(z)_k = exp(z_k - max(z)) / sum_j exp(z_j - max(z)), row-wise (stable)."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z):
    """log softmax(z)_k = (z_k - max(z)) - log(sum_j exp(z_j - max(z))), row-wise (stable)."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
