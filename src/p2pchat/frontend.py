"""What every client front end shares: how output is shown, and carrying out typed commands.

The line modes and the full-screen UI each implement ``Output``; ``execute``
turns a parsed command into calls on the ``ChatClient`` and reports every
outcome through it, so the UIs differ only in how they show things.
"""

from __future__ import annotations

from typing import Protocol

from . import commands
from .client import ChatClient, NotConnectedError
from .direct import CLOSED_BY_YOU, DirectChatError, closed_by_peer
from .events import ChatClosed, ClientEvent
from .protocol import Participant, ProtocolError, nick_key
from .textsafe import printable


class Output(Protocol):
    def event(self, event: ClientEvent) -> None:
        """Something happened (from the server, a peer, or the client itself)."""

    def sent(self, text: str, peer: str | None) -> None:
        """We sent ``text`` (peer None: to everyone); a direct one may still wait for its chat."""

    def participants(self, participants: tuple[Participant, ...]) -> None:
        """The participant list, as asked for with /who."""

    def info(self, text: str) -> None:
        """A note for the user (e.g. the /help text)."""

    def error(self, text: str, peer: str | None = None) -> None:
        """A command failed; ``peer`` names the direct conversation it belongs to, if any."""

    def hosting(self, address: str) -> None:
        """With --serve: the address others join with."""


def closed_text(event: ChatClosed) -> str:
    """A closed direct chat in words, for people (``--json`` keeps the bare reason)."""
    peer = printable(event.peer)
    if event.reason == CLOSED_BY_YOU:
        why = "you closed it"
    elif event.reason == closed_by_peer(event.peer):
        why = f"{peer} closed it"
    else:
        why = printable(event.reason)
    return f"direct chat with {peer} closed ({why})"


def _ignorable(client: ChatClient, nick: str) -> str | None:
    """Why ``nick`` cannot be ignored, or None if they can."""
    key = nick_key(nick)
    if key == nick_key(client.nick):
        return "you cannot ignore yourself"
    if not any(p.key == key for p in client.participants):
        return f"nobody called {nick!r} is here"
    return None


async def execute(client: ChatClient, command: commands.Command, out: Output) -> None:
    """Carries out one command; every failure becomes an error shown, never an exception."""
    peer: str | None = None
    try:
        match command:
            case commands.Say(text=text):
                await client.broadcast(text)
                out.sent(text, None)
            case commands.Msg(nick=nick, text=text):
                peer = nick
                await client.send_chat(nick, text)
                out.sent(text, nick)
            case commands.OpenChat(nick=nick):
                peer = nick
                client.start_chat(nick)
            case commands.CloseChat(nick=nick):
                if not client.close_chat(nick):
                    out.error(f"no direct chat with {nick}", nick)
            case commands.Who():
                out.participants(client.participants)
            case commands.Ignore(nick=nick):
                if (refusal := _ignorable(client, nick)) is not None:
                    out.error(refusal)
                    return
                client.ignore(nick)
                out.info(f"ignoring {nick}: broadcasts hidden, direct chats refused")
            case commands.Unignore(nick=nick):
                client.unignore(nick)
                out.info(f"no longer ignoring {nick}")
            case commands.Help():
                out.info(commands.HELP)
            case commands.Quit():
                pass
    except NotConnectedError:
        out.error("not connected to the server; message not sent", peer)
    except (DirectChatError, ProtocolError, ValueError) as error:
        out.error(str(error), peer)
    except OSError as error:
        out.error(f"could not send: {error}", peer)
