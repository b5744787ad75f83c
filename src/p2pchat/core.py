"""The client's rules without I/O: settings, participants, ignores, direct-chat handshakes
with their unsent texts, the reconnect schedule and the nickname fallback.

Each class here is fed what happened (a server message, a datagram, a
connection's outcome, a timer firing, a user's request) and the time
(``now``), and returns what to do as a list of actions. ``client`` and
``direct`` carry the actions out with sockets and the event loop, so every
rule lives here once and is tested at exact instants, without sleeping.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .errors import DirectChatError, InvalidInputError
from .events import (
    BroadcastReceived,
    ChatClosed,
    ChatFailed,
    ChatOpened,
    ClientEvent,
    Disconnected,
    NickChanged,
    Notice,
    ParticipantsListed,
    PeerJoined,
    PeerLeft,
    Registered,
    ServerError,
)
from .protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Ack,
    Action,
    Broadcast,
    Chat,
    Error,
    Init,
    LocalProtocolError,
    Participant,
    ParticipantList,
    Update,
    canonical_ip,
    check_nick,
    nick_key,
)
from .protocol._fields import NICK_MAX_CHARS
from .state import (
    ChatEvent,
    ChatRole,
    ChatState,
    DirectChats,
    Handshake,
    InitVerdict,
    PeerTable,
    PeerTableFull,
    TimerAction,
    TooManyChats,
)

__all__ = [
    "CLOSED_BY_YOU",
    "ClientConfig",
    "ClientCore",
    "ClientLimits",
    "DirectCore",
    "ReconnectSchedule",
    "all_taken",
    "closed_by_peer",
    "fallback_nick",
    "nick_taken",
]

# Logged under the names of the modules that carried these rules before.
log = logging.getLogger("p2pchat.direct")
client_log = logging.getLogger("p2pchat.client")

# -- settings ---------------------------------------------------------------------


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
                raise InvalidInputError(f"{name} must be positive")


DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7777


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """Everything a ``ChatClient`` is set up with; checked when built."""

    nick: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # The address to register; None registers the one we reach the server from.
    ip: str | None = None
    udp_port: int = 0  # 0: any free port
    # False refuses every incoming direct chat (docs/PROTOCOL.md decision 25).
    accept_direct: bool = True
    reconnect: bool = True
    # Seconds to connect to the server, and for it to answer REGISTER.
    server_timeout: float = 10.0
    # The n-th reconnect attempt waits a random time up to the n-th cap (then up to the
    # last each time): after a server restart its clients come back spread out.
    reconnect_caps: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
    limits: ClientLimits = field(default_factory=ClientLimits)

    def __post_init__(self) -> None:
        with invalid_input():
            object.__setattr__(self, "nick", check_nick(self.nick))
            if self.ip:
                object.__setattr__(self, "ip", canonical_ip(self.ip))
        if not 0 < self.port <= 65535:
            raise InvalidInputError(f"server port must be 1 to 65535, not {self.port}")
        if not 0 <= self.udp_port <= 65535:
            raise InvalidInputError(f"UDP port must be 0 to 65535, not {self.udp_port}")
        if not self.server_timeout > 0:
            raise InvalidInputError("server_timeout must be positive")
        if not self.reconnect_caps or not all(c > 0 for c in self.reconnect_caps):
            raise InvalidInputError("reconnect_caps must be positive, at least one")


@contextmanager
def invalid_input() -> Iterator[None]:
    """What the protocol cannot carry, the user is told as an InvalidInputError."""
    try:
        yield
    except LocalProtocolError as error:
        raise InvalidInputError(str(error)) from None


# -- actions: what the I/O layer is told to do -------------------------------------------


@dataclass(frozen=True, slots=True)
class Emit:
    """Give the user this event."""

    event: ClientEvent


@dataclass(frozen=True, slots=True)
class SendDatagram:
    """Send this INIT or ACK from the registered UDP socket (docs/PROTOCOL.md decision 19)."""

    data: bytes
    to: tuple[str, int]


@dataclass(frozen=True, slots=True)
class Listen:
    """Open a TCP listener for this chat, then call ``DirectCore.listening``."""

    chat: Handshake


@dataclass(frozen=True, slots=True)
class StopListening:
    """Close this chat's listener: its one connection has come (docs/PROTOCOL.md decision 22)."""

    chat: Handshake


