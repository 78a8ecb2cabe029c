"""MLflow pyfunc model wrapping the MNIST SavedModel, in MLflow's "models from code" form.

    python mlflow_model.py EXPORT_VERSION_DIR MLFLOW_MODEL_DIR     # saves the MLflow model
    mlflow models serve -m MLFLOW_MODEL_DIR --env-manager local --host 127.0.0.1 -p PORT -w 1

Saving copies the SavedModel in as the artifact ``saved_model`` and records a tensor signature
(float32 (-1, 784) -> float32 (-1, 10)), so the scoring server turns ``{"inputs": [[784 floats], ...]}``
into a float32 array and answers ``{"predictions": [[10 floats], ...]}``. MLflow loads this file again
in the server and takes the model given to ``mlflow.models.set_model``.

One worker: ``mlflow models serve`` runs ``uvicorn --workers N``; with N > 1 uvicorn (without uvloop,
which MLflow does not install) serves from worker processes whose sockets lack TCP_NODELAY, and each
keep-alive request then waits about 40 ms for a delayed ACK.
"""

import sys

import mlflow
import numpy as np


class SavedModelWrapper(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import tensorflow as tf

        model = tf.saved_model.load(context.artifacts["saved_model"])
        self.signature = model.signatures["serving_default"]

    def predict(self, context, model_input, params=None):
        pixels = np.asarray(model_input, dtype=np.float32)
        return self.signature(pixels=pixels)["probabilities"].numpy()


mlflow.models.set_model(SavedModelWrapper())


def save(export_dir: str, out_dir: str) -> None:
    from mlflow.models import infer_signature

    signature = infer_signature(np.zeros((1, 784), np.float32), np.zeros((1, 10), np.float32))
    mlflow.pyfunc.save_model(out_dir, python_model=__file__, artifacts={"saved_model": export_dir},
                             signature=signature)


if __name__ == "__main__":
    save(sys.argv[1], sys.argv[2])
