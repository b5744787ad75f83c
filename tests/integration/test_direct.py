"""Direct chats between real clients over real UDP and TCP sockets (decisions 19-25)."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator

import pytest

from p2pchat import state
from p2pchat.client import ChatClient, ClientLimits, DirectChatError, InvalidInputError
from p2pchat.events import (
    ChatClosed,
    ChatFailed,
    ChatOpened,
    ChatReceived,
    Disconnected,
    PeerJoined,
    PeerLeft,
)
from p2pchat.protocol import Ack, Chat, Init
from p2pchat.server import ChatServer
from p2pchat.state import ChatState

from ._support import RawPeer, joined, listen, loopback_v6_available, wait_event


@pytest.fixture
async def bob(server: ChatServer) -> AsyncIterator[RawPeer]:
    """bob, a participant driven by hand, registered before alice joins."""
    peer = RawPeer("bob")
    await peer.register(server.port)
    yield peer
    peer.close()


@pytest.fixture
async def alice(server: ChatServer, bob: RawPeer) -> AsyncIterator[ChatClient]:
    """alice, a real client that knows bob from its first LIST."""
    client = await joined(server.port, "alice")
    yield client
    await client.close()


async def test_d23_direct_chat_both_ways(pair: tuple[ChatClient, ChatClient]) -> None:
    """Decision 23: CHAT frames flow both ways; ':' CR LF and emoji arrive intact."""
    alice, bob = pair
    await alice.send_chat("bob", "hi bob: how\r\nare you 🎉")
    opened_a = await wait_event(alice, ChatOpened)
    opened_b = await wait_event(bob, ChatOpened)
    assert (opened_a.peer, opened_a.initiator) == ("bob", True)
    assert (opened_b.peer, opened_b.initiator) == ("alice", False)
    got = await wait_event(bob, ChatReceived)
    assert (got.peer, got.text) == ("alice", "hi bob: how\r\nare you 🎉")
    await bob.send_chat("alice", "fine")
    assert (await wait_event(alice, ChatReceived)).text == "fine"


async def test_direct_message_limit_is_counted_in_bytes(
    pair: tuple[ChatClient, ChatClient],
) -> None:
    """The 64 KiB limit counts UTF-8 bytes: 65,536 go through, one more is refused
    with a sentence, and the chat goes on."""
    alice, bob = pair
    await alice.send_chat("bob", "é" * 32768)
    assert (await wait_event(bob, ChatReceived)).text == "é" * 32768
    with pytest.raises(InvalidInputError, match="message too long: 65537 bytes, limit 65536"):
        await alice.send_chat("bob", "é" * 32768 + "x")
    await alice.send_chat("bob", "still here")
    assert (await wait_event(bob, ChatReceived)).text == "still here"


async def test_d23_closing_side_tells_the_other(pair: tuple[ChatClient, ChatClient]) -> None:
    """Decision 23: either side ends the chat by closing; the other side is told."""
    alice, bob = pair
    await alice.open_chat("bob")
    await wait_event(bob, ChatOpened)
    assert bob.close_chat("alice")
    closed = await wait_event(alice, ChatClosed)
    assert closed.peer == "bob"
    assert alice.chat_state("bob") is None


async def test_d23_direct_chat_survives_server_shutdown(
    server: ChatServer, pair: tuple[ChatClient, ChatClient]
) -> None:
    """Decision 23: a direct chat does not depend on the server."""
    alice, bob = pair
    await alice.open_chat("bob")
    await wait_event(bob, ChatOpened)
    await server.close()
    await wait_event(alice, Disconnected)
    await wait_event(bob, Disconnected)
    await alice.send_chat("bob", "still here")
    assert (await wait_event(bob, ChatReceived)).text == "still here"
    await bob.send_chat("alice", "me too")
    assert (await wait_event(alice, ChatReceived)).text == "me too"


async def test_d19_init_leaves_from_the_registered_udp_socket(
    alice: ChatClient, bob: RawPeer
) -> None:
    """Decision 19: INIT:Secret:TCP-Port comes from the initiator's registered UDP port,
    with a fresh secret of at least 128 bits, and the TCP port is listening."""
    alice.start_chat("bob")
    init, source = await bob.datagram()
    assert isinstance(init, Init)
    assert alice.me is not None
    assert source == ("127.0.0.1", alice.me.udp_port)
    assert len(init.secret) >= 22  # token_urlsafe(16): 128 random bits
    _, writer = await asyncio.open_connection("127.0.0.1", init.tcp_port)
    opened = await wait_event(alice, ChatOpened)
    assert opened.initiator
    writer.write(Chat("raw hello").encode())
    assert (await wait_event(alice, ChatReceived)).text == "raw hello"
    writer.close()


async def test_d20_init_is_resent_with_backoff_then_reported(
    alice: ChatClient, bob: RawPeer
) -> None:
    """Decision 20: the same INIT is resent until an ACK; after about 5 s the user is told."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    await alice.send_chat("bob", "will not arrive")
    times, secrets = [], set()
    for _ in range(5):  # the first INIT and four retransmissions
        init, _ = await bob.datagram(timeout=4)
        assert isinstance(init, Init)
        times.append(loop.time() - started)
        secrets.add(init.secret)
    assert len(secrets) == 1
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == sorted(gaps)  # backoff: each wait at least as long as the one before
    failed = await wait_event(alice, ChatFailed, timeout=6)
    assert failed.reason == "bob did not answer"
    assert failed.unsent == ("will not arrive",)
    assert 4.5 <= loop.time() - started <= 7.0


