"""What a browser session's page is sent: the presenter's reports as the messages of
the page's protocol, and each conversation's last lines for a page that comes back.

Pure: fed reports and ``now``, it returns the messages to send (JSON-ready
dicts) and keeps the history. The text is the presenter's, the same as every
other front end shows; the page puts it on screen as text, never as markup.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..conversations import GROUP, Conversation, Direct
from ..present import Line, Report, participant_record
from ..protocol import Participant

GROUP_TAB = "group"
HISTORY_LINES = 500
HISTORY_CHARS = 256 * 1024
DIRECT_TABS = 20


def tab_of(chat: Conversation) -> str:
    """A conversation's id on the page: ``group``, or ``d:`` and the peer's nickname key
    (a participant called ``group`` still has a direct tab of its own)."""
    return f"d:{chat.key}" if isinstance(chat, Direct) else GROUP_TAB


def title_of(chat: Conversation) -> str:
    return chat.nick if isinstance(chat, Direct) else "Group"


def line_record(line: Line, now: float) -> dict[str, Any]:
    return {
        "time": int(now * 1000),
        "kind": line.kind.value,
        "text": line.text,
        "nick": line.nick,
        "body": line.body,
        "mention": line.mention,
    }


def participants_message(participants: Iterable[Participant], me: str) -> dict[str, Any]:
    return {
        "type": "participants",
        "participants": [participant_record(p) for p in participants],
        "me": me,
    }


@dataclass(slots=True)
class _Tab:
    title: str
    lines: deque[dict[str, Any]] = field(default_factory=deque)
    size: int = 0  # characters of text kept, about its bytes

    def keep(self, record: dict[str, Any], most: int, most_chars: int) -> None:
        """Keeps ``record``, then forgets the oldest lines past ``most`` lines or
        ``most_chars`` characters (the newest is always kept)."""
        self.lines.append(record)
        self.size += len(record["text"]) + len(record["body"])
        while len(self.lines) > 1 and (len(self.lines) > most or self.size > most_chars):
            old = self.lines.popleft()
            self.size -= len(old["text"]) + len(old["body"])


@dataclass(slots=True)
class WebView:
    """One session's conversations as its page shows them: the group first, then each
    direct chat in the order it first had a line, each with its last ``history`` lines."""

    history: int = HISTORY_LINES
    # What one session may hold, whatever others send it: a conversation's lines are
    # also at most this many characters (the largest broadcast is 64 KiB), and past
    # this many direct chats the one quiet the longest is forgotten.
    history_chars: int = HISTORY_CHARS
    direct_tabs: int = DIRECT_TABS
    _tabs: dict[str, _Tab] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._tab(GROUP)

    def _tab(self, chat: Conversation) -> tuple[str, _Tab]:
        tab = tab_of(chat)
        found = self._tabs.get(tab)
        if found is None:
            if isinstance(chat, Direct) and len(self._tabs) > self.direct_tabs:
                quiet = next(t for t in self._tabs if t != GROUP_TAB)
                del self._tabs[quiet]
            found = self._tabs[tab] = _Tab(title_of(chat))
        elif isinstance(chat, Direct):
            found.title = chat.nick  # the peer's nickname as last written
            self._tabs[tab] = self._tabs.pop(tab)  # the most recently active last
        return tab, found

    def report(self, report: Report, current: Conversation, now: float) -> list[dict[str, Any]]:
        """The ``line`` messages of ``report``; a line meant for wherever the user is goes to
        ``current``, the tab the command came from."""
        messages = []
        for line in report.lines:
            tab, kept = self._tab(line.conversation or current)
            record = line_record(line, now)
            kept.keep(record, self.history, self.history_chars)
            messages.append({"type": "line", "tab": tab, "title": kept.title, "line": record})
        return messages

    def conversation(self, tab: str) -> Conversation | None:
        """The conversation of a tab the page names; None for one it was never sent."""
        if tab == GROUP_TAB:
            return GROUP
        kept = self._tabs.get(tab)
        return Direct(kept.title) if kept is not None else None

    def focus(self, chat: Direct) -> dict[str, Any]:
        tab, kept = self._tab(chat)
        return {"type": "focus", "tab": tab, "title": kept.title}

    def tabs(self) -> list[dict[str, Any]]:
        """Every conversation with its lines, oldest first, the group first: for
        ``welcome``."""
        return [
            {"tab": tab, "title": kept.title, "lines": list(kept.lines)}
            for tab, kept in self._tabs.items()
        ]

    def welcome(
        self, token: str, nick: str, server: str, participants: Iterable[Participant]
    ) -> dict[str, Any]:
        return {
            "type": "welcome",
            "token": token,
            "nick": nick,
            "server": server,
            "participants": [participant_record(p) for p in participants],
            "tabs": self.tabs(),
        }


__all__ = [
    "GROUP",
    "GROUP_TAB",
    "HISTORY_LINES",
    "WebView",
    "line_record",
    "participants_message",
    "tab_of",
    "title_of",
]
