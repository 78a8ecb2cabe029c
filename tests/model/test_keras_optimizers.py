"""The optimizer mirror: ``model/keras_optimizers.py`` against ``model/numpy_optimizers.py`` (and Keras' built-ins).

Same gradients in, same update out. Both sides receive the very same float32 gradients (real
gradients of 50 MNIST batches, see ``gradient_sequence`` in conftest.py) and start from the same
weights, so nothing upstream can differ: the only differences left are those of elementwise float32
arithmetic, which both sides do in the same order with the same float32 constants. Each operation
is correctly rounded on both sides except ``beta^t`` in Adam (``powf`` vs the backend's ``pow``,
last bit), so the results agree to a few float32 ulps of the weights (|w| < 1: ulp <= 6e-8). The
tolerance 2e-6 is 30 such ulps: tight enough that any wrong formula, an epsilon in the wrong place
(one case uses epsilon = 1e-3, where a misplaced epsilon changes steps by percents), a constant
computed in another precision or a step counter off by one (Adam's bias correction at t = 1 vs 2)
fails at the first steps, where such errors are 1e-5 or more.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from model import numpy_optimizers as np_opt
from model import keras_optimizers as k_opt
from tests.model.conftest import check, max_abs_diff

STEPS = 50
TOL = 2e-6

# name -> (NumPy class, Keras twin, keyword arguments): every variant at two learning rates, and
# epsilon = 1e-3 with non-default decay constants so that neither can hide.
VARIANTS = {
    "sgd": (np_opt.SGD, k_opt.ScratchSGD, {}),
    "momentum": (np_opt.SGD, k_opt.ScratchSGD, {"momentum": 0.9}),
    "nesterov": (np_opt.SGD, k_opt.ScratchSGD, {"momentum": 0.9, "nesterov": True}),
    "adagrad": (np_opt.AdaGrad, k_opt.ScratchAdaGrad, {}),
    "rmsprop": (np_opt.RMSprop, k_opt.ScratchRMSprop, {}),
    "adam": (np_opt.Adam, k_opt.ScratchAdam, {}),
}
EPSILON_VARIANTS = {
    "adagrad": {"epsilon": 1e-3, "initial_accumulator_value": 0.5},
    "rmsprop": {"epsilon": 1e-3, "rho": 0.8},
    "adam": {"epsilon": 1e-3, "beta_1": 0.8, "beta_2": 0.99},
}
CASES = ([(name, lr, {}) for name in VARIANTS for lr in (1e-3, 1e-2)]
         + [(name, 1e-2, kw) for name, kw in EPSILON_VARIANTS.items()])


def case_id(case):
    name, lr, kw = case
    return f"{name}-lr{lr:g}" + ("-eps1e-3" if kw else "")


def keras_variables(weights):
    return [keras.Variable(w.copy(), name=f"w{i}") for i, w in enumerate(weights)]


def as_numpy(variables):
    return [keras.ops.convert_to_numpy(v) for v in variables]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_same_gradients_in_same_update_out(case, gradient_sequence, mirror_report):
    """50 steps of the NumPy optimizer and its Keras twin on the same gradients and start weights:
    max |w_numpy - w_keras| <= 2e-6 after every step."""
    name, lr, kwargs = case
    numpy_class, keras_class, base = VARIANTS[name]
    start, sequence = gradient_sequence
    ours_np, ours_k = numpy_class(lr, **base, **kwargs), keras_class(lr, **base, **kwargs)
    params, variables = [w.copy() for w in start], keras_variables(start)
    worst, moved = 0.0, 0.0
    for step, grads in enumerate(sequence[:STEPS], start=1):
        ours_np.step(params, grads)
        ours_k.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads], variables))
        diff = max_abs_diff(params, as_numpy(variables))
        check(diff, TOL, f"{case_id(case)} step {step}: max |w_numpy - w_keras|")
        worst = max(worst, diff)
    moved = max_abs_diff(params, start)
    assert int(keras.ops.convert_to_numpy(ours_k.iterations)) == ours_np.iterations == STEPS
    # The comparison means something only if the steps are large against the tolerance.
    assert moved > 100 * TOL, f"{case_id(case)}: the weights hardly moved ({moved:.2e}), the test proves little"
    mirror_report(f"optimizer mirror {case_id(case):<22} max |diff| over {STEPS} steps {worst:.2e} "
                  f"(weights moved up to {moved:.2e})")


BUILTIN = {
    "sgd": lambda lr: keras.optimizers.SGD(lr),
    "momentum": lambda lr: keras.optimizers.SGD(lr, momentum=0.9),
    "nesterov": lambda lr: keras.optimizers.SGD(lr, momentum=0.9, nesterov=True),
    "adagrad": lambda lr: keras.optimizers.Adagrad(lr),
    "adagrad-eps": lambda lr: keras.optimizers.Adagrad(lr, **EPSILON_VARIANTS["adagrad"]),
    "rmsprop": lambda lr: keras.optimizers.RMSprop(lr),
    "rmsprop-eps": lambda lr: keras.optimizers.RMSprop(lr, **EPSILON_VARIANTS["rmsprop"]),
    "adam": lambda lr: keras.optimizers.Adam(lr),
    "adam-eps": lambda lr: keras.optimizers.Adam(lr, **EPSILON_VARIANTS["adam"]),
}


BUILTIN_CASES = [(name, lr) for name in sorted(BUILTIN) for lr in (1e-3, 1e-2)]


@pytest.mark.parametrize("name,lr", BUILTIN_CASES)
def test_scratch_optimizers_match_the_keras_builtins(name, lr, gradient_sequence, mirror_report):
    """Ours against Keras' own optimizers on the same 50 gradient sets: a mirror that is wrong in the
    same way on both sides would still fail here. (It did: computing ``1 - beta_2`` in float32 instead of
    in Python floats before the cast, as Keras does, drifted 3.2e-6 from Keras's Adam in 50 steps at
    lr 1e-2; NumPy and the mirror now cast ``1 - beta`` and ``1 - rho`` the Keras way.) The 2e-6 bound
    leaves room for kernels that fuse or reorder float32 operations differently."""
    base_name, _, eps = name.partition("-")
    kwargs = {**VARIANTS[base_name][2], **(EPSILON_VARIANTS[base_name] if eps else {})}
    ours, theirs = VARIANTS[base_name][1](lr, **kwargs), BUILTIN[name](lr)
    start, sequence = gradient_sequence
    a, b = keras_variables(start), keras_variables(start)
    worst = 0.0
    try:
        for step, grads in enumerate(sequence[:STEPS], start=1):
            tensors = [keras.ops.convert_to_tensor(g) for g in grads]
            ours.apply_gradients(zip(tensors, a))
            theirs.apply_gradients(zip(tensors, b))
            diff = max_abs_diff(as_numpy(a), as_numpy(b))
            worst = max(worst, diff)
            check(diff, TOL, f"{name} lr {lr:g} step {step}: max |ours - keras built-in|")
    finally:
        mirror_report(f"ours vs Keras built-in {name + f'-lr{lr:g}':<22} max |diff| over {step} steps {worst:.2e}")


def test_learning_rate_schedule_gets_the_0_based_iteration_like_numpy(gradient_sequence):
    """A Keras schedule and the NumPy ``lr(iteration)`` callable see the same iteration numbers."""
    schedule = keras.optimizers.schedules.InverseTimeDecay(0.05, decay_steps=1, decay_rate=1.0)
    ours_np = np_opt.SGD(lambda it: 0.05 / (1 + it), momentum=0.9)
    ours_k = k_opt.ScratchSGD(schedule, momentum=0.9)
    start, sequence = gradient_sequence
    params, variables = [w.copy() for w in start], keras_variables(start)
    for step, grads in enumerate(sequence[:10], start=1):
        ours_np.step(params, grads)
        ours_k.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads], variables))
        check(max_abs_diff(params, as_numpy(variables)), TOL, f"schedule step {step}")
    config = ours_k.get_config()
    again = k_opt.ScratchSGD.from_config(dict(config))  # from_config deserializes in place
    assert isinstance(again._learning_rate, keras.optimizers.schedules.InverseTimeDecay)
    assert again.get_config() == config


ALL_CLASSES = [
    (k_opt.ScratchSGD, {"learning_rate": 0.02, "momentum": 0.5, "nesterov": True}),
    (k_opt.ScratchAdaGrad, {"learning_rate": 0.02, "initial_accumulator_value": 0.3, "epsilon": 1e-4}),
    (k_opt.ScratchRMSprop, {"learning_rate": 0.02, "rho": 0.7, "epsilon": 1e-4}),
    (k_opt.ScratchAdam, {"learning_rate": 0.02, "beta_1": 0.7, "beta_2": 0.95, "epsilon": 1e-4}),
]


@pytest.mark.parametrize("cls,kwargs", ALL_CLASSES, ids=lambda v: getattr(v, "__name__", ""))
def test_config_is_complete_and_round_trips(cls, kwargs):
    optimizer = cls(**kwargs, clipnorm=1.0, name="mine")
    config = optimizer.get_config()
    for key, value in kwargs.items():
        assert config[key] == pytest.approx(value), key
    assert config["clipnorm"] == 1.0 and config["name"] == "mine"
    again = cls.from_config(dict(config))
    assert again.get_config() == config
    # Through Keras' own (de)serialization, which finds the class by its registered name.
    revived = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(revived) is cls and revived.get_config() == config


@pytest.mark.parametrize("cls,numpy_cls", [(k_opt.ScratchSGD, np_opt.SGD), (k_opt.ScratchAdaGrad, np_opt.AdaGrad),
                                           (k_opt.ScratchRMSprop, np_opt.RMSprop), (k_opt.ScratchAdam, np_opt.Adam)])
def test_constructor_defaults_equal_the_numpy_twins(cls, numpy_cls):
    ours, twin = cls().get_config(), numpy_cls().get_config()
    for key, value in twin.items():
        assert ours[key] == pytest.approx(value), key


def test_slots_and_their_start_values():
    variables = keras_variables([np.ones((3, 2), np.float32), np.ones(2, np.float32)])
    adagrad = k_opt.ScratchAdaGrad(initial_accumulator_value=0.25)
    adagrad.build(variables)
    assert [keras.ops.convert_to_numpy(s).tolist() for s in adagrad.slots["accumulator"]] == \
        [[[0.25] * 2] * 3, [0.25] * 2]
    adam = k_opt.ScratchAdam()
    adam.build(variables)
    assert sorted(adam.slots) == ["m", "v"] and all(s.shape == v.shape for s, v in zip(adam.slots["m"], variables))
    assert k_opt.ScratchSGD().slot_names == () and k_opt.ScratchSGD(momentum=0.5).slot_names == ("velocity",)


def test_get_by_name_builds_the_variants_like_numpy():
    for name in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"):
        ours, twin = k_opt.get(name, 0.1), np_opt.get(name, 0.1)
        assert type(ours).__name__ == "Scratch" + type(twin).__name__
        config = ours.get_config()
        for key, value in twin.get_config().items():
            assert config[key] == pytest.approx(value), (name, key)
    assert k_opt.get("adam").get_config()["learning_rate"] == pytest.approx(1e-3)
    assert k_opt.get("sgd").get_config()["learning_rate"] == pytest.approx(0.01)


@pytest.mark.parametrize("make,numpy_make", [
    (lambda: k_opt.ScratchSGD(0.0), lambda: np_opt.SGD(0.0)),
    (lambda: k_opt.ScratchAdam(-1e-3), lambda: np_opt.Adam(-1e-3)),
    (lambda: k_opt.ScratchSGD(0.1, momentum=1.5), lambda: np_opt.SGD(0.1, momentum=1.5)),
    (lambda: k_opt.get("adamw"), lambda: np_opt.get("adamw")),
])
def test_bad_arguments_give_the_numpy_messages(make, numpy_make):
    with pytest.raises(ValueError) as numpy_error:
        numpy_make()
    with pytest.raises(ValueError) as keras_error:
        make()
    assert str(keras_error.value) == str(numpy_error.value)
