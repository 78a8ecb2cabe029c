"""``python -m service.healthcheck [PATH]``: exit 0 if this container's service answers ``PATH``
(``/healthz`` by default) with 200, else 1 with the reason: the image's ``HEALTHCHECK``.

It asks ``127.0.0.1:$PORT`` the way the service is configured (``service/config.py``): over HTTPS when
``TLS_CERT_FILE`` is set (without checking the certificate's name: it names the public host, and this
is the loopback of the same container), and with a token of ``API_TOKENS_FILE`` when ``AUTH_PROBES=1``.
Standard library only, as the configuration; one request, at most 4 seconds.
"""

from __future__ import annotations

import http.client
import ssl
import sys

from .config import Config, load_config

TIMEOUT_SECONDS = 4


def check(config: Config, path: str = "/healthz") -> int:
    """The status ``path`` answers with on this host's port (``OSError`` if nothing answers)."""
    if config.tls_cert_file:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", config.port, timeout=TIMEOUT_SECONDS, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", config.port, timeout=TIMEOUT_SECONDS)
    headers = {}
    if config.auth_probes:
        with open(config.api_tokens_file, "rb") as file:
            from .auth import parse_tokens  # noqa: PLC0415 - only with AUTH_PROBES=1 (it imports Flask)

            tokens = parse_tokens(file.read(), config.api_tokens_file)
        headers["Authorization"] = f"Bearer {tokens[0].decode()}" if tokens else ""
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    path = (argv if argv is not None else sys.argv[1:] or ["/healthz"])[0]
    try:
        status = check(load_config(), path)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(f"healthcheck: {path} did not answer: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"healthcheck: {path} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
