"""Conversation logs (``--log-dir``): each conversation appended to its own text file.

As IRC clients do: ``DIR/SERVER/group.log`` for the group and
``DIR/SERVER/direct/NICK.log`` for each direct chat, one timestamped line
per message, join, leave and chat event: the presenter's lines, so text
from others is escaped and ``cat``-ing a log is as safe as reading the chat.
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

from .conversations import Conversation, Direct
from .present import Report

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
        self._files: OrderedDict[Conversation, TextIO] = OrderedDict()  # least recently used first
        self._started: set[Conversation] = set()
        self._broken = False

    def _path(self, chat: Conversation) -> Path:
        if isinstance(chat, Direct):
            return self._root / "direct" / f"{file_name(chat.key)}.log"
        return self._root / "group.log"

    def write(self, chat: Conversation, text: str) -> None:
        """Appends one line (escaped already) to the log of ``chat``."""
        if self._broken:
            return
        try:
            f = self._files.get(chat)
            if f is None:
                path = self._path(chat)
                path.parent.mkdir(parents=True, exist_ok=True)
                f = self._files[chat] = path.open("a", encoding="utf-8", buffering=1)
                if chat not in self._started:  # once per conversation per session
                    self._started.add(chat)
                    f.write(time.strftime("--- log opened %a %b %d %H:%M:%S %Y\n", self._clock()))
                if len(self._files) > _OPEN_FILES:
                    self._files.popitem(last=False)[1].close()
            else:
                self._files.move_to_end(chat)
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S', self._clock())} {text}\n")
        except OSError as error:
            log.warning("conversation logs disabled: %s", error)
            self._broken = True

    def show(self, report: Report) -> None:
        """Logs the lines that belong to a conversation (not the answers to commands)."""
        for line in report.lines:
            if line.logged and line.conversation is not None:
                self.write(line.conversation, line.text)

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
