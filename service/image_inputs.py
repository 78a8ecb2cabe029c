"""Where an image arrives in a request, for ``/predict`` and ``/read`` alike: the raw body (``Content-Type:
image/*``), a multipart form's file field ``image``, or ``{"b64": "<base64 image>"}`` in JSON (a ``data:`` URL
too, as a canvas's ``toDataURL()`` gives); and ``?explain=1``, which asks for the 28x28 image the model saw."""

from __future__ import annotations

import base64
import binascii

from flask import request

from . import images
from .errors import RequestError
from .web import read_body

FIELD = "image"  # the multipart form's file field
TRUE = ("1", "true", "yes", "on")


def is_image_request(mimetype: str) -> bool:
    """True if the body is an image or a multipart form (which should hold one)."""
    return images.is_image_content_type(mimetype) or mimetype == "multipart/form-data"


def uploaded_image() -> bytes:
    """The image bytes of an image body or of the multipart form's ``image`` field (400 if it has none)."""
    if request.mimetype != "multipart/form-data":
        return read_body()
    upload = request.files.get(FIELD)
    if upload is None:
        # a part whose name Werkzeug cannot parse (e.g. name="\") is listed under None: leave it out
        fields = sorted(str(name) for name in set(request.files) | set(request.form) if name is not None)
        raise RequestError(f"the multipart form has no file field named {FIELD!r}"
                           + (f" (it has: {', '.join(fields)})" if fields else ""))
    return upload.read()


def b64_image(item: object, where: str) -> bytes:
    """The bytes of ``{"b64": "<base64 image or data: URL>"}`` (standard or URL-safe alphabet, padding
    optional); ``where`` names the item in error messages."""
    if not isinstance(item, dict) or set(item) != {"b64"} or not isinstance(item["b64"], str):
        keys = sorted(item) if isinstance(item, dict) else type(item).__name__
        raise RequestError(f'{where} must be {{"b64": "<base64 image>"}}; got keys {keys}')
    text = item["b64"].strip()
    if text.startswith("data:") and "," in text:  # a data: URL, e.g. from canvas.toDataURL()
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{where}: 'b64' is not valid base64") from None


def explain_requested() -> bool:
    """``?explain=1`` (or true, yes, on): the answer includes each 28x28 image the model read."""
    return request.args.get("explain", "").lower() in TRUE


def png_b64(pixels) -> str:
    """A 28x28 image as base64 PNG text: what ``?explain=1`` adds as ``"image"``."""
    return base64.b64encode(images.png(pixels)).decode("ascii")
