"""The input commands of every client UI: parsing a typed line into a command."""

from __future__ import annotations

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
            return {
                "/chat": OpenChat,
                "/close": CloseChat,
                "/ignore": Ignore,
                "/unignore": Unignore,
            }[name](nick)
        case "/who" | "/help" | "/quit":
            if rest.strip():
                raise InputError(f"usage: {name}")
            return {"/who": Who, "/help": Help, "/quit": Quit}[name]()
        case _:
            raise InputError(f"unknown command {name}; /help lists the commands")
