"""The client library: register with a server, follow the participants, broadcast, chat directly.

``ChatClient`` is what UIs and bots use; the ``p2pchat`` command lives in ``cli``.
The rules live in ``core``; this module moves the server connection's bytes
and keeps time.

    async with ChatClient("alice", "127.0.0.1", 7777) as client:
        await client.broadcast("hello")
        async for event in client.events():
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType

from . import _net
from .core import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ClientConfig,
    ClientCore,
    ClientLimits,
    all_taken,
    invalid_input,
    nick_taken,
)
from .direct import DirectChatManager
from .errors import (
    ChatError,
    ConnectError,
    DirectChatError,
    InvalidInputError,
    NotConnectedError,
    RegistrationError,
)
from .events import ClientEvent, EventQueue
from .protocol import (
    LENGTH_HARD_LIMIT,
    MAX_LIST_LINE_BYTES,
    Broadcast,
    Decoder,
    Error,
    ListRequest,
    Participant,
    ParticipantList,
    Register,
    RemoteProtocolError,
    Role,
    canonical_ip,
    check_nick,
    is_unspecified,
)
from .state import ChatState

__all__ = [
    "ChatClient",
    "ChatError",
    "ClientConfig",
    "ClientLimits",
    "ConnectError",
    "DirectChatError",
    "InvalidInputError",
    "NotConnectedError",
    "RegistrationError",
]

log = logging.getLogger("p2pchat.client")

# The NickChanged reason when the user asked for the new nickname.
NICK_CHANGED_BY_YOU = "you changed it"


def _server_decoder() -> Decoder:
    """What a client accepts from its server: any LIST a full server sends
    (docs/PROTOCOL.md decision 10), and any message the server's own limit lets through, up to the protocol's hard limit."""
    return Decoder(
        Role.CLIENT, max_message_bytes=LENGTH_HARD_LIMIT, max_line_bytes=MAX_LIST_LINE_BYTES
    )


class ChatClient:
    """One participant: a server connection, a UDP socket for handshakes, and direct chats.

    It can be built anywhere; it needs a running event loop from ``connect`` on.
    Every failure it reports to its caller is a ``ChatError``.
    """

    def __init__(
        self,
        nick: str,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        *,
        ip: str | None = None,
        udp_port: int = 0,
        accept_direct: bool = True,
        reconnect: bool = True,
        rng: random.Random | None = None,
        limits: ClientLimits | None = None,
    ) -> None:
        """``rng`` draws the reconnect delays (a seeded one makes them repeatable);
        InvalidInputError for a nickname or address the protocol cannot carry."""
        config = ClientConfig(
            nick,
            host,
            port,
            ip=ip,
            udp_port=udp_port,
            accept_direct=accept_direct,
            reconnect=reconnect,
            limits=limits or ClientLimits(),
        )
        self._setup(config, rng)

    @classmethod
    def from_config(cls, config: ClientConfig, *, rng: random.Random | None = None) -> ChatClient:
        client = cls.__new__(cls)
        client._setup(config, rng)
        return client

    def _setup(self, config: ClientConfig, rng: random.Random | None) -> None:
        self.config = config
        self._core = ClientCore(config, rng)
        self._events = EventQueue(config.limits.max_unread_events, config.limits.max_unread_bytes)
        self._writer: asyncio.StreamWriter | None = None
        self._decoder = _server_decoder()
        self._reader_task: asyncio.Task[None] | None = None
        self._closing = False
        self._renaming = False  # change_nick has left the server and registers again
        self._nick_lock = asyncio.Lock()  # one change_nick at a time, in the order called
        self._direct = DirectChatManager(self._core.direct, self._events)

    # -- lifecycle ------------------------------------------------------------------

    async def connect(self) -> Participant:
        """Connects and registers; raises ConnectError or RegistrationError."""
        reader, writer, me, _ = await self._establish([self._core.wanted])
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
    def host(self) -> str:
        return self.config.host

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def limits(self) -> ClientLimits:
        return self.config.limits

    @property
    def nick(self) -> str:
        """The nickname we are registered under (or will register under)."""
        return self._core.nick

    @property
    def wanted_nick(self) -> str:
        """The nickname the user chose: ``nick`` differs while it was taken at a reconnect."""
        return self._core.wanted

    @property
    def accept_direct(self) -> bool:
        return self._core.accept_direct

    @accept_direct.setter
    def accept_direct(self, value: bool) -> None:
        self._core.accept_direct = value

    @property
    def me(self) -> Participant | None:
        """Ourselves as registered, or None before the first registration."""
        return self._core.me

    @property
    def connected(self) -> bool:
        return self._writer is not None

    @property
    def participants(self) -> tuple[Participant, ...]:
        """Everyone registered, ourselves first."""
        return self._core.participants()

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

    def on_event(self, sink: Callable[[ClientEvent], None]) -> None:
        """From now on every event goes to ``sink`` as it happens (those waiting first),
        instead of to ``next_event``/``events``: for a front end that shows each one at
        once and never falls behind (the web client's host, with a client per page).
        ``sink`` must not block; an exception from it is logged."""
        self._events.deliver_to(sink)

    async def events(self) -> AsyncIterator[ClientEvent]:
        while True:
            yield await self._events.get()

    # -- group chat ------------------------------------------------------------------

    async def broadcast(self, text: str) -> None:
        """Sends ``text`` to everyone; InvalidInputError if the protocol cannot carry it."""
        with invalid_input():
            data = Broadcast(self.nick, text).encode()
        await self._send(data)

    async def refresh_participants(self) -> None:
        """Asks the server for a fresh LIST; a ParticipantsListed event follows."""
        await self._send(ListRequest().encode())

    def ignore(self, nick: str) -> None:
        """Hides ``nick``'s broadcasts and refuses direct chats from them; a direct chat
        pending or open with them ends ("you ignored NICK"), so nothing more from them
        reaches the user."""
        self._direct.apply(self._core.ignore(nick, self._direct.now))

    def unignore(self, nick: str) -> None:
        self._core.unignore(nick)

    @property
    def ignored(self) -> frozenset[str]:
        return self._core.ignored

    async def change_nick(self, nick: str) -> None:
        """Registers again under ``nick``, keeping the UDP socket and the direct chats
        (docs/PROTOCOL.md decision 23): the others see us leave and join. If the server
        refuses ``nick``, we register again under the nickname we had, and
        RegistrationError says why; InvalidInputError for a nickname the protocol
        cannot carry, NotConnectedError while the server connection is down or the
        client closes. Calls made while one is under way wait for it, in turn."""
        with invalid_input():
            new = check_nick(nick)
        async with self._nick_lock:
            await self._change_nick(new)

    async def _change_nick(self, new: str) -> None:
        writer, task = self._writer, self._reader_task
        if self._closing:
            raise NotConnectedError("the client is closing")
        if writer is None or task is None:
            raise NotConnectedError("not connected to the server")
        old = self.nick
        if new == old:
            return
        self._renaming = True
        try:
            await self._leave(writer, task)
            if self._closing:  # close() came while we left: stay away
                raise NotConnectedError("the client is closing")
            try:
                reader, writer, me, refusal = await self._establish(
                    [new, old], NICK_CHANGED_BY_YOU, go_on=lambda _text: True
                )
            except ChatError as error:
                self._reconnect_after(str(error))
                raise
        finally:
            self._renaming = False
        self._start_reading(reader, writer)
        if me.nick != new:
            raise RegistrationError(refusal or f"'{new}' was refused")
        self._core.wanted = new

    # -- direct chats ------------------------------------------------------------------

    async def open_chat(self, nick: str) -> None:
        """Opens a direct chat with ``nick`` (or reuses the open one); DirectChatError if it fails."""
        await self._direct.open(nick)

    def start_chat(self, nick: str) -> None:
        """Starts opening a direct chat without waiting; a ChatOpened or ChatFailed event follows."""
        self._direct.start(nick)

    async def send_chat(self, nick: str, text: str) -> None:
        """Sends a direct message; if no chat is open one is opened and the text waits for it.
        InvalidInputError if the text cannot be sent, DirectChatError if the chat cannot."""
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

    async def _send(self, data: bytes) -> None:
        writer = self._writer
        if writer is None:
            raise NotConnectedError("not connected to the server")
        try:
            writer.write(data)
            await writer.drain()
        except OSError as error:
            raise NotConnectedError(f"connection to the server lost: {error}") from None

    async def _establish(
        self,
        nicks: Sequence[str],
        reason: str | None = None,
        go_on: Callable[[str], bool] = lambda _text: False,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Participant, str | None]:
        """Connects and REGISTERs under each of ``nicks`` in turn, on one connection
        (docs/PROTOCOL.md decision 11), while the server refuses one with an ERROR
        that ``go_on`` accepts.
        Returns the connection, ourselves as registered, and the first refusal.
        ``reason`` goes into the NickChanged event should the nickname change
        (by default: whether the nickname we want was taken)."""
        timeout = self.config.server_timeout
        refusal: str | None = None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as error:
            why = (error.strerror or str(error)) if isinstance(error, OSError) else "timed out"
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {why}") from None
        first = self.me is None
        try:
            address = self.me or await self._bind_udp(
                canonical_ip(writer.get_extra_info("sockname")[0])
            )
            decoder = _server_decoder()
            for i, nick in enumerate(nicks):
                me = dataclasses.replace(address, nick=nick)
                writer.write(Register(me).encode())
                await writer.drain()
                async with asyncio.timeout(timeout):
                    answer = await self._await_registration(reader, decoder)
                if isinstance(answer, ParticipantList):
                    listing = answer
                    break
                refusal = refusal or answer
                if i + 1 == len(nicks) or not go_on(answer):
                    raise RegistrationError(answer)
            if self._closing:  # close() ran meanwhile, and cannot see this connection
                raise NotConnectedError("the client is closing")
        except (OSError, TimeoutError, ChatError) as error:
            writer.close()
            if first:  # a first attempt binds the UDP socket: free it for the next
                self._direct.detach_udp()
            if isinstance(error, ChatError):
                raise
            raise ConnectError(
                f"registration failed: {error or 'no answer from the server'}"
            ) from None
        self._writer = writer
        self._decoder = decoder
        self._direct.apply(
            self._core.registered(
                me, listing.participants, reason, asyncio.get_running_loop().time()
            )
        )
        return reader, writer, me, refusal

    async def _await_registration(
        self, reader: asyncio.StreamReader, decoder: Decoder
    ) -> ParticipantList | str:
        """The server's LIST, or the text of its ERROR."""
        async for event in _net.read_messages(reader, decoder):
            match event:
                case ParticipantList():
                    return event
                case Error(text=text):
                    return text
                case RemoteProtocolError(fatal=True):
                    raise ConnectError(f"the server sent garbage: {event}")
                case RemoteProtocolError():  # a line we cannot use: skipped (docs/PROTOCOL.md section 4)
                    log.warning("bad message from the server: %s", event)
                case _:  # e.g. an UPDATE about ourselves from some servers
                    continue
        raise ConnectError("the server closed the connection during registration")

    async def _bind_udp(self, local_ip: str) -> Participant:
        """Binds the UDP socket on the address we register, so INITs leave from it
        (docs/PROTOCOL.md decision 19)."""
        wanted_ip, udp_port = self.config.ip, self.config.udp_port
        ip = wanted_ip if wanted_ip and not is_unspecified(wanted_ip) else local_ip
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        # One wildcard of the right family: a bare None would bind IPv4 and IPv6
        # sockets on two different ports, and an INIT can name only one.
        wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
        bind_ip: str | None = ip
        try:
            sock = _net.bound_udp_socket(ip, udp_port, family)
        except OSError:
            # The advertised address is not one of ours (e.g. behind NAT): listen everywhere.
            bind_ip = None
            try:
                sock = _net.bound_udp_socket(wildcard, udp_port, family)
            except OSError as error:
                raise ConnectError(
                    f"cannot bind UDP port {udp_port}: {error.strerror or error}"
                ) from None
        transport, _ = await loop.create_datagram_endpoint(self._direct.udp_protocol, sock=sock)
        self._direct.attach_udp(transport, bind_ip, bind_ip or wildcard)
        return Participant(self.nick, ip, transport.get_extra_info("sockname")[1])

    async def _leave(self, writer: asyncio.StreamWriter, task: asyncio.Task[None]) -> None:
        """Leaves the server for a new registration: half-closes the connection and waits
        until the server closes its side. Our server takes us off its list before it
        closes, so from then on our nickname and our UDP address are free again
        (docs/PROTOCOL.md decision 21 allows one participant per address)."""
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()
        # wait(), not shield(): close() may cancel the task meanwhile, and that must
        # not raise CancelledError into change_nick.
        await asyncio.wait({task}, timeout=self.config.server_timeout)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        writer.close()
        self._writer = None

    # -- internals: the server connection -------------------------------------------

    def _start_reading(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader_task = asyncio.get_running_loop().create_task(
            self._read_server(reader, writer)
        )

    def _reconnect_after(self, reason: str) -> None:
        """The server connection is down outside the reading task (a failed change_nick)."""
        if self._closing:
            return

        async def reconnect() -> None:
            got = await self._reconnect(reason)
            if got is not None:
                await self._read_server(*got)

        self._reader_task = asyncio.get_running_loop().create_task(reconnect())

    async def _read_server(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            reason = await self._read_until_lost(reader)
            writer.close()
            self._writer = None
            if self._closing or self._renaming:
                return
            log.info("server connection lost: %s", reason)
            got = await self._reconnect(reason)
            if got is None:
                return
            reader, writer = got

    async def _reconnect(
        self, reason: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Tries the server again on the core's schedule until it takes us back, under
        the nickname we want or, while that is taken, NICK_, NICK__, ... (None: the
        client does not reconnect)."""
        loop = asyncio.get_running_loop()
        while True:
            when, actions = self._core.lost(reason, loop.time())
            self._direct.apply(actions)
            if when is None:
                return None
            await asyncio.sleep(max(0.0, when - loop.time()))
            nicks = self._core.candidates(fallback=True)
            try:
                reader, writer, _, _ = await self._establish(nicks, go_on=nick_taken)
            except RegistrationError as error:
                reason = all_taken(nicks) if nick_taken(str(error)) else str(error)
                continue
            except ChatError as error:
                reason = str(error)
                continue
            return reader, writer

    async def _read_until_lost(self, reader: asyncio.StreamReader) -> str:
        # A user far behind on events holds reading back (EventQueue.room), before each
        # read and before each event, so the queue never goes past its limits by more
        # than one event.
        events = self._events
        loop = asyncio.get_running_loop()
        try:
            async for event in _net.read_messages(reader, self._decoder, events.room):
                if not events.has_room:
                    await events.room()
                if not isinstance(event, RemoteProtocolError):
                    self._direct.apply(self._core.server_message(event, loop.time()))
                    continue
                log.warning("bad message from the server: %s", event)
                if event.fatal:
                    return f"the server sent garbage: {event}"
        except OSError as error:
            return f"connection lost: {error}"
        return "the server closed the connection"
