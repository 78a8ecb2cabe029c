"""Optimizers in NumPy, written by hand with exactly the update rules of Keras 3's built-in ones.

Each optimizer keeps its own state (``iterations`` and per-parameter slots) and ``step(params,
grads)`` updates the parameter arrays in place. ``model/keras_optimizers.py`` has the Keras twins with the
same names, arguments, defaults and formulas in the same order, so the two files read side by side.

``learning_rate`` is a float or a callable ``lr(iteration)`` (0-based), like a Keras schedule.
Arithmetic is done in the parameters' dtype (float32), in the same order as Keras, and in place
where that saves a temporary array (the Adam update is a third of an epoch's time otherwise).
Constants such as ``1 - beta_2`` are computed in Python floats and then cast, as Keras does:
``float32(1) - float32(0.999)`` is 1.3e-5 (relative) away from ``float32(0.001)``, enough to drift
3e-6 from Keras's Adam in 50 steps at a learning rate of 1e-2.
"""

from __future__ import annotations

import math

import numpy as np


def check_learning_rate(learning_rate):
    """A schedule (callable) as it is, or a positive float; shared with ``model/keras_optimizers.py``."""
    if callable(learning_rate):
        return learning_rate
    if isinstance(learning_rate, bool) or not float(learning_rate) > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    return float(learning_rate)


def _constant(value, w):
    """``value`` (a Python float) in ``w``'s dtype."""
    return w.dtype.type(value)


class Optimizer:
    """Shared by the four optimizers, as ``keras_optimizers._ScratchOptimizer`` is by theirs: the
    learning rate, the step counter, one slot per parameter for each of ``slot_names`` (created on the
    first step), and ``step``, which casts each gradient and the learning rate to the parameter's
    dtype once and hands them to the subclass's ``update(i, w, g, lr)``."""

    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate):
        self.learning_rate = check_learning_rate(learning_rate)
        self.iterations = 0  # completed steps
        self.slots: dict[str, list[np.ndarray]] = {}

    def current_learning_rate(self) -> float:
        lr = self.learning_rate
        return float(lr(self.iterations)) if callable(lr) else float(lr)

    def slot_initializer(self, name) -> float:
        return 0.0

    def build(self, params) -> None:
        """Create one slot per parameter for each name in ``slot_names`` (``self.slots[name][i]``)."""
        self.slots = {name: [np.full_like(p, self.slot_initializer(name)) for p in params]
                      for name in self.slot_names}

    def step(self, params, grads) -> None:
        """Update every parameter in place with its gradient, then count the step."""
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} parameters but {len(grads)} gradients")
        if not self.slots and self.slot_names:
            self.build(params)
        lr = self.current_learning_rate()
        for i, (w, g) in enumerate(zip(params, grads)):
            self.update(i, w, g.astype(w.dtype, copy=False), w.dtype.type(lr))
        self.iterations += 1

    def update(self, i, w, g, lr) -> None:
        """Apply the rule to parameter ``i``, ``w``, in place, given ``g`` and ``lr`` in ``w``'s dtype."""
        raise NotImplementedError

    def slot(self, name, i) -> np.ndarray:
        return self.slots[name][i]

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Gradient descent, optionally with (Nesterov) momentum.

    momentum == 0:  w -= lr * g
    momentum > 0:   v = momentum * v - lr * g
                    w += v                           (classic)
                    w += momentum * v - lr * g       (nesterov)
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.slot_names = ("velocity",) if self.momentum else ()

    def update(self, i, w, g, lr):
        if not self.momentum:
            w -= g * lr
            return
        momentum = _constant(self.momentum, w)
        v = self.slot("velocity", i)
        v[...] = v * momentum - g * lr
        if self.nesterov:
            w += v * momentum - g * lr
        else:
            w += v

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class AdaGrad(Optimizer):
    """AdaGrad: per-parameter steps shrink with the sum of past squared gradients.

    acc += g^2                       (acc starts at initial_accumulator_value)
    w -= lr * g / sqrt(acc + eps)
    """

    slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7):
        super().__init__(learning_rate)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)

    def slot_initializer(self, name):
        return self.initial_accumulator_value

    def update(self, i, w, g, lr):
        acc = self.slot("accumulator", i)
        acc += g * g
        w -= (lr * g) / np.sqrt(acc + _constant(self.epsilon, w))

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class RMSprop(Optimizer):
    """RMSprop: divide by a running root-mean-square of the gradients.

    v = rho * v + (1 - rho) * g^2
    w -= lr * g / sqrt(v + eps)
    """

    slot_names = ("velocity",)

    def __init__(self, learning_rate=0.001, rho=0.9, epsilon=1e-7):
        super().__init__(learning_rate)
        self.rho = float(rho)
        self.epsilon = float(epsilon)

    def update(self, i, w, g, lr):
        rho, one_minus_rho = _constant(self.rho, w), _constant(1 - self.rho, w)
        v = self.slot("velocity", i)
        v[...] = rho * v + one_minus_rho * (g * g)
        w -= (lr * g) / np.sqrt(v + _constant(self.epsilon, w))

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


