"""NumPy optimizers: against a direct float64 evaluation of each formula, and against Keras's built-ins."""

import numpy as np
import pytest

from model import numpy_optimizers as opt

STEPS = 20
SHAPES = [(5, 4), (4,)]


def gradient_sequence(seed=0, steps=STEPS):
    rng = np.random.default_rng(seed)
    return [[rng.normal(0, 1, s).astype(np.float32) for s in SHAPES] for _ in range(steps)]


def start_params(seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, s).astype(np.float32) for s in SHAPES]


# Direct, independent evaluations of each rule, in float64, one parameter array at a time.
def reference_sgd(w, gs, lr, momentum=0.0, nesterov=False):
    v = np.zeros_like(w)
    for g in gs:
        if momentum == 0:
            w = w - lr * g
            continue
        v = momentum * v - lr * g
        w = w + (momentum * v - lr * g if nesterov else v)
    return w


def reference_adagrad(w, gs, lr, initial_accumulator_value=0.1, epsilon=1e-7):
    acc = np.full_like(w, initial_accumulator_value)
    for g in gs:
        acc = acc + g ** 2
        w = w - lr * g / np.sqrt(acc + epsilon)
    return w


def reference_rmsprop(w, gs, lr, rho=0.9, epsilon=1e-7):
    v = np.zeros_like(w)
    for g in gs:
        v = rho * v + (1 - rho) * g ** 2
        w = w - lr * g / np.sqrt(v + epsilon)
    return w


def reference_adam(w, gs, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(gs, start=1):
        alpha = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        m = m + (g - m) * (1 - beta_1)
        v = v + (g ** 2 - v) * (1 - beta_2)
        w = w - alpha * m / (np.sqrt(v) + epsilon)
    return w


CASES = {
    "sgd": (lambda: opt.SGD(0.05), lambda w, gs: reference_sgd(w, gs, 0.05)),
    "momentum": (lambda: opt.SGD(0.05, momentum=0.9), lambda w, gs: reference_sgd(w, gs, 0.05, 0.9)),
    "nesterov": (lambda: opt.SGD(0.05, momentum=0.9, nesterov=True),
                 lambda w, gs: reference_sgd(w, gs, 0.05, 0.9, True)),
    "adagrad": (lambda: opt.AdaGrad(0.05), lambda w, gs: reference_adagrad(w, gs, 0.05)),
    "adagrad-eps": (lambda: opt.AdaGrad(0.05, epsilon=1e-3, initial_accumulator_value=0.5),
                    lambda w, gs: reference_adagrad(w, gs, 0.05, 0.5, 1e-3)),
    "rmsprop": (lambda: opt.RMSprop(0.01), lambda w, gs: reference_rmsprop(w, gs, 0.01)),
    "rmsprop-eps": (lambda: opt.RMSprop(0.01, rho=0.8, epsilon=1e-3),
                    lambda w, gs: reference_rmsprop(w, gs, 0.01, 0.8, 1e-3)),
    "adam": (lambda: opt.Adam(0.01), lambda w, gs: reference_adam(w, gs, 0.01)),
    "adam-eps": (lambda: opt.Adam(0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-3),
                 lambda w, gs: reference_adam(w, gs, 0.01, 0.8, 0.99, 1e-3)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_optimizer_matches_its_formula_at_every_step(name):
    make, reference = CASES[name]
    optimizer, params, grads = make(), start_params(), gradient_sequence()
    start = [p.astype(np.float64) for p in params]
    for step in range(1, STEPS + 1):
        optimizer.step(params, grads[step - 1])
        for i, p in enumerate(params):
            expected = reference(start[i], [g[i].astype(np.float64) for g in grads[:step]])
            diff = np.abs(p - expected).max()
            assert diff <= 1e-5, f"{name} step {step} param {i}: max |diff| {diff:.2e}"
    assert optimizer.iterations == STEPS
    assert all(p.dtype == np.float32 for p in params)


def keras_builtin(name):
    keras = pytest.importorskip("keras")
    return {
        "sgd": lambda: keras.optimizers.SGD(0.05),
        "momentum": lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        "nesterov": lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        "adagrad": lambda: keras.optimizers.Adagrad(0.05),
        "adagrad-eps": lambda: keras.optimizers.Adagrad(0.05, epsilon=1e-3, initial_accumulator_value=0.5),
        "rmsprop": lambda: keras.optimizers.RMSprop(0.01),
        "rmsprop-eps": lambda: keras.optimizers.RMSprop(0.01, rho=0.8, epsilon=1e-3),
        "adam": lambda: keras.optimizers.Adam(0.01),
        "adam-eps": lambda: keras.optimizers.Adam(0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-3),
    }[name]()


@pytest.mark.parametrize("name", sorted(CASES))
def test_optimizer_matches_the_keras_builtin_on_the_same_gradients(name):
    keras = pytest.importorskip("keras")
    ours, theirs = CASES[name][0](), keras_builtin(name)
    params = start_params()
    variables = [keras.Variable(p.copy()) for p in params]
    for step, grads in enumerate(gradient_sequence()):
        ours.step(params, grads)
        theirs.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads], variables))
        for p, v in zip(params, variables):
            diff = np.abs(p - keras.ops.convert_to_numpy(v)).max()
            assert diff < 1e-6, f"{name} step {step + 1}: max |diff| {diff:.2e}"


def test_learning_rate_may_be_a_schedule_of_the_iteration():
    seen = []
    optimizer = opt.SGD(lambda it: seen.append(it) or 0.1 / (1 + it))
    w = [np.ones(3, dtype=np.float32)]
    for _ in range(3):
        optimizer.step(w, [np.ones(3, dtype=np.float32)])
    assert seen == [0, 1, 2]
    np.testing.assert_allclose(w[0], 1 - 0.1 - 0.05 - 0.1 / 3, rtol=1e-6)


@pytest.mark.parametrize("make,message", [
    (lambda: opt.SGD(0.0), "learning_rate must be positive, got 0.0"),
    (lambda: opt.SGD(0.1, momentum=1.5), r"momentum must be in \[0, 1\), got 1.5"),
    (lambda: opt.get("adamw"), "unknown optimizer 'adamw'"),
])
def test_bad_optimizer_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_get_by_name_builds_the_variants():
    assert opt.get("momentum", 0.1).get_config() == {"learning_rate": 0.1, "momentum": 0.9, "nesterov": False}
    assert opt.get("nesterov").nesterov is True
    assert isinstance(opt.get("adagrad", 0.01), opt.AdaGrad)
