"""The input commands of every client UI, in one table: name, arguments, help and effect.

Parsing, Tab completion, /help and README's table of commands all come from
``TABLE``; each command's effect is its class's ``run``, carried out on a
``Session`` (the client, the presenter, and what the front end offers: where
the user is, showing lines, quitting). This module loads no I/O: the client
and the presenter are only named for type checking.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .conversations import Conversation, Direct
from .protocol import nick_key

if TYPE_CHECKING:
    from .client import ChatClient
    from .present import Presenter, Report


class InputError(ValueError):
    """A typed line that is not a valid command; the text says how to fix it."""


class Session(Protocol):
    """What a command acts on; each front end provides one."""

    @property
    def client(self) -> ChatClient: ...

    @property
    def presenter(self) -> Presenter: ...

    @property
    def current(self) -> Conversation:
        """The conversation the user is in (the line modes: always the group)."""

    def show(self, report: Report) -> None: ...

    def focus(self, chat: Direct) -> None:
        """Brings ``chat`` to the front, where the front end has tabs."""

    async def quit(self) -> None:
        """Leaves (the full-screen client may ask first)."""

    def help_text(self) -> str: ...


# Argument names: TEXT takes the rest of the line exactly as typed; the others, one word.
NICK = "NICK"
TEXT = "TEXT"
NEW = "NEW"


class _Command:
    """A parsed command; ``run`` is its effect."""

    @property
    def conversation(self) -> Conversation | None:
        """Where an error from this command belongs (None: wherever the user is)."""
        return None

    async def run(self, s: Session) -> None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Say(_Command):
    text: str

    async def run(self, s: Session) -> None:
        where = s.current  # a direct tab sends its text to that peer
        if isinstance(where, Direct):
            await s.client.send_chat(where.nick, self.text)
        else:
            await s.client.broadcast(self.text)
        s.show(s.presenter.sent(self.text, where))


@dataclass(frozen=True, slots=True)
class _NickCommand(_Command):
    nick: str

    @property
    def conversation(self) -> Conversation:
        return Direct(self.nick)


@dataclass(frozen=True, slots=True)
class Msg(_NickCommand):
    text: str

    async def run(self, s: Session) -> None:
        await s.client.send_chat(self.nick, self.text)
        s.show(s.presenter.sent(self.text, Direct(self.nick)))


@dataclass(frozen=True, slots=True)
class OpenChat(_NickCommand):
    async def run(self, s: Session) -> None:
        if _is_other(s.client, self.nick):
            s.focus(Direct(self.nick))
        s.client.start_chat(self.nick)


@dataclass(frozen=True, slots=True)
class CloseChat(_NickCommand):
    async def run(self, s: Session) -> None:
        if not s.client.close_chat(self.nick):
            s.show(s.presenter.error(f"no direct chat with {self.nick}", self.conversation))


@dataclass(frozen=True, slots=True)
class Who(_Command):
    async def run(self, s: Session) -> None:
        s.show(s.presenter.participants(s.client.participants))


@dataclass(frozen=True, slots=True)
class Ignore(_Command):
    nick: str

    async def run(self, s: Session) -> None:
        if nick_key(self.nick) == nick_key(s.client.nick):
            s.show(s.presenter.error("you cannot ignore yourself"))
            return
        if not _is_other(s.client, self.nick):
            s.show(s.presenter.error(f"nobody called {self.nick!r} is here"))
            return
        s.presenter.ignore(self.nick)
        s.client.ignore(self.nick)
        # ChatClient.ignore also ends a chat with them, pending or open.
        s.show(s.presenter.info(f"ignoring {self.nick}: broadcasts hidden, direct chats refused"))


@dataclass(frozen=True, slots=True)
class Unignore(_Command):
    nick: str

    async def run(self, s: Session) -> None:
        s.client.unignore(self.nick)
        s.presenter.unignore(self.nick)
        s.show(s.presenter.info(f"no longer ignoring {self.nick}"))


@dataclass(frozen=True, slots=True)
class Nick(_Command):
    new: str

    async def run(self, s: Session) -> None:
        if self.new == s.client.nick:  # no change, so no event: say so rather than nothing
            s.show(s.presenter.info(f"you are already {self.new}"))
            return
        await s.client.change_nick(self.new)  # a NickChanged event says it is done


@dataclass(frozen=True, slots=True)
class Help(_Command):
    async def run(self, s: Session) -> None:
        s.show(s.presenter.info(s.help_text()))


@dataclass(frozen=True, slots=True)
class Quit(_Command):
    async def run(self, s: Session) -> None:
        await s.quit()


Command = Say | Msg | OpenChat | CloseChat | Who | Ignore | Unignore | Nick | Help | Quit


def _is_other(client: ChatClient, nick: str) -> bool:
    """Whether ``nick`` is someone in the chat other than us."""
    key = nick_key(nick)
    return key != nick_key(client.nick) and any(p.key == key for p in client.participants)


@dataclass(frozen=True, slots=True)
class Spec:
    """One row of the table: the command's name, its arguments, its help; ``make``
    builds the parsed command from the arguments, and that command's ``run`` is the effect."""

    name: str
    args: tuple[str, ...]
    help: str
    make: Callable[..., Command]

    @property
    def usage(self) -> str:
        return " ".join((self.name, *self.args))


