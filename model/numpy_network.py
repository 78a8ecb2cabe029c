"""A fully connected network in NumPy: forward, backward and mini-batch training, written by hand.

For layer ``i = 1..L`` with input ``a_0 = x`` (a batch of rows)::

    z_i = a_{i-1} @ W_i + b_i          W_i: (fan_in, fan_out), the Keras Dense kernel layout
    a_i = f(z_i)    (hidden layers)    f in sigmoid / relu / tanh / leaky_relu
    p   = softmax(z_L)                 (output layer)

Backward, from ``delta_L = dL/dz_L`` given by the loss::

    dL/dW_i = a_{i-1}^T @ delta_i
    dL/db_i = sum over rows of delta_i
    delta_{i-1} = (delta_i @ W_i^T) * f'(z_{i-1})

One matrix product per layer and direction: no Python loop over samples.
``model/keras_network.py`` builds the same network in Keras from ``model/keras_layers.py``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from model.numpy_activations import ACTIVATIONS, HE_INIT_ACTIVATIONS, softmax
from model.numpy_losses import LOSSES


def check_sizes(sizes) -> tuple[int, ...]:
    sizes = tuple(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output size, got {sizes!r}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0:
            raise ValueError(f"sizes must be positive integers, got {s!r} in {sizes!r}")
    return tuple(int(s) for s in sizes)


def check_choice(kind: str, name: str, choices) -> str:
    if name not in choices:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(sorted(choices))}")
    return name


def initial_weights(sizes, activation: str, seed: int, dtype=np.float32) -> list[np.ndarray]:
    """``[W1, b1, W2, b2, ...]`` for ``sizes``: zero biases and

    - He normal for the ReLU family:  ``W ~ N(0, 2 / fan_in)``
    - Glorot uniform otherwise:       ``W ~ U(-l, l)``, ``l = sqrt(6 / (fan_in + fan_out))``

    Deterministic for a given seed.
    """
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        if activation in HE_INIT_ACTIVATIONS:
            w = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(fan_in, fan_out))
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            w = rng.uniform(-limit, limit, size=(fan_in, fan_out))
        params += [w.astype(dtype), np.zeros(fan_out, dtype=dtype)]
    return params


class NumpyNetwork:
    """``NumpyNetwork(sizes=(784, 128, 64, 10), activation="relu", loss="cross_entropy", seed=0)``.

    Parameters are stored in ``self.params`` in ``keras.Model.get_weights()`` order,
    ``[W1, b1, W2, b2, ...]``; ``weights`` and ``biases`` are views of the same arrays.
    ``dtype`` is float32 by default (float64 for gradient checks).
    """

    def __init__(self, sizes=(784, 128, 64, 10), activation="relu", loss="cross_entropy", seed=0,
                 dtype=np.float32):
        self.sizes = check_sizes(sizes)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.loss = check_choice("loss", loss, LOSSES)
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self._f, self._df = ACTIVATIONS[activation]
        self._loss_fn = LOSSES[loss]
        self.params = initial_weights(self.sizes, activation, seed, self.dtype)

    def __repr__(self):
        return (f"NumpyNetwork(sizes={self.sizes}, activation={self.activation!r}, "
                f"loss={self.loss!r}, dtype={self.dtype.name})")

    # ------------------------------------------------------------ parameters ----
    @property
    def weights(self) -> list[np.ndarray]:
        return self.params[0::2]

    @property
    def biases(self) -> list[np.ndarray]:
        return self.params[1::2]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of ``[W1, b1, W2, b2, ...]``."""
        return [p.copy() for p in self.params]

    def set_weights(self, weights) -> None:
        """Replace all parameters with copies of ``weights`` (same order and shapes as ``get_weights``)."""
        weights = list(weights)
        if len(weights) != len(self.params):
            raise ValueError(f"expected {len(self.params)} arrays [W1, b1, ...], got {len(weights)}")
        for i, (old, new) in enumerate(zip(self.params, weights)):
            new = np.asarray(new)
            if new.shape != old.shape:
                raise ValueError(f"array {i} has shape {new.shape}, expected {old.shape}")
        # Assign in place so that optimizers holding references keep working.
        for old, new in zip(self.params, weights):
            old[...] = new

    # ----------------------------------------------------------------- inputs ----
    def _check_x(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"inputs must have shape (n, {self.sizes[0]}), got {x.shape}")
        return x

    def _one_hot(self, y) -> np.ndarray:
        """Class ids ``(n,)`` or one-hot ``(n, K)`` to one-hot in the network's dtype."""
        y = np.asarray(y)
        k = self.sizes[-1]
        if y.ndim == 2:
            if y.shape[1] != k:
                raise ValueError(f"one-hot labels must have {k} columns, got shape {y.shape}")
            return y.astype(self.dtype, copy=False)
        if y.ndim != 1:
            raise ValueError(f"labels must be class ids (n,) or one-hot (n, {k}), got shape {y.shape}")
        if y.size and not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"labels must be integer class ids or one-hot rows, got dtype {y.dtype}")
        bad = y[(y < 0) | (y >= k)]
        if bad.size:
            raise ValueError(f"labels must be class ids in [0, {k - 1}], got {bad[:5].tolist()}")
        one_hot = np.zeros((y.shape[0], k), dtype=self.dtype)
        one_hot[np.arange(y.shape[0]), y] = 1
        return one_hot

    # ---------------------------------------------------------------- forward ----
    def _forward(self, x):
        """Pre-activations ``zs = [z_1 .. z_L]`` and outputs ``activations = [a_0 = x, a_1, .., p]``."""
        zs, activations = [], [x]
        n_layers = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = activations[-1] @ w + b
            zs.append(z)
            activations.append(softmax(z) if i == n_layers - 1 else self._f(z))
        return zs, activations

    def forward(self, x) -> np.ndarray:
        """Class probabilities ``(n, K)``."""
        return self._forward(self._check_x(x))[1][-1]

    predict_proba = forward

    def predict(self, x) -> np.ndarray:
        """Predicted class ids ``(n,)``."""
        return self.forward(x).argmax(axis=1)

    # --------------------------------------------------------------- backward ----
    def _backward(self, zs, activations, y_one_hot):
        loss, delta = self._loss_fn(zs[-1], activations[-1], y_one_hot)
        grads = [None] * len(self.params)
        for i in reversed(range(len(self.weights))):
            grads[2 * i] = activations[i].T @ delta
            grads[2 * i + 1] = delta.sum(axis=0)
            if i > 0:
                delta = (delta @ self.weights[i].T) * self._df(zs[i - 1], activations[i])
        return float(loss), grads

    def loss_and_gradients(self, x, y):
        """``(loss, [dW1, db1, dW2, db2, ...])`` for a batch; labels are class ids or one-hot."""
        x = self._check_x(x)
        y = self._one_hot(y)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"got {x.shape[0]} inputs but {y.shape[0]} labels")
        zs, activations = self._forward(x)
        return self._backward(zs, activations, y)

    def evaluate(self, x, y, batch_size=10_000) -> tuple[float, float]:
        """``(mean loss, accuracy)`` over the whole set, computed in chunks of ``batch_size``."""
        x = self._check_x(x)
        y = self._one_hot(y)
        total_loss, correct = 0.0, 0
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            zs, activations = self._forward(xb)
            loss, _ = self._loss_fn(zs[-1], activations[-1], yb)
            total_loss += float(loss) * xb.shape[0]
            correct += int((activations[-1].argmax(1) == yb.argmax(1)).sum())
        return total_loss / x.shape[0], correct / x.shape[0]

    # ---------------------------------------------------------------- training ----
    def fit(self, x, y, epochs, batch_size, optimizer, validation_data=None, shuffle=True, seed=0,
            verbose=True, on_epoch_end=None) -> dict[str, list[float]]:
        """Mini-batch training; returns the history (per epoch: loss, accuracy, val_loss,
        val_accuracy, seconds). ``loss``/``accuracy`` are averages over the epoch's batches, as Keras
        reports them. ``on_epoch_end(epoch, logs)`` is called after each epoch if given.
        """
        x = self._check_x(x)
        y = self._one_hot(y)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"got {x.shape[0]} inputs but {y.shape[0]} labels")
        if batch_size <= 0 or epochs < 0:
            raise ValueError(f"batch_size must be positive and epochs non-negative, got {batch_size}, {epochs}")
        rng = np.random.default_rng(seed)
        history = {k: [] for k in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")}
        n = x.shape[0]
        for epoch in range(epochs):
            start_time = time.perf_counter()
            order = rng.permutation(n) if shuffle else np.arange(n)
            loss_sum, correct = 0.0, 0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                xb, yb = (x[idx], y[idx]) if shuffle else (x[start:start + batch_size], y[start:start + batch_size])
                zs, activations = self._forward(xb)
                loss, grads = self._backward(zs, activations, yb)
                optimizer.step(self.params, grads)
                loss_sum += loss * xb.shape[0]
                correct += int((activations[-1].argmax(1) == yb.argmax(1)).sum())
            logs = {"loss": loss_sum / n, "accuracy": correct / n}
            if validation_data is not None:
                logs["val_loss"], logs["val_accuracy"] = self.evaluate(*validation_data)
            logs["seconds"] = time.perf_counter() - start_time
            for key in history:
                history[key].append(logs.get(key, float("nan")))
            if verbose:
                line = f"epoch {epoch + 1}/{epochs} - loss {logs['loss']:.4f} - accuracy {logs['accuracy']:.4f}"
                if validation_data is not None:
                    line += f" - val_accuracy {logs['val_accuracy']:.4f}"
                print(line + f" - {logs['seconds']:.2f}s", file=sys.stderr, flush=True)
            if on_epoch_end is not None:
                on_epoch_end(epoch, logs)
        return history
