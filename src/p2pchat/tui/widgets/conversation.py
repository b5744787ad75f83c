"""One conversation's scrollback: timestamped lines, other people's text shown literally."""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable

from rich.text import Text
from textual.widgets import RichLog

from ...textsafe import printable

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


def nick_colour(nick: str) -> str:
    return _NICK_COLOURS[zlib.crc32(nick.casefold().encode()) % len(_NICK_COLOURS)]


def mentions(text: str, nick: str) -> bool:
    """Whether ``text`` names ``nick`` as a word, in any case."""
    pattern = r"(?<![\w])" + re.escape(nick) + r"(?![\w])"
    return re.search(pattern, text, re.IGNORECASE) is not None


class Conversation(RichLog):
    """The lines of one tab. Everything from others goes through ``printable`` and
    ``Text``, so neither terminal escapes nor Textual markup can take effect."""

    def __init__(self, title: str, clock: Callable[[], str], **kwargs: object) -> None:
        super().__init__(wrap=True, markup=False, highlight=False, max_lines=10_000, **kwargs)  # type: ignore[arg-type]
        self.title = title  # "group", or the peer's nickname as first seen
        self._clock = clock

    def _stamp(self) -> Text:
        return Text(f"{self._clock()} ", style="dim")

    def message(self, nick: str, text: str, *, own: bool = False, highlight: bool = False) -> None:
        line = self._stamp()
        line.append("<", style="dim")
        line.append(printable(nick), style=f"bold {'white' if own else nick_colour(nick)}")
        line.append("> ", style="dim")
        line.append(printable(text), style="bold yellow" if highlight else "")
        self.write(line)

    def notice(self, text: str, style: str = "dim") -> None:
        """A line from the client itself (joins, chat state, help); ``text`` must be escaped."""
        line = self._stamp()
        line.append(text, style=style)
        self.write(line)

    def error(self, text: str) -> None:
        line = self._stamp()
        line.append("!!! ", style="bold red")
        line.append(printable(text), style="red")
        self.write(line)
