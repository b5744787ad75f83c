"""Helpers for integration tests: waiting for client events, and a hand-driven raw peer."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from p2pchat.client import ChatClient
from p2pchat.events import ClientEvent
from p2pchat.protocol import Ack, Init, Participant, Register, decode_datagram

E = TypeVar("E")


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

    async def register(self, server_port: int, ip: str = "127.0.0.1") -> None:
        loop = asyncio.get_running_loop()
        self.udp, _ = await loop.create_datagram_endpoint(lambda: self.inbox, local_addr=(ip, 0))
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
