"""The lines a person or a script gives the line modes on stdin, read on a thread.

On a terminal the kernel's line editing (canonical mode) holds at most 4,095
characters of a line and drops the rest without a word. So when stdin and
stdout are terminals the lines are read with GNU readline, which puts the
terminal in raw mode and takes a line of any length (with line editing and
history on top). Pipes and files, and a terminal without readline, are read
from the file descriptor; there a line of 4,095 bytes or more from a terminal
may have been cut, so it is refused with a sentence rather than sent cut.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Callable

TERMINAL_LINE_LIMIT = 4095  # N_TTY's canonical line buffer, less the newline


def stdin_lines(
    loop: asyncio.AbstractEventLoop, refuse: Callable[[str], None]
) -> asyncio.Queue[str | None]:
    """Lines from stdin without their line ends, then None at the end of input.

    ``refuse`` is called on the loop with a sentence for a line that is not passed on.
    """
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def deliver(line: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop may be gone already
            loop.call_soon_threadsafe(queue.put_nowait, line)

    def say(sentence: str) -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(refuse, sentence)

    terminal = _isatty(sys.stdin)
    if terminal and _isatty(sys.stdout) and _readline_loaded():
        _restore_terminal_at_exit(sys.stdin.fileno())
        # input() decodes with stdin's error handler; the descriptor path replaces too.
        with contextlib.suppress(AttributeError):
            sys.stdin.reconfigure(errors="replace")  # type: ignore[union-attr]
        target: Callable[[], None] = lambda: _read_with_readline(deliver)  # noqa: E731
    else:
        target = lambda: _read_descriptor(deliver, say, terminal)  # noqa: E731
    threading.Thread(target=target, name="stdin", daemon=True).start()
    return queue


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def _readline_loaded() -> bool:
    try:
        import readline  # noqa: F401  (input() uses it once loaded)
    except ImportError:  # no GNU readline or libedit here
        return False
    return True


def _restore_terminal_at_exit(fd: int) -> None:
    """Readline keeps the terminal raw while it waits for a line; an exit in the middle
    (/quit, a lost server, Ctrl+C) must not leave the user's shell that way."""
    try:
        import termios

        saved = termios.tcgetattr(fd)
    except (ImportError, OSError):
        return

    def restore() -> None:
        with contextlib.suppress(OSError):
            termios.tcsetattr(fd, termios.TCSANOW, saved)

    atexit.register(restore)


def _read_with_readline(deliver: Callable[[str | None], None]) -> None:
    while True:
        try:
            line = input()
        except EOFError:  # Ctrl+D on an empty line
            break
        except (OSError, ValueError):
            break
        deliver(line)
    deliver(None)


def _read_descriptor(
    deliver: Callable[[str | None], None], say: Callable[[str], None], terminal: bool
) -> None:
    """Reads the file descriptor, not ``sys.stdin``: a daemon thread blocked inside a
    buffered reader aborts the interpreter at exit."""

    def one(raw: bytes) -> None:
        if terminal and len(raw.rstrip(b"\r")) >= TERMINAL_LINE_LIMIT:
            say(
                f"not sent: the terminal keeps only {TERMINAL_LINE_LIMIT} bytes of a typed "
                "line, so this one may have been cut; send long text from a file or a pipe"
            )
            return
        deliver(raw.decode("utf-8", "replace").rstrip("\r\n"))

    pending = b""
    try:
        fd = sys.stdin.fileno()
        while chunk := os.read(fd, 65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                one(raw)
    except (OSError, ValueError):
        pass
    if pending:
        one(pending)
    deliver(None)
