"""The server's protocol logic apart from its sockets: one global order of events,
and what each local connection is owed when an event takes its place in it.

A connection's REGISTER, BROADCAST or end is accepted in two steps. The
connection side (``server.py``) checks it and *submits* an ordered event
(``JoinEvent``, ``BroadcastEvent``, ``LeaveEvent``) to a ``Sequencer``. The
sequencer gives the event its place in the global order and tells the
``ServerCore``, which *applies* it: it updates the participant list and owes
each local connection what docs/PROTOCOL.md decisions 9, 13 and 15 say,
through the ``Outbox`` (the connection side's send queues).

One process uses ``LocalSequencer``: an event's place is the moment it is
submitted, so it is applied at once, in the same call, and one process handling
one message at a time gives the order of decision 14 as before. A cluster's
sequencer orders the events of every server in one place; each server then
applies every event, its own and the others', in that order, so every
participant sees the same list and the same order. Events of other servers
come with no origin here, and their participants are held in the registry by
a ``Remote``. Such a sequencer may also refuse a join that passed the local
checks (``ServerCore.refuse``): a nickname claimed at the same instant through
another server.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeAlias, TypeVar

from .protocol import Action, Participant, Update
from .state import RegistrationRefused, Registry, Remote

log = logging.getLogger("p2pchat.server")

C = TypeVar("C", bound=Hashable)
C_contra = TypeVar("C_contra", bound=Hashable, contravariant=True)


@dataclass(frozen=True, slots=True)
class JoinEvent(Generic[C]):
    """A participant joins. ``origin`` is its connection when it registered here,
    None when it registered through another server."""

    participant: Participant
    origin: C | None = None


@dataclass(frozen=True, slots=True)
class LeaveEvent:
    """A participant leaves: its connection ended, here or elsewhere; or the order
    dropped it (its server was declared dead), and then ``reason`` is the ERROR
    its connection gets if it is here and still open."""

    participant: Participant
    reason: str | None = None


# Not frozen, unlike the others: one is made per broadcast, and a frozen
# dataclass's __init__ costs four times as much. Nothing changes it all the same.
@dataclass(slots=True)
class BroadcastEvent(Generic[C]):
    """A broadcast, already encoded as every receiver gets it (decision 13).
    ``origin`` is the sender's connection when it is here, None otherwise."""

    sender: str
    data: bytes
    origin: C | None = None


OrderedEvent: TypeAlias = JoinEvent[C] | LeaveEvent | BroadcastEvent[C]


class Sequencer(Protocol[C]):
    """Gives each submitted event its place in the global order, then has the core
    apply it (``ServerCore.apply``): at once, or later, from any server. A join
    may be refused instead (``ServerCore.refuse``). Events submitted by one
    server keep their order among themselves."""

    def submit(self, event: OrderedEvent[C]) -> None: ...


class Outbox(Protocol[C_contra]):
    """What the core owes local connections, kept by the side that holds the sockets."""

    def admit(self, conn: C_contra) -> None:
        """``conn`` is about to join: nothing owed to the others so far is for it."""

    def welcome(self, conn: C_contra, participant: Participant, data: bytes) -> None:
        """``conn`` has joined as ``participant``: its LIST (``data``) goes out at once,
        and from now on it is owed what the others are."""

    def fan_out(self, data: bytes, exclude: C_contra | None, *, soon: bool = True) -> None:
        """Owes ``data`` to every local participant but ``exclude``; ``soon`` is false
        for UPDATEs, which may wait a little for company."""

    def refuse(self, conn: C_contra, reason: str) -> None:
        """``conn``'s REGISTER or BROADCAST was refused: the ERROR, and it may go on."""

    def expel(self, conn: C_contra, reason: str) -> None:
        """``conn`` is off the list by the order's say (not because it ended): the
        ERROR, and it is closed. Nothing when it has ended already."""


class ServerCore(Generic[C]):
    """Applies events in their global order: keeps the participant list (in global
    join order, local and remote participants alike) and decides what each local
    connection is owed."""

    __slots__ = ("_out", "registry")

    def __init__(self, out: Outbox[C]) -> None:
        self._out = out
        self.registry: Registry[C | Remote] = Registry()

    def apply(self, event: OrderedEvent[C]) -> None:
        """``event`` now has its place in the global order."""
        # Broadcasts first: they are nearly all of the events.
        if type(event) is BroadcastEvent:
            # Decision 13: to everyone but its sender.
            self._out.fan_out(event.data, event.origin)
        elif type(event) is JoinEvent:
            self._join(event)
        elif type(event) is LeaveEvent:
            self._leave(event)
        else:
            raise TypeError(f"not an ordered event: {event!r}")

    def refuse(self, event: JoinEvent[C] | BroadcastEvent[C], reason: str) -> None:
        """The sequencer refused a join (say, its nickname was claimed through another
        server first) or a broadcast (say, the order cannot be reached): it never
        takes a place in the order, and its connection gets the ERROR."""
        if event.origin is not None:
            self._out.refuse(event.origin, reason)

    def _join(self, event: JoinEvent[C]) -> None:
        participant, origin = event.participant, event.origin
        out = self._out
        if origin is not None:
            out.admit(origin)  # before it is on the list: nothing owed so far is for it
        try:
            self.registry.register(
                origin if origin is not None else Remote(participant.key), participant
            )
        except RegistrationRefused as refused:
            # The local checks and the sequencer let it through, yet the list in this
            # order has no room: every server applying the same order refuses it alike.
            log.warning("join of %s refused in order: %s", participant.nick, refused)
            if origin is not None:
                out.refuse(origin, str(refused))
            return
        # Decision 9: the others hear of the join; the newcomer gets its LIST, at once
        # and before anything about itself (it is excluded from its own UPDATE).
        out.fan_out(Update(Action.JOIN, participant).encode(), origin, soon=False)
        if origin is not None:
            out.welcome(origin, participant, self.registry.encoded_list())
        else:
            log.debug("join %s through another server", participant.nick)

    def _leave(self, event: LeaveEvent) -> None:
        registry = self.registry
        holder = registry.holder(event.participant.key)
        if holder is None:
            return  # not on the list (its join was refused, or it left already)
        participant = registry.unregister(holder)
        assert participant is not None
        if not isinstance(holder, Remote):
            # Its own leave, or dropped by the order while still connected here (its
            # server was cut off for too long): then it is closed, and told why.
            self._out.expel(holder, event.reason or "you were dropped from the chat")
        # Decision 15, to everyone left; the one leaving is no longer owed anything.
        self._out.fan_out(Update(Action.LEAVE, participant).encode(), None, soon=False)


class LocalSequencer(Generic[C]):
    """One process: an event's place in the order is the moment it is submitted, so
    it is applied at once, in the same call."""

    __slots__ = ("submit",)

    def __init__(self, core: ServerCore[C]) -> None:
        # The core's own method, so that submitting costs no call of its own.
        self.submit = core.apply
