"""Losses in NumPy, on the *logits* ``z`` of the last layer (the output is ``p = softmax(z)``).

Each returns ``(loss, dL/dz)`` for a batch of ``n`` rows with one-hot targets ``y``:

- cross-entropy  ``L = -1/n * sum(y * log_softmax(z))``          ``dL/dz = (p - y) / n``
- MSE            ``L = 1/(n*K) * sum((p - y)^2)``                 ``dL/dz = J_softmax^T dL/dp``
  with ``dL/dp = 2 (p - y) / (n*K)`` and the full softmax Jacobian
  ``J = diag(p) - p p^T``, i.e. ``dL/dz = p * (g - sum(g * p))`` row-wise.

``model/keras_losses.py`` writes the same losses with ``keras.ops`` (autodiff derives ``dL/dz``).
"""

from __future__ import annotations

from model.numpy_activations import log_softmax


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
