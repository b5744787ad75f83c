"""Legal but hostile traffic against a real server: bursts, non-readers, LIST floods.

Each test is a shape real use takes; none may cost an honest reader a message,
or the server memory beyond what its limits allow (decision 17).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from p2pchat import _net
from p2pchat.protocol import Error, encode_broadcast
from p2pchat.server import ChatServer, ServerConfig, _Connection

from ._programs import Program, start_server
from ._support import Connect, RawClient, split_messages

MIB = 1 << 20
BIG = 65536  # the server's default --max-message-bytes


def big_broadcast(nick: str, i: int) -> bytes:
    head = f"{nick} {i:04d} "
    return encode_broadcast(nick, head + "x" * (BIG - len(head)))


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} for {pid}")


async def raw(port: int, nick: str, udp_port: int, *, rcvbuf: int | None = None) -> RawClient:
    """A raw connection to a server in another process, registered as ``nick``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 16)
    conn = RawClient(reader, writer, nick)
    conn.send(f"REGISTER:{nick}:127.0.0.1:{udp_port}\r\n".encode())
    return conn


async def discard(conn: RawClient) -> None:
    while await conn.reader.read(1 << 16):
        pass


async def paced(conn: RawClient, rate: float, count: int, nick: str) -> list[bytes]:
    """Reads ``count`` broadcasts from ``nick`` no faster than ``rate`` bytes a second,
    as a client at the end of a real link would; anything else but an UPDATE fails."""
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    next_read = loop.time()
    while len(got) < count:
        message = await conn.recv(timeout=20)
        if message.startswith(b"BROADCAST:"):
            assert message.startswith(f"BROADCAST:{nick}:".encode()), message[:80]
            got.append(message)
        else:
            assert message.startswith(b"UPDATE:"), message[:200]
        next_read += len(message) / rate
        await asyncio.sleep(max(0.0, next_read - loop.time()))  # the link's pace, not a wait
    return got


async def test_d17_a_legal_burst_of_200_largest_broadcasts_drops_no_reader(
    programs: list[Program],
) -> None:
    """Three clients reading as fast as a 2 MiB/s link lets them; a fourth sends 200
    broadcasts of 64 KiB in one write, within the flood burst of 200 messages and the
    message limit. With the default options every reader gets all 200, in order, and
    none is dropped: byte flood control spreads the 12.5 MiB over time instead of
    owing it to the readers at once."""
    _, port = await start_server(programs)
    readers = [await raw(port, f"r{i}", 9001 + i, rcvbuf=BIG) for i in range(3)]
    for reader in readers:
        assert (await reader.recv()).startswith(b"LIST:")
    sender = await raw(port, "sender", 9000)
    assert (await sender.recv()).startswith(b"LIST:")
    burst = [big_broadcast("sender", i) for i in range(200)]
    sender.send(b"".join(burst))
    async with asyncio.timeout(45):  # 12.5 MiB at the default 1 MiB/s byte rate
        got = await asyncio.gather(*(paced(r, 2 * MIB, 200, "sender") for r in readers))
    assert got == [burst] * 3
    await sender.drain()


