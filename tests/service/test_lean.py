"""service/lean.py: the libraries the service never uses stay out of a serving process."""

from __future__ import annotations

import json
import subprocess
import sys

from bench.support import REPO

SERVE_AND_LIST = """
import json, sys
from service.lean import KEPT_OUT, keep_out
keep_out()
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
outputs = model.signatures["serving_default"](pixels=tf.zeros((1, 784)))
try:
    import keras
    refused = None
except ModuleNotFoundError as exc:
    refused = str(exc)
loaded = sorted({name.partition(".")[0] for name in sys.modules} & set(KEPT_OUT))
print(json.dumps({"loaded": loaded, "refused": refused, "rows": int(next(iter(outputs.values())).shape[0])}))
"""


def test_tensorflow_serves_a_savedmodel_without_the_kept_out_libraries(version_dir):
    result = subprocess.run([sys.executable, "-c", SERVE_AND_LIST, str(version_dir)], cwd=REPO,
                            capture_output=True, text=True, timeout=120,
                            env={"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rows"] == 1
    assert report["loaded"] == []  # keras, scikit-learn, jax ... none imported, though TensorFlow tries
    assert "kept out of the serving process by service/lean.py" in report["refused"]
