"""The peers benchmark's load: the levels (images per request, connections), and how a server is spoken
to, one protocol per class: ``HttpJson`` (JSON over HTTP/1.1, loaded by wrk) is the only one so far.

A protocol has three methods, all that bench/peers_run.py needs of it:

- ``predict(spec, port, images, timeout)`` -> ``(status, decoded answer)``, 200 for a success: one
  request on a fresh connection, for the readiness check and the correctness gate; raises an
  ``OSError`` when no answer comes;
- ``write_load(spec, images, batch, folder)`` -> the file the load generator replays for ``batch``
  images per request;
- ``run_load(spec, port, load_file, connections, seconds)`` -> the figures: ``requests``, ``seconds``,
  ``rps``, ``p50_ms``/``p90_ms``/``p99_ms``/``max_ms``/``mean_ms``, ``non_2xx``, ``socket_errors``,
  ``flagged`` (any failed request), and the tool's raw output.

Adding another protocol (gRPC, say) is a class with these three methods and a ``ServerSpec`` row per
server that speaks it (bench/peers_servers.py).
"""

from __future__ import annotations

import http.client
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.localhost import LOCALHOST


# ---- levels ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Level:
    """One load level: ``batch`` images per request, ``connections`` keep-alive connections."""

    batch: int
    connections: int

    @property
    def name(self) -> str:
        return f"{self.batch} img c={self.connections}"


DEFAULT_LEVELS = "1:1,1:8,1:32,64:8"
CPU_LEVEL = Level(1, 8)


def parse_levels(text: str) -> list[Level]:
    """``"1:1,1:8,64:8"`` -> levels (images per request : connections)."""
    levels = []
    for part in text.split(","):
        batch, _, connections = part.strip().partition(":")
        level = Level(int(batch), int(connections))
        if level.batch < 1 or level.connections < 1:
            raise ValueError(f"level {part!r}: images and connections must be >= 1")
        levels.append(level)
    return levels


def level_from_name(name: str) -> Level:
    """``"64 img c=8"`` (``Level.name``) -> ``Level(64, 8)``."""
    batch, _, connections = name.partition(" img c=")
    return Level(int(batch), int(connections))


# ---- wrk -----------------------------------------------------------------------------------------------
LUA_TEMPLATE = """\
-- {name}: POST {path}, {batch} image(s) per request
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open("{body}", "rb"))
wrk.body = file:read("*a")
file:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {{"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,"connect_errors":%.0f,' ..
    '"read_errors":%.0f,"write_errors":%.0f,"timeouts":%.0f,"non_2xx":%.0f,' ..
    '"latency_us":{{"mean":%.1f,"p50":%.0f,"p90":%.0f,"p99":%.0f,"max":%.0f}}}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.timeout,
    e.status, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def parse_wrk_json(stdout: str) -> dict:
    """The figures printed by the Lua ``done()`` (the ``WRK_JSON`` line), with derived ones:
    requests/s, latencies in ms, socket errors, and ``flagged`` when any request failed."""
    line = next((l for l in stdout.splitlines() if l.startswith("WRK_JSON ")), None)
    if line is None:
        raise ValueError(f"no WRK_JSON line in wrk's output:\n{stdout[-2000:]}")
    raw = json.loads(line[len("WRK_JSON "):])
    socket_errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    seconds = raw["duration_us"] / 1e6
    latency = raw["latency_us"]
    return {"requests": int(raw["requests"]), "seconds": seconds,
            "rps": raw["requests"] / seconds if seconds else 0.0,
            "p50_ms": latency["p50"] / 1e3, "p90_ms": latency["p90"] / 1e3,
            "p99_ms": latency["p99"] / 1e3, "max_ms": latency["max"] / 1e3,
            "mean_ms": latency["mean"] / 1e3, "non_2xx": int(raw["non_2xx"]),
            "socket_errors": int(socket_errors), "flagged": bool(raw["non_2xx"] or socket_errors),
            "wrk": raw}


def run_wrk(url: str, script: Path, connections: int, seconds: int) -> dict:
    """One wrk run: one thread, ``connections`` keep-alive connections, ``seconds`` long."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency",
               "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}{done.stdout[-2000:]}")
    return parse_wrk_json(done.stdout)


def wrk_version() -> str:
    """wrk's version line."""
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    return out.split("Copyright")[0].strip()


# ---- the protocols -------------------------------------------------------------------------------------
class HttpJson:
    """JSON over HTTP/1.1: ``POST spec.path`` with ``spec.body(images)``, answers read by
    ``spec.answers``; the gate's requests with http.client, the load from wrk (one thread, keep-alive)
    with a Lua script per batch size that posts a body file and prints the figures as JSON."""

    def predict(self, spec, port: int, images: list, timeout: float = 60) -> tuple[int, object]:
        """POST images in the server's format on a fresh connection: (status, decoded JSON or text)."""
        conn = http.client.HTTPConnection(LOCALHOST, port, timeout=timeout)
        try:
            body = json.dumps(spec.body(images)).encode()
            conn.request("POST", spec.path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
        except http.client.HTTPException as error:
            raise ConnectionError(f"{type(error).__name__}: {error}") from error
        finally:
            conn.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data.decode(errors="replace")[:500]

    def write_load(self, spec, images, batch: int, folder: Path) -> Path:
        """The body (the first ``batch`` images) and the Lua script that posts it; the script's path."""
        body = folder / f"{spec.name}-{batch}.json"
        body.write_text(json.dumps(spec.body(images[:batch].tolist()), separators=(",", ":")))
        script = folder / f"{spec.name}-{batch}.lua"
        script.write_text(LUA_TEMPLATE.format(name=spec.name, path=spec.path, batch=batch, body=body))
        return script

    def run_load(self, spec, port: int, load_file: Path, connections: int, seconds: int) -> dict:
        return run_wrk(f"http://{LOCALHOST}:{port}{spec.path}", load_file, connections, seconds)


HTTP_JSON = HttpJson()
