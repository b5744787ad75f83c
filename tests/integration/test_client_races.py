"""ChatClient closed while change_nick is under way: nothing may stay registered,
nothing may run on, and no CancelledError may reach a caller that was not cancelled."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest

from p2pchat.client import ChatClient, NotConnectedError

TIMEOUT = 5.0


class Held:
    """One connection to the held server: its REGISTER, the answer the test gives, when
    the client closed it, and ``release`` to let the server close its side after that."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.register: asyncio.Future[bytes] = loop.create_future()
        self.answer: asyncio.Future[bytes] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.release: asyncio.Future[None] = loop.create_future()


class HeldServer:
    """A server whose every answer the test gives by hand: it reads a REGISTER, waits
    for ``answer``, sends it; at the client's EOF it waits for ``release`` to close."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[Held] = asyncio.Queue()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def next(self) -> Held:
        async with asyncio.timeout(TIMEOUT):
            return await self.connections.get()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held = Held()
        self.connections.put_nowait(held)
        try:
            held.register.set_result(await reader.readline())
            reading = asyncio.ensure_future(reader.read())
            done, _ = await asyncio.wait({reading, held.answer}, return_when="FIRST_COMPLETED")
            if held.answer in done:
                writer.write(held.answer.result())
                await writer.drain()
                await reading
            else:
                reading.result()
            held.closed.set_result(None)  # the client's EOF, or it closed
            await held.release
        except (ConnectionError, asyncio.CancelledError):
            if not held.closed.done():
                held.closed.set_result(None)
        finally:
            writer.close()


@pytest.fixture
async def held() -> AsyncIterator[HeldServer]:
    server = HeldServer()
    await server.start()
    yield server
    assert server.server is not None
    server.server.close()


def _list(register: bytes) -> bytes:
    """The LIST that takes the REGISTER line ``register``: just the client itself."""
    _, nick, ip, port = register.decode().strip().split(":", 3)
    return f"LIST:1:{nick}:{ip}:{port}\r\n".encode()


async def _registered(
    held: HeldServer, port: int, *, reconnect: bool = False
) -> tuple[ChatClient, Held]:
    client = ChatClient("alice", "127.0.0.1", port, reconnect=reconnect)
    connecting = asyncio.ensure_future(client.connect())
    first = await held.next()
    first.answer.set_result(_list(await first.register))
    async with asyncio.timeout(TIMEOUT):
        await connecting
    return client, first


def _client_tasks() -> list[str]:
    """The client's tasks still running: after close() there must be none."""
    names = (getattr(t.get_coro(), "__qualname__", "") for t in asyncio.all_tasks())
    return [name for name in names if "ChatClient" in name]


@pytest.mark.parametrize("reconnect", [False, True])
async def test_close_while_change_nick_registers_again_stays_closed(
    held: HeldServer, reconnect: bool
) -> None:
    """close() while change_nick waits for the server to take the new nickname: once the
    server answers, the client does not start reading again, nor stay registered, nor
    set out to reconnect."""
    assert held.server is not None
    port = held.server.sockets[0].getsockname()[1]
    client, first = await _registered(held, port, reconnect=reconnect)
    renaming = asyncio.ensure_future(client.change_nick("alicia"))
    async with asyncio.timeout(TIMEOUT):
        await first.closed  # our EOF: change_nick leaves
    first.release.set_result(None)
    second = await held.next()
    register = await second.register
    assert register.startswith(b"REGISTER:alicia:")
    await client.close()
    second.answer.set_result(_list(register))
    with pytest.raises(NotConnectedError):
        async with asyncio.timeout(TIMEOUT):
            await renaming
    async with asyncio.timeout(TIMEOUT):
        await second.closed
    assert not client.connected
    assert _client_tasks() == []


async def test_close_while_change_nick_leaves_is_not_a_cancellation(held: HeldServer) -> None:
    """close() while change_nick waits for the server to close the old connection:
    change_nick fails with a ChatError, not with a CancelledError nobody asked for."""
    assert held.server is not None
    client, first = await _registered(held, held.server.sockets[0].getsockname()[1])
    renaming = asyncio.ensure_future(client.change_nick("alicia"))
    async with asyncio.timeout(TIMEOUT):
        await first.closed  # our EOF; the server holds its side open
    await client.close()
    with pytest.raises(NotConnectedError):
        async with asyncio.timeout(TIMEOUT):
            await renaming
    assert held.connections.empty()  # no new registration after close()
    assert not client.connected


def _serving_servers() -> set[int]:
    """The asyncio servers of this process that still accept connections."""
    return {
        id(obj)
        for obj in gc.get_objects()
        if isinstance(obj, asyncio.base_events.Server) and obj.is_serving()
    }


async def test_a_chat_closed_while_its_listener_opens_leaves_no_listener(
    pair: tuple[ChatClient, ChatClient],
) -> None:
    """/chat then /close before the listener for the request is open: the listener
    that was opening is closed too, not left accepting connections for nobody."""
    alice, _bob = pair
    before = _serving_servers()
    alice.start_chat("bob")
    for _ in range(1000):  # loop steps, not time: until the listener accepts
        if _serving_servers() - before:
            break
        await asyncio.sleep(0)
    else:
        pytest.fail("no listener opened for the chat")
    assert alice.chat_state("bob") is not None  # the INIT is not sent yet
    assert alice.close_chat("bob")
    listening = [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "") == "DirectChatManager._listen"
    ]
    if listening:
        await asyncio.wait(listening, timeout=TIMEOUT)
    assert _serving_servers() - before == set()
