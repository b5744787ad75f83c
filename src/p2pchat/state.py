"""Pure state driven by protocol events: who is registered, and each direct-chat handshake.

No I/O and no clock: time comes in as an argument (``now``), so the INIT
retransmission schedule and every transition are tested without sleeping.
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import Final, Generic, TypeVar

from .protocol import Action, Participant, Update, encode_list, nick_key

# -- server side: the participant list -------------------------------------------

C = TypeVar("C", bound=Hashable)


class RegistrationRefused(Exception):
    """REGISTER cannot be accepted; the text is the ERROR to answer."""


@dataclass(frozen=True, slots=True)
class Remote:
    """What holds a participant that registered through another server of a cluster:
    it has no connection here, so the registry keys it by its nickname key."""

    key: str


def nickname_in_use(participant: Participant) -> str:
    """Why a REGISTER is refused whose nickname is taken (compared by nick_key)."""
    return f"nickname '{participant.nick}' is already in use"


def address_in_use(participant: Participant, holder: str) -> str:
    """Why a REGISTER is refused whose UDP address ``holder`` registered."""
    return (
        f"address {participant.endpoint} is already registered by '{holder}'; use another UDP port"
    )


class Registry(Generic[C]):
    """Registered participants by holder (a connection, or a ``Remote``), in join
    order; nicknames unique (compared by nick_key) and UDP addresses unique."""

    __slots__ = (
        "_by_address",
        "_by_conn",
        "_by_key",
        "_entries",
        "_entries_bytes",
        "_list",
        "_snapshot",
    )

    def __init__(self) -> None:
        self._by_conn: dict[C, Participant] = {}
        self._by_key: dict[str, C] = {}
        # Decision 21: an INIT is credited to the participant registered at its
        # source address, so one address must name one participant.
        self._by_address: dict[tuple[str, int], C] = {}
        self._snapshot: tuple[Participant, ...] | None = None
        # Each one's LIST entry, encoded once: in a join storm the LIST changes
        # with every join, and joining entries is ten times cheaper than encoding.
        self._entries: dict[C, bytes] = {}
        self._entries_bytes = 0
        self._list: bytes | None = None

    def __len__(self) -> int:
        return len(self._by_conn)

    def __contains__(self, conn: object) -> bool:
        return conn in self._by_conn

    def get(self, conn: C) -> Participant | None:
        return self._by_conn.get(conn)

    def holder(self, key: str) -> C | None:
        """Who holds the participant with this nickname key, if anyone."""
        return self._by_key.get(key)

    def holder_at(self, address: tuple[str, int]) -> C | None:
        """Who holds the participant registered at this UDP address, if anyone."""
        return self._by_address.get(address)

    def check(self, conn: C, participant: Participant) -> None:
        """Raises RegistrationRefused when ``register`` would."""
        if conn in self._by_conn:
            raise RegistrationRefused(
                f"already registered as '{self._by_conn[conn].nick}' on this connection"
            )
        if participant.key in self._by_key:
            raise RegistrationRefused(nickname_in_use(participant))
        # Participant.ip is canonical, so equal addresses compare equal.
        holder = self._by_address.get(participant.udp_address)
        if holder is not None:
            raise RegistrationRefused(address_in_use(participant, self._by_conn[holder].nick))

    def register(self, conn: C, participant: Participant) -> None:
        self.check(conn, participant)
        self._by_conn[conn] = participant
        self._by_key[participant.key] = conn
        self._by_address[participant.udp_address] = conn
        entry = self._entries[conn] = participant.encode_entry()
        self._entries_bytes += len(entry) + 1
        self._snapshot = self._list = None

    def unregister(self, conn: C) -> Participant | None:
        participant = self._by_conn.pop(conn, None)
        if participant is not None:
            del self._by_key[participant.key]
            del self._by_address[participant.udp_address]
            self._entries_bytes -= len(self._entries.pop(conn)) + 1
            self._snapshot = self._list = None
        return participant

    def encoded_list(self) -> bytes:
        """The LIST of everyone, encoded; the same bytes object until the list changes."""
        if self._list is None:
            self._list = encode_list(list(self._entries.values()))
        return self._list

    @property
    def list_bytes(self) -> int:
        """The length of ``encoded_list()``, without making it."""
        return self._entries_bytes + 6 if self._entries else 7

    def participants(self) -> tuple[Participant, ...]:
        """Everyone, in join order; the same tuple until the list changes."""
        if self._snapshot is None:
            self._snapshot = tuple(self._by_conn.values())
        return self._snapshot

    def connections(self) -> Iterator[C]:
        return iter(self._by_conn)

    def items(self) -> list[tuple[C, Participant]]:
        """Holders and their participants in join order; a copy, safe to change the
        registry while going through it."""
        return list(self._by_conn.items())


class Waiting(Generic[C]):
    """Connections that have not registered yet, by source address, oldest first.

    When the server is full, the one to close makes room for a newcomer: the
    oldest of the address that has the most of them waiting. Connections
    that never register can then take room only from their own address, and
    a client that registers promptly is never the one closed while another
    address holds more (decision 17).
    """

    __slots__ = ("_address", "_by_address")

    def __init__(self) -> None:
        self._by_address: dict[str, dict[C, None]] = {}  # insertion order: oldest first
        self._address: dict[C, str] = {}

    def __len__(self) -> int:
        return len(self._address)

    def add(self, conn: C, address: str) -> None:
        self._address[conn] = address
        self._by_address.setdefault(address, {})[conn] = None

    def remove(self, conn: C) -> None:
        address = self._address.pop(conn, None)
        if address is not None:
            waiting = self._by_address[address]
            del waiting[conn]
            if not waiting:
                del self._by_address[address]

    def to_close(self) -> C | None:
        """The connection to close for room, or None when all have registered."""
        if not self._by_address:
            return None
        waiting = max(self._by_address.values(), key=len)
        return next(iter(waiting))


# -- client side: the other participants --------------------------------------------


class PeerTableFull(Exception):
    """A JOIN was not taken: the table holds as many participants as it may."""


class PeerTable:
    """A client's view of the other participants, from LIST and UPDATE.

    Entries about ourselves are ignored (decision 10): servers differ on
    whether they include the receiver, and we never chat with ourselves.
    At most ``limit`` others are held, so that no server can grow the table
    without end.
    """

    __slots__ = ("_at", "_limit", "_me", "_peers")

    def __init__(self, my_nick: str, *, limit: int | None = None) -> None:
        self._me = nick_key(my_nick)
        self._limit = limit
        self._peers: dict[str, Participant] = {}
        # Nickname keys by UDP address, in join order: an INIT's source is looked up
        # here, and two participants at one address are seen at once.
        self._at: dict[tuple[str, int], dict[str, None]] = {}

    def __len__(self) -> int:
        return len(self._peers)

    def __iter__(self) -> Iterator[Participant]:
        return iter(self._peers.values())

    def get(self, nick: str) -> Participant | None:
        return self._peers.get(nick_key(nick))

    def rename(self, my_nick: str) -> None:
        """We registered under another nickname: entries about it are now about us."""
        self._me = nick_key(my_nick)
        self._drop(self._me)

    def replace(self, participants: tuple[Participant, ...]) -> int:
        """Takes a whole LIST, in its order; returns how many were left out past the limit."""
        self._peers = {}
        self._at = {}
        left_out = 0
        for p in participants:
            if p.key == self._me:
                continue
            if self._full and p.key not in self._peers:
                left_out += 1
            else:
                self._put(p)
        return left_out

    def apply(self, update: Update) -> bool:
        """Applies an UPDATE; False when it changes nothing (about us, or already known)."""
        p = update.participant
        if p.key == self._me:
            return False
        if update.action is Action.JOIN:
            if self._peers.get(p.key) == p:
                return False
            if self._full and p.key not in self._peers:
                raise PeerTableFull(f"{self._limit} participants held, the limit")
            self._put(p)
            return True
        return self._drop(p.key)

    def by_address(self, ip: str, port: int) -> tuple[Participant, ...]:
        """Everyone registered at this UDP address (decision 21), in join order: one
        participant, none, or several when the address is claimed twice."""
        return tuple(self._peers[key] for key in self._at.get((ip, port), ()))

    @property
    def _full(self) -> bool:
        return self._limit is not None and len(self._peers) >= self._limit

    def _put(self, p: Participant) -> None:
        self._drop(p.key)  # a JOIN for someone known (e.g. at a new address) moves them last
        self._peers[p.key] = p
        self._at.setdefault(p.udp_address, {})[p.key] = None

    def _drop(self, key: str) -> bool:
        p = self._peers.pop(key, None)
        if p is None:
            return False
        keys = self._at[p.udp_address]
        del keys[key]
        if not keys:
            del self._at[p.udp_address]
        return True


# -- direct chats: one handshake per attempt ----------------------------------------


class ChatRole(Enum):
    INITIATOR = auto()  # sent the INIT, listens for the peer's connection
    RESPONDER = auto()  # answered an INIT, connects to the peer


class ChatState(Enum):
    INVITING = auto()  # INIT sent, neither ACK nor connection yet
    ACKED = auto()  # ACK came, the peer's connection has not
    CONNECTING = auto()  # we answered an INIT and are connecting
    OPEN = auto()
    CLOSED = auto()
    FAILED = auto()


class ChatEvent(Enum):
    ACK = auto()
    CONNECTED = auto()
    TIMEOUT = auto()
    CLOSE = auto()  # either side closed, or the attempt was dropped


_TRANSITIONS: Final[dict[tuple[ChatState, ChatEvent], ChatState]] = {
    (ChatState.INVITING, ChatEvent.ACK): ChatState.ACKED,
    # The connection may beat the ACK (decision 22).
    (ChatState.INVITING, ChatEvent.CONNECTED): ChatState.OPEN,
    (ChatState.INVITING, ChatEvent.TIMEOUT): ChatState.FAILED,
    (ChatState.INVITING, ChatEvent.CLOSE): ChatState.CLOSED,
    (ChatState.ACKED, ChatEvent.ACK): ChatState.ACKED,
    (ChatState.ACKED, ChatEvent.CONNECTED): ChatState.OPEN,
    (ChatState.ACKED, ChatEvent.TIMEOUT): ChatState.FAILED,
    (ChatState.ACKED, ChatEvent.CLOSE): ChatState.CLOSED,
    (ChatState.CONNECTING, ChatEvent.CONNECTED): ChatState.OPEN,
    (ChatState.CONNECTING, ChatEvent.TIMEOUT): ChatState.FAILED,
    (ChatState.CONNECTING, ChatEvent.CLOSE): ChatState.CLOSED,
    (ChatState.OPEN, ChatEvent.ACK): ChatState.OPEN,  # an ACK that lost the race
    (ChatState.OPEN, ChatEvent.CLOSE): ChatState.CLOSED,
}


class InvalidTransition(Exception):
    pass


# Decision 20: resend after 0.25, 0.5, 1 and 2 s, give up 5 s after the first INIT.
RETRY_DELAYS: Final = (0.25, 0.5, 1.0, 2.0)
ANSWER_TIMEOUT: Final = 5.0
# After the ACK (or, for the responder, the INIT), how long the TCP connection may take.
CONNECT_TIMEOUT: Final = 5.0


class TimerAction(Enum):
    NOTHING = auto()
    RESEND_INIT = auto()
    GIVE_UP = auto()


def new_secret() -> str:
    """128 random bits, URL-safe (decision 8)."""
    return secrets.token_urlsafe(16)


@dataclass(slots=True, eq=False)  # compared and hashed by identity
class Handshake:
    """One attempt at a direct chat with one peer, from INIT to close."""

    peer: Participant
    role: ChatRole
    secret: str
    started: float
    state: ChatState = field(init=False)
    _deadlines: list[float] = field(init=False, repr=False)
    _give_up_at: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.role is ChatRole.INITIATOR:
            self.state = ChatState.INVITING
            at, self._deadlines = self.started, []
            for delay in RETRY_DELAYS:
                at += delay
                self._deadlines.append(at)
            self._give_up_at = self.started + ANSWER_TIMEOUT
        else:
            self.state = ChatState.CONNECTING
            self._deadlines = []
            self._give_up_at = self.started + CONNECT_TIMEOUT

    @classmethod
    def outgoing(cls, peer: Participant, now: float) -> Handshake:
        return cls(peer, ChatRole.INITIATOR, new_secret(), now)

    @classmethod
    def incoming(cls, peer: Participant, secret: str, now: float) -> Handshake:
        return cls(peer, ChatRole.RESPONDER, secret, now)

    @property
    def pending(self) -> bool:
        return self.state in (ChatState.INVITING, ChatState.ACKED, ChatState.CONNECTING)

    @property
    def live(self) -> bool:
        """Pending or open: the chat with this peer, as far as anyone can tell."""
        return self.pending or self.state is ChatState.OPEN

    def accepts(self, event: ChatEvent) -> bool:
        """Whether ``event`` means anything in the current state (an ACK for a chat that
        ended, say, does not)."""
        return (self.state, event) in _TRANSITIONS

    def handle(self, event: ChatEvent, now: float) -> ChatState:
        try:
            new = _TRANSITIONS[(self.state, event)]
        except KeyError:
            raise InvalidTransition(f"{event.name} in state {self.state.name}") from None
        if self.state is ChatState.INVITING and new is ChatState.ACKED:
            self._deadlines = []
            self._give_up_at = now + CONNECT_TIMEOUT
        self.state = new
        return new

    def get_timer(self) -> float | None:
        """When ``handle_timer`` next has something to do; None when nothing is pending."""
        if not self.pending:
            return None
        return self._deadlines[0] if self._deadlines else self._give_up_at

    def handle_timer(self, now: float) -> TimerAction:
        if not self.pending:
            return TimerAction.NOTHING
        if now >= self._give_up_at:
            self.handle(ChatEvent.TIMEOUT, now)
            return TimerAction.GIVE_UP
        if self._deadlines and now >= self._deadlines[0]:
            while self._deadlines and now >= self._deadlines[0]:
                self._deadlines.pop(0)
            return TimerAction.RESEND_INIT
        return TimerAction.NOTHING


class InitVerdict(Enum):
    """What to do with an INIT from a known participant (decisions 21 and 24)."""

    ACCEPT = auto()  # ACK it and connect; any existing handshake with the peer is replaced
    ACK_AGAIN = auto()  # a repeat of an INIT already answered: ACK, open nothing
    IGNORE = auto()  # INITs crossed and ours wins, or a stale one of that race
    FULL = auto()  # it would open one chat more than the limit: no ACK, open nothing


class TooManyChats(Exception):
    """A new direct chat would go past the limit on chats pending or open."""


class DirectChats:
    """Every handshake and open direct chat of one client, one per peer (decision 24),
    at most ``max_chats`` of them pending or open at once."""

    __slots__ = ("_answered", "_by_peer", "_lost", "_max", "_me")

    # Secrets remembered per peer: enough for every retransmission in flight.
    REMEMBERED_SECRETS: Final = 8

    def __init__(self, my_nick: str, *, max_chats: int | None = None) -> None:
        self._me = nick_key(my_nick)
        self._max = max_chats
        self._by_peer: dict[str, Handshake] = {}
        # Secrets of INITs that lost a crossing, so a late retransmission of
        # one does not replace the chat that won (decision 24).
        self._lost: dict[str, deque[str]] = {}
        # Secrets of INITs we answered, so a late repeat opens nothing (decision 21).
        self._answered: dict[str, deque[str]] = {}

    def get(self, nick: str) -> Handshake | None:
        return self._by_peer.get(nick_key(nick))

    def rename(self, my_nick: str) -> None:
        """Crossing INITs are settled by the nickname we hold now (docs/PROTOCOL.md decision 24)."""
        self._me = nick_key(my_nick)

    def by_secret(self, secret: str) -> Handshake | None:
        for hs in self._by_peer.values():
            if hs.secret == secret and hs.role is ChatRole.INITIATOR:
                return hs
        return None

    def __iter__(self) -> Iterator[Handshake]:
        return iter(list(self._by_peer.values()))

    @property
    def full(self) -> bool:
        """As many chats as allowed are pending or open."""
        return self._max is not None and sum(hs.live for hs in self._by_peer.values()) >= self._max

    @property
    def full_reason(self) -> str:
        return f"{self._max} direct chats pending or open, the limit"

    def start(self, peer: Participant, now: float) -> Handshake:
        """A new chat we ask for; TooManyChats past the limit."""
        if self.full:
            raise TooManyChats(self.full_reason)
        hs = Handshake.outgoing(peer, now)
        self._by_peer[peer.key] = hs
        return hs

    def _remember(self, book: dict[str, deque[str]], peer: Participant, secret: str) -> None:
        book.setdefault(peer.key, deque(maxlen=self.REMEMBERED_SECRETS)).append(secret)

    def judge_init(self, peer: Participant, secret: str, now: float) -> InitVerdict:
        current = self._by_peer.get(peer.key)
        if secret in self._lost.get(peer.key, ()):
            return InitVerdict.IGNORE
        if secret in self._answered.get(peer.key, ()):
            return InitVerdict.ACK_AGAIN
        if current is None or not current.live:
            return InitVerdict.FULL if self.full else InitVerdict.ACCEPT
        if current.secret == secret:  # our own secret sent back: nonsense
            return InitVerdict.IGNORE
        # Crossed INITs: the nickname that sorts first wins. The losing INIT can
        # also arrive after our chat opened, if it was delayed: for as long as
        # INITs are resent, ours still wins.
        crossing = current.role is ChatRole.INITIATOR and (
            current.pending or now - current.started < ANSWER_TIMEOUT
        )
        if crossing and self._me < peer.key:
            self._remember(self._lost, peer, secret)
            return InitVerdict.IGNORE
        return InitVerdict.ACCEPT

    def accept(
        self, peer: Participant, secret: str, now: float
    ) -> tuple[Handshake, Handshake | None]:
        """Records an accepted INIT; returns the new handshake and the one it replaces."""
        replaced = self._by_peer.get(peer.key)
        if replaced is not None and not replaced.live:
            replaced = None
        hs = Handshake.incoming(peer, secret, now)
        self._by_peer[peer.key] = hs
        self._remember(self._answered, peer, secret)
        return hs, replaced

    def peer_left(self, nick: str) -> None:
        key = nick_key(nick)
        self._lost.pop(key, None)
        self._answered.pop(key, None)

    def forget(self, hs: Handshake) -> None:
        """Drops a handshake that ended, unless a newer one took its place."""
        if self._by_peer.get(hs.peer.key) is hs:
            del self._by_peer[hs.peer.key]