# A line that is no command: /help shows it as TEXT, README as "a line not starting with /".
SAY_HELP = "broadcast it (//text broadcasts /text)"

TABLE: tuple[Spec, ...] = (
    Spec(
        "/msg",
        (NICK, TEXT),
        "send TEXT in a direct chat with NICK, opening one if needed (TEXT waits until it is open)",
        Msg,
    ),
    Spec("/chat", (NICK,), "open a direct chat with NICK", OpenChat),
    Spec("/close", (NICK,), "close the direct chat with NICK", CloseChat),
    Spec("/who", (), "show the participants", Who),
    Spec(
        "/ignore",
        (NICK,),
        "hide NICK's messages and refuse (or close) direct chats with NICK, "
        "someone in the chat other than you",
        Ignore,
    ),
    Spec("/unignore", (NICK,), "undo /ignore", Unignore),
    Spec("/nick", (NEW,), "change your nickname to NEW", Nick),
    Spec("/help", (), "show the commands", Help),
    Spec(
        "/quit",
        (),
        "leave and exit (hosting a chat, you are told first how many it disconnects)",
        Quit,
    ),
)

SPECS = {spec.name: spec for spec in TABLE}
COMMAND_NAMES = tuple(SPECS)


def help_text() -> str:
    rows = [(TEXT, SAY_HELP)] + [(spec.usage, spec.help) for spec in TABLE]
    width = max(len(usage) for usage, _ in rows) + 2
    return "Commands:\n" + "\n".join(f"  {usage:<{width}}{text}" for usage, text in rows)


HELP = help_text()


def markdown_table() -> str:
    """README's table of what you type, as it must read."""
    rows = ["| input | effect |", "|---|---|", f"| a line not starting with `/` | {SAY_HELP} |"]
    rows += [f"| `{spec.usage}` | {spec.help} |" for spec in TABLE]
    return "\n".join(rows)


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
    spec = SPECS.get(name)
    if spec is None:
        raise InputError(f"unknown command {name}; /help lists the commands")
    values: list[str] = []
    for arg in spec.args:
        if arg == TEXT:  # kept exactly as typed after its one separator, like a broadcast
            value, rest = rest, ""
            if not value.strip():
                raise InputError(f"usage: {spec.usage}")
        else:
            value, _, rest = rest.lstrip(" ").partition(" ")
            value = value.strip()
            if not value:
                raise InputError(f"usage: {spec.usage}")
        values.append(value)
    if rest.strip():
        raise InputError(f"usage: {spec.usage}")
    return spec.make(*values)


def argument_at(before: str) -> str | None:
    """The argument being typed at the end of ``before`` (the line up to the word
    being completed): NICK, TEXT, NEW, or None outside a command's arguments."""
    name, space, rest = before.partition(" ")
    spec = SPECS.get(name.lower())
    if spec is None or not space:
        return None
    index = len(rest.split())
    if index < len(spec.args):
        return spec.args[index]
    return TEXT if spec.args and spec.args[-1] == TEXT else None
