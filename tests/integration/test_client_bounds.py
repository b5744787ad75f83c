"""What a client holds at most, whatever its server and its peers send (issue "no cliffs").

Real clients against hand-driven fake servers and raw peers over real sockets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from p2pchat.client import ChatClient, ClientLimits, DirectChatError
from p2pchat.events import (
    BroadcastReceived,
    ChatClosed,
    ChatFailed,
    ChatOpened,
    ChatReceived,
    ClientEvent,
    Notice,
    ParticipantsListed,
    PeerJoined,
    PeerLeft,
    Registered,
)
from p2pchat.protocol import Ack, Init
from p2pchat.server import ChatServer
from p2pchat.state import ChatState

from ..conftest import StartServer
from ._support import (
    FakeServer,
    RawPeer,
    UdpInbox,
    collect,
    joined,
    listen,
    register_with,
    wait_event,
)


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = FakeServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[asyncio.DatagramTransport, UdpInbox]]:
    """A raw UDP socket on 127.0.0.1 that a test lists under whatever nicknames it likes."""
    box = UdpInbox()
    udp, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: box, local_addr=("127.0.0.1", 0)
    )
    yield udp, box
    udp.close()


async def test_an_init_from_an_address_two_participants_claim_is_credited_to_neither(
    fake: FakeServer,
    inbox: tuple[asyncio.DatagramTransport, UdpInbox],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """bob and mallory registered the same IP and UDP port: an INIT from there gets no ACK
    and opens nothing, and a warning names both. Once mallory leaves, the same kind of
    INIT opens a chat with bob."""
    udp, box = inbox
    port = udp.get_extra_info("sockname")[1]
    alice = ChatClient("alice", "127.0.0.1", fake.port)
    caplog.set_level(logging.WARNING, logger="p2pchat.direct")
    conn = await register_with(
        fake, alice, lambda _: b"LIST:bob:127.0.0.1:%d:mallory:127.0.0.1:%d\r\n" % (port, port)
    )
    listener, accepted = await listen()
    try:
        assert alice.me is not None
        tcp_port = listener.sockets[0].getsockname()[1]
        udp.sendto(Init("from-the-shared-address", tcp_port).encode(), alice.me.udp_address)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await box.queue.get()
        assert accepted.empty() and alice.chat_state("bob") is None
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("bob" in w and "mallory" in w for w in warnings), warnings

        conn.send(b"UPDATE:LEAVE:mallory:127.0.0.1:%d\r\n" % port)
        await wait_event(alice, PeerLeft)
        udp.sendto(Init("now-only-bob", tcp_port).encode(), alice.me.udp_address)
        async with asyncio.timeout(5):
            ack, _ = await box.queue.get()
            _, writer = await accepted.get()
        assert ack == Ack("now-only-bob")
        assert (await wait_event(alice, ChatOpened)).peer == "bob"
        writer.close()
    finally:
        listener.close()
        await alice.close()


# -- participants held ------------------------------------------------------------


async def test_joins_past_the_participant_limit_are_not_held_and_the_user_is_told_once(
    fake: FakeServer,
) -> None:
    """A server announcing 12,000 joins: the client holds the first 10,000 others (the
    server's --max-clients default), says so once, and goes on; after a leave, a join
    is taken again."""
    limit = ClientLimits().max_participants
    alice = ChatClient("alice", "127.0.0.1", fake.port)
    conn = await register_with(fake, alice, lambda _: b"LIST\r\n")
    try:
        conn.send(
            b"".join(
                b"UPDATE:JOIN:u%d:127.0.0.1:%d\r\n" % (i, 1024 + i) for i in range(limit + 2000)
            )
            + b"BROADCAST:u0:4:done\r\n"
        )
        events = await collect(alice, BroadcastReceived, timeout=20)
        joined = [e for e in events if isinstance(e, PeerJoined)]
        notices = [e for e in events if isinstance(e, Notice)]
        assert len(joined) == limit and joined[-1].participant.nick == f"u{limit - 1}"
        assert len(notices) == 1, notices
        assert notices[0].text.startswith(f"{limit} participants held")
        assert len(alice.participants) == limit + 1  # and ourselves
        assert alice.chat_state(f"u{limit}") is None

        conn.send(
            b"UPDATE:LEAVE:u0:127.0.0.1:1024\r\n"
            b"UPDATE:JOIN:late:127.0.0.1:40000\r\n"
            b"UPDATE:JOIN:later:127.0.0.1:40001\r\n"
            b"BROADCAST:u1:5:done2\r\n"
        )
        events = await collect(alice, BroadcastReceived)
        assert [type(e) for e in events] == [PeerLeft, PeerJoined, BroadcastReceived]
        assert isinstance(events[1], PeerJoined) and events[1].participant.nick == "late"
    finally:
        await alice.close()


async def test_a_list_past_the_participant_limit_is_cut_and_the_user_is_told(
    fake: FakeServer,
) -> None:
    alice = ChatClient("alice", "127.0.0.1", fake.port, limits=ClientLimits(max_participants=3))
    entries = b":".join(b"u%d:127.0.0.1:%d" % (i, 1024 + i) for i in range(8))
    await register_with(fake, alice, lambda _: b"LIST:" + entries + b"\r\n")
    try:
        events = [await alice.next_event() for _ in range(3)]
        assert [type(e) for e in events] == [Registered, ParticipantsListed, Notice]
        listed = events[1]
        assert isinstance(listed, ParticipantsListed)
        assert [p.nick for p in listed.participants] == ["alice", "u0", "u1", "u2"]
        assert isinstance(events[2], Notice) and "5 left out" in events[2].text
    finally:
        await alice.close()


# -- events the user has not read ---------------------------------------------------


class QueueWatch:
    """Records what a client's event queue holds after every event put in it."""

    def __init__(self, client: ChatClient) -> None:
        self.events: list[int] = []
        self.bytes: list[int] = []
        self.largest_event = 0
        put = client._events.put

        def watched(event: ClientEvent) -> None:
            before = client.unread_bytes
            put(event)
            self.largest_event = max(self.largest_event, client.unread_bytes - before)
            self.events.append(client.unread_events)
            self.bytes.append(client.unread_bytes)

        client._events.put = watched  # type: ignore[method-assign]


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Waits, looking at each turn of the loop's clock, until ``condition`` holds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_bot_that_does_not_poll_holds_its_byte_limit_and_loses_nothing(
    start_server: StartServer,
) -> None:
    """40 broadcasts of 256 KiB (10 MiB) to a bot that reads no events: it holds its
    4 MiB of unread events (plus the one that crossed the line), stops reading its
    socket, and gets every broadcast, in order, once it reads again."""
    server = await start_server(max_message_bytes=1 << 20, sendq_bytes=64 << 20)
    limit = 4 << 20
    bot = ChatClient("bot", "127.0.0.1", server.port, limits=ClientLimits(max_unread_bytes=limit))
    await bot.connect()
    alice = await joined(server.port, "alice")
    try:
        watch = QueueWatch(bot)
        texts = [f"{i:03d}" + "x" * (256 * 1024 - 3) for i in range(40)]
        for text in texts:
            await alice.broadcast(text)
        await until(lambda: bot.unread_bytes >= limit)
        got: list[str] = []
        async with asyncio.timeout(20):
            while len(got) < len(texts):
                event = await bot.next_event()
                if isinstance(event, BroadcastReceived):
                    got.append(event.text)
        assert got == texts
        assert max(watch.bytes) <= limit + watch.largest_event
        assert max(watch.bytes) >= limit  # it did fill up: the bound was met, not missed
        assert bot.connected
    finally:
        await alice.close()
        await bot.close()


