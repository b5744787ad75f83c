"""Conversation logs (``--log-dir``): each conversation appended to its own text file.

As IRC clients do: ``DIR/SERVER/group.log`` for the group and
``DIR/SERVER/direct/NICK.log`` for each direct chat, one timestamped line
per message, join, leave and chat event. Text from others is escaped, so
``cat``-ing a log is as safe as reading the chat.
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from .events import (
    BroadcastReceived,
    ChatClosed,
    ChatFailed,
    ChatOpened,
    ChatReceived,
    ClientEvent,
    Disconnected,
    Notice,
    PeerJoined,
    PeerLeft,
    Registered,
    ServerError,
)
from .frontend import Output, closed_text
from .protocol import Participant, nick_key
from .textsafe import printable

log = logging.getLogger("p2pchat.chatlog")

_UNSAFE_IN_NAME = re.compile(r"[^\w.@+-]|^\.")


# File names stay well under the usual 255-byte limit; a longer one is cut and
# given a digest of the whole, so that different names stay different files.
_NAME_MAX_BYTES = 120
# Open log files kept at once; peers who come and go do not use up descriptors.
_OPEN_FILES = 16


def file_name(name: str) -> str:
    """A name made safe as one path component: no '/', no leading '.', nothing odd."""
    safe = _UNSAFE_IN_NAME.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), name)
    if len(safe.encode()) <= _NAME_MAX_BYTES:
        return safe
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return safe.encode()[: _NAME_MAX_BYTES - 17].decode(errors="ignore") + "-" + digest


def check_directory(directory: Path) -> None:
    """Creates ``directory`` if needed and proves a file can be written in it; OSError if not.

    Checked before the chat starts: logs the user asked for must not be lost
    unnoticed. A later failure (disk full) still only disables logging.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
        pass


class ChatLog:
    """Appends each conversation's lines to its file; I/O errors disable logging, never the chat."""

    def __init__(
        self,
        directory: Path,
        server: str,
        clock: Callable[[], time.struct_time] = time.localtime,
    ) -> None:
        self._root = directory / file_name(server)
        self._clock = clock
        self._files: OrderedDict[str, TextIO] = OrderedDict()  # least recently used first
        self._started: set[str] = set()
        self._me = ""
        self._broken = False

    def _path(self, peer: str | None) -> Path:
        if peer is None:
            return self._root / "group.log"
        return self._root / "direct" / f"{file_name(nick_key(peer))}.log"

    def write(self, peer: str | None, text: str) -> None:
        """Appends one line to the group log (peer None) or to the direct log with ``peer``."""
        if self._broken:
            return
        key = "" if peer is None else nick_key(peer)
        try:
            f = self._files.get(key)
            if f is None:
                path = self._path(peer)
                path.parent.mkdir(parents=True, exist_ok=True)
                f = self._files[key] = path.open("a", encoding="utf-8", buffering=1)
                if key not in self._started:  # once per conversation per session
                    self._started.add(key)
                    f.write(time.strftime("--- log opened %a %b %d %H:%M:%S %Y\n", self._clock()))
                if len(self._files) > _OPEN_FILES:
                    self._files.popitem(last=False)[1].close()
            else:
                self._files.move_to_end(key)
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S', self._clock())} {text}\n")
        except OSError as error:
            log.warning("conversation logs disabled: %s", error)
            self._broken = True

    def event(self, event: ClientEvent) -> None:
        match event:
            case Registered(participant=p):
                self._me = p.nick
                self.write(None, f"*** registered as {printable(p.nick)} ({p.endpoint})")
            case PeerJoined(participant=p):
                self.write(None, f"--> {printable(p.nick)} joined ({p.endpoint})")
            case PeerLeft(participant=p):
                self.write(None, f"<-- {printable(p.nick)} left")
            case BroadcastReceived(nick=nick, text=text):
                self.write(None, f"<{printable(nick)}> {printable(text)}")
            case ChatOpened(peer=peer):
                self.write(peer, f"*** direct chat with {printable(peer)} open")
            case ChatReceived(peer=peer, text=text):
                self.write(peer, f"<{printable(peer)}> {printable(text)}")
            case ChatClosed(peer=peer):
                self.write(peer, f"*** {closed_text(event)}")
            case ChatFailed(peer=peer, reason=reason):
                self.write(peer, f"!!! direct chat failed: {printable(reason)}")
            case ServerError(text=text):
                self.write(None, f"!!! server: {printable(text)}")
            case Disconnected(reason=reason):
                self.write(None, f"!!! disconnected: {printable(reason)}")
            case Notice(text=text):
                self.write(None, f"!!! {printable(text)}")
            case _:
                pass

    def sent(self, text: str, peer: str | None) -> None:
        self.write(peer, f"<{printable(self._me)}> {printable(text)}")

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class LoggedOutput:
    """An Output that also writes the conversations to a ChatLog."""

    def __init__(self, inner: Output, chatlog: ChatLog) -> None:
        self._inner = inner
        self._log = chatlog

    def event(self, event: ClientEvent) -> None:
        self._log.event(event)
        self._inner.event(event)

    def sent(self, text: str, peer: str | None) -> None:
        self._log.sent(text, peer)
        self._inner.sent(text, peer)

    def participants(self, participants: tuple[Participant, ...]) -> None:
        self._inner.participants(participants)

    def info(self, text: str) -> None:
        self._inner.info(text)

    def error(self, text: str, peer: str | None = None) -> None:
        self._inner.error(text, peer)

    def hosting(self, address: str) -> None:
        self._inner.hosting(address)
