"""What the client library tells its user: facts, one class each, for UIs and bots,
and the queue that holds them until the user takes them."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .protocol import Participant

if TYPE_CHECKING:
    import asyncio


@dataclass(frozen=True, slots=True)
class Registered:
    """The server accepted us under this nickname and UDP address."""

    participant: Participant


@dataclass(frozen=True, slots=True)
class ParticipantsListed:
    """The whole participant list (after a LIST, and when asked for)."""

    participants: tuple[Participant, ...]


@dataclass(frozen=True, slots=True)
class PeerJoined:
    participant: Participant


@dataclass(frozen=True, slots=True)
class PeerLeft:
    participant: Participant


@dataclass(frozen=True, slots=True)
class BroadcastReceived:
    nick: str
    text: str


@dataclass(frozen=True, slots=True)
class ChatOpened:
    """A direct chat is open; ``initiator`` is true when this side sent the INIT."""

    peer: str
    initiator: bool


@dataclass(frozen=True, slots=True)
class ChatReceived:
    """A direct message from ``peer``."""

    peer: str
    text: str


@dataclass(frozen=True, slots=True)
class ChatClosed:
    peer: str
    reason: str


@dataclass(frozen=True, slots=True)
class ChatFailed:
    """A direct chat could not be opened; texts waiting for it were not sent."""

    peer: str
    reason: str
    unsent: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerError:
    """An ERROR from the server."""

    text: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The server connection was lost; ``retry_in`` is None when no retry follows."""

    reason: str
    retry_in: float | None


@dataclass(frozen=True, slots=True)
class NickChanged:
    """We are registered under a new nickname: the one asked for with ``change_nick``,
    or ``NICK_`` (``NICK__``, ...) when ours was taken at a reconnect."""

    old: str
    new: str
    reason: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the client itself tells the user, e.g. that one of its limits was reached."""

    text: str


ClientEvent = (
    Registered
    | ParticipantsListed
    | PeerJoined
    | PeerLeft
    | BroadcastReceived
    | ChatOpened
    | ChatReceived
    | ChatClosed
    | ChatFailed
    | ServerError
    | Disconnected
    | NickChanged
    | Notice
)


# An event object and its place in the queue, roughly; texts are counted on top.
_EVENT_BYTES = 100


def _participant_bytes(p: Participant) -> int:
    return _EVENT_BYTES + sys.getsizeof(p.nick) + sys.getsizeof(p.ip)


def event_bytes(event: ClientEvent) -> int:
    """About how much memory ``event`` holds: its texts and participants, and a bit more."""
    size = sys.getsizeof
    # Bare class patterns: keyword sub-patterns cost twice the time, per message.
    match event:
        case ChatReceived():
            held = size(event.peer) + size(event.text)
        case BroadcastReceived():
            held = size(event.nick) + size(event.text)
        case ParticipantsListed():
            held = sum(_participant_bytes(p) for p in event.participants)
        case Registered() | PeerJoined() | PeerLeft():
            held = _participant_bytes(event.participant)
        case ChatFailed():
            held = size(event.peer) + size(event.reason) + sum(size(t) for t in event.unsent)
        case ChatClosed():
            held = size(event.peer) + size(event.reason)
        case ChatOpened():
            held = size(event.peer)
        case ServerError() | Notice():
            held = size(event.text)
        case Disconnected():
            held = size(event.reason)
        case NickChanged():
            held = size(event.old) + size(event.new) + size(event.reason)
    return _EVENT_BYTES + held


def _give(sink: Callable[[ClientEvent], None], event: ClientEvent) -> None:
    try:
        sink(event)
    except Exception:  # the front end's bug: its client goes on
        logging.getLogger("p2pchat.client").exception("showing %r failed", event)


class EventQueue:
    """Events for the user, in order, counted in events and in bytes.

    ``put`` never refuses an event. Past either limit ``has_room`` turns false,
    and the socket readers wait in ``room()`` before each event they would add,
    until the user has taken the queue down to half of both: a user that falls
    behind slows its server and peers down (TCP holds what they send) instead
    of losing events or growing memory. Events not read from a socket (a chat
    opening or ending, a reconnect) are few, and bounded by the other limits.
    """

    def __init__(self, max_events: int, max_bytes: int) -> None:
        import asyncio  # here: the events themselves are made by the sans-IO core

        self._queue: asyncio.Queue[tuple[ClientEvent, int]] = asyncio.Queue()
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._bytes = 0
        self._room = asyncio.Event()
        self._room.set()
        self._sink: Callable[[ClientEvent], None] | None = None

    def __len__(self) -> int:
        return self._queue.qsize()

    @property
    def bytes(self) -> int:
        """About how much memory the unread events hold."""
        return self._bytes

    @property
    def has_room(self) -> bool:
        return self._room.is_set()

    def deliver_to(self, sink: Callable[[ClientEvent], None]) -> None:
        """From now on every event goes to ``sink`` as it happens, the waiting ones
        first, instead of waiting in the queue; the queue never fills."""
        while (event := self.poll()) is not None:
            _give(sink, event)
        self._sink = sink

    def put(self, event: ClientEvent) -> None:
        if self._sink is not None:
            _give(self._sink, event)
            return
        cost = event_bytes(event)
        self._queue.put_nowait((event, cost))
        self._bytes += cost
        if self._queue.qsize() >= self._max_events or self._bytes >= self._max_bytes:
            self._room.clear()

    def _taken(self, cost: int) -> None:
        self._bytes -= cost
        if (
            not self._room.is_set()
            and self._queue.qsize() <= self._max_events // 2
            and self._bytes <= self._max_bytes // 2
        ):
            self._room.set()

    async def get(self) -> ClientEvent:
        event, cost = await self._queue.get()
        self._taken(cost)
        return event

    def poll(self) -> ClientEvent | None:
        if self._queue.empty():
            return None
        event, cost = self._queue.get_nowait()
        self._taken(cost)
        return event

    async def room(self) -> None:
        """Returns once there is room (at once, if there is)."""
        await self._room.wait()
