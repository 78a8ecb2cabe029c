"""Activations and losses in NumPy, each forward beside its derivative.

Every activation is a pair ``(f, df)`` where ``df(z, a)`` is ``f'(z)`` given the pre-activation ``z``
and the output ``a = f(z)`` (whichever is cheaper to use). ``model/layers.py`` writes the same
formulas with ``keras.ops``; the two files read side by side.

Losses work on the *logits* ``z`` of the last layer (the output is ``p = softmax(z)``) and return
``(loss, dL/dz)`` for a batch of ``n`` rows with one-hot targets ``y``:

- cross-entropy  ``L = -1/n * sum(y * log_softmax(z))``          ``dL/dz = (p - y) / n``
- MSE            ``L = 1/(n*K) * sum((p - y)^2)``                 ``dL/dz = J_softmax^T dL/dp``
  with ``dL/dp = 2 (p - y) / (n*K)`` and the full softmax Jacobian
  ``J = diag(p) - p p^T``, i.e. ``dL/dz = p * (g - sum(g * p))`` row-wise.
"""

from __future__ import annotations

import numpy as np

LEAKY_RELU_SLOPE = 0.01


# ---------------------------------------------------------------- activations ----
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


# ---------------------------------------------------------------------- losses ----
def cross_entropy(z, p, y):
    """L = -mean_rows(sum_k y_k log softmax(z)_k);  dL/dz = (p - y) / n."""
    n = z.shape[0]
    loss = -(y * log_softmax(z)).sum() / n
    return loss, (p - y) / z.dtype.type(n)


def mse(z, p, y):
    """L = mean((p - y)^2) over rows and classes;  dL/dz = p * (g - sum_k g_k p_k), g = 2(p - y)/(n*K)."""
    n, k = z.shape
    diff = p - y
    loss = (diff * diff).sum() / (n * k)
    g = diff * z.dtype.type(2.0 / (n * k))
    return loss, p * (g - (g * p).sum(axis=1, keepdims=True))


LOSSES = {"cross_entropy": cross_entropy, "mse": mse}