async def test_d17_many_bursting_senders_and_non_readers_cost_shared_memory_only(
    programs: list[Program],
) -> None:
    """100 participants that never read and one that does; 20 senders each write 20
    broadcasts of 64 KiB at once. A broadcast is one bytes object for all its receivers,
    so the server's peak memory grows by about one send queue, not by 100 x 25 MiB of
    copies; each non-reader is dropped with an ERROR; the reader gets all 400, in order
    per sender, and is not dropped.

    Flood control lets each sender burst 128 KiB here, 2.5 MiB in all, then 1 MiB/s:
    with the default 512 KiB the 20 bursts come to 10 MiB at once, more than a reader's
    send queue and socket buffers hold, so whether this test's reader (one Python
    loop that also reads for the 20 senders) keeps up would depend on the machine."""
    server, port = await start_server(programs, "--flood-burst-bytes", str(128 * 1024))
    pid = server.proc.pid
    stalled = []
    for i in range(100):
        stalled.append(await raw(port, f"s{i}", 10000 + i, rcvbuf=4096))
    reader = await raw(port, "reader", 9000)
    senders = [await raw(port, f"t{i}", 11000 + i) for i in range(20)]
    for conn in [reader, *senders]:
        while not (await conn.recv()).startswith(b"LIST:"):
            pass
    for conn in [reader, *senders]:  # each knows all 121 (its LIST, then JOINs)
        conn.send(b"LIST\r\n")
        while not (message := await conn.recv()).startswith(b"LIST:"):
            pass
        assert message.count(b":127.0.0.1:") == 121
    base = status_kb(pid, "VmRSS")
    expected = {f"t{i}": [big_broadcast(f"t{i}", j) for j in range(20)] for i in range(20)}
    drains = [asyncio.create_task(discard(sender)) for sender in senders]  # they read too
    for i, sender in enumerate(senders):
        sender.send(b"".join(expected[f"t{i}"]))

    got: dict[str, list[bytes]] = {nick: [] for nick in expected}
    async with asyncio.timeout(40):
        while sum(map(len, got.values())) < 400:
            message = await reader.recv()
            if message.startswith(b"BROADCAST:"):
                got[message.split(b":")[1].decode()].append(message)
            else:
                assert message.startswith(b"UPDATE:LEAVE:s"), message[:80]
    assert got == expected
    peak = status_kb(pid, "VmHWM")
    for drain in drains:
        drain.cancel()
    # What the limits allow: one send queue of batches held by the stalled readers,
    # the batch being made, and each sender's decoder; 100 private copies would be
    # 100 x 1 MiB at the least.
    bound_kb = (MIB + MIB // 4 + 20 * 2 * BIG) // 1024 + 16 * 1024  # + allocator slack
    assert peak - base <= bound_kb, f"peak {peak} kB, {peak - base} kB over the base {base} kB"
    reader.send(b"LIST\r\n")  # the non-readers are gone, the others all there
    while not (message := await reader.recv()).startswith(b"LIST:"):
        assert message.startswith(b"UPDATE:LEAVE:s"), message[:80]
    assert message.count(b":127.0.0.1:") == 21
    dropped = 0  # each with an ERROR queued behind what it did not read
    while dropped < 100:
        if "send queue over 1048576 bytes; you are not reading fast enough" in (
            await server.line("stderr")
        ):
            dropped += 1


@pytest.mark.usefixtures("small_kernel_buffers")
async def test_d17_a_list_flood_without_reading_holds_one_send_queue(
    start_server: object, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that sends LIST 200 times and never reads gets no copy queued past its
    send queue: it is dropped once the queue is full."""
    sendq = 64 * 1024
    server: ChatServer = await start_server(sendq_bytes=sendq)  # type: ignore[operator]
    members = []
    for i in range(200):  # a LIST of about 6 KB
        members.append(conn := await connect(server, f"m{i}"))
        conn.send(f"REGISTER:member-{i:04d}:127.0.0.1:{1000 + i}\r\n".encode())
    async with asyncio.timeout(10):
        while len(server.registry) < 200:
            await asyncio.sleep(0.01)
    held = 0  # the most the server held for the flooder, after each LIST it was owed
    queue = ChatServer._queue

    def watched(self: ChatServer, conn: _Connection, data: bytes) -> None:
        nonlocal held
        queue(self, conn, data)
        if conn.transport is not None:
            queued = sum(map(len, conn.out))
            held = max(held, queued + conn.transport.get_write_buffer_size())

    monkeypatch.setattr(ChatServer, "_queue", watched)
    flooder = await connect(server, "flooder", rcvbuf=4096, limit=1024)
    flooder.send(b"REGISTER:flooder:127.0.0.1:999\r\n" + b"LIST\r\n" * 200)
    async with asyncio.timeout(10):  # it reads nothing until the server has dropped it
        while not held or len(server.registry) > 200:
            await asyncio.sleep(0.01)
    messages = split_messages(await flooder.read_until_closed())
    list_size = len(server.registry.encoded_list())
    # Its send queue, the one LIST allowed on top, and the one that crossed the line.
    assert 0 < held <= sendq + 2 * list_size, f"{held} bytes held for the flooder"
    assert (
        messages[-1]
        == Error(
            f"dropped: send queue over {sendq} bytes; you are not reading fast enough"
        ).encode()
    )
    assert 1 < sum(m.startswith(b"LIST:") for m in messages) < 200


def test_d17_byte_flood_defaults_fit_in_the_send_queue() -> None:
    cfg = ServerConfig()
    assert cfg.flood_burst_bytes <= cfg.sendq_bytes // 2
    assert cfg.batch_bytes + cfg.max_message_bytes <= cfg.sendq_bytes // 2


async def idle_from(address: str, port: int) -> socket.socket:
    """A connection from ``address`` (of the loopback range) that never registers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((address, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return sock


async def test_d17_idle_unregistered_connections_lock_nobody_out(
    programs: list[Program],
) -> None:
    """2,000 connections from 127.0.0.2 that never register fill a server. A client from
    127.0.0.1, and then a new client from 127.0.0.2 itself, still register: each
    newcomer closes the oldest unregistered connection of the address with the most.
    (The same with 10,000, the default limit, takes half a minute of binding ports.)"""
    _net.raise_open_files_limit(2_000 + 256)
    _, port = await start_server(programs, "--max-clients", "2000")
    idle = [await idle_from("127.0.0.2", port) for _ in range(2_000)]
    try:
        alice = await raw(port, "alice", 5000)
        await alice.expect(b"LIST:alice:127.0.0.1:5000\r\n")
        reader, writer = await asyncio.open_connection(sock=await idle_from("127.0.0.2", port))
        bob = RawClient(reader, writer, "bob")
        bob.send(b"REGISTER:bob:127.0.0.2:5000\r\n")
        await bob.expect(b"LIST:alice:127.0.0.1:5000:bob:127.0.0.2:5000\r\n")
        await alice.expect(b"UPDATE:JOIN:bob:127.0.0.2:5000\r\n")
        # The two closed were the oldest idle ones, told why.
        full = "server is full: 2000 clients; closing the oldest connection that has not registered"
        loop = asyncio.get_running_loop()
        for sock in idle[:2]:
            async with asyncio.timeout(5):
                assert await loop.sock_recv(sock, 4096) == Error(full).encode()
        await bob.close()
        await alice.close()
    finally:
        for sock in idle:
            sock.close()


async def test_d9_joins_one_after_another_go_out_in_batches_not_one_write_each(
    start_server: object, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """300 clients join one after another. Each join used to cost a write to every
    participant (N joins, N squared writes); now UPDATEs wait a little for company
    (50 us per participant) and go out together, in order, nothing lost."""
    server: ChatServer = await start_server()  # type: ignore[operator]
    flushes = 0  # flushes that wrote a batch to every participant
    flush = ChatServer._flush

    def counted(self: ChatServer) -> None:
        nonlocal flushes
        flushes += bool(self._batch)
        flush(self)

    monkeypatch.setattr(ChatServer, "_flush", counted)
    clients = []
    for i in range(300):
        clients.append(client := await connect(server, f"c{i}"))
        client.send(f"REGISTER:c{i}:127.0.0.1:{2000 + i}\r\n".encode())
        assert (await client.recv()).startswith(b"LIST:")
    for i in range(1, 300):  # the first hears every join, in order
        await clients[0].expect(f"UPDATE:JOIN:c{i}:127.0.0.1:{2000 + i}\r\n".encode())
    assert flushes < 150, f"{flushes} flushes for 299 joins"  # one per join before