async def test_d20_ack_stops_the_retransmission(alice: ChatClient, bob: RawPeer) -> None:
    """Decision 20: an ACK stops the resends; the chat opens when the peer connects."""
    alice.start_chat("bob")
    init, source = await bob.datagram()
    assert isinstance(init, Init)
    bob.send(Ack(init.secret), source)
    await asyncio.sleep(0)
    assert alice.chat_state("bob") in (ChatState.INVITING, ChatState.ACKED)
    _, writer = await asyncio.open_connection("127.0.0.1", init.tcp_port)
    await wait_event(alice, ChatOpened)
    # Nothing more after the ACK: drain what was already in flight, then silence.
    with pytest.raises(TimeoutError):
        while True:
            await bob.datagram(timeout=1.0)
    writer.close()


async def test_d21_init_from_a_stranger_is_ignored(alice: ChatClient) -> None:
    """Decision 21: an INIT whose source is not a participant gets no ACK and opens nothing."""
    stranger = RawPeer("stranger")  # not registered: only its UDP socket exists
    loop = asyncio.get_running_loop()
    stranger.udp, _ = await loop.create_datagram_endpoint(
        lambda: stranger.inbox, local_addr=("127.0.0.1", 0)
    )
    listener, accepted = await listen()
    try:
        assert alice.me is not None
        port = listener.sockets[0].getsockname()[1]
        stranger.send(Init("s3cret-value", port), alice.me.udp_address)
        with pytest.raises(TimeoutError):
            await stranger.datagram(timeout=1.0)
        assert accepted.empty()
    finally:
        listener.close()
        stranger.close()


async def test_d21_an_init_before_the_join_is_ignored_and_its_resend_accepted(
    server: ChatServer, alice: ChatClient
) -> None:
    """The server sends UPDATEs a little late (they wait for company), so an INIT can
    beat the JOIN of its sender: it gets no ACK, and the resend (decision 20), once
    the JOIN is in, opens the chat."""
    assert alice.me is not None
    carol = RawPeer("carol")
    await carol.bind_udp()
    listener, accepted = await listen()
    try:
        port = listener.sockets[0].getsockname()[1]
        carol.send(Init("early", port), alice.me.udp_address)
        with pytest.raises(TimeoutError):
            await carol.datagram(timeout=0.25)
        await carol.register(server.port)
        await wait_event(alice, PeerJoined, lambda e: e.participant.nick == "carol")
        carol.send(Init("early", port), alice.me.udp_address)
        assert (await carol.datagram())[0] == Ack("early")
        async with asyncio.timeout(5):
            _, writer = await accepted.get()
        assert (await wait_event(alice, ChatOpened)).peer == "carol"
        writer.close()
    finally:
        listener.close()
        carol.close()


