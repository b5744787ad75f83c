"""The server under clients that stop reading or send garbage fast (decisions 9, 15, 17)."""

from __future__ import annotations

import asyncio

import pytest

from p2pchat.server import ChatServer

from ._support import Connect, RawClient


async def stalled(connect: Connect, server: ChatServer, nick: str, udp_port: int) -> RawClient:
    """A client that registers (at a UDP port of its own) and then never reads."""
    client = await connect(server, nick, rcvbuf=1024)
    client.send(f"REGISTER:{nick}:127.0.0.1:{udp_port}\r\n".encode())
    await client.drain()
    return client


async def registered(server: ChatServer, count: int) -> None:
    async with asyncio.timeout(10):
        while len(server.registry) < count:
            await asyncio.sleep(0.01)


@pytest.mark.usefixtures("small_kernel_buffers")
async def test_d17_hundreds_of_stalled_readers_are_dropped_in_one_go(
    start_server, connect: Connect
) -> None:
    """Decisions 15, 17: 400 participants stop reading at once; each LEAVE can push the
    others over the limit. All are dropped (a loop, not a recursion that overflows the
    stack), the talker gets no error, and the list ends with the talker alone."""
    server = await start_server(sendq_bytes=200_000, flood_rate=0)
    for i in range(400):
        await stalled(connect, server, f"s{i}", 1000 + i)
    await registered(server, 400)
    talker = await connect(server, "talker")
    talker.send(b"REGISTER:talker:127.0.0.1:999\r\n")
    assert (await talker.recv()).startswith(b"LIST:")
    payload = b"x" * 60_000
    talker.send(b"".join(b"BROADCAST:talker:60000:%s\r\n" % payload for _ in range(5)))
    await talker.drain()
    await registered_at_most(server, 1)
    talker.send(b"LIST\r\n")
    while not (message := await talker.recv()).startswith(b"LIST"):
        assert message.startswith(b"UPDATE:LEAVE:s"), message  # no ERROR among them
    assert message == b"LIST:talker:127.0.0.1:999\r\n"


async def registered_at_most(server: ChatServer, count: int) -> None:
    async with asyncio.timeout(10):
        while len(server.registry) > count:
            await asyncio.sleep(0.01)


@pytest.mark.usefixtures("small_kernel_buffers")
async def test_d9_d17_a_list_longer_than_the_send_queue_still_reaches_a_newcomer(
    start_server, connect: Connect
) -> None:
    """Decisions 9, 17: a LIST is one message, and a big chat's can be longer than the
    send queue (10,000 of the longest entries make 1.9 MB against 1 MiB). A newcomer
    on a slow link must still get it, not be dropped: one LIST is allowed on top of
    the send queue. A newcomer that then does not read is still dropped."""
    server = await start_server(sendq_bytes=1024, flood_rate=0)
    observer = await connect(server, "observer")
    observer.send(b"REGISTER:observer:127.0.0.1:999\r\n")
    await observer.recv()
    for i in range(300):  # a LIST of about 13 KB
        member = await connect(server, f"m{i}")  # these read, so they stay
        member.send(f"REGISTER:member-with-a-long-name-{i:04d}:127.0.0.1:{1000 + i}\r\n".encode())
    await registered(server, 301)
    joiner = await connect(server, "joiner", rcvbuf=1024, limit=1 << 16)
    joiner.send(b"REGISTER:joiner:127.0.0.1:998\r\n")
    await joiner.drain()
    message = await joiner.recv()
    assert message.startswith(b"LIST:observer:") and message.endswith(b":joiner:127.0.0.1:998\r\n")
    assert len(message) > 12 * 1024  # twelve times the send queue
    while (message := await observer.recv()) != b"UPDATE:JOIN:joiner:127.0.0.1:998\r\n":
        assert message.startswith(b"UPDATE:JOIN:member-"), message
    # Stalled from now on: past its send queue and one LIST it goes, and is announced.
    # (So are members of this in-process test, whose reads wait for the server's turn.)
    observer.send((b"BROADCAST:observer:8000:" + b"x" * 8000 + b"\r\n") * 5)
    while (message := await observer.recv()) != b"UPDATE:LEAVE:joiner:127.0.0.1:998\r\n":
        assert message.startswith(b"UPDATE:LEAVE:member-"), message


async def test_d17_bad_messages_are_slowed_by_flood_control_too(
    start_server, connect: Connect
) -> None:
    """Decision 17: garbage costs a flood-control token like a valid message, so an ERROR
    storm is read at the flood rate."""
    server = await start_server(flood_burst=5, flood_rate=20)
    client = await connect(server, "garbage")
    loop = asyncio.get_running_loop()
    started = loop.time()
    client.send(b"HELLO\r\n" * 45)
    for _ in range(45):
        assert (await client.recv()).startswith(b"ERROR:")
    assert loop.time() - started >= (45 - 5) / 20 * 0.75