@dataclass(frozen=True, slots=True)
class Connect:
    """Connect to the peer for this chat, then call ``connected`` or ``connect_failed``."""

    chat: Handshake
    ip: str
    port: int


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Call ``DirectCore.timer`` for this chat at ``at`` (None: no timer), replacing any."""

    chat: Handshake
    at: float | None


@dataclass(frozen=True, slots=True)
class OpenSession:
    """The chat's connection carries the chat now: write ``frames`` first, then read."""

    chat: Handshake
    frames: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Write:
    """Write this CHAT frame on the open chat."""

    chat: Handshake
    frame: bytes


@dataclass(frozen=True, slots=True)
class Release:
    """The chat has ended: close its listener, connection and timer."""

    chat: Handshake


@dataclass(frozen=True, slots=True)
class Settle:
    """Wake whoever waits for the chat with this peer (by nick_key): opened when
    ``error`` is None, failed with it as the reason otherwise."""

    peer: str
    error: str | None


DirectAction = (
    (Emit | SendDatagram | Listen | StopListening | Connect | SetTimer | OpenSession | Write)
    | Release
    | Settle
)

# The reasons of a chat the user or the peer closed, as the events (and --json) carry
# them; present.closed_text says them in words.
CLOSED_BY_YOU = "closed"


def closed_by_peer(nick: str) -> str:
    return f"{nick} closed the chat"


def ignored_reason(nick: str) -> str:
    return f"you ignored {nick}"


# -- direct chats ---------------------------------------------------------------------