async def test_d21_init_is_acked_then_connected_and_repeats_open_nothing(
    alice: ChatClient, bob: RawPeer
) -> None:
    """Decision 21: ACK:INIT:Secret to the source, a TCP connection to the INIT's port;
    a repeated INIT with the same secret is ACKed again but opens no second connection."""
    listener, accepted = await listen()
    try:
        assert alice.me is not None
        port = listener.sockets[0].getsockname()[1]
        bob.send(Init("secret-1", port), alice.me.udp_address)
        ack, source = await bob.datagram()
        assert ack == Ack("secret-1")
        assert source == alice.me.udp_address
        async with asyncio.timeout(5):
            reader, writer = await accepted.get()
        opened = await wait_event(alice, ChatOpened)
        assert (opened.peer, opened.initiator) == ("bob", False)
        bob.send(Init("secret-1", port), alice.me.udp_address)
        assert (await bob.datagram())[0] == Ack("secret-1")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await accepted.get()
        await alice.send_chat("bob", "over raw tcp")
        assert await reader.readline() == b"CHAT:12:over raw tcp\r\n"
        writer.close()
    finally:
        listener.close()


async def test_garbage_on_a_direct_connection_ends_that_chat_only(
    alice: ChatClient, bob: RawPeer
) -> None:
    """A peer's bad CHAT is reported and skipped; an absurd Length ends the chat with the
    reason, and the client goes on."""
    alice.start_chat("bob")
    init, _ = await bob.datagram()
    assert isinstance(init, Init)
    reader, writer = await asyncio.open_connection("127.0.0.1", init.tcp_port)
    await wait_event(alice, ChatOpened)
    writer.write(b"CHAT:2:\xff\xfe\r\nCHAT:2:ok\r\nCHAT:99999999:x\r\n")
    assert (await wait_event(alice, ChatReceived)).text == "ok"
    closed = await wait_event(alice, ChatClosed)
    assert closed.reason.startswith("bob sent garbage: Length 99999999 is over the hard limit")
    assert await asyncio.wait_for(reader.read(), 3) == b""  # alice closed it
    writer.close()
    await alice.broadcast("still fine")  # the server connection is untouched
    assert alice.chat_state("bob") is None


async def test_d22_listener_takes_only_the_peer_and_only_once(
    alice: ChatClient, bob: RawPeer
) -> None:
    """Decision 22: a connection from another IP is refused; the first from the peer's IP
    is the chat (even before any ACK); an ACK with a secret never sent is ignored."""
    alice.start_chat("bob")
    init, source = await bob.datagram()
    assert isinstance(init, Init)
    bob.send(Ack("not-the-secret"), source)
    # 127.0.0.2 is loopback too, but not bob's registered address.
    r_wrong, w_wrong = await asyncio.open_connection(
        "127.0.0.1", init.tcp_port, local_addr=("127.0.0.2", 0)
    )
    assert await asyncio.wait_for(r_wrong.read(), 3) == b""  # closed on us
    assert alice.chat_state("bob") is ChatState.INVITING
    _, writer = await asyncio.open_connection("127.0.0.1", init.tcp_port)
    await wait_event(alice, ChatOpened)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", init.tcp_port)  # listener closed
    w_wrong.close()
    writer.close()


async def test_d24_second_open_reuses_the_first(pair: tuple[ChatClient, ChatClient]) -> None:
    """Decision 24: at most one chat per pair; opening again reuses it."""
    alice, bob = pair
    await alice.open_chat("bob")
    await alice.open_chat("bob")
    await alice.send_chat("bob", "one")
    assert (await wait_event(bob, ChatReceived)).text == "one"
    opened = [e async for e in _drain(bob) if isinstance(e, ChatOpened)]
    assert opened == []  # the ChatOpened was consumed above; no second one came


async def _drain(client: ChatClient):
    while (event := client.poll_event()) is not None:
        yield event


