"""BentoML service for the MNIST SavedModel: ``POST /predict`` ``{"instances": [[784 floats], ...]}``
-> ``[[10 floats], ...]``.

    MNIST_SAVED_MODEL=EXPORT_VERSION_DIR BENTOML_WORKERS=2 \
        bentoml serve bentoml_service:MnistService --host 127.0.0.1 --port PORT

As BentoML's docs show: a ``@bentoml.service`` class that loads the model in ``__init__`` (in each
worker), an ``@bentoml.api`` method with typed arguments (a float32 NumPy array of shape (-1, 784),
validated by BentoML) returning a NumPy array, served with ``bentoml serve``. Readiness: ``/readyz``.
"""

import os
from typing import Annotated

import bentoml
import numpy as np
from bentoml.validators import DType, Shape


@bentoml.service(workers=int(os.environ.get("BENTOML_WORKERS", "2")))
class MnistService:
    def __init__(self) -> None:
        import tensorflow as tf

        model = tf.saved_model.load(os.environ["MNIST_SAVED_MODEL"])
        self.signature = model.signatures["serving_default"]

    @bentoml.api
    def predict(
        self, instances: Annotated[np.ndarray, DType("float32"), Shape((-1, 784))]
    ) -> np.ndarray:
        return self.signature(pixels=instances)["probabilities"].numpy()
