"""Loss and gradients of the Keras mirror through the *backend's own* autodiff, one small helper per backend.

``loss_and_gradients(model, loss_name, x, y)`` takes the probabilities model (``build_model`` /
``from_numpy``), differentiates our loss of its logits (the training path: ``logits_model``,
``model/keras_losses.py``) and returns ``(loss, [dW1, db1, dW2, db2, ...])`` as float and NumPy arrays:

- tensorflow: ``tf.GradientTape``;
- torch:      ``torch.autograd.grad`` on the variables' ``torch.nn.Parameter`` (what ``loss.backward()``
  fills in);
- jax:        ``jax.value_and_grad`` of a pure function of the trainable values (``model.stateless_call``),
  jit-compiled once per model.

Imported in a process whose Keras backend is already chosen (``tests/backends/run_checks.py``; on
TensorFlow, ``tests/model/test_keras_mirror.py``).
"""

from __future__ import annotations

import keras
import numpy as np

from model import keras_losses
from model.keras_network import logits_model


def loss_and_gradients(model, loss_name: str, x, y):
    """``(loss, [dW1, db1, ...])`` of ``loss_name`` on ``(x, y)`` for ``model``'s weights."""
    train, loss_fn = logits_model(model), keras_losses.get(loss_name)
    x, y = np.asarray(x, np.float32), np.asarray(y)
    return HELPERS[keras.backend.backend()](train, loss_fn, x, y)


def _tensorflow(train, loss_fn, x, y):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = loss_fn(y, train(x, training=True))
    grads = tape.gradient(loss, train.trainable_variables)
    return float(loss), [g.numpy() for g in grads]


def _torch(train, loss_fn, x, y):
    import torch

    parameters = [v.value for v in train.trainable_variables]  # torch.nn.Parameter, requires_grad
    loss = loss_fn(torch.as_tensor(y), train(torch.as_tensor(x), training=True))
    grads = torch.autograd.grad(loss, parameters)
    return float(loss.detach()), [g.detach().cpu().numpy() for g in grads]


# (id of the model's first variable, loss) -> (the logits model, its jitted value_and_grad): compiled once
# per model; the entry keeps the model alive, so that its id cannot be reused by another model
_JAX_GRADIENTS = {}


def _jax(train, loss_fn, x, y):
    import jax

    trainable = [v.value for v in train.trainable_variables]
    non_trainable = [v.value for v in train.non_trainable_variables]
    key = (id(train.trainable_variables[0]), loss_fn.name)
    if key not in _JAX_GRADIENTS:
        def loss_of(values, x, y):
            logits, _ = train.stateless_call(values, non_trainable, x, training=True)
            return loss_fn(y, logits)

        # jit: un-jitted JAX compiles every primitive on first use (seconds); one XLA program is faster
        _JAX_GRADIENTS[key] = train, jax.jit(jax.value_and_grad(loss_of))
    loss, grads = _JAX_GRADIENTS[key][1](trainable, x, y)
    return float(loss), [np.asarray(g) for g in grads]


HELPERS = {"tensorflow": _tensorflow, "torch": _torch, "jax": _jax}