async def test_d24_fresh_init_replaces_an_open_chat(alice: ChatClient, bob: RawPeer) -> None:
    """Decision 24: a new INIT (new secret) from a peer with an open chat replaces it."""
    listener, accepted = await listen()
    try:
        assert alice.me is not None
        port = listener.sockets[0].getsockname()[1]
        bob.send(Init("first", port), alice.me.udp_address)
        async with asyncio.timeout(5):
            r1, w1 = await accepted.get()
        await wait_event(alice, ChatOpened)
        bob.send(Init("second", port), alice.me.udp_address)
        assert (await bob.datagram())[0] == Ack("first")
        assert (await bob.datagram())[0] == Ack("second")
        async with asyncio.timeout(5):
            r2, w2 = await accepted.get()
        assert await asyncio.wait_for(r1.read(), 3) == b""  # the old connection is closed
        await wait_event(alice, ChatOpened)
        await alice.send_chat("bob", "on the new one")
        assert await r2.readline() == b"CHAT:14:on the new one\r\n"
        w1.close()
        w2.close()
    finally:
        listener.close()


async def test_d24_crossing_inits_open_one_chat(pair: tuple[ChatClient, ChatClient]) -> None:
    """Decision 24: both ask at once; the INIT of the nickname sorting first wins."""
    alice, bob = pair
    await asyncio.gather(alice.send_chat("bob", "from alice"), bob.send_chat("alice", "from bob"))
    a_opened = await wait_event(alice, ChatOpened)
    b_opened = await wait_event(bob, ChatOpened)
    assert a_opened.initiator and not b_opened.initiator  # "alice" < "bob"
    assert (await wait_event(bob, ChatReceived)).text == "from alice"
    assert (await wait_event(alice, ChatReceived)).text == "from bob"
    # Exactly one chat stays open on each side, and it keeps working.
    await alice.send_chat("bob", "still one chat")
    assert (await wait_event(bob, ChatReceived)).text == "still one chat"
    assert alice.chat_state("bob") is bob.chat_state("alice") is ChatState.OPEN


@pytest.mark.parametrize("how", ["no_direct", "ignore"])
async def test_d25_refused_init_is_not_acked(server: ChatServer, how: str) -> None:
    """Decision 25: a client refusing direct chats (all, or from one nick) sends no ACK."""
    alice = await joined(server.port, "alice", accept_direct=(how != "no_direct"))
    if how == "ignore":
        alice.ignore("BOB")  # nicknames compare case-insensitively
    bob = RawPeer("bob")
    await bob.register(server.port)
    await wait_event(alice, PeerJoined)
    try:
        assert alice.me is not None
        bob.send(Init("please", 40000), alice.me.udp_address)
        with pytest.raises(TimeoutError):
            await bob.datagram(timeout=1.0)
        assert alice.chat_state("bob") is None
    finally:
        bob.close()
        await alice.close()


async def test_d25_accepting_is_the_default(pair: tuple[ChatClient, ChatClient]) -> None:
    """Decision 25: by default an incoming chat is accepted at once and the user told."""
    alice, bob = pair
    alice.start_chat("bob")
    assert (await wait_event(bob, ChatOpened)).peer == "alice"


async def test_unknown_nick_and_self_are_refused_at_once(
    pair: tuple[ChatClient, ChatClient],
) -> None:
    alice, _ = pair
    with pytest.raises(DirectChatError, match="no participant named 'carol'"):
        await alice.open_chat("carol")
    with pytest.raises(DirectChatError, match="yourself"):
        await alice.send_chat("ALICE", "hi me")


@pytest.mark.skipif(not loopback_v6_available(), reason="no IPv6 loopback here")
async def test_d6_direct_chat_over_ipv6(start_server) -> None:
    """Decision 6: IPv6 addresses travel bracketed; a direct chat works over ::1."""
    server = ChatServer()
    await server.start("::1", 0)
    try:
        alice = ChatClient("alice", "::1", server.port)
        bob = ChatClient("bob", "::1", server.port)
        await alice.connect()
        await bob.connect()
        joined_bob = await wait_event(alice, PeerJoined)
        assert joined_bob.participant.ip == "::1"
        await alice.send_chat("bob", "over v6")
        assert (await wait_event(bob, ChatReceived)).text == "over v6"
        await alice.close()
        await bob.close()
    finally:
        await server.close()


