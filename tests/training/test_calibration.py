"""Temperature scaling (training/calibration.py): the fitted temperature, the expected calibration
error, and the export's signature returning softmax(logits / T)."""

import numpy as np
import pytest

from training.calibration import calibrate, ece, fit_temperature, nll, softmax


def synthetic(true_temperature: float, n: int = 20000, seed: int = 0):
    """Logits ``z`` and labels drawn from ``softmax(z / true_temperature)``: the labels' true
    probabilities are the logits at that temperature, so the NLL's minimum lies there."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, size=(n, 10))
    probabilities = softmax(logits, true_temperature)
    labels = (probabilities.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits.astype(np.float32), labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_at(true_temperature):
    logits, labels = synthetic(true_temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    # and it is the NLL's minimum: a step either side is worse
    for other in (fitted * 0.9, fitted * 1.1):
        assert nll(logits, labels, other) > nll(logits, labels, fitted)


def test_no_validation_samples_means_temperature_1():
    assert fit_temperature(np.zeros((0, 10), np.float32), np.zeros(0, np.int64)) == 1.0


def test_softmax_and_nll_by_hand():
    logits = np.array([[np.log(1.0), np.log(3.0)], [0.0, 0.0]])
    np.testing.assert_allclose(softmax(logits), [[0.25, 0.75], [0.5, 0.5]])
    # T = 2 halves the logits: [0, log 3 / 2] -> 1 : sqrt(3)
    np.testing.assert_allclose(softmax(logits, 2.0)[0], [1 / (1 + 3 ** 0.5), 3 ** 0.5 / (1 + 3 ** 0.5)])
    assert nll(logits, np.array([1, 0])) == pytest.approx(-(np.log(0.75) + np.log(0.5)) / 2)
    assert np.all(np.isfinite(softmax(np.array([[1000.0, 0.0]]))))  # shifted by the max: no overflow


def test_ece_of_a_hand_computed_case():
    """Bin (14/15, 1]: confidences 0.95 and 0.95, one right: |0.5 - 0.95| weighted 2/5. Bin (8/15, 9/15]:
    0.55, 0.55 and 0.6 (on the bin's upper edge, so in it), all right: |1 - 0.5667| weighted 3/5."""
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 1, 0])
    expected = 2 / 5 * abs(0.5 - 0.95) + 3 / 5 * abs(1.0 - (0.55 + 0.55 + 0.6) / 3)
    assert ece(probabilities, labels) == pytest.approx(expected)
    assert expected == pytest.approx(0.44)
    # perfectly calibrated: in each bin the accuracy equals the confidence
    calibrated = np.array([[0.75, 0.25]] * 4)
    assert ece(calibrated, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    # 15 bins, not 10: 0.62 and 0.68 share a bin of ten (0.6-0.7] but not of fifteen (0.6-0.667], (0.667-0.733]
    split = np.array([[0.62, 0.38], [0.68, 0.32]])
    assert ece(split, np.array([0, 1])) == pytest.approx(0.5 * 0.38 + 0.5 * 0.68)
    assert ece(split, np.array([0, 1]), bins=10) == pytest.approx(abs(0.5 - 0.65))


def test_scaling_lowers_the_test_ece_of_an_overconfident_model():
    """A model whose logits are 3x too large: calibrate() finds T near 3 on the validation half, and the
    test half's ECE falls from large to near zero; the classes do not change."""
    from model.keras_network import from_numpy, logits_model
    from model.numpy_network import NumpyNetwork

    rng = np.random.default_rng(1)
    model = from_numpy(NumpyNetwork((784, 10), seed=0))
    x = 10 * rng.random((8000, 784), dtype=np.float32)  # logits spread over several units
    true_logits = logits_model(model).predict(x, verbose=0).astype(np.float64)
    labels = (softmax(true_logits, 3.0).cumsum(axis=1) > rng.random((len(x), 1))).argmax(axis=1)
    result = calibrate(model, (x[:4000], labels[:4000]), (x[4000:], labels[4000:]))
    assert result["temperature"] == pytest.approx(3.0, rel=0.1)
    assert result["test_ece_before"] > 0.1 > 0.03 > result["test_ece_after"]
    assert result["test_nll_after"] < result["test_nll_before"]
    assert result["validation_nll_after"] < result["validation_nll_before"]
    assert result["fitted_on_validation_images"] == 4000 and result["bins"] == 15
    none = calibrate(model, (x[:0], labels[:0]), (x[4000:], labels[4000:]))
    assert none["temperature"] == 1.0 and none["fitted_on_validation_images"] == 0
    assert none["test_ece_before"] == none["test_ece_after"] == result["test_ece_before"]


def test_the_exported_signature_returns_softmax_of_logits_over_t(tmp_path):
    """The calibrated model exported and reloaded as the service loads it: its probabilities are
    softmax(logits / T) of the Keras model to 1e-6, with the same classes; an export of the plain model
    fails the check against the calibrated probabilities (nothing published)."""
    import tensorflow as tf

    from model.keras_network import from_numpy, logits_model
    from model.numpy_network import NumpyNetwork
    from service.contract import INPUT_NAME, OUTPUT_NAME, SIGNATURE_NAME, list_versions
    from training.calibration import calibrated_model
    from training.export import ExportVerificationError, export_model, verify_export, verify_probabilities

    temperature = 2.5
    model = from_numpy(NumpyNetwork(seed=0))
    x = np.random.default_rng(0).random((300, 784), dtype=np.float32)
    served = calibrated_model(model, temperature)
    path = export_model(served, tmp_path / "exports", verify=verify_export(served, x))
    serve = tf.saved_model.load(str(path)).signatures[SIGNATURE_NAME]
    exported = serve(**{INPUT_NAME: tf.constant(x)})[OUTPUT_NAME].numpy()
    logits = logits_model(model).predict(x, verbose=0)
    expected = softmax(logits, temperature)
    assert exported.dtype == np.float32 and exported.shape == (300, 10)
    assert np.abs(exported - expected).max() <= 1e-6
    assert (exported.argmax(1) == logits.argmax(1)).all()
    assert np.abs(exported - softmax(logits)).max() > 1e-2, "T = 2.5 must change the probabilities"
    with pytest.raises(ExportVerificationError, match="disagrees with the trained model"):
        export_model(model, tmp_path / "exports", verify=verify_probabilities(x, expected.astype(np.float32)))
    assert list_versions(tmp_path / "exports") == [1]


def test_evaluating_and_calibrating_match_predict_and_trace_nothing_again(caplog):
    """train.py evaluates then calibrates: sets whose last batch is shorter each time. Through ``model.predict``
    TensorFlow traced its function again for each new shape and logged "triggered tf.function retracing" twice
    in the README's main job; ``predict_in_batches`` gives the same logits without that."""
    import logging

    from model.keras_network import from_numpy, logits_model, predict_in_batches
    from model.numpy_network import NumpyNetwork
    from training.evaluation import evaluate

    model = from_numpy(NumpyNetwork(seed=0))
    rng = np.random.default_rng(2)
    x, y = rng.random((5000, 784), dtype=np.float32), rng.integers(0, 10, 5000)
    np.testing.assert_allclose(predict_in_batches(logits_model(model), x, 2048),
                               logits_model(model).predict(x, verbose=0), rtol=0, atol=1e-5)
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for size in (5000, 4321, 3333, 2222, 1111, 999, 777):  # 7 sets, 7 shapes of last batch, in 2 functions
            evaluate(model, x[:size], y[:size], "cross_entropy")
            calibrate(model, (x[:size // 2], y[:size // 2]), (x[:size], y[:size]))
    assert not [record.getMessage() for record in caplog.records if "retracing" in record.getMessage()]
