"""Fixtures of the MNIST tests (test_data.py, test_download.py): an isolated environment, the real
files' bytes, and a local HTTP "mirror" serving them well or badly. No test uses the internet."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import mnist_dir
from training.mnist_files import MNIST_FILES

#: Images per class (0..9) in the MNIST training and test sets.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

needs_mnist = pytest.mark.skipif(
    mnist_dir() is None,
    reason="real MNIST files not found: set MNIST_DATA_DIR to a folder with the four .gz files "
    "(or provide <repo>/../shared/data/mnist)",
)

@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No MNIST_DATA_DIR / MNIST_MIRRORS, a private cache under tmp_path; returns the cache dir."""
    monkeypatch.delenv("MNIST_DATA_DIR", raising=False)
    monkeypatch.delenv("MNIST_MIRRORS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return tmp_path / "xdg-cache" / "mnist-digits"


@pytest.fixture(scope="module")
def real_bytes() -> dict[str, bytes]:
    """File name -> contents of the four real MNIST files (skips the test when they are absent)."""
    folder = mnist_dir()
    if folder is None:
        pytest.skip("real MNIST files not found (set MNIST_DATA_DIR)")
    return {name: (folder / name).read_bytes() for name in MNIST_FILES}


class MirrorServer:
    """Serves several URL prefixes, one behaviour each, on 127.0.0.1 at an ephemeral port.

    /good/<name>      the real file
    /corrupt/<name>   right length, one byte flipped (checksum fails)
    /short/<name>     the first half, with an honest Content-Length (size/checksum fails)
    /liar/<name>      announces the full length, sends half and closes (incomplete read)
    /missing/<name>   404
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                server.requests.append(self.path)
                kind, _, name = self.path.strip("/").partition("/")
                body = server.files.get(name)
                if body is None or kind == "missing":
                    self.send_error(404)
                    return
                announced = len(body)
                if kind == "corrupt":
                    body = body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]
                elif kind == "short":
                    body = body[: len(body) // 2]
                    announced = len(body)
                elif kind == "liar":
                    body = body[: len(body) // 2]
                elif kind != "good":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(announced))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up early, e.g. on seeing the wrong size announced
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, kind: str) -> str:
        return f"{self.base}/{kind}/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def mirror(real_bytes: dict[str, bytes]) -> Iterator[MirrorServer]:
    """A MirrorServer serving the real files, shared by the tests of one module."""
    server = MirrorServer(real_bytes)
    yield server
    server.close()

