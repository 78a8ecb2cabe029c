"""``training/export_keras.py``: the export through a TensorFlow subprocess that torch and JAX runs use.

Run here from the test process (TensorFlow backend: the path is the same from any backend; the torch and
JAX runs are in tests/backends). A verified version is published; a failed check or a crashed subprocess
is an ``ExportFailed`` with its reason, publishes nothing and leaves no temporary file behind.
"""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest

from service.contract import list_versions
from training.export_keras import ExportFailed, export_through_tensorflow


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """The folder where export_through_tensorflow puts its temporary files (checked empty afterwards)."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(scope="module")
def model_and_images():
    from model.keras_network import build_model

    return build_model(seed=0), np.random.default_rng(0).random((300, 784), dtype=np.float32)


class Disagreeing:
    """A model whose ``predict`` claims other probabilities than the ones it saves (class order reversed)."""

    def __init__(self, model):
        self.model = model

    def save(self, path):
        self.model.save(path)

    def predict(self, x, **kwargs):
        return self.model.predict(x, **kwargs)[:, ::-1]


def leftovers(export_base):
    return sorted(p.name for p in export_base.iterdir() if not p.name.isdigit()) if export_base.exists() else []


def test_a_verified_export_is_published_with_its_metadata(model_and_images, tmp_path, scratch, capfd):
    model, x = model_and_images
    export_base = tmp_path / "exports"
    path = export_through_tensorflow(model, export_base, {"backend": {"name": "tensorflow"}, "note": "test"}, x)
    assert path == export_base / "1" and list_versions(export_base) == [1]
    metadata = json.loads((path / "assets.extra" / "metadata.json").read_text())
    assert metadata["note"] == "test" and metadata["version"] == 1
    assert "Export verified on 300 test images: identical classes" in capfd.readouterr().out
    assert leftovers(export_base) == [] and list(scratch.iterdir()) == []


def test_a_failed_check_publishes_nothing(model_and_images, tmp_path, scratch):
    model, x = model_and_images
    export_base = tmp_path / "exports"
    with pytest.raises(ExportFailed, match=r"^the reloaded export disagrees with the trained model: [\d.]+% same "
                                           r"classes, max \|diff\| "):
        export_through_tensorflow(Disagreeing(model), export_base, {}, x)
    assert list_versions(export_base) == [] and leftovers(export_base) == []
    assert list(scratch.iterdir()) == []


def test_a_crashed_export_process_is_a_clear_error(model_and_images, tmp_path, scratch):
    model, x = model_and_images
    export_base = tmp_path / "exports"
    with pytest.raises(ExportFailed, match="^the TensorFlow export process failed with exit status 1$"):
        export_through_tensorflow(model, export_base, {}, x, python="/bin/false")
    with pytest.raises(ExportFailed, match="^could not start the TensorFlow export process"):
        export_through_tensorflow(model, export_base, {}, x, python=str(tmp_path / "no-such-python"))
    assert list_versions(export_base) == [] and list(scratch.iterdir()) == []
