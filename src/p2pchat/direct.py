"""Direct chats over real sockets: the UDP INIT/ACK handshake and the TCP sessions after it.

The rules (who may ask, retransmission, crossing INITs, unsent texts) live in
``core.DirectCore``; this module only moves datagrams and bytes, keeps time,
and carries out the actions the core returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _net
from .core import (
    CLOSED_BY_YOU,
    ClientLimits,
    Connect,
    DirectAction,
    DirectCore,
    Emit,
    Listen,
    OpenSession,
    Release,
    SendDatagram,
    SetTimer,
    Settle,
    StopListening,
    Write,
    closed_by_peer,
)
from .errors import DirectChatError
from .events import ChatReceived, EventQueue
from .protocol import (
    LENGTH_HARD_LIMIT,
    NEED_DATA,
    Ack,
    Chat,
    Decoder,
    Init,
    NeedData,
    Participant,
    RemoteProtocolError,
    Role,
    decode_datagram,
    nick_key,
)
from .state import ChatState, Handshake

__all__ = ["DirectChatManager", "DirectSession"]

log = logging.getLogger("p2pchat.direct")

# Below this many unsent bytes a sender does not wait (asyncio's own high-water mark).
_DRAIN_ABOVE = 64 * 1024


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: DirectChatManager) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            message = decode_datagram(data)
        except RemoteProtocolError as error:
            log.debug("ignoring datagram from %s: %s", addr, error)
            return
        self._owner._datagram(message, addr[0], addr[1])

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP port unreachable for an INIT to a client that is gone:
        # the retransmission timer reports the failure.
        log.debug("UDP error: %s", exc)


class _Unfinished:
    """Bytes of unfinished CHAT frames held across every direct chat, against one limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0


class DirectSession:
    """An open direct chat: CHAT frames both ways on one TCP connection."""

    def __init__(
        self,
        peer: Participant,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        events: EventQueue,
        limits: ClientLimits,
        unfinished: _Unfinished,
    ) -> None:
        self.peer = peer
        self._events = events
        self._limits = limits
        self._unfinished = unfinished
        self._held = 0  # this chat's share of ``unfinished``
        self._out: list[bytes] = []  # frames written since the last flush
        self._out_bytes = 0
        self._flush_scheduled = False
        self._reader = reader
        self._writer = writer
        # Accept what any peer may send; we send at most our own limit.
        self._decoder = Decoder(Role.PEER, max_message_bytes=LENGTH_HARD_LIMIT)

    def write(self, data: bytes) -> None:
        """Queues a frame; frames go out together once per loop iteration, or at once
        when 64 KiB have piled up (a sender that never yields stays bounded)."""
        self._out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= _DRAIN_ABOVE:
            self._flush()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out:
            self._writer.write(b"".join(self._out))
            self._out.clear()
            self._out_bytes = 0

    async def drain(self) -> None:
        """Waits while the peer is behind; raises TimeoutError if it takes nothing for too long."""
        if self._writer.transport.get_write_buffer_size() < _DRAIN_ABOVE:
            return  # the usual case: no wait, so no timer to set up per message
        async with asyncio.timeout(self._limits.stall_timeout):
            await self._writer.drain()

    def close(self) -> None:
        self._flush()
        self._writer.close()

    async def closed(self) -> None:
        """Waits until what was written has gone out and the connection is closed."""
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    async def run(self) -> str:
        """Reads CHAT frames into the user's events until the connection ends; returns
        why it ended. A user far behind holds reading back, as for the server; a peer
        that starts a frame has ``frame_timeout`` of our reading time to finish it."""
        try:
            return await self._read()
        except (ConnectionError, OSError) as error:
            return f"connection to {self.peer.nick} lost: {error}"
        finally:
            self._hold(0)
            self._writer.close()

    async def _read(self) -> str:
        events, decoder, nick = self._events, self._decoder, self.peer.nick
        loop = asyncio.get_running_loop()
        left: float | None = None  # seconds the peer has to finish the frame it started
        while True:
            finished = False
            while (event := self._next()) is not NEED_DATA:
                if isinstance(event, RemoteProtocolError):
                    if event.fatal:
                        return f"{nick} sent garbage: {event}"
                    continue
                if not events.has_room:
                    await events.room()
                events.put(ChatReceived(nick, event.text))
                finished = True
            self._hold(decoder.buffered)
            if self._unfinished.held > self._unfinished.limit:
                return (
                    "unfinished messages in direct chats would hold over "
                    f"{self._unfinished.limit} bytes"
                )
            if not decoder.buffered:
                left = None
            elif finished or left is None:
                left = self._limits.frame_timeout
            if not events.has_room:
                await events.room()  # our wait, not the peer's: not counted in ``left``
            began = loop.time()
            try:
                async with asyncio.timeout(left):
                    data = await self._reader.read(_net.READ_CHUNK)
            except TimeoutError:
                return f"{nick} did not finish a message in {self._limits.frame_timeout:g} s"
            if left is not None:
                left -= loop.time() - began
            if not data:
                return closed_by_peer(nick)
            decoder.feed(data)

    def _next(self) -> Chat | RemoteProtocolError | NeedData:
        """The next whole CHAT, a decoding error in its place, or NEED_DATA."""
        try:
            event = self._decoder.next_event()
        except RemoteProtocolError as error:
            log.warning("bad data from %s: %s", self.peer.nick, error)
            return error
        if event is NEED_DATA or isinstance(event, Chat):
            return event
        # A PEER decoder makes nothing else; should it ever, skip it, loudly.
        log.warning("unexpected message from %s: %r", self.peer.nick, event)
        return RemoteProtocolError(f"unexpected {type(event).__name__}")

    def _hold(self, n: int) -> None:
        """This chat now holds ``n`` bytes of an unfinished frame."""
        self._unfinished.held += n - self._held
        self._held = n


