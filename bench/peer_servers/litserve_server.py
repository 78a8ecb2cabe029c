"""LitServe server for the MNIST SavedModel: ``POST /predict`` ``{"instances": [[784 floats], ...]}``
-> ``{"predictions": [[10 floats], ...]}``.

    python litserve_server.py EXPORT_VERSION_DIR PORT [WORKERS]

As LitServe's docs show: an ``ls.LitAPI`` whose ``setup(device)`` loads the model (in each inference
worker), ``decode_request`` / ``predict`` / ``encode_response``, and ``ls.LitServer(api,
accelerator="cpu", workers_per_device=WORKERS)`` run with ``server.run(port=...)``. By default LitServe
also starts as many API server processes as inference workers (``num_api_servers``). TensorFlow is
imported in ``setup()``: the inference workers are spawned, and the API servers forked from a main
process that then never needs TensorFlow.
"""

import sys

import litserve as ls
import numpy as np


class MnistAPI(ls.LitAPI):
    def __init__(self, model_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.model_dir = model_dir

    def setup(self, device):
        import tensorflow as tf

        self.signature = tf.saved_model.load(self.model_dir).signatures["serving_default"]

    def decode_request(self, request):
        return np.asarray(request["instances"], dtype=np.float32)

    def predict(self, pixels):
        return self.signature(pixels=pixels)["probabilities"].numpy()

    def encode_response(self, probabilities):
        return {"predictions": probabilities.tolist()}


if __name__ == "__main__":
    model_dir, port = sys.argv[1], int(sys.argv[2])
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    server = ls.LitServer(MnistAPI(model_dir), accelerator="cpu", workers_per_device=workers)
    server.run(host="127.0.0.1", port=port, generate_client_file=False)
