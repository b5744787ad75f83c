"""What the client library tells its user: facts, one class each, for UIs and bots."""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import Participant


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
    | Notice
)
