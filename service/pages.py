"""What people read: the draw page (``GET /``) and the API description (``GET /openapi.json``)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_file

from .openapi import build_spec
from .web import json_response, state

blueprint = Blueprint("pages", __name__)

STATIC = Path(__file__).parent / "static"
# The page is one self-contained file: inline script and style, nothing fetched from elsewhere.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                           "img-src 'self' data: blob:; connect-src 'self'")


@blueprint.get("/")
def index():
    response = send_file(STATIC / "index.html", mimetype="text/html", max_age=0)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response


@blueprint.get("/openapi.json")
def openapi():
    return json_response(build_spec(state().config))
