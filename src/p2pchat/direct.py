"""Direct chats over real sockets: the UDP INIT/ACK handshake and the TCP sessions after it.

The rules (who may ask, retransmission, crossing INITs) live in ``state``;
this module only moves datagrams and bytes and reports what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import _net
from .events import ChatClosed, ChatFailed, ChatOpened, ChatReceived, EventQueue
from .protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    LENGTH_HARD_LIMIT,
    NEED_DATA,
    Ack,
    Chat,
    Decoder,
    Init,
    LocalProtocolError,
    NeedData,
    Participant,
    RemoteProtocolError,
    Role,
    canonical_ip,
    decode_datagram,
    nick_key,
)
from .state import (
    ChatEvent,
    ChatRole,
    ChatState,
    DirectChats,
    Handshake,
    InitVerdict,
    PeerTable,
    TimerAction,
    TooManyChats,
)

if TYPE_CHECKING:
    from .client import ClientLimits

log = logging.getLogger("p2pchat.direct")

# The reasons of a chat the user or the peer closed, as the events (and --json) carry them;
# frontend.closed_text says them in words.
CLOSED_BY_YOU = "closed"


def closed_by_peer(nick: str) -> str:
    return f"{nick} closed the chat"


# Below this many unsent bytes a sender does not wait (asyncio's own high-water mark).
_DRAIN_ABOVE = 64 * 1024


class DirectChatError(Exception):
    """A direct chat could not be opened or used; the text says why."""


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
    """Opens, carries and closes the direct chats of one registered client."""

    def __init__(
        self,
        nick: str,
        peers: PeerTable,
        events: EventQueue,
        refuses: Callable[[Participant], bool],
        *,
        limits: ClientLimits,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._me_key = nick_key(nick)
        self._peers = peers
        self._events = events
        self._refuses = refuses
        self._limits = limits
        self._bind_ip: str | None = None  # None when our registered IP is not one of ours
        self._listen_host = "0.0.0.0"  # where listeners bind: our IP, or a wildcard of its family
        self._max = max_message_bytes
        self._chats = DirectChats(nick, max_chats=limits.max_direct_chats)
        self._unfinished = _Unfinished(limits.max_unfinished_bytes)
        # Peers told their INIT was refused for the limit, while it is reached (once each).
        self._told_full: set[str] = set()
        self._links: dict[Handshake, _Link] = {}
        self._queued: dict[str, list[tuple[str, bytes]]] = {}  # (text, CHAT frame) by peer
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()

    # -- setup -----------------------------------------------------------------------

    def attach_udp(
        self, transport: asyncio.DatagramTransport, bind_ip: str | None, listen_host: str
    ) -> None:
        """Starts using the registered UDP socket; ``bind_ip`` is where TCP sockets bind too
        (None when the registered address is not one of ours), ``listen_host`` where
        listeners for direct chats bind."""
        self._udp = transport
        self._bind_ip = bind_ip
        self._listen_host = listen_host

    def udp_protocol(self) -> asyncio.DatagramProtocol:
        return _Udp(self)

    # -- public API --------------------------------------------------------------

    def state(self, nick: str) -> ChatState | None:
        """The chat with ``nick``: pending or open, or None when there is none."""
        hs = self._chats.get(nick)
        return hs.state if hs is not None and hs.live else None

    async def open(self, nick: str) -> None:
        """Opens a direct chat (or reuses the open one); raises DirectChatError on failure."""
        waiter = self._loop.create_future()
        self._waiters.setdefault(nick_key(nick), []).append(waiter)
        try:
            self._ensure(nick)
        except DirectChatError:
            self._waiters[nick_key(nick)].remove(waiter)
            raise
        await waiter

    def start(self, nick: str) -> None:
        """Opens a chat without waiting for it; raises DirectChatError only for a bad request."""
        self._ensure(nick)

    async def send(self, nick: str, text: str) -> None:
        """Sends a direct message, opening the chat first if needed (the text waits for it)."""
        try:
            data = Chat(text).encode()
        except LocalProtocolError as error:
            raise DirectChatError(str(error)) from None
        size = int(data[5 : data.index(b":", 5)])  # the Length just encoded
        if size > self._max:
            raise DirectChatError(f"message too long: {size} bytes, limit {self._max}")
        hs = self._chats.get(nick)
        if hs is not None and hs.state is ChatState.OPEN:
            session = self._links[hs].session
            assert session is not None
            session.write(data)
            try:
                await session.drain()
            except TimeoutError:
                reason = f"{hs.peer.nick} took nothing for {self._limits.stall_timeout:g} s"
                self._end(hs, reason, failed=False)
                raise DirectChatError(f"direct chat with {hs.peer.nick} closed: {reason}") from None
            except ConnectionError as error:
                raise DirectChatError(f"direct chat with {hs.peer.nick} lost: {error}") from None
            return
        self._queued.setdefault(nick_key(nick), []).append((text, data))
        try:
            self._ensure(nick)
        except DirectChatError:
            self._queued.pop(nick_key(nick), None)
            raise

    async def wait_pending(self) -> None:
        """Waits until no chat is still being opened (each has opened or failed)."""
        while True:
            pending = [hs for hs in self._chats if hs.pending]
            if not pending:
                return
            waiter = self._loop.create_future()
            for hs in pending:
                self._waiters.setdefault(hs.peer.key, []).append(waiter)
            with contextlib.suppress(DirectChatError):
                await waiter

    def close_chat(self, nick: str, reason: str = CLOSED_BY_YOU) -> bool:
        hs = self._chats.get(nick)
        if hs is None or not hs.live:
            return False
        self._end(hs, reason, failed=hs.pending)
        return True

    async def close(self, timeout: float = 2.0) -> None:
        """Ends every chat; waits (up to ``timeout``) for what was sent to leave."""
        sessions = [link.session for link in self._links.values() if link.session is not None]
        for hs in list(self._chats):
            if hs.live:
                self._end(hs, "client is leaving", failed=hs.pending, notify=False)
        self.detach_udp()
        if sessions:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*(s.closed() for s in sessions)), timeout)

    def detach_udp(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    def peer_left(self, participant: Participant) -> None:
        """A participant left the server: an open chat goes on (decision 23), a pending
        request ends, since the peer will come back, if at all, at another address.
        A request we answered and are connecting for goes on too: the peer may have
        taken our connection and written its messages before leaving (a /msg, then
        end of input), and its LEAVE can overtake our side of the connect. The
        connection settles it: it opens, is refused, or CONNECT_TIMEOUT runs out."""
        hs = self._chats.get(participant.nick)
        if hs is not None and hs.pending and hs.state is not ChatState.CONNECTING:
            self._end(hs, f"{participant.nick} left", failed=True)
        self._chats.peer_left(participant.nick)

    # -- opening -----------------------------------------------------------------------

    def _ensure(self, nick: str) -> None:
        hs = self._chats.get(nick)
        if hs is not None and hs.live:
            if hs.state is ChatState.OPEN:
                self._opened(hs)  # wake waiters; nothing new to open
            return
        if nick_key(nick) == self._me_key:
            raise DirectChatError("you cannot open a direct chat with yourself")
        peer = self._peers.get(nick)
        if peer is None:
            raise DirectChatError(f"no participant named '{nick}'")
        if self._udp is None:
            raise DirectChatError("not connected")
        try:
            hs = self._chats.start(peer, self._loop.time())
        except TooManyChats as error:
            raise DirectChatError(str(error)) from None
        link = self._links[hs] = _Link()
        self._spawn(link, self._invite(hs, link))

    async def _invite(self, hs: Handshake, link: _Link) -> None:
        try:
            link.listener = await asyncio.start_server(
                lambda r, w: self._accepted(hs, link, r, w), host=self._listen_host, port=0
            )
        except OSError as error:
            self._end(hs, f"cannot listen for {hs.peer.nick}: {error}", failed=True)
            return
        if not hs.pending:  # cancelled meanwhile
            link.listener.close()
            return
        self._send_init(hs, link)
        self._arm(hs, link)

    def _send_init(self, hs: Handshake, link: _Link) -> None:
        if self._udp is None or link.listener is None:
            return
        port = link.listener.sockets[0].getsockname()[1]
        self._udp.sendto(Init(hs.secret, port).encode(), hs.peer.udp_address)

    def _arm(self, hs: Handshake, link: _Link) -> None:
        if link.timer is not None:
            link.timer.cancel()
        when = hs.get_timer()
        link.timer = None if when is None else self._loop.call_at(when, self._tick, hs, link)

    def _tick(self, hs: Handshake, link: _Link) -> None:
        link.timer = None
        before = hs.state
        match hs.handle_timer(self._loop.time()):
            case TimerAction.RESEND_INIT:
                self._send_init(hs, link)
            case TimerAction.GIVE_UP:
                if before is ChatState.INVITING:
                    reason = f"{hs.peer.nick} did not answer"
                elif before is ChatState.ACKED:
                    reason = f"{hs.peer.nick} answered but did not connect"
                else:
                    reason = f"could not connect to {hs.peer.nick} in time"
                self._end(hs, reason, failed=True)
                return
            case TimerAction.NOTHING:
                pass
        self._arm(hs, link)

    async def _accepted(
        self, hs: Handshake, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peername = writer.get_extra_info("peername")
        ip = canonical_ip(peername[0]) if peername else ""
        # Decision 22: only the expected peer's address, only the first connection.
        if ip != hs.peer.ip or not hs.pending or link.session is not None:
            log.info("refusing direct connection from %s for %s", peername, hs.peer.nick)
            writer.close()
            return
        if link.listener is not None:
            link.listener.close()
        hs.handle(ChatEvent.CONNECTED, self._loop.time())
        await self._run_session(hs, link, reader, writer)

    def _datagram(self, message: Init | Ack, ip: str, port: int) -> None:
        match message:
            case Ack(secret=secret):
                hs = self._chats.by_secret(secret)
                if hs is None or hs.state not in (
                    ChatState.INVITING,
                    ChatState.ACKED,
                    ChatState.OPEN,
                ):
                    log.debug("ignoring ACK with an unknown secret from %s:%d", ip, port)
                    return
                hs.handle(ChatEvent.ACK, self._loop.time())
                self._arm(hs, self._links[hs])
            case Init():
                self._init(message, canonical_ip(ip), port)

    def _init(self, init: Init, ip: str, port: int) -> None:
        found = self._peers.by_address(ip, port)
        if not found:
            log.info("ignoring INIT from %s:%d: not a participant", ip, port)
            return
        if len(found) > 1:
            # Crediting either could show one's words as the other's (and answer the wrong one).
            log.warning(
                "ignoring INIT from %s:%d: registered by %s, so the sender is unknown",
                ip,
                port,
                " and ".join(p.nick for p in found),
            )
            return
        peer = found[0]
        if self._refuses(peer):
            log.info("refusing direct chat from %s", peer.nick)
            return
        if not self._events.has_room:  # a datagram cannot be slowed down: turn it away
            log.info("ignoring INIT from %s: the user is far behind on events", peer.nick)
            return
        verdict = self._chats.judge_init(peer, init.secret, self._loop.time())
        if verdict is InitVerdict.IGNORE:
            return
        if verdict is InitVerdict.FULL:
            log.info("refusing direct chat from %s: %s", peer.nick, self._chats.full_reason)
            if peer.key not in self._told_full:
                self._told_full.add(peer.key)
                self._events.put(ChatFailed(peer.nick, f"refused: {self._chats.full_reason}"))
            return
        assert self._udp is not None
        self._udp.sendto(Ack(init.secret).encode(), (ip, port))
        if verdict is InitVerdict.ACK_AGAIN:
            return
        hs, replaced = self._chats.accept(peer, init.secret, self._loop.time())
        if replaced is not None:
            # Crossed INITs we lost, or the peer restarted: the new request wins.
            old_open = replaced.state is ChatState.OPEN
            self._end(
                replaced,
                f"replaced by a new request from {peer.nick}",
                failed=False,
                notify=old_open,
                keep_waiting=True,
            )
        link = self._links[hs] = _Link()
        self._arm(hs, link)
        self._spawn(link, self._connect(hs, link, ip, init.tcp_port))

    async def _connect(self, hs: Handshake, link: _Link, ip: str, tcp_port: int) -> None:
        local = (self._bind_ip, 0) if self._bind_ip else None
        try:  # the handshake's timer gives up on a connection that takes too long
            reader, writer = await asyncio.open_connection(ip, tcp_port, local_addr=local)
        except OSError as error:
            if hs.pending:
                self._end(hs, f"could not connect to {hs.peer.nick}: {error}", failed=True)
            return
        if not hs.pending:
            writer.close()
            return
        hs.handle(ChatEvent.CONNECTED, self._loop.time())
        await self._run_session(hs, link, reader, writer)

    # -- open and ended chats ------------------------------------------------------------

    async def _run_session(
        self, hs: Handshake, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if link.timer is not None:
            link.timer.cancel()
            link.timer = None
        sock = writer.get_extra_info("socket")
        if sock is not None:
            _net.set_keepalive(sock, *_net.KEEPALIVE)
        session = link.session = DirectSession(
            hs.peer, reader, writer, self._events, self._limits, self._unfinished
        )
        peer = hs.peer.nick
        reason = "the chat failed"
        try:
            self._events.put(ChatOpened(peer, hs.role is ChatRole.INITIATOR))
            for _text, data in self._queued.pop(hs.peer.key, []):
                session.write(data)
            self._opened(hs)
            reason = await session.run()
        finally:  # however the session ends, the chat ends with it
            if hs.state is ChatState.OPEN:
                self._end(hs, reason, failed=False)

    def _opened(self, hs: Handshake) -> None:
        for waiter in self._waiters.pop(hs.peer.key, []):
            if not waiter.done():
                waiter.set_result(None)

    def _end(
        self,
        hs: Handshake,
        reason: str,
        *,
        failed: bool,
        notify: bool = True,
        keep_waiting: bool = False,
    ) -> None:
        """Ends a handshake or chat: frees its sockets, tells the user, wakes waiters."""
        was_open = hs.state is ChatState.OPEN
        if hs.pending or was_open:
            hs.handle(ChatEvent.CLOSE, self._loop.time())
        link = self._links.pop(hs, None)
        if link is not None:
            if link.timer is not None:
                link.timer.cancel()
            if link.listener is not None:
                link.listener.close()
            if link.session is not None:
                link.session.close()
            for task in link.tasks:
                if task is not asyncio.current_task():
                    task.cancel()
        self._chats.forget(hs)
        if not self._chats.full:
            self._told_full.clear()
        if keep_waiting:  # a new handshake with the peer takes over the queue and waiters
            if notify and was_open:
                self._events.put(ChatClosed(hs.peer.nick, reason))
            return
        if failed or not was_open:
            unsent = tuple(text for text, _ in self._queued.pop(hs.peer.key, []))
            if notify:
                self._events.put(ChatFailed(hs.peer.nick, reason, unsent))
            error = DirectChatError(reason)
            for waiter in self._waiters.pop(hs.peer.key, []):
                if not waiter.done():
                    waiter.set_exception(error)
        elif notify:
            self._events.put(ChatClosed(hs.peer.nick, reason))

    def _spawn(self, link: _Link, coro: object) -> None:
        task: asyncio.Task[None] = self._loop.create_task(coro)  # type: ignore[arg-type]
        link.tasks.add(task)
        task.add_done_callback(link.tasks.discard)
        task.add_done_callback(_log_crash)


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("direct chat task failed", exc_info=task.exception())
