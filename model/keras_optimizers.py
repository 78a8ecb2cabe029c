"""Optimizers as ``keras.optimizers.Optimizer`` subclasses: the Keras twins of ``model/numpy_optimizers.py``.

Same names (``Scratch`` + the NumPy name), arguments, defaults and formulas, in the same order, so
the two files read side by side. The shared base class creates the slots in ``build`` with Keras's
``add_optimizer_variables``, and its ``update_step(gradient, variable, learning_rate)`` (the hook
Keras calls) casts the gradient and the learning rate to the variable's dtype once and hands them to
each class's ``update(w, g, lr)``, written with ``keras.ops`` only (no ``tf.``), so it runs on any
Keras backend.

Arithmetic mirrors the NumPy code exactly: every constant (momentum, rho, beta_1, beta_2, epsilon,
the step ``t``) is cast to the variable's dtype (float32), as NumPy does with ``w.dtype.type(...)``,
except ``1 - rho``, ``1 - beta_1`` and ``1 - beta_2``, which are computed in Python floats and then
cast, as in NumPy and in Keras' built-ins (``float32(1) - float32(0.999)`` is 1.3e-5 away from
``float32(0.001)``, enough to drift ~3e-6 from the built-in Adam in 50 steps at lr 1e-2). The
results equal Keras' built-ins bit for bit; see test_keras_optimizers.py.

``learning_rate`` is a float, a ``keras.optimizers.schedules.LearningRateSchedule`` (called with the
0-based iteration, like a NumPy ``lr(iteration)`` callable) or a Keras zero-argument callable.
Other keyword arguments (``name``, ``clipnorm``, ...) go to ``keras.optimizers.Optimizer``.
``self.iterations`` counts completed steps, so it is 0-based during a step (Adam's ``t`` is
``iterations + 1``, as NumPy's ``self.iterations + 1``).
"""

from __future__ import annotations

import keras
from keras import ops

from model.keras_layers import PACKAGE
from model.numpy_optimizers import check_learning_rate, resolve


def _constant(value, w):
    """``value`` (a Python float) in ``w``'s dtype, as NumPy's ``w.dtype.type(value)``."""
    return ops.cast(value, w.dtype)


class _ScratchOptimizer(keras.optimizers.Optimizer):
    """Shared by the four optimizers, as ``numpy_optimizers.Optimizer`` is by theirs: the learning-rate
    check, one slot per variable for each of ``slot_names``, and Keras's ``update_step`` hook, which
    casts the gradient and the learning rate to the variable's dtype once and hands them to the
    subclass's ``update(w, g, lr)`` (NumPy: ``step`` casts, then ``update(i, w, g, lr)``)."""

    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate, **kwargs):
        super().__init__(learning_rate=check_learning_rate(learning_rate), **kwargs)

    def slot_initializer(self, name):
        return "zeros"

    def build(self, var_list):
        """Create one slot per variable for each name in ``slot_names`` (``self.slots[name][i]``)."""
        if self.built:
            return
        super().build(var_list)
        self.slots = {name: self.add_optimizer_variables(var_list, name, self.slot_initializer(name))
                      for name in self.slot_names}

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        self.update(variable, ops.cast(gradient, dtype), ops.cast(learning_rate, dtype))

    def update(self, w, g, lr):
        """Apply the rule to ``w`` given ``g`` and ``lr`` in ``w``'s dtype."""
        raise NotImplementedError

    def slot(self, name, variable):
        return self.slots[name][self._get_variable_index(variable)]


@keras.saving.register_keras_serializable(package=PACKAGE)
class ScratchSGD(_ScratchOptimizer):
    """Gradient descent, optionally with (Nesterov) momentum.

    momentum == 0:  w -= lr * g
    momentum > 0:   v = momentum * v - lr * g
                    w += v                           (classic)
                    w += momentum * v - lr * g       (nesterov)
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.slot_names = ("velocity",) if self.momentum else ()

    def update(self, w, g, lr):
        if not self.momentum:
            self.assign_sub(w, g * lr)
            return
        momentum = _constant(self.momentum, w)
        v = self.slot("velocity", w)
        self.assign(v, v * momentum - g * lr)
        if self.nesterov:
            self.assign_add(w, v * momentum - g * lr)
        else:
            self.assign_add(w, v)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ScratchAdaGrad(_ScratchOptimizer):
    """AdaGrad: per-parameter steps shrink with the sum of past squared gradients.

    acc += g^2                       (acc starts at initial_accumulator_value)
    w -= lr * g / sqrt(acc + eps)
    """

    slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)

    def slot_initializer(self, name):
        return keras.initializers.Constant(self.initial_accumulator_value)

    def update(self, w, g, lr):
        acc = self.slot("accumulator", w)
        self.assign_add(acc, g * g)
        self.assign_sub(w, (lr * g) / ops.sqrt(acc + _constant(self.epsilon, w)))

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ScratchRMSprop(_ScratchOptimizer):
    """RMSprop: divide by a running root-mean-square of the gradients.

    v = rho * v + (1 - rho) * g^2
    w -= lr * g / sqrt(v + eps)
    """

    slot_names = ("velocity",)

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = float(rho)
        self.epsilon = float(epsilon)

    def update(self, w, g, lr):
        rho, one_minus_rho = _constant(self.rho, w), _constant(1 - self.rho, w)
        v = self.slot("velocity", w)
        self.assign(v, rho * v + one_minus_rho * (g * g))
        self.assign_sub(w, (lr * g) / ops.sqrt(v + _constant(self.epsilon, w)))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ScratchAdam(_ScratchOptimizer):
    """Adam, in the form Keras 3 computes it (step t counted from 1):

    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m += (g - m) * (1 - beta_1)
    v += (g^2 - v) * (1 - beta_2)
    w -= alpha * m / (sqrt(v) + eps)
    """

    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def update(self, w, g, lr):
        t = _constant(self.iterations + 1, w)
        beta_1, beta_2 = _constant(self.beta_1, w), _constant(self.beta_2, w)
        alpha = lr * ops.sqrt(1 - ops.power(beta_2, t)) / (1 - ops.power(beta_1, t))
        m, v = self.slot("m", w), self.slot("v", w)
        self.assign_add(m, (g - m) * _constant(1 - self.beta_1, w))
        self.assign_add(v, (g * g - v) * _constant(1 - self.beta_2, w))
        self.assign_sub(w, (m * alpha) / (ops.sqrt(v) + _constant(self.epsilon, w)))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


OPTIMIZERS = {"sgd": ScratchSGD, "adagrad": ScratchAdaGrad, "rmsprop": ScratchRMSprop, "adam": ScratchAdam}


def get(name: str, learning_rate=None, **kwargs) -> keras.optimizers.Optimizer:
    """An optimizer by name: ``sgd``, ``momentum`` (SGD, momentum 0.9), ``nesterov``, ``adagrad``,
    ``rmsprop`` or ``adam`` (the names and variants of ``model.numpy_optimizers.get``)."""
    algorithm, kwargs = resolve(name, learning_rate, **kwargs)
    return OPTIMIZERS[algorithm](**kwargs)
