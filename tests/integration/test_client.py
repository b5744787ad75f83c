"""The client library against our server and against a hand-written fake server."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from p2pchat import ChatError, ClientConfig, InvalidInputError
from p2pchat.client import ChatClient, ConnectError, NotConnectedError, RegistrationError
from p2pchat.events import (
    BroadcastReceived,
    ChatOpened,
    ChatReceived,
    Disconnected,
    NickChanged,
    ParticipantsListed,
    PeerJoined,
    PeerLeft,
    Registered,
    ServerError,
)
from p2pchat.server import ChatServer

from ._programs import Program
from ._programs import start_server as start_server_program
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


async def test_a_broadcast_over_the_servers_limit_is_its_error_and_a_direct_one_raises(
    server: ChatServer, closing: list[ChatClient]
) -> None:
    """The message limit a user meets, as README's library section says: a broadcast
    over the server's limit comes back as the server's ERROR and the client stays
    registered; a direct message over 64 KiB is refused before anything is sent."""
    alice, bob = [await joined(server.port, n) for n in ("alice", "bob")]
    closing.extend([alice, bob])
    await wait_event(alice, PeerJoined, lambda e: e.participant.nick == "bob")
    await alice.broadcast("x" * (64 * 1024 + 1))
    refused = await wait_event(alice, ServerError)
    assert "too long" in refused.text
    await alice.broadcast("still here")
    assert await wait_event(bob, BroadcastReceived) == BroadcastReceived("alice", "still here")
    with pytest.raises(InvalidInputError, match="too long"):
        await alice.send_chat("bob", "x" * (64 * 1024 + 1))
    assert alice.chat_state("bob") is None


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


def test_a_client_is_built_outside_a_running_loop() -> None:
    """Nothing needs the event loop before connect(): a client made at import time or in
    synchronous code works once a loop runs it."""
    client = ChatClient("alice", "127.0.0.1", 1)
    assert client.nick == "alice" and client.me is None and not client.connected
    client.ignore("bob")

    async def run() -> str:
        server = ChatServer()
        await server.start("127.0.0.1", 0)
        try:
            built = ChatClient.from_config(ClientConfig("carol", port=server.port))
            async with built:
                assert built.me is not None
                return built.me.nick
        finally:
            await server.close()

    assert asyncio.run(run()) == "carol"


@pytest.mark.parametrize("nick", ["", "a:b", "x" * 33, "bad nick"])
def test_a_bad_nickname_is_refused_when_the_client_is_built(nick: str) -> None:
    with pytest.raises(InvalidInputError):
        ChatClient(nick, "127.0.0.1", 7777)


async def test_failures_are_chat_errors(server: ChatServer, closing: list[ChatClient]) -> None:
    """A text the protocol cannot carry is refused as input; a call needing the server
    while it is not connected says so; both are ChatErrors."""
    alice = ChatClient("alice", "127.0.0.1", server.port)
    closing.append(alice)
    with pytest.raises(NotConnectedError):
        await alice.broadcast("hello")
    await alice.connect()
    with pytest.raises(InvalidInputError, match="surrogate"):
        await alice.broadcast("\ud800")
    with pytest.raises(ChatError):
        await alice.send_chat("nobody", "hi")
    await alice.broadcast("still fine")


async def test_change_nick_keeps_the_direct_chats(server: ChatServer) -> None:
    """The others see alice leave and join as alicia; her direct chat with bob goes on
    (decision 23), and the crossing tie-break uses her new nickname."""
    alice = await joined(server.port, "alice")
    bob = await joined(server.port, "bob")
    try:
        await wait_event(alice, PeerJoined)
        await alice.send_chat("bob", "before")
        assert (await wait_event(bob, ChatReceived)).text == "before"
        await wait_event(alice, ChatOpened)
        await alice.change_nick("alicia")
        assert alice.nick == "alicia" and alice.me is not None and alice.me.nick == "alicia"
        changed = await wait_event(alice, NickChanged)
        assert (changed.old, changed.new, changed.reason) == ("alice", "alicia", "you changed it")
        assert (await wait_event(alice, Registered)).participant.nick == "alicia"
        assert (await wait_event(bob, PeerLeft)).participant.nick == "alice"
        assert (await wait_event(bob, PeerJoined)).participant.nick == "alicia"
        assert [p.nick for p in alice.participants] == ["alicia", "bob"]
        await alice.send_chat("bob", "after")
        assert (await wait_event(bob, ChatReceived)).text == "after"
        await bob.send_chat("alice", "still you")
        assert (await wait_event(alice, ChatReceived)).text == "still you"
        await bob.broadcast("hi all")
        assert (await wait_event(alice, BroadcastReceived)).text == "hi all"
    finally:
        await alice.close()
        await bob.close()


async def test_a_refused_nickname_leaves_us_with_the_old_one(
    server: ChatServer, closing: list[ChatClient]
) -> None:
    alice = await joined(server.port, "alice")
    carol = await joined(server.port, "carol")
    closing += [alice, carol]
    with pytest.raises(RegistrationError, match="nickname 'Carol' is already in use"):
        await alice.change_nick("Carol")
    assert alice.nick == "alice" and alice.connected
    with pytest.raises(InvalidInputError):
        await alice.change_nick("no spaces")
    await alice.broadcast("still here")
    assert (await wait_event(carol, BroadcastReceived)).text == "still here"


async def test_change_nick_again_and_again_is_never_refused_for_our_own_address(
    server: ChatServer, closing: list[ChatClient]
) -> None:
    """The server frees our UDP address only once it has seen the old connection close;
    change_nick waits for that, so the new REGISTER is never refused for the address."""
    alice = await joined(server.port, "alice")
    closing.append(alice)
    for i in range(30):
        await alice.change_nick(f"alice{i}")
        assert alice.nick == f"alice{i}"


async def test_a_taken_nickname_at_a_reconnect_falls_back_and_comes_back(
    start_server, closing: list[ChatClient]
) -> None:
    """The server restarts and mallory takes 'bob' before bob is back: bob registers as
    bob_, and once mallory leaves, change_nick('bob') takes it back."""
    first = await start_server()
    port = first.port
    bob = await joined(port, "bob", rng=Quarter())
    closing.append(bob)
    await first.close()
    await wait_event(bob, Disconnected)
    await wait_event(bob, Disconnected)  # the first attempt found nothing listening
    second = ChatServer()
    await second.start("127.0.0.1", port)
    try:
        mallory = await joined(port, "bob")
        changed = await wait_event(bob, NickChanged, timeout=10)
        assert (changed.old, changed.new, changed.reason) == ("bob", "bob_", "'bob' was taken")
        assert bob.nick == "bob_" and bob.wanted_nick == "bob"
        await mallory.close()
        await wait_event(bob, PeerLeft)
        await bob.change_nick("bob")
        back = await wait_event(bob, NickChanged)
        assert (back.old, back.new) == ("bob_", "bob")
        assert bob.nick == "bob"
    finally:
        await second.close()


async def test_change_nick_against_a_server_in_its_own_process(
    programs: list[Program],
) -> None:
    """The same against the server program: there the old connection's close and the
    new REGISTER truly race, and waiting for the server to close its side settles it."""
    _server, port = await start_server_program(programs)
    alice = await joined(port, "alice")
    try:
        for i in range(30):
            await alice.change_nick(f"alice{i}")
            assert alice.nick == f"alice{i}"
    finally:
        await alice.close()


async def test_on_event_hands_each_event_over_as_it_happens_those_waiting_first(
    server: ChatServer,
) -> None:
    alice = await joined(server.port, "alice")
    bob = await joined(server.port, "bob")
    try:
        got: list[object] = []
        arrived = asyncio.Event()

        def sink(event: object) -> None:
            got.append(event)
            if isinstance(event, BroadcastReceived):
                arrived.set()
            if isinstance(event, PeerJoined):
                raise RuntimeError("a front end's bug")  # logged; the client goes on

        async with asyncio.timeout(5):  # bob's join has reached alice, unread
            while alice.unread_events < 3:
                await asyncio.sleep(0.01)
        alice.on_event(sink)
        # What was waiting came first, in order: registered, the list, bob's join.
        assert [type(e).__name__ for e in got[:3]] == [
            "Registered",
            "ParticipantsListed",
            "PeerJoined",
        ]
        await bob.broadcast("straight through")
        async with asyncio.timeout(5):
            await arrived.wait()
        assert got[-1] == BroadcastReceived("bob", "straight through")
        assert alice.unread_events == 0 and alice.poll_event() is None
    finally:
        await alice.close()
        await bob.close()
