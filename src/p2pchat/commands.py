"""The input commands of every client UI: parsing a typed line into a command."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

HELP = """\
Commands:
  TEXT               broadcast TEXT to everyone (start it with // to send a leading /)
  /msg NICK TEXT     send TEXT in a direct chat with NICK, opening one if needed
  /chat NICK         open a direct chat with NICK
  /close NICK        close the direct chat with NICK
  /who               show the participants
  /ignore NICK       hide NICK's broadcasts and refuse direct chats from NICK
  /unignore NICK     undo /ignore
  /help              show this help
  /quit              leave and exit"""


class InputError(ValueError):
    """A typed line that is not a valid command; the text says how to fix it."""


@dataclass(frozen=True, slots=True)
class Say:
    text: str


@dataclass(frozen=True, slots=True)
class Msg:
    nick: str
    text: str


@dataclass(frozen=True, slots=True)
class OpenChat:
    nick: str


@dataclass(frozen=True, slots=True)
class CloseChat:
    nick: str


@dataclass(frozen=True, slots=True)
class Who:
    pass


@dataclass(frozen=True, slots=True)
class Ignore:
    nick: str


@dataclass(frozen=True, slots=True)
class Unignore:
    nick: str


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


Command = Say | Msg | OpenChat | CloseChat | Who | Ignore | Unignore | Help | Quit

COMMAND_NAMES = ("/msg", "/chat", "/close", "/who", "/ignore", "/unignore", "/help", "/quit")

# Typed as makers of a Command: a plain dict of the classes would be a dict of ``object``.
_NICK_COMMANDS: dict[str, Callable[[str], Command]] = {
    "/chat": OpenChat,
    "/close": CloseChat,
    "/ignore": Ignore,
    "/unignore": Unignore,
}
_BARE_COMMANDS: dict[str, Callable[[], Command]] = {"/who": Who, "/help": Help, "/quit": Quit}


def parse(line: str) -> Command | None:
    """The command a typed line means; None for an empty line; InputError if malformed."""
    if not line.strip():
        return None
    if not line.startswith("/"):
        return Say(line)
    if line.startswith("//"):
        return Say(line[1:])
    name, _, rest = line.partition(" ")
    name = name.lower()
    match name:
        case "/msg":
            # The text is kept exactly as typed after the nick, like a broadcast.
            nick, _, text = rest.lstrip(" ").partition(" ")
            if not nick or not text.strip():
                raise InputError("usage: /msg NICK TEXT")
            return Msg(nick, text)
        case "/chat" | "/close" | "/ignore" | "/unignore":
            nick = rest.strip()
            if not nick or " " in nick:
                raise InputError(f"usage: {name} NICK")
            return _NICK_COMMANDS[name](nick)
        case "/who" | "/help" | "/quit":
            if rest.strip():
                raise InputError(f"usage: {name}")
            return _BARE_COMMANDS[name]()
        case _:
            raise InputError(f"unknown command {name}; /help lists the commands")
