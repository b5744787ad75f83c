"""Fixtures of the integration tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from p2pchat.client import ChatClient
from p2pchat.events import PeerJoined
from p2pchat.server import ChatServer, _Connection

from ._support import Connect, RawClient, joined, wait_event


@pytest.fixture
async def connect(start_server: object) -> AsyncIterator[Connect]:
    """Opens raw connections to a server; closes them before the servers close."""
    clients: list[RawClient] = []

    async def open_client(
        server: ChatServer, name: str = "client", *, rcvbuf: int | None = None, limit: int = 1 << 16
    ) -> RawClient:
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port, limit=limit)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
        client = RawClient(reader, writer, name)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()


@pytest.fixture
def small_kernel_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrinks the server's socket send buffers, so that a client that does not read
    fills its send queue after kilobytes instead of megabytes of kernel buffering."""
    made = _Connection.connection_made

    def connection_made(self: _Connection, transport: asyncio.BaseTransport) -> None:
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        made(self, transport)

    monkeypatch.setattr(_Connection, "connection_made", connection_made)


@pytest.fixture
async def pair(server: ChatServer) -> AsyncIterator[tuple[ChatClient, ChatClient]]:
    """alice and bob, real clients on the server, each knowing the other."""
    alice = await joined(server.port, "alice")
    bob = await joined(server.port, "bob")
    await wait_event(alice, PeerJoined)
    yield alice, bob
    await alice.close()
    await bob.close()
