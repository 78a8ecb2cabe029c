"""gRPC beside HTTP, in every gunicorn worker: TensorFlow Serving's and the Open Inference Protocol's APIs.

- ``server``      the ``grpc.aio`` server of one worker (started by ``service/worker.py`` after the fork),
                  with the health service and server reflection
- ``calls``       one call: raw bytes -> the servicer function in the Flask app's context -> bytes, errors
                  mapped by ``service.errors.grpc_status``, metrics labelled ``protocol="grpc"``
- ``tf_serving``  ``tensorflow.serving.PredictionService`` and ``ModelService``
- ``kserve``      ``inference.GRPCInferenceService``
- ``tensors``     TensorFlow's ``TensorProto`` <-> NumPy
- ``generate``    ``protos/`` (vendored, unmodified) -> ``generated/`` (committed, checked by a test)

Named ``grpc_api`` so that it never shadows the ``grpc`` package. Nothing here is imported by the
gunicorn master (it imports ``service.app``, which does not import this package).
"""
