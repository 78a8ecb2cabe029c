"""What the platform around the service calls: liveness, readiness and Prometheus metrics.

- ``GET /healthz``  200 while the process answers (a restart will not help otherwise)
- ``GET /readyz``   200 with the model version once a model is loaded and warm; 503 before
- ``GET /metrics``  Prometheus text format (all gunicorn workers, in multiprocess mode)
"""

from __future__ import annotations

from flask import Blueprint, Response

from .web import json_response, retry_later_response, state

blueprint = Blueprint("probes", __name__)


@blueprint.get("/healthz")
def healthz():
    return json_response({"status": "alive"})


@blueprint.get("/readyz")
def readyz():
    service = state()
    model = service.predictor.current
    if model is None:
        return retry_later_response(service.predictor.not_ready_reason())
    return json_response({"status": "ready",
                          "model": {"name": service.config.model_name, "version": model.version}})


@blueprint.get("/metrics")
def metrics():
    service_metrics = state().metrics
    return Response(service_metrics.render(), mimetype=None,
                    headers={"Content-Type": service_metrics.content_type})
