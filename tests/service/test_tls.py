"""TLS (TLS_CERT_FILE, TLS_KEY_FILE) with the shipped worker, against a real gunicorn and a self-signed
certificate made here: curl and Python's ssl verify it; TLS 1.2 at least; plain HTTP to the TLS port is
closed at once; the slow-client deadlines hold over TLS (the handshake too); connections stay balanced
(failed handshakes give their count back); gRPC serves TLS with the same certificate. The floods of
slow clients over TLS: tests/reliability/test_tls_slow_clients.py."""

from __future__ import annotations

import http.client
import json
import runpy
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from bench.localhost import wait_for
from tests.support import established_connections

from ..conftest import REPO
from .operator_support import https_status, require, running_tls_gunicorn, self_signed_certificate

KEEPALIVE_SECONDS = 1
BODY_TIMEOUT_SECONDS = 1.5
PREDICT = json.dumps({"instances": [[0.0] * 784]})


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, export_base, certificate):
    folder = tmp_path_factory.mktemp("tls-gunicorn")
    yield from running_tls_gunicorn(export_base, folder, *certificate, KEEPALIVE_SECONDS=str(KEEPALIVE_SECONDS),
                                    BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT_SECONDS))


def tls_exchange(server, data: bytes, wait: float = 10.0) -> tuple[float, bytes]:
    """Send ``data`` over a verified TLS connection and read until the server closes it: (seconds since
    before connecting, what came back)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as raw:
        with server.tls_context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(data)
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
    return time.monotonic() - started, response


def test_curl_verifies_the_certificate_and_predicts(server, certificate):
    require(shutil.which("curl") is not None, "the curl command", "apt-get install curl")
    url = f"https://127.0.0.1:{server.port}/predict"
    done = subprocess.run(["curl", "-sS", "--cacert", str(certificate[0]), url, "-H", "Content-Type: application/json",
                           "-d", PREDICT], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"] == {"name": "mnist", "version": 1}
    unverified = subprocess.run(["curl", "-sS", url, "-d", PREDICT], capture_output=True, text=True, timeout=30)
    assert unverified.returncode == 60 and "certificate" in unverified.stderr  # curl: peer certificate not trusted


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")  # the point: an old version
def test_python_ssl_verifies_it_with_tls_1_2_or_later(server, certificate):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with server.tls_context.wrap_socket(raw, server_hostname="localhost") as sock:
            assert sock.version() in ("TLSv1.2", "TLSv1.3")
            assert sock.getpeercert()["subject"] == ((("commonName", "localhost"),),)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(str(certificate[0]))
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            old.wrap_socket(raw, server_hostname="localhost")
    assert https_status(server.port, "/healthz", ssl.create_default_context()) is None  # not trusted by default


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
def test_the_gunicorn_configuration_refuses_tls_1_0_and_1_1():
    settings = runpy.run_path(str(REPO / "service/gunicorn.conf.py"))
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lax.minimum_version = ssl.TLSVersion.TLSv1
    assert settings["ssl_context"](None, lambda: lax).minimum_version == ssl.TLSVersion.TLSv1_2


def test_plain_http_to_the_tls_port_is_closed_at_once(server):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            answer = sock.recv(1000)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"HTTP/") and time.monotonic() - started < KEEPALIVE_SECONDS
    assert https_status(server.port, "/healthz", server.tls_context) == 200
    assert "Traceback" not in server.log()


def test_a_silent_connection_is_closed_after_keepalive_seconds(server):
    """No TLS handshake at all: closed as a silent plain connection would be (asyncio's default: 60 s)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        assert sock.recv(100) == b""
    assert KEEPALIVE_SECONDS <= time.monotonic() - started < KEEPALIVE_SECONDS + 2


def test_slow_headers_and_bodies_get_their_json_408_over_tls(server):
    seconds, response = tls_exchange(server, b"POST /predict HTTP/1.1\r\nHost: x\r\n")
    assert response.startswith(b"HTTP/1.1 408") and b"KEEPALIVE_SECONDS" in response
    assert KEEPALIVE_SECONDS <= seconds < KEEPALIVE_SECONDS + 2
    seconds, response = tls_exchange(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    assert response.startswith(b"HTTP/1.1 408") and b"BODY_TIMEOUT_SECONDS" in response
    assert BODY_TIMEOUT_SECONDS <= seconds < BODY_TIMEOUT_SECONDS + 2


def test_connections_stay_balanced_after_failed_handshakes(server):
    """Failed and timed-out handshakes never reach the protocol: if their counts were not given back, the
    worker that took them would look busier and 8 new connections would not split 4/4."""
    for _ in range(6):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"not TLS\r\n\r\n")
            try:
                sock.recv(100)
            except ConnectionResetError:
                pass
    workers = sorted(server.ready_workers())
    sessions = [server.tls_context.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10),
                                               server_hostname="127.0.0.1") for _ in range(8)]
    try:
        wait_for(lambda: sum(established_connections(pid) for pid in workers) == 8, 10, "the 8 connections")
        assert sorted(established_connections(pid) for pid in workers) == [4, 4]
    finally:
        for sock in sessions:
            sock.close()


def test_grpc_serves_tls_with_the_same_certificate(server, certificate):
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    address = f"localhost:{server.grpc_port}"
    credentials = grpc.ssl_channel_credentials(root_certificates=certificate[0].read_bytes())
    with grpc.secure_channel(address, credentials) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with grpc.insecure_channel(address) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_bad_tls_settings_stop_the_start(certificate, tmp_path):
    from service.config import load_config

    cert, key = (str(path) for path in certificate)
    assert load_config({"TLS_CERT_FILE": cert, "TLS_KEY_FILE": key}, environ={}).tls_cert_file == cert
    with pytest.raises(ValueError, match="TLS_CERT_FILE and TLS_KEY_FILE go together"):
        load_config({"TLS_CERT_FILE": cert}, environ={})
    other_key = tmp_path / "other.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                    str(other_key)], check=True, capture_output=True, timeout=60)
    with pytest.raises(ValueError, match="cannot be used"):
        load_config({"TLS_CERT_FILE": cert, "TLS_KEY_FILE": str(other_key)}, environ={})


def test_the_image_healthcheck_speaks_tls_when_the_service_does(server, certificate, monkeypatch):
    """python -m service.healthcheck (the image's HEALTHCHECK) over HTTPS to the port; plain HTTP fails."""
    from service.config import load_config
    from service.healthcheck import check

    cert, key = (str(path) for path in certificate)
    assert check(load_config({"PORT": server.port, "TLS_CERT_FILE": cert, "TLS_KEY_FILE": key}, environ={})) == 200
    with pytest.raises((OSError, http.client.HTTPException)):
        check(load_config({"PORT": server.port}, environ={}))
