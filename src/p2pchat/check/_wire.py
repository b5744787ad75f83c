"""A raw TCP connection for the checks: exact bytes out, and each message in with its bytes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ..protocol import (
    LENGTH_HARD_LIMIT,
    MAX_LIST_LINE_BYTES,
    NEED_DATA,
    Decoder,
    Error,
    Message,
    ParticipantList,
    RemoteProtocolError,
    Role,
)
from ._core import Failed

SHOWN = 120  # bytes of a peer's message quoted in a report


def show(raw: bytes) -> str:
    """Bytes quoted for a report: text as text, anything unprintable or not UTF-8 escaped."""
    text = repr(raw[:SHOWN].decode("utf-8", "backslashreplace"))
    return text + (f" (+{len(raw) - SHOWN} bytes)" if len(raw) > SHOWN else "")


@dataclass(frozen=True, slots=True)
class Received:
    """One message as it came: its bytes, and what they decode to (or why they do not)."""

    raw: bytes
    message: Message | None
    problem: str | None = None

    def __str__(self) -> str:
        return show(self.raw) if self.problem is None else f"{show(self.raw)} ({self.problem})"


def is_error(r: Received) -> bool:
    return isinstance(r.message, Error)


def is_list(r: Received) -> bool:
    return isinstance(r.message, ParticipantList)


def listing(received: list[Received]) -> str:
    if not received:
        return "nothing"
    shown = ", ".join(str(r) for r in received[:4])
    return shown + (f" and {len(received) - 4} more" if len(received) > 4 else "")


def _address(writer: asyncio.StreamWriter, which: str) -> tuple[str, int]:
    """The host and port of a TCP socket's "sockname" or "peername" (IPv6 adds two more items)."""
    address: tuple[str, int] = writer.get_extra_info(which)[:2]  # get_extra_info is typed Any
    return address


class Wire:
    """One connection to the implementation under test."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        label: str,
        role: Role,
        patience: float = 5.0,
    ) -> None:
        self.label = label
        self.patience = patience  # seconds to wait for an answer before calling it missing
        self._reader = reader
        self._writer = writer
        limits = {"max_message_bytes": LENGTH_HARD_LIMIT}
        if role is Role.CLIENT:
            limits["max_line_bytes"] = MAX_LIST_LINE_BYTES
        self._decoder = Decoder(role, **limits)
        self._raw = bytearray()  # the bytes the decoder holds, kept to quote them exactly
        self.eof = False  # the peer closed (or reset) the connection
        self.garbled = False  # what came can no longer be framed into messages

    @property
    def local_address(self) -> tuple[str, int]:
        return _address(self._writer, "sockname")

    @property
    def peer_address(self) -> tuple[str, int]:
        return _address(self._writer, "peername")

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        async with asyncio.timeout(5):
            await self._writer.drain()

    def send_nowait(self, data: bytes) -> None:
        self._writer.write(data)

    async def receive(self, timeout: float) -> Received | None:
        """The next message, or None once the peer has closed; TimeoutError if none comes.
        After bytes that cannot be framed, the rest is read and dropped until the close."""
        async with asyncio.timeout(timeout):
            while True:
                got = None if self.garbled else self._next()
                if got is not None:
                    return got
                if self.eof:
                    return None
                try:
                    data = await self._reader.read(1 << 16)
                except ConnectionError:
                    data = b""
                if not data:
                    self.eof = True
                elif not self.garbled:
                    self._raw += data
                    self._decoder.feed(data)

    def _next(self) -> Received | None:
        try:
            event = self._decoder.next_event()
        except RemoteProtocolError as error:
            used = len(self._raw) - self._decoder.buffered if not error.fatal else len(self._raw)
            raw = bytes(self._raw[:used])
            del self._raw[:used]
            self.garbled = error.fatal
            return Received(raw, None, str(error))
        if event is NEED_DATA:
            return None
        used = len(self._raw) - self._decoder.buffered
        raw = bytes(self._raw[:used])
        del self._raw[:used]
        return Received(raw, event)

    async def expect(
        self, what: str, match: Callable[[Received], bool], timeout: float | None = None
    ) -> tuple[Received, list[Received]]:
        """Reads until a message ``match``es within ``timeout`` (the patience if not given);
        returns it and what came before it (the first hundred)."""
        timeout = self.patience if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        before: list[Received] = []
        while True:
            try:
                got = await self.receive(max(deadline - loop.time(), 0.001))
            except TimeoutError:
                raise Failed(what, f"{listing(before)} within {timeout:g} s") from None
            if got is None:
                end = "undecodable bytes" if self.garbled else "the connection closed"
                raise Failed(what, f"{listing(before)}, then {end}")
            if match(got):
                return got, before
            if len(before) < 100:
                before.append(got)

    async def barrier(self, timeout: float | None = None) -> list[Received]:
        """Everything the server sent before its answer to a LIST request.

        A server handles one connection's messages in order, so whatever it owed
        us before the request comes before the answer.
        """
        await self.send(b"LIST\r\n")
        _, before = await self.expect("a LIST in answer to LIST", is_list, timeout)
        return before

    async def closed(self, timeout: float) -> tuple[bool, list[Received]]:
        """Reads until the peer closes (True) or ``timeout`` passes (False); and what came."""
        seen: list[Received] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                got = await self.receive(max(deadline - loop.time(), 0.001))
            except TimeoutError:
                return False, seen
            if got is None:
                return True, seen
            seen.append(got)

    def reset(self) -> None:
        """Closes with an RST instead of a FIN."""
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(1):
                await self._writer.wait_closed()


async def connect(
    host: str, port: int, label: str, role: Role, timeout: float = 5.0, patience: float = 5.0
) -> Wire:
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 16)
    except TimeoutError:
        raise Failed(f"a connection to {host}:{port}", f"none within {timeout:g} s") from None
    except OSError as error:
        raise Failed(f"a connection to {host}:{port}", str(error)) from None
    return Wire(reader, writer, label, role, patience)
