"""tests/support.py's own helpers that the service tests rely on without a server to check them against."""

from __future__ import annotations

import os
import socket

from bench.localhost import LOCALHOST
from tests.support import established_connections


def test_established_connections_counts_both_ends_in_this_process():
    before = established_connections(os.getpid())
    with socket.create_server((LOCALHOST, 0)) as listener:
        clients = [socket.create_connection(listener.getsockname()) for _ in range(2)]
        accepted = [listener.accept()[0] for _ in clients]
        assert established_connections(os.getpid()) == before + 4  # 2 clients + 2 accepted
        for sock in clients + accepted:
            sock.close()
    assert established_connections(os.getpid()) == before