async def test_a_bot_that_does_not_poll_holds_its_event_count_limit(
    start_server: StartServer,
) -> None:
    """500 short broadcasts to a bot allowed 100 unread events: it never holds more,
    though they reach its socket in a few reads, and it gets all 500 in order."""
    server = await start_server(flood_rate=0)
    bot = ChatClient("bot", "127.0.0.1", server.port, limits=ClientLimits(max_unread_events=100))
    await bot.connect()
    alice = await joined(server.port, "alice")
    try:
        watch = QueueWatch(bot)
        for i in range(500):
            await alice.broadcast(f"n{i}")
        await until(lambda: bot.unread_events >= 100)
        got: list[str] = []
        async with asyncio.timeout(20):
            while len(got) < 500:
                event = await bot.next_event()
                if isinstance(event, BroadcastReceived):
                    got.append(event.text)
        assert got == [f"n{i}" for i in range(500)]
        assert max(watch.events) == 100
    finally:
        await alice.close()
        await bot.close()


async def test_a_direct_chat_to_a_bot_that_does_not_poll_holds_its_limit_and_loses_nothing(
    server: ChatServer,
) -> None:
    """6 MB in a direct chat to a bot that reads no events: the bot holds its 1 MiB (and
    one message), what it does not read waits in TCP, and every message arrives in
    order once the bot reads again."""
    limit = 1 << 20
    bot = ChatClient("bot", "127.0.0.1", server.port, limits=ClientLimits(max_unread_bytes=limit))
    await bot.connect()
    alice = await joined(server.port, "alice")
    try:
        await wait_event(bot, PeerJoined)
        watch = QueueWatch(bot)
        texts = [f"{i:03d}" + "y" * 60_000 for i in range(100)]  # 6 MB

        async def send_all() -> None:
            for text in texts:
                await alice.send_chat("bot", text)

        sending = asyncio.ensure_future(send_all())
        await until(lambda: bot.unread_bytes >= limit)
        got: list[str] = []
        async with asyncio.timeout(20):
            while len(got) < len(texts):
                event = await bot.next_event()
                if isinstance(event, ChatReceived):
                    got.append(event.text)
            await sending
        assert got == texts
        assert max(watch.bytes) <= limit + watch.largest_event
    finally:
        await alice.close()
        await bot.close()


