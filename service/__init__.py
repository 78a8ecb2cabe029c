"""The prediction service: serves the newest exported SavedModel over HTTP and gRPC.

Start it with ``gunicorn -c service/gunicorn.conf.py "service.app:create_app()"``. One module per concept
(tests/service/test_module_list.py checks that this list names every one):

- settings and the model: ``config`` (environment, checked), ``contract`` (the export layout shared with
  training), ``predictor`` (SavedModel loading, hot reload), ``graph_runner`` (the model as a frozen graph);
- requests: ``inputs`` (validation of pixel bodies), ``json_rows`` (the usual body straight into NumPy),
  ``image_inputs`` (where an image arrives in a request), ``images/`` (photos, scans and drawings made
  MNIST-like), ``errors`` (the error a client causes, and the one JSON body that says it), ``web`` (HTTP helpers);
- the APIs: ``native`` (``/predict``), ``reading`` (``/read``: numbers), ``tf_serving`` and ``kserve`` (their REST
  APIs), ``grpc_api/`` (both over gRPC), ``probes`` (health, readiness, metrics), ``pages`` (the draw page,
  ``static/index.html``, and ``openapi.json``), ``openapi`` (the API description), ``metrics`` (Prometheus),
  ``error_handlers`` (every error as JSON), ``app`` (the Flask factory: wiring only);
- the worker's side: ``gunicorn.conf.py``, ``worker`` (gunicorn's asyncio worker), ``asgi`` (its layers),
  ``whole_requests`` (bodies read whole, the body limit), ``balancing`` (connections spread over workers),
  ``lean`` (libraries kept out of a worker), ``healthcheck`` (the image's ``HEALTHCHECK``);
- operator features, each off by default: ``request_ids``, ``access_log``, ``auth`` (API tokens), ``cors``,
  ``tracing`` (TLS: ``gunicorn.conf.py`` and ``balancing``).

It never imports ``model``, ``training``, Keras or scikit-learn.
"""
