"""The prediction service: serves the newest exported SavedModel over HTTP and gRPC.

Start it with ``gunicorn -c service/gunicorn.conf.py "service.app:create_app()"``. One module per
concept: ``config`` (environment, checked), ``contract`` (the export layout shared with training),
``predictor`` (SavedModel loading, hot reload), ``errors`` (the error a client causes),
``inputs`` (request validation), ``images`` (MNIST-style preprocessing), ``native`` / ``tf_serving`` /
``kserve`` (the three APIs; ``grpc_api/`` serves TF Serving's and KServe's over gRPC), ``probes`` (health, readiness, metrics endpoints), ``pages`` (the draw
page, ``openapi.json``), ``openapi`` (the API description), ``metrics`` (Prometheus),
``error_handlers`` (every error as JSON), ``web`` (HTTP helpers), ``app`` (the Flask factory: wiring
only), ``static/index.html`` (the draw page); the worker's side: ``worker`` (gunicorn's asyncio
worker), ``asgi`` (its layers), ``whole_requests`` (bodies read whole, the body limits), ``balancing``;
operator features, each off by default: ``request_ids``, ``access_log``, ``auth`` (API tokens), ``cors``,
``tracing`` (TLS: ``gunicorn.conf.py`` and ``balancing``). It never imports ``model``, ``training``, Keras or
scikit-learn.
"""