class DirectCore:
    """Every direct chat of one client, its handshakes and the texts waiting for them
    (docs/PROTOCOL.md section 3.2, docs/PROTOCOL.md decisions 19 to 25).

    A text sent while the chat is being opened waits here: it goes out once when
    the chat opens (``OpenSession.frames``), or is reported once in the
    ``ChatFailed`` that ends the attempt.
    """

    def __init__(
        self,
        nick: str,
        peers: PeerTable,
        refuses: Callable[[Participant], bool],
        limits: ClientLimits,
        *,
        ignores: Callable[[Participant], bool] = lambda _peer: False,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._me = nick_key(nick)
        self._peers = peers
        self._refuses = refuses  # incoming chats refused (docs/PROTOCOL.md decision 25)
        self._ignores = ignores  # peers the user ignores: no chat either way
        self.limits = limits
        self._max = max_message_bytes
        self._chats = DirectChats(nick, max_chats=limits.max_direct_chats)
        self._ports: dict[Handshake, int] = {}  # our listener's port, for resent INITs
        self._unsent: dict[str, list[tuple[str, bytes]]] = {}  # (text, frame) by peer key
        # Peers told their INIT was refused for the limit, while it is reached (once each).
        self._told_full: set[str] = set()
        self.ready = False  # the UDP socket is bound: chats can be asked for

    # -- what the I/O and the user read

    def __iter__(self) -> Iterator[Handshake]:
        return iter(self._chats)

    def get(self, nick: str) -> Handshake | None:
        """The live chat with ``nick``: pending or open."""
        hs = self._chats.get(nick)
        return hs if hs is not None and hs.live else None

    def pending_peers(self) -> list[str]:
        """The nick_keys of the peers whose chat is being opened."""
        return [hs.peer.key for hs in self._chats if hs.pending]

    def rename(self, nick: str) -> None:
        self._me = nick_key(nick)
        self._chats.rename(nick)

    def encode(self, text: str) -> bytes:
        """The CHAT frame for ``text``; InvalidInputError if it cannot be sent."""
        with invalid_input():
            data = Chat(text).encode()
        size = int(data[5 : data.index(b":", 5)])  # the Length just encoded
        if size > self._max:
            raise InvalidInputError(f"message too long: {size} bytes, limit {self._max}")
        return data

    # -- the user

    def request(self, nick: str, now: float) -> list[DirectAction]:
        """The user asks for a chat: reuses the live one (docs/PROTOCOL.md decision 24)
        or starts one; DirectChatError when it cannot be asked for."""
        hs = self.get(nick)
        if hs is not None:
            return [Settle(hs.peer.key, None)] if hs.state is ChatState.OPEN else []
        if nick_key(nick) == self._me:
            raise DirectChatError("you cannot open a direct chat with yourself")
        peer = self._peers.get(nick)
        if peer is None:
            raise DirectChatError(f"no participant named '{nick}'")
        if self._ignores(peer):
            raise DirectChatError(f"you ignore {peer.nick}: unignore them first")
        if not self.ready:
            raise DirectChatError("not connected")
        try:
            hs = self._chats.start(peer, now)
        except TooManyChats as error:
            raise DirectChatError(str(error)) from None
        return [Listen(hs)]

    def send(self, nick: str, text: str, now: float) -> list[DirectAction]:
        """A direct message: written on the open chat, or kept until the chat opens."""
        frame = self.encode(text)
        hs = self.get(nick)
        if hs is not None and hs.state is ChatState.OPEN:
            return [Write(hs, frame)]
        key = nick_key(nick)
        actions = self.request(nick, now)  # raises before anything is kept
        self._unsent.setdefault(key, []).append((text, frame))
        return actions

    def close_chat(self, nick: str, reason: str, now: float) -> list[DirectAction] | None:
        """Ends the chat with ``nick``; None when there is none."""
        hs = self.get(nick)
        if hs is None:
            return None
        return self._end(hs, reason, now, failed=hs.pending)

    def shutdown(self, now: float) -> list[DirectAction]:
        """The client leaves: every chat ends, without telling the user."""
        actions: list[DirectAction] = []
        for hs in list(self._chats):
            if hs.live:
                actions += self._end(hs, "client is leaving", now, failed=hs.pending, notify=False)
        self.ready = False
        return actions

    # -- the server

    def peer_left(self, participant: Participant, now: float) -> list[DirectAction]:
        """A participant left the server: an open chat goes on (docs/PROTOCOL.md
        decision 23), a pending request ends, since the peer will come back, if at all, at another address.
        A request we answered and are connecting for goes on too: the peer may have
        taken our connection and written its messages before leaving (a /msg, then
        end of input), and its LEAVE can overtake our side of the connect. The
        connection settles it: it opens, is refused, or CONNECT_TIMEOUT runs out."""
        hs = self.get(participant.nick)
        actions: list[DirectAction] = []
        if hs is not None and hs.pending and hs.state is not ChatState.CONNECTING:
            actions = self._end(hs, f"{participant.nick} left", now, failed=True)
        self._chats.peer_left(participant.nick)
        return actions

    # -- the network

    def listening(self, hs: Handshake, port: int, now: float) -> list[DirectAction]:
        """Our listener for ``hs`` is open on ``port``: send the INIT
        (docs/PROTOCOL.md decision 19)."""
        if not hs.pending:  # ended meanwhile
            return [Release(hs)]
        self._ports[hs] = port
        return [self._init(hs, port), SetTimer(hs, hs.get_timer())]

    def listen_failed(self, hs: Handshake, error: str, now: float) -> list[DirectAction]:
        if not hs.pending:
            return []
        return self._end(hs, f"cannot listen for {hs.peer.nick}: {error}", now, failed=True)

    def timer(self, hs: Handshake, now: float) -> list[DirectAction]:
        """The chat's timer fired: resend the INIT or give up (docs/PROTOCOL.md decision 20)."""
        before = hs.state
        match hs.handle_timer(now):
            case TimerAction.RESEND_INIT:
                port = self._ports.get(hs)
                actions: list[DirectAction] = [] if port is None else [self._init(hs, port)]
                return [*actions, SetTimer(hs, hs.get_timer())]
            case TimerAction.GIVE_UP:
                if before is ChatState.INVITING:
                    reason = f"{hs.peer.nick} did not answer"
                elif before is ChatState.ACKED:
                    reason = f"{hs.peer.nick} answered but did not connect"
                else:
                    reason = f"could not connect to {hs.peer.nick} in time"
                return self._end(hs, reason, now, failed=True)
            case _:
                return [SetTimer(hs, hs.get_timer())]

    def datagram(
        self, message: Init | Ack, ip: str, port: int, now: float, *, has_room: bool = True
    ) -> list[DirectAction]:
        """An INIT or ACK came to our UDP socket from (ip, port). ``has_room`` is false
        while the user is far behind on events: a datagram cannot be slowed down, so an
        INIT is then turned away."""
        if isinstance(message, Ack):
            hs = self._chats.by_secret(message.secret)
            # An ACK with an unknown secret, or for a chat that ended, is ignored
            # (docs/PROTOCOL.md decision 22).
            if hs is None or not hs.accepts(ChatEvent.ACK):
                log.debug("ignoring ACK with an unknown secret from %s:%d", ip, port)
                return []
            hs.handle(ChatEvent.ACK, now)
            return [SetTimer(hs, hs.get_timer())]
        return self._incoming(message, canonical_ip(ip), port, now, has_room)

    def _incoming(
        self, init: Init, ip: str, port: int, now: float, has_room: bool
    ) -> list[DirectAction]:
        found = self._peers.by_address(ip, port)
        if not found:  # docs/PROTOCOL.md decision 21: only from a participant's registered address
            log.info("ignoring INIT from %s:%d: not a participant", ip, port)
            return []
        if len(found) > 1:
            # Crediting either could show one's words as the other's (and answer the wrong one).
            names = " and ".join(p.nick for p in found)
            log.warning(
                "ignoring INIT from %s:%d: registered by %s, so the sender is unknown",
                ip,
                port,
                names,
            )
            return []
        peer = found[0]
        if self._refuses(peer):
            log.info("refusing direct chat from %s", peer.nick)
            return []
        if not has_room:
            log.info("ignoring INIT from %s: the user is far behind on events", peer.nick)
            return []
        verdict = self._chats.judge_init(peer, init.secret, now)
        if verdict is InitVerdict.IGNORE:
            return []
        if verdict is InitVerdict.FULL:
            log.info("refusing direct chat from %s: %s", peer.nick, self._chats.full_reason)
            if peer.key in self._told_full:
                return []
            self._told_full.add(peer.key)
            return [Emit(ChatFailed(peer.nick, f"refused: {self._chats.full_reason}"))]
        actions: list[DirectAction] = [SendDatagram(Ack(init.secret).encode(), (ip, port))]
        if verdict is InitVerdict.ACK_AGAIN:
            return actions
        hs, replaced = self._chats.accept(peer, init.secret, now)
        if replaced is not None:
            # Crossed INITs we lost, or the peer restarted: the new request wins, and
            # takes over the texts waiting for the old one (docs/PROTOCOL.md decision 24).
            actions += self._end(
                replaced,
                f"replaced by a new request from {peer.nick}",
                now,
                failed=False,
                notify=replaced.state is ChatState.OPEN,
                keep_waiting=True,
            )
        return [*actions, SetTimer(hs, hs.get_timer()), Connect(hs, ip, init.tcp_port)]

    def connection(self, hs: Handshake, ip: str, now: float) -> list[DirectAction]:
        """A connection from ``ip`` reached our listener for ``hs``; it is taken when
        the actions hold an ``OpenSession``, and refused otherwise: only the peer's IP,
        only the first connection, only while the request is pending
        (docs/PROTOCOL.md decision 22)."""
        if canonical_ip(ip) != hs.peer.ip or not hs.pending:
            return []
        return [StopListening(hs), *self._opened(hs, now)]

    def connected(self, hs: Handshake, now: float) -> list[DirectAction]:
        """Our connection for ``hs`` is made; taken only when the actions hold an
        ``OpenSession`` (the chat may have ended meanwhile)."""
        return self._opened(hs, now) if hs.pending else []

    def connect_failed(self, hs: Handshake, error: str, now: float) -> list[DirectAction]:
        if not hs.pending:
            return []
        return self._end(hs, f"could not connect to {hs.peer.nick}: {error}", now, failed=True)

    def session_ended(self, hs: Handshake, reason: str, now: float) -> list[DirectAction]:
        """The chat's connection ended (the peer closed it, it broke, or a limit)."""
        if hs.state is not ChatState.OPEN:
            return []
        return self._end(hs, reason, now, failed=False)

    def stalled(self, hs: Handshake, now: float) -> tuple[str, list[DirectAction]]:
        """The peer took nothing of what we sent for ``stall_timeout``: the chat ends."""
        reason = f"{hs.peer.nick} took nothing for {self.limits.stall_timeout:g} s"
        actions = self._end(hs, reason, now, failed=False) if hs.live else []
        return reason, actions

    # -- internals

    def _init(self, hs: Handshake, port: int) -> SendDatagram:
        return SendDatagram(Init(hs.secret, port).encode(), hs.peer.udp_address)

    def _opened(self, hs: Handshake, now: float) -> list[DirectAction]:
        hs.handle(ChatEvent.CONNECTED, now)
        self._ports.pop(hs, None)
        frames = tuple(frame for _text, frame in self._unsent.pop(hs.peer.key, []))
        return [
            SetTimer(hs, None),
            OpenSession(hs, frames),
            Emit(ChatOpened(hs.peer.nick, hs.role is ChatRole.INITIATOR)),
            Settle(hs.peer.key, None),
        ]

    def _end(
        self,
        hs: Handshake,
        reason: str,
        now: float,
        *,
        failed: bool,
        notify: bool = True,
        keep_waiting: bool = False,
    ) -> list[DirectAction]:
        """Ends a handshake or chat: frees its I/O, tells the user, settles waiters."""
        was_open = hs.state is ChatState.OPEN
        if hs.live:
            hs.handle(ChatEvent.CLOSE, now)
        self._ports.pop(hs, None)
        self._chats.forget(hs)
        if not self._chats.full:
            self._told_full.clear()
        actions: list[DirectAction] = [Release(hs)]
        if keep_waiting:  # a new handshake with the peer takes over the texts and waiters
            if notify and was_open:
                actions.append(Emit(ChatClosed(hs.peer.nick, reason)))
            return actions
        if failed or not was_open:
            unsent = tuple(text for text, _frame in self._unsent.pop(hs.peer.key, []))
            if notify:
                actions.append(Emit(ChatFailed(hs.peer.nick, reason, unsent)))
            actions.append(Settle(hs.peer.key, reason))
        elif notify:
            actions.append(Emit(ChatClosed(hs.peer.nick, reason)))
        return actions


# -- the server connection ------------------------------------------------------------


class ReconnectSchedule:
    """When to try the server again after losing it: full jitter, uniform from 0 up to
    the attempt's cap, so that after a server restart its clients come back spread out."""

    def __init__(self, caps: tuple[float, ...], rng: random.Random) -> None:
        self.caps = caps
        self._rng = rng
        self.attempt = 0  # attempts made since the connection was lost

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt`` (0 first)."""
        return self.caps[min(attempt, len(self.caps) - 1)] * self._rng.random()

    def next(self, now: float) -> tuple[float, float]:
        """The connection is lost or an attempt failed: (delay, when) of the next try."""
        delay = self.delay(self.attempt)
        self.attempt += 1
        return delay, now + delay

    def succeeded(self) -> None:
        self.attempt = 0


# Alternative nicknames tried at a reconnect when ours is taken: NICK_ up to NICK_____.
FALLBACK_TRIES = 5


def nick_taken(error: str) -> bool:
    """Whether a refused REGISTER's ERROR says that the nickname is taken (our server:
    "nickname 'X' is already in use"), and not e.g. that our address is."""
    text = error.lower()
    return "nickname" in text and ("in use" in text or "taken" in text)


def fallback_nick(wanted: str, n: int) -> str:
    """The n-th alternative to ``wanted`` (1 first): ``NICK_``, ``NICK__``, ... trimmed
    so that it stays within the 32 characters a nickname may have (docs/PROTOCOL.md decision 5)."""
    return wanted[: NICK_MAX_CHARS - n] + "_" * n


def all_taken(nicks: list[str]) -> str:
    """What the user is told when the server refused each of ``candidates``, for being
    taken: the last ERROR alone would name only the last alternative."""
    if len(nicks) == 1:
        return f"'{nicks[0]}' is taken"
    return f"'{nicks[0]}' and its alternatives {nicks[1]} to {nicks[-1]} are all taken"


class ClientCore:
    """One client's view of its server: who is registered, whom it ignores, its own
    nickname, and its direct chats (``direct``)."""

    def __init__(self, config: ClientConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.limits = config.limits
        self.wanted = config.nick  # the nickname the user chose; we may hold another
        self.nick = config.nick
        self.me: Participant | None = None  # as last registered
        self.accept_direct = config.accept_direct
        self.peers = PeerTable(self.nick, limit=self.limits.max_participants)
        self._ignored: set[str] = set()
        # The UDP addresses of the participants ignored, with the nickname last ignored
        # there: one who leaves and joins again from it under another nickname (what
        # /nick looks like to the others) stays ignored. One entry per /ignore at most.
        self._ignored_at: dict[tuple[str, int], str] = {}
        self._told_full = False  # the user knows the participant table is full
        self.direct = DirectCore(
            self.nick, self.peers, self.refuses, self.limits, ignores=self.ignores
        )
        self.reconnects = ReconnectSchedule(config.reconnect_caps, rng or random.Random())

    # -- ignoring

    def refuses(self, peer: Participant) -> bool:
        """Whether direct chats with ``peer`` are refused (docs/PROTOCOL.md decision 25)."""
        return not self.accept_direct or peer.key in self._ignored

    def ignores(self, peer: Participant) -> bool:
        return peer.key in self._ignored

    @property
    def ignored(self) -> frozenset[str]:
        return frozenset(self._ignored)

    def ignore(self, nick: str, now: float) -> list[DirectAction]:
        """Hides ``nick``'s broadcasts and refuses their direct chats; one pending or
        open ends now, so nothing more from them reaches the user."""
        self._ignored.add(nick_key(nick))
        peer = self.peers.get(nick)
        if peer is not None:
            self._ignored_at[peer.udp_address] = peer.nick
        hs = self.direct.get(nick)
        if hs is None:
            return []
        return self.direct.close_chat(nick, ignored_reason(hs.peer.nick), now) or []

    def unignore(self, nick: str) -> None:
        key = nick_key(nick)
        self._ignored.discard(key)
        for address, ignored in list(self._ignored_at.items()):
            if nick_key(ignored) == key:
                del self._ignored_at[address]

    def _renamed_ignored(self, peer: Participant) -> list[Emit]:
        """``peer`` is registered from the address of someone ignored, under another
        nickname: the same person renamed (a p2pchat client keeps its UDP socket
        across /nick), so they stay ignored, and the user is told."""
        old = self._ignored_at.get(peer.udp_address)
        if old is None or peer.key in self._ignored:
            return []
        self._ignored.add(peer.key)
        self._ignored_at[peer.udp_address] = peer.nick
        text = f"still ignoring {old}: now {peer.nick}, at the same address"
        client_log.info("%s", text)
        return [Emit(Notice(text))]

    # -- registration

    def participants(self) -> tuple[Participant, ...]:
        """Everyone registered, ourselves first."""
        others = tuple(self.peers)
        return (self.me, *others) if self.me is not None else others

    def candidates(self, *, fallback: bool) -> list[str]:
        """The nicknames to REGISTER with, in order, on one connection (docs/PROTOCOL.md
        decision 11): the wanted one, then, at a reconnect, NICK_, NICK__, ..."""
        nicks = [self.wanted]
        if fallback:
            nicks += [fallback_nick(self.wanted, n) for n in range(1, FALLBACK_TRIES + 1)]
        return nicks

    def registered(
        self,
        me: Participant,
        participants: tuple[Participant, ...],
        reason: str | None,
        now: float,
    ) -> list[DirectAction]:
        """The server took our REGISTER (``me``) and sent its LIST; ``reason`` says why
        a nickname other than the last one was used (None: whether the one we want
        was taken, or is free again)."""
        old = self.nick
        if reason is None:
            taken = me.nick != self.wanted
            reason = f"'{self.wanted}' was taken" if taken else f"'{self.wanted}' is free again"
        self.me = me
        self._told_full = False
        self.reconnects.succeeded()
        actions: list[DirectAction] = []
        if me.nick != old:
            self.nick = me.nick
            self.peers.rename(me.nick)
            self.direct.rename(me.nick)
            actions.append(Emit(NickChanged(old, me.nick, reason)))
        actions.append(Emit(Registered(me)))
        return actions + self._take_list(participants, now)

    def lost(self, reason: str, now: float) -> tuple[float | None, list[Emit]]:
        """The server connection is lost, or an attempt to restore it failed: when to
        try again (None: never), and what to tell the user."""
        if not self.config.reconnect:
            return None, [Emit(Disconnected(reason, None))]
        delay, when = self.reconnects.next(now)
        return when, [Emit(Disconnected(reason, delay))]

    # -- the server's messages

    def server_message(self, message: object, now: float) -> list[DirectAction]:
        match message:
            case Broadcast(nick=nick, text=text):
                key = nick_key(nick)
                if key != nick_key(self.nick) and key not in self._ignored:  # some servers echo
                    return [Emit(BroadcastReceived(nick, text))]
            case Update(action=action, participant=participant):
                try:
                    changed = self.peers.apply(message)
                except PeerTableFull as full:
                    return [*self._table_full(f"{full}: later joins are not shown or reachable")]
                if not changed:
                    return []
                if action is Action.JOIN:
                    return [Emit(PeerJoined(participant)), *self._renamed_ignored(participant)]
                return [*self.direct.peer_left(participant, now), Emit(PeerLeft(participant))]
            case ParticipantList(participants=participants):
                return self._take_list(participants, now)
            case Error(text=text):
                return [Emit(ServerError(text))]
            case _:
                client_log.warning("unexpected message from the server: %r", message)
        return []

    def _take_list(self, participants: tuple[Participant, ...], now: float) -> list[DirectAction]:
        before = list(self.peers)
        left_out = self.peers.replace(participants)
        actions: list[DirectAction] = []
        for peer in before:  # gone, or back at another address: as if they had left
            if self.peers.get(peer.nick) != peer:
                actions += self.direct.peer_left(peer, now)
        actions.append(Emit(ParticipantsListed(self.participants())))
        if self._ignored_at:
            for peer in self.peers:
                actions += self._renamed_ignored(peer)
        if left_out:
            actions += self._table_full(
                f"{self.limits.max_participants} participants held, the limit: "
                f"{left_out} left out of the list are not shown or reachable"
            )
        return actions

    def _table_full(self, text: str) -> list[Emit]:
        if self._told_full:  # once: a server could send a million JOINs
            return []
        self._told_full = True
        client_log.warning("participant list: %s", text)
        return [Emit(Notice(text))]
