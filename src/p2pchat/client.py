"""The client library: register with a server, follow the participants, broadcast, chat directly.

``ChatClient`` is what UIs and bots use; the ``p2pchat`` command lives in ``cli``.

    async with ChatClient("alice", "127.0.0.1", 7777) as client:
        await client.broadcast("hello")
        async for event in client.events():
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

from . import _net
from .direct import DirectChatError, DirectChatManager
from .events import (
    BroadcastReceived,
    ClientEvent,
    Disconnected,
    EventQueue,
    Notice,
    ParticipantsListed,
    PeerJoined,
    PeerLeft,
    Registered,
    ServerError,
)
from .protocol import (
    LENGTH_HARD_LIMIT,
    MAX_LIST_LINE_BYTES,
    Action,
    Broadcast,
    Decoder,
    Error,
    ListRequest,
    Participant,
    ParticipantList,
    Register,
    RemoteProtocolError,
    Role,
    Update,
    canonical_ip,
    check_nick,
    is_unspecified,
    nick_key,
)
from .state import ChatState, PeerTable, PeerTableFull

__all__ = [
    "ChatClient",
    "ClientLimits",
    "ConnectError",
    "DirectChatError",
    "NotConnectedError",
    "RegistrationError",
]

log = logging.getLogger("p2pchat.client")

DEFAULT_SERVER = ("127.0.0.1", 7777)
SERVER_TIMEOUT = 10.0  # to connect to the server, and for it to answer REGISTER
# The n-th attempt waits a random time up to the n-th cap (then up to 30 s each time):
# after a server restart its clients come back spread out, not all at one instant.
RECONNECT_CAPS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """The most a client holds, whatever its server and peers send. Past each limit the
    offending message or chat is refused with a reason the user sees; the client goes on."""

    # Other participants held: the server's --max-clients default. A JOIN past it is
    # not taken (no event, no direct chat), and the user is told once per connection.
    max_participants: int = 10_000
    # Direct chats pending or open at once. Each holds a socket (a listener while
    # pending) and up to one unfinished message: 256 keep a client's descriptors
    # well under the usual limit of 1024, and are more than anyone talks in at once.
    # Past it, an INIT gets no ACK (chat_failed tells the user, once per peer while
    # full) and asking for one more chat is refused.
    max_direct_chats: int = 256
    # Bytes of unfinished CHAT frames held across all direct chats. A chat holds at
    # most one, of up to 1 MiB (the protocol's hard limit: what any peer may send);
    # 16 of the largest may be under way at once, instead of 256 MiB held for 256
    # peers that stall. The chat whose bytes would go past is closed, with the reason.
    max_unfinished_bytes: int = 16 << 20
    # Seconds a peer has to finish a CHAT frame it started; then the chat is closed.
    # 1 MiB in 10 s is 100 KB/s, slower than any link a chat runs on. Time the client
    # spends waiting for its user to take events does not count.
    frame_timeout: float = 10.0
    # Seconds a peer may take none of what we send before the chat is closed.
    stall_timeout: float = 10.0
    # Events the user has not taken yet, counted and in bytes (about what they hold in
    # memory). Past either, the client stops reading its server and its direct chats
    # until the user has taken half: back-pressure rather than loss (EventQueue).
    # 10,000 is a long way behind for a UI; 64 MiB holds 64 of the largest
    # broadcasts a server may forward, or a thousand of the usual 64 KiB ones.
    max_unread_events: int = 10_000
    max_unread_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


def reconnect_delay(attempt: int, rng: random.Random) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 first): full jitter,
    uniform from 0 up to that attempt's cap."""
    return RECONNECT_CAPS[min(attempt, len(RECONNECT_CAPS) - 1)] * rng.random()


def _server_decoder() -> Decoder:
    """What a client accepts from its server: any LIST a full server sends (decision 10),
    and any message the server's own limit lets through, up to the protocol's hard limit."""
    return Decoder(
        Role.CLIENT, max_message_bytes=LENGTH_HARD_LIMIT, max_line_bytes=MAX_LIST_LINE_BYTES
    )


class ConnectError(Exception):
    """The server could not be reached."""


class RegistrationError(Exception):
    """The server refused our REGISTER; the text is its ERROR."""


class NotConnectedError(Exception):
    """The server connection is down (a reconnect may be under way)."""