async def test_a_peer_that_stops_reading_ends_the_chat_not_the_client(
    server: ChatServer, bob: RawPeer
) -> None:
    """A direct peer that takes nothing can hold a sender up for stall_timeout at most;
    then the chat closes with a reason and the client carries on."""
    alice = await joined(server.port, "alice", limits=ClientLimits(stall_timeout=0.5))
    try:
        alice.start_chat("bob")
        init, _ = await bob.datagram()
        assert isinstance(init, Init)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", init.tcp_port))
        await wait_event(alice, ChatOpened)
        with pytest.raises(DirectChatError, match=r"took nothing for 0\.5 s"):
            for _ in range(500):  # bounded: the kernel buffers fill long before
                await alice.send_chat("bob", "x" * 60_000)
        closed = await wait_event(alice, ChatClosed)
        assert closed.reason == "bob took nothing for 0.5 s"
        assert alice.chat_state("bob") is None
        sock.close()
    finally:
        await alice.close()


async def test_text_that_cannot_be_encoded_is_refused_at_once(
    pair: tuple[ChatClient, ChatClient],
) -> None:
    """A lone surrogate cannot travel as UTF-8: refused when sent, nothing queued."""
    alice, bob = pair
    with pytest.raises(InvalidInputError, match="lone surrogate"):
        await alice.send_chat("bob", "bad \ud800 text")
    assert alice.chat_state("bob") is None
    await alice.send_chat("bob", "good text")
    assert (await wait_event(bob, ChatReceived)).text == "good text"


async def test_d21_a_repeat_after_the_chat_ended_opens_no_connection(
    alice: ChatClient, bob: RawPeer
) -> None:
    """Decision 21: a late copy of an INIT whose chat has already ended is ACKed again,
    and opens nothing."""
    listener, accepted = await listen()
    try:
        assert alice.me is not None
        port = listener.sockets[0].getsockname()[1]
        bob.send(Init("once", port), alice.me.udp_address)
        assert (await bob.datagram())[0] == Ack("once")
        async with asyncio.timeout(5):
            _, writer = await accepted.get()
        await wait_event(alice, ChatOpened)
        writer.close()
        await wait_event(alice, ChatClosed)
        bob.send(Init("once", port), alice.me.udp_address)
        assert (await bob.datagram())[0] == Ack("once")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await accepted.get()
        assert alice.chat_state("bob") is None
    finally:
        listener.close()


async def test_a_pending_request_ends_when_the_peer_leaves(alice: ChatClient, bob: RawPeer) -> None:
    """Asking someone who then leaves the server fails at once, with the reason, instead
    of resending to an address nobody holds for the full five seconds."""
    await alice.send_chat("bob", "are you there?")
    assert isinstance((await bob.datagram())[0], Init)
    loop = asyncio.get_running_loop()
    left_at = loop.time()
    assert bob.tcp is not None
    bob.tcp.close()
    failed = await wait_event(alice, ChatFailed)
    assert failed.reason == "bob left" and failed.unsent == ("are you there?",)
    assert loop.time() - left_at < 2.0


async def test_an_answered_request_goes_on_when_the_peer_leaves(
    alice: ChatClient, bob: RawPeer
) -> None:
    """bob asks, writes his message and leaves (e.g. /msg then end of input): his LEAVE
    can reach alice while her connection to his listener is still under way. That
    connection, not the LEAVE, settles the chat, so the message arrives. bob's listener
    has a full accept queue, so alice's connect waits for its SYN to be resent (about
    1 s) and the LEAVE always comes first."""
    assert alice.me is not None
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # Linux queues one connection; further SYNs are dropped
        listener.setblocking(False)
        filler.connect(listener.getsockname())
        bob.send(Init("leaving", listener.getsockname()[1]), alice.me.udp_address)
        assert (await bob.datagram())[0] == Ack("leaving")
        assert alice.chat_state("bob") is ChatState.CONNECTING
        assert bob.tcp is not None
        bob.tcp.close()
        await wait_event(alice, PeerLeft)
        loop = asyncio.get_running_loop()
        (await loop.sock_accept(listener))[0].close()  # the filler: room for alice's SYN
        async with asyncio.timeout(5):
            conn, _ = await loop.sock_accept(listener)
        with conn:
            await loop.sock_sendall(conn, Chat("sent before leaving").encode())
        opened = await wait_event(alice, ChatOpened)
        assert (opened.peer, opened.initiator) == ("bob", False)
        assert (await wait_event(alice, ChatReceived)).text == "sent before leaving"
        assert (await wait_event(alice, ChatClosed)).reason == "bob closed the chat"


