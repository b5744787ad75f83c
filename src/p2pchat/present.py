"""What every front end shows: each library event, and each outcome of a command, as lines.

The one place where events become text. ``Presenter`` turns them into
``Line``s (the text, the conversation it belongs to, what kind of line it is
for styling) and into the JSON object of ``--json``; the line modes, the
conversation logs and the full-screen client all show these, so they say the
same thing and escape other people's text the same way (``textsafe.printable``,
applied here and nowhere else).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .conversations import GROUP, Conversation, Direct
from .core import CLOSED_BY_YOU, closed_by_peer
from .events import (
    BroadcastReceived,
    ChatClosed,
    ChatFailed,
    ChatOpened,
    ChatReceived,
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
from .protocol import Participant, nick_key
from .textsafe import printable


class Kind(enum.Enum):
    """What a line is, for styling."""

    MESSAGE = "message"  # someone else's text
    OWN = "own"  # what we sent
    JOINED = "joined"
    LEFT = "left"
    NOTICE = "notice"  # the chat's state: registered, a chat opened, hosting
    WARNING = "warning"  # a chat closed, a limit reached
    ERROR = "error"
    INFO = "info"  # an answer to a command: /help, /who


@dataclass(frozen=True, slots=True)
class Line:
    """One line to show. ``conversation`` None: wherever the user is now.

    Every text is escaped already. ``logged`` is false for answers to the user's
    own commands, which conversation logs leave out.
    """

    conversation: Conversation | None
    text: str
    kind: Kind
    nick: str = ""  # MESSAGE and OWN: the sender
    body: str = ""  # MESSAGE and OWN: what they said
    mention: bool = False  # the text names us (a direct message always counts)
    logged: bool = True


@dataclass(frozen=True, slots=True)
class Report:
    """What one event or outcome shows: lines for people, an object for ``--json``."""

    lines: tuple[Line, ...] = ()
    record: dict[str, Any] | None = None
    event: ClientEvent | None = None


def mentions(text: str, nick: str) -> bool:
    """Whether ``text`` names ``nick`` as a word, in any case."""
    pattern = r"(?<![\w])" + re.escape(nick) + r"(?![\w])"
    return re.search(pattern, text, re.IGNORECASE) is not None


def closed_text(event: ChatClosed) -> str:
    """A closed direct chat in words, for people (``--json`` keeps the bare reason)."""
    return f"direct chat with {printable(event.peer)} closed ({_why(event.peer, event.reason)})"


def _why(peer: str, reason: str) -> str:
    """Why a direct chat ended, in words: the library's reasons for a close by either side."""
    if reason == CLOSED_BY_YOU:
        return "you closed it"
    if reason == closed_by_peer(peer):
        return f"{printable(peer)} closed it"
    return printable(reason)


def title(chat: Conversation) -> str:
    """A conversation's name, for a tab: the group's, or the peer's nickname."""
    return printable(chat.title)


def nick_label(nick: str) -> str:
    """A nickname where the front end draws it itself (participant list, status line)."""
    return printable(nick)


def join_text(address: str, join: str | None = None) -> str:
    """What others type to join the chat we host at ``address`` (``join`` when known)."""
    return join or f"p2pchat --server {address}"


def hosting_warning(others: int) -> str:
    """What quitting a chat we host does to the ``others`` in it."""
    return f"you are hosting: {count(others, 'participant')} will be disconnected"


def quit_question(others: int) -> str:
    """The full-screen client's question before quitting a chat we host."""
    return (
        f"You are hosting this chat: {count(others, 'participant')} will be disconnected. "
        "Quit? Enter quits, Escape stays"
    )


def participant_record(p: Participant) -> dict[str, Any]:
    return {"nick": p.nick, "ip": p.ip, "udp_port": p.udp_port}


