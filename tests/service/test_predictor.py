"""The model side: version discovery, loading, hot reload, broken versions, roll-back."""

from __future__ import annotations

import logging
import shutil
import threading

import numpy as np
import pytest

from service.predictor import ModelNotReady, Predictor, VersionNotFound, load_version

from .conftest import copy_version


def test_loads_the_newest_version_and_predicts_like_the_saved_model(export_base, tmp_path, reference):
    base = tmp_path / "base"
    copy_version(export_base / "1", base, 1)
    copy_version(export_base / "1", base, 2)
    predictor = Predictor(base)
    assert predictor.refresh() is True
    model = predictor.get()
    assert model.version == 2 and predictor.loaded_versions() == [2]
    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    np.testing.assert_array_equal(model.predict(x), reference(x))
    assert model.metadata["version"] == 1  # metadata.json travels with the copied folder
    assert model.input_name == "pixels" and model.output_name == "probabilities"
    assert predictor.refresh() is False  # nothing newer


def test_missing_export_base_is_not_ready_with_a_clear_reason(tmp_path, caplog):
    predictor = Predictor(tmp_path / "nothing-here")
    with caplog.at_level(logging.WARNING, logger="service.predictor"):
        assert predictor.refresh() is False
        assert predictor.refresh() is False
    assert not predictor.ready
    with pytest.raises(ModelNotReady, match="does not exist"):
        predictor.get()
    assert sum("does not exist" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_new_version_is_swapped_in_and_old_references_keep_working(export_base, tmp_path):
    base = tmp_path / "base"
    copy_version(export_base / "1", base, 1)
    predictor = Predictor(base, keep_versions=2)
    predictor.refresh()
    old = predictor.get()
    copy_version(export_base / "1", base, 2)
    assert predictor.refresh() is True
    assert predictor.get().version == 2 and predictor.reloads == 1
    assert predictor.get(1) is old  # previous version still loaded (keep_versions=2)
    assert old.predict(np.zeros((1, 784), np.float32)).shape == (1, 10)  # in-flight requests finish
    copy_version(export_base / "1", base, 3)
    predictor.refresh()
    assert predictor.loaded_versions() == [2, 3]  # version 1 evicted
    with pytest.raises(VersionNotFound, match="version 1 is not loaded"):
        predictor.get(1)


def test_broken_newer_version_is_logged_skipped_and_retried_only_when_changed(export_base, tmp_path,
                                                                              caplog):
    base = tmp_path / "base"
    copy_version(export_base / "1", base, 1)
    failures = []
    predictor = Predictor(base, on_failure=lambda v, e: failures.append(v))
    predictor.refresh()
    broken = base / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a protobuf")
    with caplog.at_level(logging.ERROR, logger="service.predictor"):
        assert predictor.refresh() is False
        assert predictor.refresh() is False  # same files: not retried, not logged again
    assert failures == [2]
    assert predictor.get().version == 1
    assert [r for r in caplog.records if "version 2" in r.getMessage() and "skipped" in r.getMessage()]
    assert predictor.failures()[0].version == 2
    shutil.rmtree(broken)
    copy_version(export_base / "1", base, 2)  # fixed: new files, so it is tried again
    assert predictor.refresh() is True and predictor.get().version == 2
    assert predictor.failures() == []


def test_missing_saved_model_is_broken_and_older_good_version_is_used(export_base, tmp_path):
    base = tmp_path / "base"
    copy_version(export_base / "1", base, 1)
    (base / "2").mkdir()  # e.g. a copy in progress made without the atomic rename
    predictor = Predictor(base)
    assert predictor.refresh() is True
    assert predictor.get().version == 1
    assert "no saved_model.pb" in predictor.failures()[0].error


def test_removing_the_current_version_rolls_back_to_the_previous_one(export_base, tmp_path):
    base = tmp_path / "base"
    copy_version(export_base / "1", base, 1)
    copy_version(export_base / "1", base, 2)
    predictor = Predictor(base)
    predictor.refresh()
    shutil.rmtree(base / "2")
    assert predictor.refresh() is True
    assert predictor.get().version == 1


def test_predictions_never_fail_while_versions_are_swapped(export_base, tmp_path):
    base = tmp_path / "base"
    copy_version(export_base / "1", base, 1)
    predictor = Predictor(base)
    predictor.refresh()
    errors, seen, stop = [], set(), threading.Event()
    x = np.random.default_rng(1).random((4, 784), dtype=np.float32)

    def hammer():
        while not stop.is_set():
            try:
                model = predictor.get()
                assert model.predict(x).shape == (4, 10)
                seen.add(model.version)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    for version in (2, 3):
        copy_version(export_base / "1", base, version)
        predictor.refresh()
    for _ in range(100):  # let the threads run on the new version for a moment
        if 3 in seen:
            break
        threading.Event().wait(0.02)
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert predictor.get().version == 3 and 3 in seen


def test_poller_picks_up_a_new_version(export_base, tmp_path):
    base = tmp_path / "base"
    predictor = Predictor(base)
    predictor.refresh()
    predictor.start_polling(0.05)
    try:
        copy_version(export_base / "1", base, 1)
        for _ in range(200):
            if predictor.ready:
                break
            threading.Event().wait(0.05)
        assert predictor.get().version == 1
    finally:
        predictor.stop_polling()


def test_any_compatible_export_is_served(trained_model, tmp_path):
    """Keras' own ``model.export`` names the output ``output_0``: still served."""
    trained_model.export(str(tmp_path / "7"), verbose=False)
    model = load_version(tmp_path / "7")
    assert model.version == 7 and model.input_name == "pixels" and model.output_name == "output_0"
    assert model.predict(np.zeros((2, 784), np.float32)).shape == (2, 10)
    assert model.metadata == {}


def test_versions_run_as_a_frozen_graph_that_gives_the_signatures_results(version_dir, reference):
    model = load_version(version_dir)
    pixels = np.random.default_rng(3).random((5, 784), dtype=np.float32)
    assert model.runs_as == "frozen graph"
    np.testing.assert_array_equal(model.predict(pixels), reference(pixels))  # bit for bit


def test_a_model_that_cannot_be_frozen_is_served_through_its_signature(version_dir, reference, monkeypatch,
                                                                       caplog):
    def cannot_freeze(*args, **kwargs):
        raise ValueError("a table cannot be frozen")

    monkeypatch.setattr("service.predictor.GraphRunner", cannot_freeze)
    model = load_version(version_dir)
    pixels = np.random.default_rng(4).random((3, 784), dtype=np.float32)
    assert model.runs_as == "signature"
    np.testing.assert_array_equal(model.predict(pixels), reference(pixels))
    assert "serving through the signature, not a frozen graph (ValueError: a table cannot be frozen)" in caplog.text


def test_incompatible_signature_is_refused_with_the_reason(tmp_path):
    import tensorflow as tf

    class Doubler(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, 3), tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * 2}

    module = Doubler()
    tf.saved_model.save(module, str(tmp_path / "1"), signatures={"serving_default": module.serve})
    with pytest.raises(ValueError, match=r"expected float32 \(None, 784\)"):
        load_version(tmp_path / "1")
