"""The client library against our server and against a hand-written fake server."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from p2pchat.client import ChatClient, ConnectError, RegistrationError
from p2pchat.events import (
    BroadcastReceived,
    Disconnected,
    ParticipantsListed,
    PeerJoined,
    PeerLeft,
    Registered,
)
from p2pchat.server import ChatServer

from ._support import collect, joined, wait_event


async def fake_server(script: Callable[[bytes], bytes]) -> asyncio.Server:
    """A server that answers the client's REGISTER line with the bytes ``script`` gives."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        register = await reader.readline()
        writer.write(script(register))
        await writer.drain()
        await reader.read()  # hold the connection until the client leaves
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.fixture
async def closing() -> AsyncIterator[list[ChatClient]]:
    clients: list[ChatClient] = []
    yield clients
    for client in clients:
        await client.close()


async def test_d10_client_ignores_itself_and_echoes(closing: list[ChatClient]) -> None:
    """Decision 10: a LIST with a count and our own entry, an UPDATE:JOIN about ourselves
    and a BROADCAST echoed under our own nickname are all taken in stride."""

    def script(register: bytes) -> bytes:
        assert register.startswith(b"REGISTER:alice:127.0.0.1:")
        return (
            b"LIST:2:zed:127.0.0.1:5001:alice:127.0.0.1:5000\r\n"
            b"UPDATE:JOIN:alice:127.0.0.1:5000\r\n"
            b"BROADCAST:ALICE:4:echo\r\n"
            b"update:join:yan:[::1]:5002\n"
            b"BROADCAST:zed:2:hi\r\n"
        )

    server = await fake_server(script)
    async with server:
        client = ChatClient("alice", "127.0.0.1", server.sockets[0].getsockname()[1])
        closing.append(client)
        await client.connect()
        events = await collect(client, BroadcastReceived)
        kinds = [type(e) for e in events]
        assert kinds == [Registered, ParticipantsListed, PeerJoined, BroadcastReceived]
        listed = events[1]
        assert isinstance(listed, ParticipantsListed)
        assert [p.nick for p in listed.participants] == ["alice", "zed"]  # ourselves first
        assert events[2] == PeerJoined(events[2].participant) and events[2].participant.ip == "::1"
        assert events[3] == BroadcastReceived("zed", "hi")


async def test_d11_registration_refused_raises_with_the_servers_words(server: ChatServer) -> None:
    """Decision 11: the ERROR answering REGISTER reaches the caller as RegistrationError."""
    alice = await joined(server.port, "alice")
    try:
        with pytest.raises(RegistrationError, match="nickname 'ALICE' is already in use"):
            await joined(server.port, "ALICE")
    finally:
        await alice.close()


async def test_connect_error_when_nothing_listens() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(ConnectError, match=f"cannot connect to 127.0.0.1:{port}"):
        await joined(port, "alice")


async def test_broadcast_join_leave_and_ignore(
    server: ChatServer, closing: list[ChatClient]
) -> None:
    """Broadcasts reach the others; /ignore hides a nick's broadcasts; leaves are seen."""
    alice, bob, carol = [await joined(server.port, n) for n in ("alice", "bob", "carol")]
    closing.extend([alice, bob, carol])
    await wait_event(alice, PeerJoined, lambda e: e.participant.nick == "carol")
    await bob.broadcast("hello: all 👋")
    assert await wait_event(alice, BroadcastReceived) == BroadcastReceived("bob", "hello: all 👋")
    assert await wait_event(carol, BroadcastReceived) == BroadcastReceived("bob", "hello: all 👋")
    alice.ignore("Bob")
    await bob.broadcast("hidden from alice")
    await carol.broadcast("seen by alice")
    assert await wait_event(alice, BroadcastReceived) == BroadcastReceived("carol", "seen by alice")
    await carol.close()
    left = await wait_event(alice, PeerLeft)
    assert left.participant.nick == "carol"
    assert [p.nick for p in alice.participants] == ["alice", "bob"]


async def test_d10_list_request_refreshes(server: ChatServer, closing: list[ChatClient]) -> None:
    """Decision 10: a registered client may ask for a fresh LIST."""
    alice = await joined(server.port, "alice")
    closing.append(alice)
    await wait_event(alice, ParticipantsListed)
    await alice.refresh_participants()
    listed = await wait_event(alice, ParticipantsListed)
    assert [p.nick for p in listed.participants] == ["alice"]


class Quarter(random.Random):
    def random(self) -> float:
        return 0.25


async def test_reconnects_and_registers_again(start_server, closing: list[ChatClient]) -> None:
    """After the server goes away and comes back, the client registers again by itself,
    after the drawn fraction of each attempt's cap (1 s, then 2 s, ...)."""
    first = await start_server()
    port = first.port
    alice = await joined(port, "alice", rng=Quarter())
    closing.append(alice)
    await wait_event(alice, ParticipantsListed)
    await first.close()
    gone = await wait_event(alice, Disconnected)
    assert gone.retry_in == 0.25
    again_in = await wait_event(alice, Disconnected)  # nothing listens yet: the second try
    assert again_in.retry_in == 0.5
    second = ChatServer()
    await second.start("127.0.0.1", port)
    try:
        again = await wait_event(alice, Registered, timeout=10)
        assert again.participant.nick == "alice"
        await wait_event(alice, ParticipantsListed)
        assert alice.connected
        bob = await joined(port, "bob")
        closing.append(bob)
        await bob.broadcast("welcome back")
        assert (await wait_event(alice, BroadcastReceived)).text == "welcome back"
    finally:
        await second.close()


async def test_d10_client_accepts_a_list_as_long_as_a_full_server_sends(
    closing: list[ChatClient],
) -> None:
    """Decision 10: a LIST of thousands of participants (far over the 4096-byte line
    limit of other messages) is accepted."""
    entries = b":".join(b"user%d:[2001:db8::%x]:%d" % (i, i, 1024 + i) for i in range(2000))
    server = await fake_server(lambda _register: b"LIST:" + entries + b"\r\n")
    async with server:
        client = ChatClient("alice", "127.0.0.1", server.sockets[0].getsockname()[1])
        closing.append(client)
        await client.connect()
        assert len(entries) > 50_000
        assert len(client.participants) == 2001  # the 2000 others and ourselves


async def test_d14_large_broadcast_allowed_by_the_server_reaches_clients(
    start_server, closing: list[ChatClient]
) -> None:
    """Decision 14: whatever the server accepts under its --max-message-bytes reaches
    every other participant, even past the 64 KiB default."""
    server = await start_server(max_message_bytes=200_000)
    alice = await joined(server.port, "alice")
    bob = await joined(server.port, "bob")
    closing.extend([alice, bob])
    text = "é" * 50_000  # 100,000 bytes
    await bob.broadcast(text)
    assert (await wait_event(alice, BroadcastReceived)).text == text


async def test_connect_can_be_retried_with_a_fixed_udp_port(server: ChatServer) -> None:
    """A refused registration frees the UDP socket it bound, so trying again works."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        udp_port = probe.getsockname()[1]
    holder = await joined(server.port, "carol")
    client = ChatClient("carol", "127.0.0.1", server.port, udp_port=udp_port)
    with pytest.raises(RegistrationError):
        await client.connect()
    await holder.close()
    async with asyncio.timeout(5):
        while "carol" in [p.nick for p in server.registry.participants()]:
            await asyncio.sleep(0.01)
    me = await client.connect()
    assert me.udp_port == udp_port
    await client.close()
