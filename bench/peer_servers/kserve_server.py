"""KServe Python model server for the MNIST SavedModel: v1 protocol (``/v1/models/mnist:predict``), and
the Open Inference Protocol over gRPC (``ModelInfer``) with ``--enable_grpc true``.

    python kserve_server.py --model_dir EXPORT_VERSION_DIR --model_name mnist --http_port PORT \
        --workers 2 --enable_grpc false

As KServe's custom-model docs show: a ``kserve.Model`` subclass whose ``load()`` loads the model and sets
``ready``, ``predict(payload, headers)`` taking ``{"instances": [...]}`` and returning
``{"predictions": [...]}`` (over gRPC: an ``InferRequest`` in, an ``InferResponse`` out), and ``ModelServer().start([model])`` with the command line parsed by
``kserve.model_server.parser`` (``--workers``, ``--http_port``, ...).

Two workarounds for ``--workers`` > 1, where KServe 0.21 starts each uvicorn worker with
multiprocessing's *spawn*, pickles the registered model into it, and restarts a worker that has not
answered a liveness ping within 5 s:

- a loaded TensorFlow function cannot be pickled: the model drops it when pickled, and the worker loads
  the SavedModel again while unpickling (before it serves: no request meets an unloaded model);
- importing KServe and TensorFlow and loading the model in a new worker took longer than 5 s on a busy
  2-core machine, and workers were killed and respawned in a loop (later ones while the load ran, which
  answered 503): the ping's timeout is raised to ``PING_TIMEOUT_S``.
"""

import argparse

import numpy as np
import tensorflow as tf
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.protocol.rest.multiprocess import server as multiprocess_server

PING_TIMEOUT_S = 120.0


class MnistModel(Model):
    def __init__(self, name: str, model_dir: str):
        super().__init__(name)
        self.model_dir = model_dir
        self.signature = None
        self.load()

    def load(self) -> bool:
        self.signature = tf.saved_model.load(self.model_dir).signatures["serving_default"]
        self.ready = True
        return self.ready

    def predict(self, payload, headers: dict = None):
        if isinstance(payload, InferRequest):  # gRPC ModelInfer (bench/peers_grpc.py)
            pixels = tf.constant(payload.inputs[0].as_numpy().astype(np.float32))
            probabilities = self.signature(pixels=pixels)["probabilities"].numpy()
            output = InferOutput(name="probabilities", shape=list(probabilities.shape), datatype="FP32")
            output.set_data_from_numpy(probabilities)
            return InferResponse(response_id=payload.id, model_name=self.name, infer_outputs=[output])
        pixels = tf.constant(np.asarray(payload["instances"], dtype=np.float32))
        probabilities = self.signature(pixels=pixels)["probabilities"].numpy()
        return {"predictions": probabilities.tolist()}

    def __getstate__(self):
        return {**self.__dict__, "signature": None, "ready": False}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.load()


def patient_liveness_ping() -> None:
    """Give a worker PING_TIMEOUT_S, not 5 s, to answer the parent's liveness ping."""
    is_alive = multiprocess_server.RESTServerProcess.is_alive
    multiprocess_server.RESTServerProcess.is_alive = (
        lambda self, timeout=PING_TIMEOUT_S: is_alive(self, timeout))


parser = argparse.ArgumentParser(parents=[model_server.parser])
parser.add_argument("--model_dir", required=True, help="a SavedModel version folder")

if __name__ == "__main__":
    args, _ = parser.parse_known_args()
    patient_liveness_ping()
    ModelServer().start([MnistModel(args.model_name, args.model_dir)])
