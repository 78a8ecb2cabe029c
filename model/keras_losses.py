"""The losses of ``model/numpy_losses.py`` as Keras losses on the *logits* ``z``.

For a batch of ``n`` rows, ``K`` classes, one-hot targets ``y`` and ``p = softmax(z)``:

- ``CrossEntropy``      ``L = -1/n * sum(y * log_softmax(z))``     autodiff gives ``dL/dz = (p - y) / n``
- ``MeanSquaredError``  ``L = 1/(n*K) * sum((p - y)^2)``            autodiff gives ``J_softmax^T dL/dp``

Both take ``(y_true, logits)``: ``y_true`` holds class ids, shape ``(n,)`` or ``(n, 1)``, or one-hot
rows ``(n, K)``. ``call`` returns the per-row loss and Keras' default reduction
``"sum_over_batch_size"`` divides the sum by ``n``, the NumPy mean.

Why from the logits: cross-entropy computed from probabilities (Keras' built-in, or any loss that
clips ``p`` at 1e-7 to avoid ``log(0)``) has a zero gradient for every row whose true-class
probability is below the clip, exactly the confidently wrong rows that most need it. The stable
log-softmax never takes the log of a rounded-to-zero probability, so ``dL/dz = (p - y) / n`` holds
for every row. The model keeps producing probabilities for serving; training goes through
``network.logits_model``.
"""

from __future__ import annotations

import keras
from keras import ops

from model.keras_activations import log_softmax, softmax
from model.keras_layers import PACKAGE
from model.numpy_network import check_choice


def one_hot_targets(y_true, logits):
    """``y_true`` as one-hot rows in the logits' dtype: class ids ``(n,)`` or ``(n, 1)`` are
    expanded, rows ``(n, K)`` are used as they are.

    Shapes are checked; values cannot be inside a compiled graph without backend-specific asserts:
    a class id outside ``[0, K)`` becomes an all-zero row (no loss, no gradient), so labels are
    validated where they enter (``NumpyNetwork`` and ``training/data.py`` do).
    """
    k = logits.shape[-1]
    rank = len(y_true.shape)
    if rank == len(logits.shape) and y_true.shape[-1] == k and k > 1:
        return ops.cast(y_true, logits.dtype)
    if rank == len(logits.shape) and y_true.shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    if len(y_true.shape) != len(logits.shape) - 1:
        raise ValueError(f"labels must be class ids (n,) or (n, 1), or one-hot (n, {k}); "
                         f"got shape {tuple(y_true.shape)} for logits of shape {tuple(logits.shape)}")
    return ops.one_hot(ops.cast(y_true, "int32"), k, dtype=logits.dtype)


class _LogitsLoss(keras.losses.Loss):
    """Shared by both losses: the config also records the dtype (Keras' base config omits it)."""

    def get_config(self):
        return {**super().get_config(), "dtype": self.dtype}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CrossEntropy(_LogitsLoss):
    """``L = -mean_rows(sum_k y_k log softmax(z)_k)``;  ``dL/dz = (p - y) / n``.

    ``CrossEntropy(name="cross_entropy", reduction="sum_over_batch_size", dtype=None)``; called as
    ``loss(y_true, logits)``.
    """

    def __init__(self, name="cross_entropy", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, logits):
        y = one_hot_targets(y_true, logits)
        return -ops.sum(y * log_softmax(logits), axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MeanSquaredError(_LogitsLoss):
    """``L = mean((p - y)^2)`` over rows and classes, ``p = softmax(z)``;
    ``dL/dz = p * (g - sum_k g_k p_k)``, ``g = 2(p - y)/(n*K)`` (autodiff through the softmax).

    ``MeanSquaredError(name="mse", reduction="sum_over_batch_size", dtype=None)``; called as
    ``loss(y_true, logits)``.
    """

    def __init__(self, name="mse", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, logits):
        y = one_hot_targets(y_true, logits)
        diff = softmax(logits) - y
        return ops.mean(diff * diff, axis=-1)


LOSSES = {"cross_entropy": CrossEntropy, "mse": MeanSquaredError}


def get(name: str) -> keras.losses.Loss:
    """A loss by name: ``cross_entropy`` or ``mse`` (the names of ``numpy_losses.LOSSES``)."""
    return LOSSES[check_choice("loss", name, LOSSES)]()
