"""Calling the worker's ASGI app (``service/asgi.py``) in this process, as gunicorn's protocol does:
one HTTP request per call, its body in the chunks given, the answer collected. For the tests of what the
worker's layers do (body limits, request IDs, access log, tracing) without starting gunicorn; the
tests against a real gunicorn prove the same through the network."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names (the last value of a repeated one)
    header_list: list[tuple[str, str]]
    body: bytes

    def json(self):
        return json.loads(self.body)


def call(app, method: str, path: str, body: bytes = b"", *, headers: dict | None = None,
         chunks: list[bytes] | None = None, client: tuple[str, int] = ("127.0.0.1", 50000)) -> Answer:
    """``method path`` with ``body`` (announced with Content-Length) or ``chunks`` (sent chunked, no length)."""
    raw_headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in (headers or {}).items()]
    if chunks is None:
        raw_headers.append((b"content-length", str(len(body)).encode()))
        chunks = [body]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": raw_headers, "client": client, "server": ("127.0.0.1", 8000)}
    messages = [{"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
                for index, chunk in enumerate(chunks)]
    sent = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)  # a client that sends nothing more

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(message for message in sent if message["type"] == "http.response.start")
    header_list = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in start["headers"]]
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return Answer(start["status"], dict(header_list), header_list, body)