class ChatClient:
    """One participant: a server connection, a UDP socket for handshakes, and direct chats."""

    def __init__(
        self,
        nick: str,
        host: str = DEFAULT_SERVER[0],
        port: int = DEFAULT_SERVER[1],
        *,
        ip: str | None = None,
        udp_port: int = 0,
        accept_direct: bool = True,
        reconnect: bool = True,
        rng: random.Random | None = None,
        limits: ClientLimits | None = None,
    ) -> None:
        """``rng`` draws the reconnect delays (a seeded one makes them repeatable)."""
        self.limits = limits or ClientLimits()
        self.nick = check_nick(nick)
        self._key = nick_key(nick)
        self.host = host
        self.port = port
        self._ip = canonical_ip(ip) if ip else None
        self._udp_port = udp_port
        self.accept_direct = accept_direct
        self._reconnect = reconnect
        self._rng = rng or random.Random()
        self._peers = PeerTable(nick, limit=self.limits.max_participants)
        self._told_full = False  # the user knows the participant table is full
        self._ignored: set[str] = set()
        self._events = EventQueue(self.limits.max_unread_events, self.limits.max_unread_bytes)
        self._me: Participant | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = _server_decoder()
        self._reader_task: asyncio.Task[None] | None = None
        self._closing = False
        self._direct = DirectChatManager(
            nick, self._peers, self._events, self._refuses, limits=self.limits
        )

    # -- lifecycle ------------------------------------------------------------------

    async def connect(self) -> Participant:
        """Connects and registers; raises ConnectError or RegistrationError."""
        reader, writer, me = await self._establish()
        self._start_reading(reader, writer)
        return me

    async def close(self) -> None:
        """Leaves: closes direct chats, the UDP socket and the server connection."""
        self._closing = True
        await self._direct.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None

    async def __aenter__(self) -> ChatClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- what the user sees --------------------------------------------------------

    @property
    def me(self) -> Participant | None:
        """Ourselves as registered, or None before the first registration."""
        return self._me

    @property
    def connected(self) -> bool:
        return self._writer is not None

    @property
    def participants(self) -> tuple[Participant, ...]:
        """Everyone registered, ourselves first."""
        others = tuple(self._peers)
        return (self._me, *others) if self._me is not None else others

    @property
    def unread_events(self) -> int:
        """Events waiting for the user."""
        return len(self._events)

    @property
    def unread_bytes(self) -> int:
        """About how much memory the events waiting for the user hold."""
        return self._events.bytes

    async def next_event(self) -> ClientEvent:
        return await self._events.get()

    def poll_event(self) -> ClientEvent | None:
        """The next event if one is waiting, else None."""
        return self._events.poll()

    async def events(self) -> AsyncIterator[ClientEvent]:
        while True:
            yield await self._events.get()

    # -- group chat ------------------------------------------------------------------

    async def broadcast(self, text: str) -> None:
        await self._send(Broadcast(self.nick, text).encode())

    async def refresh_participants(self) -> None:
        """Asks the server for a fresh LIST; a ParticipantsListed event follows."""
        await self._send(ListRequest().encode())

    def ignore(self, nick: str) -> None:
        """Hides ``nick``'s broadcasts and refuses direct chats from them."""
        self._ignored.add(nick_key(nick))

    def unignore(self, nick: str) -> None:
        self._ignored.discard(nick_key(nick))

    @property
    def ignored(self) -> frozenset[str]:
        return frozenset(self._ignored)

    # -- direct chats ------------------------------------------------------------------

    async def open_chat(self, nick: str) -> None:
        """Opens a direct chat with ``nick`` (or reuses the open one); DirectChatError if it fails."""
        await self._direct.open(nick)

    def start_chat(self, nick: str) -> None:
        """Starts opening a direct chat without waiting; a ChatOpened or ChatFailed event follows."""
        self._direct.start(nick)

    async def send_chat(self, nick: str, text: str) -> None:
        """Sends a direct message; if no chat is open one is opened and the text waits for it."""
        await self._direct.send(nick, text)

    def close_chat(self, nick: str) -> bool:
        """Closes the direct chat with ``nick``; False if there was none."""
        return self._direct.close_chat(nick)

    def chat_state(self, nick: str) -> ChatState | None:
        """The direct chat with ``nick`` (INVITING, ACKED, CONNECTING or OPEN), or None."""
        return self._direct.state(nick)

    async def wait_pending_chats(self) -> None:
        """Waits until every direct chat being opened has opened or failed."""
        await self._direct.wait_pending()

    # -- internals: connection and registration ------------------------------------

    def _refuses(self, peer: Participant) -> bool:
        return not self.accept_direct or peer.key in self._ignored

    async def _send(self, data: bytes) -> None:
        writer = self._writer
        if writer is None:
            raise NotConnectedError("not connected to the server")
        writer.write(data)
        await writer.drain()

    async def _establish(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Participant]:
        try:
            async with asyncio.timeout(SERVER_TIMEOUT):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as error:
            why = (error.strerror or str(error)) if isinstance(error, OSError) else "timed out"
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {why}") from None
        try:
            me = self._me or await self._bind_udp(
                canonical_ip(writer.get_extra_info("sockname")[0])
            )
            writer.write(Register(me).encode())
            await writer.drain()
            decoder = _server_decoder()
            async with asyncio.timeout(SERVER_TIMEOUT):
                listing = await self._await_registration(reader, decoder)
        except (OSError, TimeoutError, RegistrationError, ConnectError) as error:
            writer.close()
            if self._me is None:  # a first attempt binds the UDP socket: free it for the next
                self._direct.detach_udp()
            if isinstance(error, RegistrationError | ConnectError):
                raise
            raise ConnectError(
                f"registration failed: {error or 'no answer from the server'}"
            ) from None
        self._me = me
        self._writer = writer
        self._decoder = decoder
        self._told_full = False
        self._events.put(Registered(me))
        self._take_list(listing.participants)
        return reader, writer, me

    async def _await_registration(
        self, reader: asyncio.StreamReader, decoder: Decoder
    ) -> ParticipantList:
        async for event in _net.read_messages(reader, decoder):
            match event:
                case ParticipantList():
                    return event
                case Error(text=text):
                    raise RegistrationError(text)
                case RemoteProtocolError():
                    raise ConnectError(f"the server sent garbage: {event}")
                case _:  # e.g. an UPDATE about ourselves from some servers
                    continue
        raise ConnectError("the server closed the connection during registration")

    async def _bind_udp(self, local_ip: str) -> Participant:
        """Binds the UDP socket on the address we register, so INITs leave from it (decision 19)."""
        ip = self._ip if self._ip and not is_unspecified(self._ip) else local_ip
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        # One wildcard of the right family: a bare None would bind IPv4 and IPv6
        # sockets on two different ports, and an INIT can name only one.
        wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
        bind_ip: str | None = ip
        try:
            sock = _net.bound_udp_socket(ip, self._udp_port, family)
        except OSError:
            # The advertised address is not one of ours (e.g. behind NAT): listen everywhere.
            bind_ip = None
            try:
                sock = _net.bound_udp_socket(wildcard, self._udp_port, family)
            except OSError as error:
                raise ConnectError(
                    f"cannot bind UDP port {self._udp_port}: {error.strerror or error}"
                ) from None
        transport, _ = await loop.create_datagram_endpoint(self._direct.udp_protocol, sock=sock)
        self._direct.attach_udp(transport, bind_ip, bind_ip or wildcard)
        return Participant(self.nick, ip, transport.get_extra_info("sockname")[1])

    # -- internals: the server connection -------------------------------------------

    def _start_reading(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader_task = asyncio.get_running_loop().create_task(
            self._read_server(reader, writer)
        )

    async def _read_server(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            reason = await self._read_until_lost(reader)
            writer.close()
            self._writer = None
            if self._closing:
                return
            log.info("server connection lost: %s", reason)
            if not self._reconnect:
                self._events.put(Disconnected(reason, None))
                return
            attempt = 0
            while True:
                delay = reconnect_delay(attempt, self._rng)
                self._events.put(Disconnected(reason, delay))
                await asyncio.sleep(delay)
                attempt += 1
                try:
                    reader, writer, _ = await self._establish()
                    break
                except (ConnectError, RegistrationError) as error:
                    reason = str(error)

    async def _read_until_lost(self, reader: asyncio.StreamReader) -> str:
        # A user far behind on events holds reading back (EventQueue.room), before each
        # read and before each event, so the queue never goes past its limits by more
        # than one event.
        events = self._events
        try:
            async for event in _net.read_messages(reader, self._decoder, events.room):
                if not events.has_room:
                    await events.room()
                if not isinstance(event, RemoteProtocolError):
                    self._server_event(event)
                    continue
                log.warning("bad message from the server: %s", event)
                if event.fatal:
                    return f"the server sent garbage: {event}"
        except OSError as error:
            return f"connection lost: {error}"
        return "the server closed the connection"

    def _server_event(self, event: object) -> None:
        emit = self._events.put
        match event:
            case Broadcast(nick=nick, text=text):
                key = nick_key(nick)
                if key != self._key and key not in self._ignored:  # some servers echo
                    emit(BroadcastReceived(nick, text))
            case Update(action=action, participant=participant):
                try:
                    changed = self._peers.apply(event)
                except PeerTableFull as full:
                    self._table_full(f"{full}: later joins are not shown or reachable")
                    return
                if changed:
                    if action is Action.JOIN:
                        emit(PeerJoined(participant))
                    else:
                        self._direct.peer_left(participant)
                        emit(PeerLeft(participant))
            case ParticipantList(participants=participants):
                self._take_list(participants)
            case Error(text=text):
                emit(ServerError(text))
            case _:
                log.warning("unexpected message from the server: %r", event)

    def _take_list(self, participants: tuple[Participant, ...]) -> None:
        left_out = self._peers.replace(participants)
        self._events.put(ParticipantsListed(self.participants))
        if left_out:
            self._table_full(
                f"{self.limits.max_participants} participants held, the limit: "
                f"{left_out} left out of the list are not shown or reachable"
            )

    def _table_full(self, text: str) -> None:
        if not self._told_full:  # once: a server could send a million JOINs
            self._told_full = True
            log.warning("participant list: %s", text)
            self._events.put(Notice(text))
