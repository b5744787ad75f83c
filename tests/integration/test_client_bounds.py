"""What a client holds at most, whatever its server and its peers send (issue "no cliffs").

Real clients against hand-driven fake servers and raw peers over real sockets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from p2pchat.client import ChatClient
from p2pchat.events import ChatOpened, PeerLeft
from p2pchat.protocol import Ack, Init

from ._support import FakeServer, UdpInbox, listen, register_with, wait_event


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