# -- direct chats ---------------------------------------------------------------------


async def test_direct_chats_past_the_limit_are_refused_with_a_reason_and_the_client_goes_on(
    server: ChatServer,
) -> None:
    """Five peers ask a client that allows three chats: three open, the other two get no
    ACK and the user sees a chat_failed for each (once, however often they ask); asking
    for a fourth chat is refused too. Once a chat closes, a peer gets in."""
    peers = [RawPeer(f"p{i}") for i in range(5)]
    for peer in peers:
        await peer.register(server.port)
    alice = await joined(server.port, "alice", limits=ClientLimits(max_direct_chats=3))
    listeners = [await listen() for _ in peers]
    try:
        assert alice.me is not None
        for i, (peer, (listener, _)) in enumerate(zip(peers, listeners, strict=True)):
            peer.send(Init(f"s{i}", listener.sockets[0].getsockname()[1]), alice.me.udp_address)
        for peer, (_, accepted) in zip(peers[:3], listeners[:3], strict=True):
            assert (await peer.datagram())[0] == Ack(f"s{peers.index(peer)}")
            async with asyncio.timeout(5):
                await accepted.get()
        chat_events: list[ChatOpened | ChatFailed] = [
            await wait_event(alice, ChatOpened | ChatFailed)  # type: ignore[arg-type]
            for _ in range(5)
        ]
        assert {e.peer for e in chat_events if isinstance(e, ChatOpened)} == {"p0", "p1", "p2"}
        failed = [e for e in chat_events if isinstance(e, ChatFailed)]
        assert {f.peer for f in failed} == {"p3", "p4"}
        assert all(f.reason == "refused: 3 direct chats pending or open, the limit" for f in failed)
        peers[3].send(Init("s3", 1), alice.me.udp_address)  # asks again: still refused, told once
        for peer in peers[3:]:
            with pytest.raises(TimeoutError):
                await peer.datagram(timeout=1.0)
        assert alice.poll_event() is None
        with pytest.raises(DirectChatError, match="3 direct chats pending or open, the limit"):
            await alice.send_chat("p4", "hello?")
        assert alice.chat_state("p3") is alice.chat_state("p4") is None

        assert alice.close_chat("p0")
        await wait_event(alice, ChatClosed)
        listener, accepted = listeners[3]
        peers[3].send(Init("s3-again", listener.sockets[0].getsockname()[1]), alice.me.udp_address)
        assert (await peers[3].datagram())[0] == Ack("s3-again")
        assert (await wait_event(alice, ChatOpened)).peer == "p3"
    finally:
        for listener, _ in listeners:
            listener.close()
        for peer in peers:
            peer.close()
        await alice.close()