async def test_listener_uses_one_family_when_the_advertised_ip_is_not_ours(
    server: ChatServer, bob: RawPeer
) -> None:
    """With --ip naming an address that is not local (e.g. behind NAT), the UDP socket and
    the listener bind to a wildcard of that address's family: the port in the INIT is
    the one an IPv4 peer can connect to."""
    alice = ChatClient("alice", "127.0.0.1", server.port, ip="192.0.2.99")
    await alice.connect()
    try:
        assert alice.me is not None and alice.me.ip == "192.0.2.99"
        alice.start_chat("bob")
        init, _ = await bob.datagram()
        assert isinstance(init, Init)
        _, writer = await asyncio.open_connection("127.0.0.1", init.tcp_port)
        assert (await wait_event(alice, ChatOpened)).peer == "bob"
        writer.close()
    finally:
        await alice.close()


@pytest.mark.parametrize("how", ["no answer", "acked but no connection", "closed", "peer left"])
async def test_the_listener_refuses_connections_as_soon_as_the_request_ends(
    alice: ChatClient, bob: RawPeer, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """While alice's listener waits, a process on bob's IP could connect first and take
    the chat (the protocol cannot tell it from bob). The window closes with the request:
    when the ACK's connect time runs out, when nobody answers, when the user closes it
    and when bob leaves, the port refuses connections by the time the user is told."""
    monkeypatch.setattr(state, "ANSWER_TIMEOUT", 0.5)
    monkeypatch.setattr(state, "CONNECT_TIMEOUT", 0.5)
    alice.start_chat("bob")
    init, source = await bob.datagram()
    assert isinstance(init, Init)
    if how == "acked but no connection":
        bob.send(Ack(init.secret), source)
    elif how == "closed":
        assert alice.close_chat("bob")
    elif how == "peer left":
        assert bob.tcp is not None
        bob.tcp.close()
    failed = await wait_event(alice, ChatFailed)
    expected = {
        "no answer": "bob did not answer",
        "acked but no connection": "bob answered but did not connect",
        "closed": "closed",
        "peer left": "bob left",
    }
    assert failed.reason == expected[how]
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", init.tcp_port)


async def test_ignoring_a_peer_closes_the_open_chat_and_nothing_more_arrives(
    pair: tuple[ChatClient, ChatClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """/ignore covers a chat already open: it ends at once on both sides, and bob's
    next message, which asks for a new chat, gets no answer and comes back to him."""
    monkeypatch.setattr(state, "ANSWER_TIMEOUT", 0.5)
    alice, bob = pair
    await bob.send_chat("alice", "before")
    assert (await wait_event(alice, ChatReceived)).text == "before"
    alice.ignore("Bob")
    closed = await wait_event(alice, ChatClosed)
    assert (closed.peer, closed.reason) == ("bob", "you ignored bob")
    assert alice.chat_state("bob") is None
    await wait_event(bob, ChatClosed)
    await bob.send_chat("alice", "after")
    failed = await wait_event(bob, ChatFailed)
    assert (failed.reason, failed.unsent) == ("alice did not answer", ("after",))
    assert alice.chat_state("bob") is None
    while (event := alice.poll_event()) is not None:
        assert not isinstance(event, ChatReceived | ChatOpened), event


async def test_ignoring_a_peer_ends_a_pending_request_to_them(
    alice: ChatClient, bob: RawPeer
) -> None:
    """A request alice made ends too, with its unsent text reported, and the listener
    it opened refuses bob's connection."""
    await alice.send_chat("bob", "hello?")
    init, _source = await bob.datagram()
    assert isinstance(init, Init)
    alice.ignore("bob")
    failed = await wait_event(alice, ChatFailed)
    assert (failed.reason, failed.unsent) == ("you ignored bob", ("hello?",))
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", init.tcp_port)
    with pytest.raises(DirectChatError, match="you ignore bob"):
        await alice.send_chat("bob", "again")
    alice.unignore("bob")
    alice.start_chat("bob")
    assert alice.chat_state("bob") is ChatState.INVITING