@dataclass(eq=False)
class _Link:
    """The I/O that belongs to one handshake."""

    listener: asyncio.Server | None = None
    timer: asyncio.TimerHandle | None = None
    session: DirectSession | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class DirectChatManager:
    """Opens, carries and closes the direct chats of one registered client: the sockets
    and timers around ``DirectCore``, which decides. Built without an event loop; the
    loop is taken when the UDP socket is attached (``ChatClient.connect``)."""

    def __init__(self, core: DirectCore, events: EventQueue) -> None:
        self._core = core
        self._events = events
        self._limits = limits = core.limits
        self._bind_ip: str | None = None  # None when our registered IP is not one of ours
        self._listen_host = "0.0.0.0"  # where listeners bind: our IP, or a wildcard of its family
        self._unfinished = _Unfinished(limits.max_unfinished_bytes)
        self._links: dict[Handshake, _Link] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}  # by peer nick_key
        self._udp: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- setup -----------------------------------------------------------------------

    def attach_udp(
        self, transport: asyncio.DatagramTransport, bind_ip: str | None, listen_host: str
    ) -> None:
        """Starts using the registered UDP socket; ``bind_ip`` is where TCP sockets bind too
        (None when the registered address is not one of ours), ``listen_host`` where
        listeners for direct chats bind."""
        self._loop = asyncio.get_running_loop()
        self._udp = transport
        self._bind_ip = bind_ip
        self._listen_host = listen_host
        self._core.ready = True

    def udp_protocol(self) -> asyncio.DatagramProtocol:
        return _Udp(self)

    @property
    def now(self) -> float:
        return self._loop.time() if self._loop is not None else 0.0

    # -- public API --------------------------------------------------------------

    def state(self, nick: str) -> ChatState | None:
        """The chat with ``nick``: pending or open, or None when there is none."""
        hs = self._core.get(nick)
        return hs.state if hs is not None else None

    async def open(self, nick: str) -> None:
        """Opens a direct chat (or reuses the open one); raises DirectChatError on failure."""
        actions = self._core.request(nick, self.now)
        waiter = self._wait_for(nick_key(nick))
        self.apply(actions)
        await waiter

    def start(self, nick: str) -> None:
        """Opens a chat without waiting for it; raises DirectChatError only for a bad request."""
        self.apply(self._core.request(nick, self.now))

    async def send(self, nick: str, text: str) -> None:
        """Sends a direct message, opening the chat first if needed (the text waits for it)."""
        actions = self._core.send(nick, text, self.now)
        self.apply(actions)
        for action in actions:
            if isinstance(action, Write):
                await self._drain(action.chat)

    async def wait_pending(self) -> None:
        """Waits until no chat is still being opened (each has opened or failed)."""
        while pending := self._core.pending_peers():
            waiter = asyncio.get_running_loop().create_future()
            for key in pending:
                self._waiters.setdefault(key, []).append(waiter)
            with contextlib.suppress(DirectChatError):
                await waiter

    def close_chat(self, nick: str, reason: str = CLOSED_BY_YOU) -> bool:
        actions = self._core.close_chat(nick, reason, self.now)
        if actions is None:
            return False
        self.apply(actions)
        return True

    async def close(self, timeout: float = 2.0) -> None:
        """Ends every chat; waits (up to ``timeout``) for what was sent to leave."""
        sessions = [link.session for link in self._links.values() if link.session is not None]
        self.apply(self._core.shutdown(self.now))
        self.detach_udp()
        if sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.closed() for s in sessions)), timeout)

    def detach_udp(self) -> None:
        self._core.ready = False
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    # -- carrying out the core's actions ---------------------------------------------------

    def apply(self, actions: Sequence[DirectAction]) -> None:
        for action in actions:
            match action:
                case Emit(event=event):
                    self._events.put(event)
                case SendDatagram(data=data, to=to):
                    if self._udp is not None:
                        self._udp.sendto(data, to)
                case SetTimer(chat=hs, at=at):
                    self._set_timer(hs, at)
                case Listen(chat=hs):
                    link = self._links[hs] = _Link()
                    self._spawn(link, self._listen(hs, link))
                case Connect(chat=hs, ip=ip, port=port):
                    link = self._links.setdefault(hs, _Link())
                    self._spawn(link, self._connect(hs, link, ip, port))
                case StopListening(chat=hs):
                    listening = self._links.get(hs)
                    if listening is not None and listening.listener is not None:
                        listening.listener.close()
                case OpenSession():
                    pass  # taken by the coroutine that made the connection
                case Write(chat=hs, frame=frame):
                    session = self._session(hs)
                    if session is not None:
                        session.write(frame)
                case Release(chat=hs):
                    self._release(hs)
                case Settle(peer=key, error=error):
                    self._settle(key, error)

    def _set_timer(self, hs: Handshake, at: float | None) -> None:
        link = self._links.get(hs)
        if link is None:
            if at is None or not hs.live:
                return
            link = self._links[hs] = _Link()
        if link.timer is not None:
            link.timer.cancel()
        link.timer = None
        if at is not None:
            assert self._loop is not None
            link.timer = self._loop.call_at(at, self._tick, hs)

    def _tick(self, hs: Handshake) -> None:
        link = self._links.get(hs)
        if link is not None:
            link.timer = None
        self.apply(self._core.timer(hs, self.now))

    def _release(self, hs: Handshake) -> None:
        link = self._links.pop(hs, None)
        if link is None:
            return
        if link.timer is not None:
            link.timer.cancel()
        if link.listener is not None:
            link.listener.close()
        if link.session is not None:
            link.session.close()
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()

    def _wait_for(self, key: str) -> asyncio.Future[None]:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(key, []).append(waiter)
        return waiter

    def _settle(self, key: str, error: str | None) -> None:
        for waiter in self._waiters.pop(key, []):
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(DirectChatError(error))

    def _session(self, hs: Handshake) -> DirectSession | None:
        link = self._links.get(hs)
        return link.session if link is not None else None

    async def _drain(self, hs: Handshake) -> None:
        session = self._session(hs)
        if session is None:
            return
        try:
            await session.drain()
        except TimeoutError:
            reason, actions = self._core.stalled(hs, self.now)
            self.apply(actions)
            raise DirectChatError(f"direct chat with {hs.peer.nick} closed: {reason}") from None
        except ConnectionError as error:
            raise DirectChatError(f"direct chat with {hs.peer.nick} lost: {error}") from None

    # -- the network ------------------------------------------------------------------

    def _datagram(self, message: Init | Ack, ip: str, port: int) -> None:
        has_room = self._events.has_room
        self.apply(self._core.datagram(message, ip, port, self.now, has_room=has_room))

    async def _listen(self, hs: Handshake, link: _Link) -> None:
        try:
            # Not serving yet: start_server waits once more after it starts serving, and
            # the chat ending there (its task cancelled) would leave a listener nobody closes.
            listener = await asyncio.start_server(
                lambda r, w: self._accepted(hs, link, r, w),
                host=self._listen_host,
                port=0,
                start_serving=False,
            )
        except OSError as error:
            self.apply(self._core.listen_failed(hs, str(error), self.now))
            return
        link.listener = listener  # from here, the chat ending closes it (_release)
        port = listener.sockets[0].getsockname()[1]
        if self._links.get(hs) is not link:  # the chat ended while the listener opened
            listener.close()
        else:
            await listener.start_serving()
        self.apply(self._core.listening(hs, port, self.now))

    async def _accepted(
        self, hs: Handshake, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peername = writer.get_extra_info("peername")
        actions = self._core.connection(hs, peername[0] if peername else "", self.now)
        if not _opens(actions):
            log.info("refusing direct connection from %s for %s", peername, hs.peer.nick)
            writer.close()
            return
        await self._run_session(hs, link, reader, writer, actions)

    async def _connect(self, hs: Handshake, link: _Link, ip: str, tcp_port: int) -> None:
        local = (self._bind_ip, 0) if self._bind_ip else None
        try:  # the handshake's timer gives up on a connection that takes too long
            reader, writer = await asyncio.open_connection(ip, tcp_port, local_addr=local)
        except OSError as error:
            self.apply(self._core.connect_failed(hs, str(error), self.now))
            return
        actions = self._core.connected(hs, self.now)
        if not _opens(actions):
            writer.close()
            return
        await self._run_session(hs, link, reader, writer, actions)

    async def _run_session(
        self,
        hs: Handshake,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        actions: list[DirectAction],
    ) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            _net.set_keepalive(sock, *_net.KEEPALIVE)
        session = link.session = DirectSession(
            hs.peer, reader, writer, self._events, self._limits, self._unfinished
        )
        for action in actions:
            if isinstance(action, OpenSession):
                for frame in action.frames:
                    session.write(frame)
        reason = "the chat failed"
        try:
            self.apply(actions)
            reason = await session.run()
        finally:  # however the session ends, the chat ends with it
            self.apply(self._core.session_ended(hs, reason, self.now))

    def _spawn(self, link: _Link, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        link.tasks.add(task)
        task.add_done_callback(link.tasks.discard)
        task.add_done_callback(_log_crash)


def _opens(actions: list[DirectAction]) -> bool:
    return any(isinstance(action, OpenSession) for action in actions)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("direct chat task failed", exc_info=task.exception())
