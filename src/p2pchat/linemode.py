"""The line modes of the terminal client: ``--plain`` for people, ``--json`` for scripts.

Both read commands from stdin, one per line, and write one line per event
on stdout. Other people's text is escaped in plain mode and JSON-encoded
(ASCII only) in JSON mode, so nothing they send can steer the terminal.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from . import commands, typedlines
from .client import ChatClient
from .events import (
    BroadcastReceived,
    ChatClosed,
    ChatFailed,
    ChatOpened,
    ChatReceived,
    ClientEvent,
    Disconnected,
    Notice,
    ParticipantsListed,
    PeerJoined,
    PeerLeft,
    Registered,
    ServerError,
)
from .frontend import Output, closed_text, execute
from .protocol import Participant
from .textsafe import printable


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class PlainOutput:
    """Timestamped lines for people."""

    def __init__(self, me: str) -> None:
        self._me = me

    def _line(self, text: str) -> None:
        _write(f"[{time.strftime('%H:%M:%S')}] {text}")

    def event(self, event: ClientEvent) -> None:
        match event:
            case Registered(participant=p):
                self._me = p.nick
                self._line(f"*** registered as {printable(p.nick)} ({p.endpoint})")
            case ParticipantsListed(participants=ps):
                self.participants(ps)
            case PeerJoined(participant=p):
                self._line(f"--> {printable(p.nick)} joined ({p.endpoint})")
            case PeerLeft(participant=p):
                self._line(f"<-- {printable(p.nick)} left")
            case BroadcastReceived(nick=nick, text=text):
                self._line(f"<{printable(nick)}> {printable(text)}")
            case ChatOpened(peer=peer, initiator=initiator):
                how = "you asked" if initiator else f"{printable(peer)} asked"
                self._line(
                    f"*** direct chat with {printable(peer)} open ({how}); /msg {printable(peer)} TEXT to talk"
                )
            case ChatReceived(peer=peer, text=text):
                self._line(f"[direct] <{printable(peer)}> {printable(text)}")
            case ChatClosed():
                self._line(f"*** {closed_text(event)}")
            case ChatFailed(peer=peer, reason=reason, unsent=unsent):
                lost = f" ({len(unsent)} message(s) not sent)" if unsent else ""
                self._line(
                    f"!!! direct chat with {printable(peer)} failed: {printable(reason)}{lost}"
                )
            case ServerError(text=text):
                self._line(f"!!! server: {printable(text)}")
            case Disconnected(reason=reason, retry_in=retry_in):
                retry = f"; reconnecting in {retry_in:.1f} s" if retry_in is not None else ""
                self._line(f"!!! disconnected: {printable(reason)}{retry}")
            case Notice(text=text):
                self._line(f"!!! {printable(text)}")

    def participants(self, participants: tuple[Participant, ...]) -> None:
        names = ", ".join(
            printable(p.nick) + (" (you)" if p.nick == self._me else "") for p in participants
        )
        self._line(f"*** {len(participants)} participant(s): {names}")

    def info(self, text: str) -> None:
        for line in text.splitlines():
            self._line(line)

    def sent(self, text: str, peer: str | None) -> None:
        pass  # the terminal already shows what was typed

    def error(self, text: str, peer: str | None = None) -> None:
        self._line(f"!!! {printable(text)}")

    def hosting(self, address: str) -> None:
        self._line(f"*** hosting a chat on {address}; others join with: p2pchat --server {address}")


class JsonOutput:
    """One JSON object per line, as promised in the interface documentation."""

    @staticmethod
    def _emit(event: str, **keys: Any) -> None:
        _write(json.dumps({"event": event, **keys}, ensure_ascii=True))

    def event(self, event: ClientEvent) -> None:
        emit = self._emit
        match event:
            case Registered(participant=p):
                emit("registered", **_participant(p))
            case ParticipantsListed(participants=ps):
                self.participants(ps)
            case PeerJoined(participant=p):
                emit("join", **_participant(p))
            case PeerLeft(participant=p):
                emit("leave", **_participant(p))
            case BroadcastReceived(nick=nick, text=text):
                emit("broadcast", **{"from": nick, "text": text})
            case ChatOpened(peer=peer, initiator=initiator):
                emit("chat_opened", peer=peer, initiator=initiator)
            case ChatReceived(peer=peer, text=text):
                emit("chat", **{"from": peer, "text": text})
            case ChatClosed(peer=peer, reason=reason):
                emit("chat_closed", peer=peer, reason=reason)
            case ChatFailed(peer=peer, reason=reason, unsent=unsent):
                emit("chat_failed", peer=peer, reason=reason, unsent=list(unsent))
            case ServerError(text=text):
                emit("error", message=text, source="server")
            case Disconnected(reason=reason, retry_in=retry_in):
                emit("disconnected", reason=reason, retry_in=retry_in)
            case Notice(text=text):
                emit("notice", message=text)

    def participants(self, participants: tuple[Participant, ...]) -> None:
        self._emit("participants", participants=[_participant(p) for p in participants])

    def info(self, text: str) -> None:
        self._emit("info", message=text)

    def sent(self, text: str, peer: str | None) -> None:
        pass  # scripts know what they sent; the event stream stays as documented

    def error(self, text: str, peer: str | None = None) -> None:
        self._emit("error", message=text, source="local")

    def hosting(self, address: str) -> None:
        self._emit("hosting", address=address)


def _participant(p: Participant) -> dict[str, Any]:
    return {"nick": p.nick, "ip": p.ip, "udp_port": p.udp_port}


async def run(client: ChatClient, out: Output) -> int:
    """Shows events and carries out typed commands until /quit or end of input."""
    loop = asyncio.get_running_loop()

    async def show_events() -> None:
        async for event in client.events():
            out.event(event)

    shower = loop.create_task(show_events())
    lines = typedlines.stdin_lines(loop, out.error)
    try:
        while True:
            line = await lines.get()
            if line is None:
                await client.wait_pending_chats()
                break
            try:
                command = commands.parse(line)
            except commands.InputError as error:
                out.error(str(error))
                continue
            if command is None:
                continue
            if isinstance(command, commands.Quit):
                break
            await execute(client, command, out)
    finally:
        shower.cancel()
        await client.close()
        # Events already queued (e.g. a last chat_failed) still reach the output.
        while (event := client.poll_event()) is not None:
            out.event(event)
    return 0