class Adam(Optimizer):
    """Adam, in the form Keras 3 computes it (step t counted from 1):

    alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m += (g - m) * (1 - beta_1)
    v += (g^2 - v) * (1 - beta_2)
    w -= alpha * m / (sqrt(v) + eps)
    """

    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def update(self, i, w, g, lr):
        t = _constant(self.iterations + 1, w)
        beta_1, beta_2 = _constant(self.beta_1, w), _constant(self.beta_2, w)
        alpha = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        m, v = self.slot("m", i), self.slot("v", i)
        # m += (g - m) * (1 - beta_1) and v += (g^2 - v) * (1 - beta_2), through one temporary array
        step = g - m
        step *= _constant(1 - self.beta_1, w)
        m += step
        np.multiply(g, g, out=step)
        step -= v
        step *= _constant(1 - self.beta_2, w)
        v += step
        # w -= alpha * m / (sqrt(v) + eps)
        np.multiply(m, alpha, out=step)
        denominator = np.sqrt(v)
        denominator += _constant(self.epsilon, w)
        step /= denominator
        w -= step

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


def cosine_decay(initial: float, decay_steps: int):
    """lr(step) = initial * 0.5 * (1 + cos(pi * min(step, decay_steps) / decay_steps)), the schedule
    of ``keras.optimizers.schedules.CosineDecay(initial, decay_steps)`` (alpha = 0) as a NumPy
    optimizer's ``learning_rate`` callable."""
    def lr(step):
        return initial * 0.5 * (1 + math.cos(math.pi * min(step, decay_steps) / decay_steps))
    return lr


OPTIMIZERS = {"sgd": SGD, "adagrad": AdaGrad, "rmsprop": RMSprop, "adam": Adam}


# Names users pick from: the four algorithms plus two SGD variants.
NAMES = ("adagrad", "adam", "momentum", "nesterov", "rmsprop", "sgd")
VARIANTS = {"momentum": ("sgd", {"momentum": 0.9}), "nesterov": ("sgd", {"momentum": 0.9, "nesterov": True})}


def resolve(name: str, learning_rate=None, **kwargs) -> tuple[str, dict]:
    """``(algorithm, constructor kwargs)`` for a user-facing name; shared with ``model/keras_optimizers.py``."""
    if name not in NAMES:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(NAMES)}")
    algorithm, defaults = VARIANTS.get(name, (name, {}))
    kwargs = {**defaults, **kwargs}
    if learning_rate is not None:
        kwargs["learning_rate"] = learning_rate
    return algorithm, kwargs


def get(name: str, learning_rate=None, **kwargs) -> Optimizer:
    """An optimizer by name: ``sgd``, ``momentum`` (SGD, momentum 0.9), ``nesterov``, ``adagrad``,
    ``rmsprop`` or ``adam``."""
    algorithm, kwargs = resolve(name, learning_rate, **kwargs)
    return OPTIMIZERS[algorithm](**kwargs)
