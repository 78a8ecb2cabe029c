"""Calibrated probabilities by temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural
Networks"), fitted on the validation split at the end of a run and baked into the export.

A network's softmax is often over-confident (or under-confident): among the digits it reads with
confidence 0.95, fewer (or more) than 95 % are right. Temperature scaling divides the logits ``z`` by
one scalar ``T > 0`` before the softmax::

    p(z; T) = softmax(z / T),   softmax(v)_k = exp(v_k - max v) / sum_j exp(v_j - max v)

``T > 1`` softens the probabilities, ``T < 1`` sharpens them, and no ``T`` changes the argmax: the
classes (and so the accuracy) stay the same. ``T`` minimises the mean negative log-likelihood of the
validation split (``fit_temperature``)::

    NLL(T) = -(1/n) sum_i log p(z_i; T)[y_i]

(convex in ``1/T``), searched over ``log T`` so that ``T`` stays positive. Without a validation split
(``--validation-fraction 0``) nothing is fitted: ``T = 1``.

How well the confidences match the accuracy is the expected calibration error (``ece``; Naeini et
al. 2015, as Guo et al. use it), over ``M = 15`` equal-width bins of the confidence ``c_i = max_k p_ik``,
bin ``B_m`` holding the samples with ``c_i`` in ``((m-1)/M, m/M]``::

    ECE = sum_m |B_m| / n * |accuracy(B_m) - mean confidence(B_m)|

``train.py`` reports it on the test set before and after scaling, in metrics.json, in the export's
``assets.extra/metadata.json`` and in the run summary; the export's ``serving_default`` returns
``softmax(logits / T)`` (``calibrated_model``), so the service and every client get the calibrated
probabilities with no change of their own.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from scipy.optimize import minimize_scalar

from model.keras_layers import ScratchSoftmax
from model.keras_network import OUTPUT_NAME, logits_model, predict_in_batches

BINS = 15  # Guo et al.'s M
LOG_T_BOUNDS = (math.log(1e-2), math.log(1e2))  # T searched in [0.01, 100]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` row-wise, in float64 (see the module docstring)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """``-(1/n) sum_i log softmax(z_i / T)[y_i]``, computed as ``logsumexp(z_i / T) - z_iy / T``."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    top = scaled.max(axis=1)
    log_sum = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
    return float(np.mean(log_sum - scaled[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in [0.01, 100] minimising ``nll(logits, labels, T)``: bounded Brent search over
    ``log T``; 1.0 for no samples."""
    if len(labels) == 0:
        return 1.0
    found = minimize_scalar(lambda log_t: nll(logits, labels, math.exp(log_t)), bounds=LOG_T_BOUNDS,
                            method="bounded", options={"xatol": 1e-7})
    return float(math.exp(found.x))


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error over ``bins`` equal-width confidence bins ``((m-1)/M, m/M]`` (see the
    module docstring); 0.0 for no samples."""
    if len(labels) == 0:
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # bin m (1-based) holds ((m-1)/M, m/M]: ceil(c * M), with a confidence of 0 (impossible for a softmax) in bin 1
    index = np.clip(np.ceil(confidence * bins).astype(int), 1, bins) - 1
    total = 0.0
    for m in range(bins):
        members = index == m
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def calibrate(model: keras.Model, validation: tuple[np.ndarray, np.ndarray],
              test: tuple[np.ndarray, np.ndarray]) -> dict:
    """Fit ``T`` on ``validation`` with the probabilities model ``model``'s logits, and measure the test
    set's ECE and NLL before (``T = 1``) and after. What metrics.json and the export record."""
    logits = logits_model(model)
    val_logits = predict_in_batches(logits, validation[0]) if len(validation[1]) else None
    test_logits = predict_in_batches(logits, test[0])
    temperature = fit_temperature(val_logits, validation[1]) if val_logits is not None else 1.0
    result = {"temperature": temperature, "fitted_on_validation_images": int(len(validation[1])), "bins": BINS,
              "test_ece_before": ece(softmax(test_logits), test[1]),
              "test_ece_after": ece(softmax(test_logits, temperature), test[1]),
              "test_nll_before": nll(test_logits, test[1]), "test_nll_after": nll(test_logits, test[1], temperature)}
    if val_logits is not None:
        result.update(validation_nll_before=nll(val_logits, validation[1]),
                      validation_nll_after=nll(val_logits, validation[1], temperature))
    return result


def calibrated_model(model: keras.Model, temperature: float) -> keras.Model:
    """The probabilities model to export: ``model``'s layers (and weights) up to its logits, then
    ``logits * (1 / T)`` (Keras's ``Rescaling``, saved and loaded on every backend) and the softmax.
    The logits layer keeps its name, so ``logits_model`` still finds the raw logits."""
    logits = logits_model(model)
    scaled = keras.layers.Rescaling(1.0 / temperature, name="temperature")(logits.output)
    probabilities = ScratchSoftmax(name=OUTPUT_NAME)(scaled)
    return keras.Model(logits.inputs, probabilities, name=model.name)


def summary_line(calibration: dict) -> str:
    """The run summary's line: the temperature, where it comes from, the test ECE before and after."""
    before, after = calibration["test_ece_before"], calibration["test_ece_after"]
    if not calibration["fitted_on_validation_images"]:
        return (f"Calibration    none: no validation split (--validation-fraction 0), so temperature 1; test ECE "
                f"{before:.2%} ({calibration['bins']} bins)")
    return (f"Calibration    temperature {calibration['temperature']:.3f} fitted on "
            f"{calibration['fitted_on_validation_images']} validation images: test ECE {before:.2%} -> {after:.2%} "
            f"({calibration['bins']} bins), test NLL {calibration['test_nll_before']:.4f} -> "
            f"{calibration['test_nll_after']:.4f}")
