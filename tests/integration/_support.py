"""Helpers for integration tests: waiting for client events, hand-driven raw peers and clients."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from p2pchat.client import ChatClient
from p2pchat.events import ClientEvent
from p2pchat.protocol import (
    LENGTH_HARD_LIMIT,
    NEED_DATA,
    Ack,
    Decoder,
    Init,
    Participant,
    Register,
    Role,
    decode_datagram,
)

E = TypeVar("E")
TIMEOUT = 2.0
READ_CHUNK = 1 << 16


async def wait_event(
    client: ChatClient,
    kind: type[E],
    where: Callable[[E], bool] = lambda _e: True,
    timeout: float = 5.0,
) -> E:
    """The next event of ``kind`` matching ``where``; other events are passed over."""
    async with asyncio.timeout(timeout):
        while True:
            event = await client.next_event()
            if isinstance(event, kind) and where(event):
                return event


async def collect(client: ChatClient, until: type[Any], timeout: float = 5.0) -> list[ClientEvent]:
    """Every event up to and including the first of type ``until``."""
    seen: list[ClientEvent] = []
    async with asyncio.timeout(timeout):
        while True:
            event = await client.next_event()
            seen.append(event)
            if isinstance(event, until):
                return seen


async def joined(port: int, nick: str, **kwargs: Any) -> ChatClient:
    client = ChatClient(nick, "127.0.0.1", port, **kwargs)
    await client.connect()
    return client


class UdpInbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Init | Ack, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.queue.put_nowait((decode_datagram(data), addr))


class RawPeer:
    """A participant driven by hand: raw TCP registration and a raw UDP socket.

    It lets a test see exactly which datagrams a real client sends, and send
    INIT/ACK datagrams of its own choosing.
    """

    def __init__(self, nick: str) -> None:
        self.nick = nick
        self.udp: asyncio.DatagramTransport
        self.inbox = UdpInbox()
        self.tcp: asyncio.StreamWriter | None = None
        self.participant: Participant

    async def bind_udp(self, ip: str = "127.0.0.1") -> None:
        """The UDP socket alone, e.g. to send an INIT before registering."""
        loop = asyncio.get_running_loop()
        self.udp, _ = await loop.create_datagram_endpoint(lambda: self.inbox, local_addr=(ip, 0))

    async def register(self, server_port: int, ip: str = "127.0.0.1") -> None:
        if not hasattr(self, "udp"):
            await self.bind_udp(ip)
        port = self.udp.get_extra_info("sockname")[1]
        self.participant = Participant(self.nick, ip, port)
        reader, self.tcp = await asyncio.open_connection("127.0.0.1", server_port)
        self.tcp.write(Register(self.participant).encode())
        await self.tcp.drain()
        async with asyncio.timeout(5):
            line = await reader.readline()
        assert line.startswith(b"LIST:"), line

    async def datagram(self, timeout: float = 3.0) -> tuple[Init | Ack, tuple[str, int]]:
        async with asyncio.timeout(timeout):
            return await self.inbox.queue.get()

    def send(self, message: Init | Ack, to: tuple[str, int]) -> None:
        self.udp.sendto(message.encode(), to)

    def close(self) -> None:
        self.udp.close()
        if self.tcp is not None:
            self.tcp.close()


async def listen(host: str = "127.0.0.1") -> tuple[asyncio.Server, asyncio.Queue[Any]]:
    """A TCP listener whose accepted (reader, writer) pairs arrive on a queue."""
    accepted: asyncio.Queue[Any] = asyncio.Queue()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put((reader, writer))

    server = await asyncio.start_server(on_connect, host, 0)
    return server, accepted


def loopback_v6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class RawClient:
    """One TCP connection to the server, spoken to in raw bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, name: str):
        self.reader = reader
        self.writer = writer
        self.name = name
        # Only used to find where each message ends; no limit gets in the way.
        self._decoder = Decoder(
            Role.CLIENT, max_message_bytes=LENGTH_HARD_LIMIT, max_line_bytes=LENGTH_HARD_LIMIT
        )
        self._raw = bytearray()  # the bytes the decoder holds, as received

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    async def recv(self, timeout: float = TIMEOUT) -> bytes:
        """The next whole message, exactly as the server sent it."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = self._decoder.next_event()
                    if event is not NEED_DATA:
                        n = len(self._raw) - self._decoder.buffered
                        message = bytes(self._raw[:n])
                        del self._raw[:n]
                        return message
                    data = await self.reader.read(READ_CHUNK)
                    if not data:
                        raise AssertionError(
                            f"{self.name}: connection closed while waiting for a message; "
                            f"partial: {bytes(self._raw)[:200]!r}"
                        )
                    self._raw += data
                    self._decoder.feed(data)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: no whole message within {timeout} s; "
                f"partial: {bytes(self._raw)[:200]!r}"
            ) from None

    async def expect(self, expected: bytes, timeout: float = TIMEOUT) -> None:
        """The next message is exactly ``expected``."""
        got = await self.recv(timeout)
        assert got == expected, f"{self.name}: expected {expected!r}, got {got!r}"

    async def expect_nothing(self, seconds: float) -> None:
        """Nothing arrives for ``seconds`` (only where silence is the point)."""
        assert not self._raw, f"{self.name}: unread bytes {bytes(self._raw)!r}"
        try:
            async with asyncio.timeout(seconds):
                data = await self.reader.read(READ_CHUNK)
        except TimeoutError:
            return
        if data:
            raise AssertionError(f"{self.name}: expected silence, got {data!r}")
        raise AssertionError(f"{self.name}: expected silence, the connection closed")

    async def expect_closed(self, timeout: float = TIMEOUT) -> None:
        """The server ends the connection, with no more bytes before the end."""
        assert not self._raw, f"{self.name}: unread bytes before the end {bytes(self._raw)!r}"
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(READ_CHUNK)
        except TimeoutError:
            raise AssertionError(f"{self.name}: still open after {timeout} s") from None
        except ConnectionResetError:
            return
        assert data == b"", f"{self.name}: expected the end, got {data!r}"

    async def read_until_closed(self, timeout: float = TIMEOUT) -> bytes:
        """Every byte left until the server ends the connection."""
        chunks = [bytes(self._raw)]
        self._raw.clear()
        async with asyncio.timeout(timeout):
            while True:
                try:
                    data = await self.reader.read(READ_CHUNK)
                except ConnectionResetError:
                    break
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks)

    def reset(self) -> None:
        """Ends the connection with a TCP reset (SO_LINGER 0, then abort)."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def split_messages(data: bytes) -> list[bytes]:
    """Splits bytes from the server into its messages, each exactly as sent."""
    decoder = Decoder(
        Role.CLIENT, max_message_bytes=LENGTH_HARD_LIMIT, max_line_bytes=LENGTH_HARD_LIMIT
    )
    decoder.feed(data)
    messages, at = [], 0
    while decoder.next_event() is not NEED_DATA:
        end = len(data) - decoder.buffered
        messages.append(data[at:end])
        at = end
    assert at == len(data), f"a partial message at the end: {data[at:][:200]!r}"
    return messages


Connect = Callable[..., Awaitable[RawClient]]


class FakeServer:
    """A hand-driven server for real clients: the test reads and writes raw bytes.

    Each client connection arrives on ``connections`` as a RawClient, so a
    test can send a LIST of its choosing, then UPDATEs, at its own pace.
    """

    def __init__(self) -> None:
        self.connections: asyncio.Queue[RawClient] = asyncio.Queue()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> int:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)
            await self.connections.put(RawClient(reader, writer, "fake server"))

        self._server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def accept(self, timeout: float = 5.0) -> RawClient:
        async with asyncio.timeout(timeout):
            return await self.connections.get()

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def register_with(
    fake: FakeServer, client: ChatClient, listing: Callable[[bytes], bytes]
) -> RawClient:
    """Connects ``client`` to ``fake``, which answers its REGISTER line with ``listing(line)``."""
    connecting = asyncio.ensure_future(client.connect())
    conn = await fake.accept()
    async with asyncio.timeout(5):
        register = await conn.reader.readline()
    conn.send(listing(register))
    await conn.drain()
    async with asyncio.timeout(5):
        await connecting
    return conn
