"""One conversation's scrollback: the presenter's lines, timestamped and styled by kind."""

from __future__ import annotations

import zlib
from collections.abc import Callable

from rich.text import Text
from textual.widgets import RichLog

from ...conversations import Conversation as Chat
from ...conversations import Group
from ...present import Kind, Line

# Nick colours, picked by a stable hash so a nick keeps its colour across runs.
_NICK_COLOURS = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "bright_cyan",
    "bright_magenta",
    "bright_green",
    "bright_yellow",
    "bright_blue",
    "red",
    "bright_red",
)

_STYLES = {
    Kind.JOINED: "green",
    Kind.LEFT: "dim red",
    Kind.NOTICE: "dim",
    Kind.WARNING: "yellow",
    Kind.ERROR: "red",
    Kind.INFO: "",
}


def nick_colour(nick: str) -> str:
    return _NICK_COLOURS[zlib.crc32(nick.casefold().encode()) % len(_NICK_COLOURS)]


class Conversation(RichLog):
    """The lines of one tab. They come escaped from the presenter and are drawn as
    ``Text``, so neither terminal escapes nor Textual markup can take effect."""

    def __init__(self, chat: Chat, clock: Callable[[], str], **kwargs: object) -> None:
        super().__init__(wrap=True, markup=False, highlight=False, max_lines=10_000, **kwargs)  # type: ignore[arg-type]
        self.chat = chat
        self.title = chat.title  # "group", or the peer's nickname as first seen
        self._clock = clock

    def show(self, line: Line) -> None:
        text = Text(f"{self._clock()} ", style="dim")
        if line.kind in (Kind.MESSAGE, Kind.OWN):
            own = line.kind is Kind.OWN
            text.append("<", style="dim")
            text.append(line.nick, style=f"bold {'white' if own else nick_colour(line.nick)}")
            text.append("> ", style="dim")
            # In the group a mention stands out; in a direct chat every line is for you.
            highlight = line.mention and isinstance(self.chat, Group)
            text.append(line.body, style="bold yellow" if highlight else "")
        elif line.kind is Kind.ERROR and line.text.startswith("!!! "):
            text.append("!!! ", style="bold red")
            text.append(line.text[4:], style="red")
        else:
            text.append(line.text, style=_STYLES[line.kind])
        self.write(text)
