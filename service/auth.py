"""``API_TOKENS_FILE``: bearer tokens required on the API, over HTTP and gRPC.

- The file holds one token per line (blank lines and ``#`` comments ignored; a line with a space or a
  non-ASCII character inside is skipped, with a warning naming its line number, never its text).
- A request needs ``Authorization: Bearer <token>`` (gRPC: the ``authorization`` metadata) with a token
  of the file, compared with ``hmac.compare_digest`` against every token (the time taken does not depend
  on how much of a token matched). Otherwise: 401 with ``WWW-Authenticate: Bearer`` and the usual JSON
  error (gRPC: ``UNAUTHENTICATED``), naming what was wrong (no token, or not a valid one), never the token.
- The file is read again when it changes (its size, times or inode: checked with one ``stat`` per
  request; a file changed within the last :data:`SETTLE_SECONDS` is read again on every request, as a
  change within one tick of the file system's clock keeps its times): a token removed from it stops
  working at the next request, without a restart. A file that can no longer be read lets no request
  through (logged once) until it can be read again.
- Open without a token: the draw page and ``/openapi.json`` (what a person reads to get started), CORS
  preflights (a browser sends them without credentials), and the probes (``/healthz``, ``/readyz``,
  ``/metrics``, ``/v2/health/*``, gRPC's ``grpc.health.v1``) unless ``AUTH_PROBES=1``, since a
  Kubernetes probe carries no token. gRPC server reflection stays open too (it is the API's description).

Tokens never reach a log line, a metric label or an error message: only their count is logged.
"""

from __future__ import annotations

import hmac
import logging
import os
import time

from flask import Flask, request

from .errors import RequestError

log = logging.getLogger(__name__)

SETTLE_SECONDS = 2.0
REALM = 'Bearer realm="mnist-digits"'
OPEN_ENDPOINTS = {"pages.index", "pages.openapi"}
PROBE_ENDPOINTS = {"probes.healthz", "probes.readyz", "probes.metrics", "kserve.live", "kserve.ready"}
MISSING = ("this endpoint needs an API token: send the header 'Authorization: Bearer <token>' "
           "(gRPC: the metadata 'authorization: Bearer <token>')")
INVALID = "the API token is not valid (unknown or revoked)"


class TokenFile:
    """The tokens of ``path``, read again whenever the file changes."""

    def __init__(self, path: str):
        self.path = path
        self._signature: tuple | None = None
        self._tokens: tuple[bytes, ...] = ()
        self._unreadable = False
        self.refresh()

    def refresh(self) -> None:
        """Read the file again if it changed since the last read (one ``stat`` when it did not)."""
        try:
            info = os.stat(self.path)
        except OSError as exc:
            return self._lost(exc)
        signature = (info.st_ino, info.st_dev, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        if signature == self._signature and time.time() - info.st_mtime > SETTLE_SECONDS:
            return
        try:
            with open(self.path, "rb") as file:
                text = file.read()
        except OSError as exc:
            return self._lost(exc)
        self._tokens = tuple(parse_tokens(text, self.path))
        if signature != self._signature:
            log.info("API tokens: %d read from %s", len(self._tokens), self.path)
        self._signature, self._unreadable = signature, False

    def _lost(self, exc: OSError) -> None:
        if not self._unreadable:
            log.error("API tokens: %s cannot be read (%s): every request needing a token is refused until "
                      "it can", self.path, exc.strerror or exc)
        self._tokens, self._signature, self._unreadable = (), None, True

    def allows(self, given: bytes) -> bool:
        """True if ``given`` is one of the tokens; every token is compared, in constant time each."""
        self.refresh()
        matched = False
        for token in self._tokens:
            matched |= hmac.compare_digest(token, given)
        return matched

    def check(self, authorization: str | None) -> None:
        """Nothing if ``authorization`` (the header's or metadata's value) carries a valid token, else
        the 401 ``RequestError`` saying what was wrong."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise RequestError(MISSING, 401, {"WWW-Authenticate": REALM})
        if not token.isascii() or not self.allows(token.encode()):
            raise RequestError(INVALID, 401, {"WWW-Authenticate": f'{REALM}, error="invalid_token"'})


def parse_tokens(text: bytes, path: str = "the tokens file") -> list[bytes]:
    """The tokens of a file's ``text``: one per line, blank lines and ``#`` comments left out."""
    tokens = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        if not line.isascii() or any(character in line for character in b" \t\v\f"):
            log.warning("API tokens: line %d of %s skipped: a token is ASCII without spaces", number, path)
            continue
        tokens.append(line)
    return tokens


def init_app(app: Flask, path: str, probes: bool) -> TokenFile:
    """Require a token on ``app``'s API (and on its probes if ``probes``); the ``TokenFile`` is kept in
    ``app.extensions["mnist.tokens"]`` for gRPC (``service/grpc_api``)."""
    tokens = app.extensions["mnist.tokens"] = TokenFile(path)
    open_endpoints = OPEN_ENDPOINTS if probes else OPEN_ENDPOINTS | PROBE_ENDPOINTS

    @app.before_request
    def _require_token():
        if request.method == "OPTIONS" or request.endpoint is None or request.endpoint in open_endpoints:
            return  # a CORS preflight, an unknown route (404), or open
        tokens.check(request.headers.get("Authorization"))

    return tokens
