"""The prediction service: serves the newest exported SavedModel over HTTP.

Start it with ``gunicorn -c service/gunicorn.conf.py "service.app:create_app()"``. One module per
concept: ``config`` (environment), ``predictor`` (SavedModel loading, hot reload), ``inputs`` (request
validation), ``images`` (MNIST-style preprocessing), ``native`` / ``tf_serving`` / ``kserve`` (the three
APIs), ``metrics`` (Prometheus), ``openapi``, ``app`` (the Flask factory), ``static/index.html`` (the
draw page). It never imports ``model``, ``training``, Keras or scikit-learn.
"""
