"""Connections spread evenly over gunicorn's workers, not by luck.

Every worker accepts from the one listening socket the gunicorn master opened. Left to themselves,
the workers race for each new connection, and an event loop that wins often takes several at once:
wrk's 8 keep-alive connections split 8/0, 6/2 or 5/3 between 2 workers (measured), so a worker sat
idle or the other one queued, and the throughput of a run depended on that split. Here a worker
accepts a connection only while it holds no more connections than the least busy live worker;
otherwise it leaves the connection to the others for up to ``LEAVE_SECONDS`` and then takes it
anyway (the others may be busy with a long request).

What it buys: an even split of the keep-alive connections, asserted by
``tests/service/test_worker.py::test_connections_spread_evenly_over_the_workers``; its share of the
service's throughput is inside ``python -m bench.peers``'s figures for ours, not measured on its own.

TLS connections (``TLS_CERT_FILE``) are balanced the same way: the listener accepts, then hands the
socket to the event loop's TLS machinery, which must finish the handshake within ``tls_timeout`` (the
service's ``KEEPALIVE_SECONDS``: a client that connects and stays silent is closed as a plain one is;
asyncio's own default would hold it for 60 s), and at the end wait as long at most for the client's
``close_notify`` (asyncio's default: 30 s, for a client that never answers it). A connection whose
handshake fails never reaches the protocol, so its count is given back here.

The counts are in :data:`TABLE`, a small table in shared memory that this module creates when the
gunicorn master imports it (to load the worker class), so that every forked worker sees the same
table: one slot per worker, chosen by the worker's ``age`` (gunicorn's spawn counter), holding its pid
and its number of open connections. The master clears a dead worker's slot (``child_exit``).
"""

from __future__ import annotations

import asyncio
import ctypes
import mmap
import os
import socket
import ssl

SLOTS = 256  # more than any sensible number of workers per machine
LEAVE_SECONDS = 0.005  # how long a busier worker leaves a new connection to the others


class ConnectionTable:
    """``SLOTS`` pairs (pid, open connections) in an anonymous shared mapping (shared across fork)."""

    def __init__(self, slots: int = SLOTS):
        self.slots = slots
        self._memory = mmap.mmap(-1, ctypes.sizeof(ctypes.c_int64) * 2 * slots)
        self._cells = (ctypes.c_int64 * (2 * slots)).from_buffer(self._memory)

    def claim(self, age: int) -> int:
        """The slot of the worker of spawn number ``age``, marked as this process's, count 0."""
        slot = age % self.slots
        self._cells[2 * slot + 1] = 0
        self._cells[2 * slot] = os.getpid()
        return slot

    def release(self, age: int) -> None:
        """Clear the slot of a worker that has ended (called by the master)."""
        slot = age % self.slots
        self._cells[2 * slot] = 0
        self._cells[2 * slot + 1] = 0

    def add(self, slot: int, delta: int) -> None:
        self._cells[2 * slot + 1] += delta  # only its own worker writes a slot's count

    def count(self, slot: int) -> int:
        return self._cells[2 * slot + 1]

    def busier_than_others(self, slot: int) -> bool:
        """True if another live worker holds fewer connections than ``slot``'s."""
        mine, cells = self._cells[2 * slot + 1], self._cells
        return any(cells[2 * other] and cells[2 * other + 1] < mine
                   for other in range(self.slots) if other != slot)


TABLE = ConnectionTable()


class BalancedListener:
    """Accepts connections from a listening ``sock`` on ``loop`` one at a time, and only when this
    worker (``slot`` of ``table``) is among the least busy; hands each to ``protocol_factory``.

    Looks like the ``asyncio.Server`` gunicorn's worker expects: ``close()`` and ``wait_closed()``.
    """

    def __init__(self, loop, sock: socket.socket, protocol_factory, table: ConnectionTable, slot: int,
                 ssl_context=None, tls_timeout: float | None = None):
        self.loop, self.sock, self.protocol_factory = loop, sock, protocol_factory
        self.table, self.slot = table, slot
        self.ssl_context, self.tls_timeout = ssl_context, tls_timeout
        self._left_since = None  # when this worker started leaving a pending connection to others
        self._listening = False
        sock.setblocking(False)
        self._listen()

    def _listen(self) -> None:
        if not self._listening:
            self.loop.add_reader(self.sock.fileno(), self._readable)
            self._listening = True

    def _pause(self, seconds: float) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self._listening = False
        self.loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        if self.sock.fileno() >= 0:
            self._listen()

    def _readable(self) -> None:
        now = self.loop.time()
        if self.table.busier_than_others(self.slot):
            if self._left_since is None or now - self._left_since > 2 * LEAVE_SECONDS:
                self._left_since = now  # a new connection is waiting
            if now - self._left_since < LEAVE_SECONDS:
                self._pause(LEAVE_SECONDS / 5)  # let a less busy worker take it meanwhile
                return
        self._left_since = None
        try:
            conn, _address = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.table.add(self.slot, 1)
        self.loop.create_task(self._connect(conn))

    async def _connect(self, conn: socket.socket) -> None:
        """Hand ``conn`` to the protocol (after the TLS handshake, with TLS); if it never gets there, its
        count goes back (the protocol gives it back in ``connection_lost`` otherwise)."""
        try:
            await self.loop.connect_accepted_socket(self.protocol_factory, conn, ssl=self.ssl_context,
                                                    ssl_handshake_timeout=self.tls_timeout,
                                                    ssl_shutdown_timeout=self.tls_timeout)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):  # a failed or timed-out handshake, a reset
            self.table.add(self.slot, -1)
            conn.close()

    def close(self) -> None:
        if self._listening:
            self.loop.remove_reader(self.sock.fileno())
            self._listening = False

    async def wait_closed(self) -> None:
        return None


def balancing_loop_class(loop_class):
    """A subclass of the event loop class ``loop_class`` whose ``create_server(factory, sock=..., ssl=...)``
    returns a :class:`BalancedListener` (set ``loop.connection_slot`` and ``loop.tls_timeout`` first)."""

    class BalancingLoop(loop_class):
        connection_slot: int

        tls_timeout: float | None = None  # set by the worker: its KEEPALIVE_SECONDS

        async def create_server(self, protocol_factory, sock=None, ssl=None, **options):
            return BalancedListener(self, sock, protocol_factory, TABLE, self.connection_slot, ssl,
                                    self.tls_timeout if ssl is not None else None)

    return BalancingLoop