def record(event: ClientEvent) -> dict[str, Any]:
    """The ``--json`` object of an event, as README's table documents it."""
    match event:
        case Registered(participant=p):
            return {"event": "registered", **participant_record(p)}
        case ParticipantsListed(participants=ps):
            return participants_record(ps)
        case PeerJoined(participant=p):
            return {"event": "join", **participant_record(p)}
        case PeerLeft(participant=p):
            return {"event": "leave", **participant_record(p)}
        case BroadcastReceived(nick=nick, text=text):
            return {"event": "broadcast", "from": nick, "text": text}
        case ChatOpened(peer=peer, initiator=initiator):
            return {"event": "chat_opened", "peer": peer, "initiator": initiator}
        case ChatReceived(peer=peer, text=text):
            return {"event": "chat", "from": peer, "text": text}
        case ChatClosed(peer=peer, reason=reason):
            return {"event": "chat_closed", "peer": peer, "reason": reason}
        case ChatFailed(peer=peer, reason=reason, unsent=unsent):
            return {"event": "chat_failed", "peer": peer, "reason": reason, "unsent": list(unsent)}
        case ServerError(text=text):
            return {"event": "error", "message": text, "source": "server"}
        case Disconnected(reason=reason, retry_in=retry_in):
            return {"event": "disconnected", "reason": reason, "retry_in": retry_in}
        case NickChanged(old=old, new=new, reason=reason):
            return {"event": "nick_changed", "old": old, "new": new, "reason": reason}
        case Notice(text=text):
            return {"event": "notice", "message": text}


def participants_record(participants: Iterable[Participant]) -> dict[str, Any]:
    return {"event": "participants", "participants": [participant_record(p) for p in participants]}


def count(n: int, what: str) -> str:
    """``n`` things, in words: "1 participant", "2 participants"."""
    return f"{n} {what}{'' if n == 1 else 's'}"


@dataclass(slots=True)
class _Chats:
    """The direct chats as the events told them: which are open, and our texts waiting
    to be shown once their chat opens. Which texts were not sent, the library says
    (``ChatFailed.unsent``)."""

    open: set[str] = field(default_factory=set)
    waiting: dict[str, list[str]] = field(default_factory=dict)


