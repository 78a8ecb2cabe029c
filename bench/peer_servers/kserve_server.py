"""KServe Python model server for the MNIST SavedModel, v1 protocol (``/v1/models/mnist:predict``).

    python kserve_server.py --model_dir EXPORT_VERSION_DIR --model_name mnist --http_port PORT \
        --workers 2 --enable_grpc false

As KServe's custom-model docs show: a ``kserve.Model`` subclass whose ``load()`` loads the model and sets
``ready``, ``predict(payload, headers)`` taking ``{"instances": [...]}`` and returning
``{"predictions": [...]}``, and ``ModelServer().start([model])`` with the command line parsed by
``kserve.model_server.parser`` (``--workers``, ``--http_port``, ...).

Workaround: with ``--workers`` > 1, KServe 0.21 starts each uvicorn worker with multiprocessing's
*spawn*, pickles the registered model into it, and kills the worker when it has not answered a ping
within about 5 s of its start. A loaded TensorFlow function cannot be pickled, and importing TensorFlow
and loading the SavedModel while unpickling takes longer than that on a busy 2-core machine (workers
were killed and respawned in a loop). So the model drops the TensorFlow function when pickled and the
worker loads it again in a background thread (``ready`` is False until then: KServe answers 503), and
TensorFlow is imported inside ``load()``, not when this file is imported.
"""

import argparse
import threading

import numpy as np
from kserve import Model, ModelServer, model_server


class MnistModel(Model):
    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir
        self.signature = None
        self.load()

    def load(self) -> bool:
        import tensorflow as tf

        self.signature = tf.saved_model.load(self.model_dir).signatures["serving_default"]
        self.ready = True
        return self.ready

    def predict(self, payload: dict, headers: dict = None) -> dict:
        pixels = np.asarray(payload["instances"], dtype=np.float32)
        probabilities = self.signature(pixels=pixels)["probabilities"].numpy()
        return {"predictions": probabilities.tolist()}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["signature"], state["ready"] = None, False
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        threading.Thread(target=self.load, name="load-savedmodel", daemon=True).start()


parser = argparse.ArgumentParser(parents=[model_server.parser])
parser.add_argument("--model_dir", required=True, help="a SavedModel version folder")

if __name__ == "__main__":
    args, _ = parser.parse_known_args()
    ModelServer().start([MnistModel(args.model_name, args.model_dir)])