async def _raw_chat(
    alice: ChatClient, peer: RawPeer
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """alice asks ``peer`` for a chat; the peer connects by hand and the chat opens."""
    alice.start_chat(peer.nick)
    init, _ = await peer.datagram()
    assert isinstance(init, Init)
    reader, writer = await asyncio.open_connection("127.0.0.1", init.tcp_port)
    await wait_event(alice, ChatOpened, lambda e: e.peer == peer.nick)
    return reader, writer


async def test_a_peer_that_starts_a_message_and_stalls_loses_the_chat_with_a_reason(
    server: ChatServer,
) -> None:
    bob = RawPeer("bob")
    await bob.register(server.port)
    alice = await joined(server.port, "alice", limits=ClientLimits(frame_timeout=0.5))
    try:
        reader, writer = await _raw_chat(alice, bob)
        started = asyncio.get_running_loop().time()
        writer.write(b"CHAT:5:whole\r\nCHAT:1000:only the start")
        assert (await wait_event(alice, ChatReceived)).text == "whole"
        closed = await wait_event(alice, ChatClosed)
        assert closed.reason == "bob did not finish a message in 0.5 s"
        assert 0.5 <= asyncio.get_running_loop().time() - started < 3.0
        assert await asyncio.wait_for(reader.read(), 3) == b""  # alice closed it
        assert alice.chat_state("bob") is None
        await alice.broadcast("still here")  # the client goes on
        writer.close()
    finally:
        bob.close()
        await alice.close()


async def test_unfinished_messages_across_chats_are_held_to_the_limit(
    server: ChatServer,
) -> None:
    """Two peers each start a large message and stall: together they would hold more than
    the client allows, so the chat that takes it past the limit is closed with the reason;
    the other goes on and its message arrives whole."""
    limit = 300_000
    peers = [RawPeer("p0"), RawPeer("p1")]
    for peer in peers:
        await peer.register(server.port)
    alice = await joined(server.port, "alice", limits=ClientLimits(max_unfinished_bytes=limit))
    try:
        chats = [await _raw_chat(alice, peer) for peer in peers]
        for _, writer in chats:
            writer.write(b"CHAT:200000:" + b"z" * 160_000)
        closed = await wait_event(alice, ChatClosed)
        assert closed.reason == "unfinished messages in direct chats would hold over 300000 bytes"
        survivor = 1 - ["p0", "p1"].index(closed.peer)
        _, writer = chats[survivor]
        writer.write(b"z" * 40_000 + b"\r\n")
        got = await wait_event(alice, ChatReceived)
        assert (got.peer, got.text) == (peers[survivor].nick, "z" * 200_000)
        assert alice.chat_state(peers[survivor].nick) is ChatState.OPEN
        for _, writer in chats:
            writer.close()
    finally:
        for peer in peers:
            peer.close()
        await alice.close()


async def _fill(bot: ChatClient, server: ChatServer, limit: int) -> ChatClient:
    """Another participant broadcasts until ``bot`` holds ``limit`` unread events."""
    sender = await joined(server.port, "sender")
    for i in range(limit):
        await sender.broadcast(f"filler {i}")
    await until(lambda: bot.unread_events >= limit)
    return sender


async def test_while_a_bot_is_full_an_init_gets_no_ack_and_after_it_reads_one_does(
    server: ChatServer,
) -> None:
    """A datagram cannot be slowed down: while the bot has no room for events, an INIT
    is turned away (no ACK, nothing opens). Once it reads, the next INIT opens a chat."""
    bob = RawPeer("bob")
    await bob.register(server.port)
    bot = await joined(server.port, "bot", limits=ClientLimits(max_unread_events=10))
    sender = await _fill(bot, server, 10)
    listener, accepted = await listen()
    try:
        assert bot.me is not None
        port = listener.sockets[0].getsockname()[1]
        bob.send(Init("while-full", port), bot.me.udp_address)
        with pytest.raises(TimeoutError):
            await bob.datagram(timeout=1.0)
        assert bot.chat_state("bob") is None
        while bot.poll_event() is not None:
            pass
        bob.send(Init("after-reading", port), bot.me.udp_address)
        assert (await bob.datagram())[0] == Ack("after-reading")
        async with asyncio.timeout(5):
            _, writer = await accepted.get()
        assert (await wait_event(bot, ChatOpened)).peer == "bob"
        writer.close()
    finally:
        listener.close()
        bob.close()
        await sender.close()
        await bot.close()
