"""Fixtures shared by the test suites: a real server on a loopback port."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from p2pchat.discovery import OFF_VARIABLE
from p2pchat.server import ChatServer, ServerConfig
from tests.integration._programs import Program

# The suites' programs neither announce nor look for chats on the machine's own network
# (the default of ``p2pchat`` without --server would wait 2 s for answers); the LAN
# tests (tests/discovery) turn it back on inside network namespaces of their own.
os.environ[OFF_VARIABLE] = "1"

StartServer = Callable[..., Awaitable[ChatServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Starts ChatServers on 127.0.0.1, port 0, with config overrides; closes them afterwards."""
    servers: list[ChatServer] = []

    async def start(**overrides: Any) -> ChatServer:
        server = ChatServer(ServerConfig(**overrides))
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close(timeout=1.0)


@pytest.fixture
async def server(start_server: StartServer) -> ChatServer:
    """A server with the default limits."""
    return await start_server()


@pytest.fixture
async def programs() -> AsyncIterator[list[Program]]:
    """Our programs started by a test; killed at its end if still running."""
    started: list[Program] = []
    yield started
    for p in started:
        p.kill()
        await p.proc.wait()