class Presenter:
    """Turns events and command outcomes into Reports, remembering what the text depends on:
    our nickname, which direct chats are open, whom we ignore.

    ``hints`` adds what to type next to a few lines (for the line modes, where
    there are no tabs to type in).
    """

    def __init__(self, me: str, *, hints: bool = False) -> None:
        self.me = me
        self._hints = hints
        self._chats = _Chats()
        self._ignored: set[str] = set()

    # -- what the user asked for ----------------------------------------------------

    def ignore(self, nick: str) -> None:
        """Nothing from ``nick`` is shown from now on (the library hides most; this, the rest)."""
        self._ignored.add(nick_key(nick))

    def unignore(self, nick: str) -> None:
        self._ignored.discard(nick_key(nick))

    def _ignores(self, nick: str) -> bool:
        return nick_key(nick) in self._ignored

    # -- events ---------------------------------------------------------------------

    def event(self, event: ClientEvent) -> Report:
        if isinstance(event, BroadcastReceived | ChatReceived):
            sender = event.nick if isinstance(event, BroadcastReceived) else event.peer
            if self._ignores(sender):
                return Report(event=event)
        lines = tuple(self._lines(event))
        return Report(lines, record(event), event)

    def _lines(self, event: ClientEvent) -> Iterable[Line]:
        match event:
            case Registered(participant=p):
                self.me = p.nick
                yield Line(
                    GROUP, f"*** registered as {printable(p.nick)} ({p.endpoint})", Kind.NOTICE
                )
            case ParticipantsListed(participants=ps):
                yield self._participants_line(ps, GROUP)
            case PeerJoined(participant=p):
                yield Line(GROUP, f"--> {printable(p.nick)} joined ({p.endpoint})", Kind.JOINED)
            case PeerLeft(participant=p):
                yield Line(GROUP, f"<-- {printable(p.nick)} left", Kind.LEFT)
            case BroadcastReceived(nick=nick, text=text):
                yield self._message(GROUP, nick, text, Kind.MESSAGE, mentions(text, self.me))
            case ChatOpened(peer=peer, initiator=initiator):
                chat = Direct(peer)
                self._chats.open.add(chat.key)
                how = "you asked" if initiator else f"{printable(peer)} asked"
                yield Line(
                    chat, f"*** direct chat with {printable(peer)} open ({how})", Kind.NOTICE
                )
                if self._hints:
                    hint = f"*** /msg {printable(peer)} TEXT to talk"
                    yield Line(chat, hint, Kind.INFO, logged=False)
                for text in self._chats.waiting.pop(chat.key, []):
                    yield self._message(chat, self.me, text, Kind.OWN)
            case ChatReceived(peer=peer, text=text):
                yield self._message(Direct(peer), peer, text, Kind.MESSAGE, True)
            case ChatClosed(peer=peer):
                chat = Direct(peer)
                self._chats.open.discard(chat.key)
                yield Line(chat, f"*** {closed_text(event)}", Kind.WARNING)
            case ChatFailed(peer=peer, reason=reason, unsent=unsent):
                chat = Direct(peer)
                self._chats.open.discard(chat.key)
                lost = f" ({count(len(unsent), 'message')} not sent)" if unsent else ""
                yield Line(
                    chat,
                    f"!!! direct chat with {printable(peer)} failed: {_why(peer, reason)}{lost}",
                    Kind.ERROR,
                )
                self._chats.waiting.pop(chat.key, None)
                for text in unsent:
                    yield Line(chat, f"!!! not sent: {printable(text)}", Kind.ERROR)
            case ServerError(text=text):
                yield Line(GROUP, f"!!! server: {printable(text)}", Kind.ERROR)
            case Disconnected(reason=reason, retry_in=retry_in):
                again = f"; reconnecting in {retry_in:.1f} s" if retry_in is not None else ""
                yield Line(GROUP, f"!!! disconnected: {printable(reason)}{again}", Kind.ERROR)
            case NickChanged(old=old, new=new, reason=reason):
                self.me = new
                yield Line(
                    GROUP,
                    f"*** {printable(old)} is now {printable(new)} ({printable(reason)})",
                    Kind.NOTICE,
                )
            case Notice(text=text):
                yield Line(GROUP, f"!!! {printable(text)}", Kind.WARNING)

    def _message(
        self, chat: Conversation, nick: str, text: str, kind: Kind, mention: bool = False
    ) -> Line:
        nick, text = printable(nick), printable(text)
        return Line(chat, f"<{nick}> {text}", kind, nick=nick, body=text, mention=mention)

    def _participants_line(
        self, participants: tuple[Participant, ...], where: Conversation | None
    ) -> Line:
        me = nick_key(self.me)
        names = ", ".join(
            printable(p.nick) + (" (you)" if p.key == me else "") for p in participants
        )
        text = f"*** {len(participants)} participant(s): {names}"
        return Line(where, text, Kind.INFO, logged=False)

    # -- outcomes of commands --------------------------------------------------------

    def sent(self, text: str, chat: Conversation) -> Report:
        """We sent ``text``. A direct text whose chat is still opening shows once it opens
        (after the line saying so), or as not sent if it fails."""
        if isinstance(chat, Direct) and chat.key not in self._chats.open:
            self._chats.waiting.setdefault(chat.key, []).append(text)
            return Report()
        return Report((self._message(chat, self.me, text, Kind.OWN),))

    def info(self, text: str) -> Report:
        lines = tuple(
            Line(None, printable(line), Kind.INFO, logged=False) for line in text.splitlines()
        )
        return Report(lines, {"event": "info", "message": text})

    def error(self, text: str, chat: Conversation | None = None) -> Report:
        line = Line(chat, f"!!! {printable(text)}", Kind.ERROR, logged=False)
        return Report((line,), {"event": "error", "message": text, "source": "local"})

    def participants(self, participants: tuple[Participant, ...]) -> Report:
        """The participant list, as asked for with /who."""
        line = self._participants_line(participants, None)
        return Report((line,), participants_record(participants))

    def hosting(self, address: str, join: str | None = None, web: str | None = None) -> Report:
        """We host a chat at ``address``; ``join`` is the command others type to join it,
        ``web`` the address of its web client, if it serves one."""
        join = join_text(address, join)
        text = f"*** hosting a chat on {address}; others join with: {join}"
        record = {"event": "hosting", "address": address, "command": join}
        if web is not None:
            text += f", or in a browser at {web}"
            record["web"] = web
        line = Line(GROUP, text, Kind.NOTICE, logged=False)
        return Report((line,), record)

    def leaving_hosted(self, others: int) -> Report:
        """We quit a chat we host while others are in it."""
        text = hosting_warning(others)
        line = Line(GROUP, f"!!! {text}", Kind.WARNING, logged=False)
        return Report((line,), {"event": "notice", "message": text})

    def log_record(self, level: str, message: str) -> Report:
        """One of the library's log records (the full-screen client shows them)."""
        line = Line(GROUP, printable(f"[{level}] {message}"), Kind.NOTICE, logged=False)
        return Report((line,))
