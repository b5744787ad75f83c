"""``p2pchat --plain`` on a real pseudo-terminal, typed into as a person would."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import subprocess
import sys
import termios
import threading
from collections.abc import AsyncIterator

import pytest

from p2pchat.protocol import DEFAULT_MAX_MESSAGE_BYTES

from ._programs import PYTHON, TIMEOUT, Program, client, start_server

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")


class Terminal:
    """A p2pchat process whose stdin, stdout and stderr are one pseudo-terminal."""

    def __init__(self, args: list[str], *, stdout_too: bool = True) -> None:
        self.master, self.slave = pty.openpty()
        # A wide terminal: readline redraws less, and the test reads less.
        termios.tcsetwinsize(self.slave, (50, 500))
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "p2pchat", *args],
            stdin=self.slave,
            stdout=self.slave if stdout_too else subprocess.PIPE,
            stderr=self.slave,
            start_new_session=True,
        )
        self.output = bytearray()
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # Drains the terminal all along: a full one would stop the program's echo.
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO once every copy of the other side is closed
                data = b""
            with self._changed:
                self.output += data
                self._changed.notify_all()
            if not data:
                return

    async def until(self, pattern: bytes) -> re.Match[bytes]:
        """Waits for ``pattern`` in what the program wrote, from the start."""

        def wait() -> re.Match[bytes] | None:
            with self._changed:
                self._changed.wait_for(lambda: re.search(pattern, self.output), TIMEOUT)
                return re.search(pattern, self.output)

        found = await asyncio.to_thread(wait)
        assert found, f"no {pattern!r} in {bytes(self.output[-2000:])!r}"
        return found

    async def raw_mode(self) -> None:
        """Waits until the program reads keys itself (ICANON off): typing earlier would
        go through the kernel's line editing."""
        async with asyncio.timeout(TIMEOUT):
            while termios.tcgetattr(self.slave)[3] & termios.ICANON:
                await asyncio.sleep(0.01)

    async def type(self, text: str) -> None:
        data = text.encode()
        while data:  # a write may take part when the other side's buffer is full
            written = await asyncio.to_thread(os.write, self.master, data)
            data = data[written:]

    async def exit_status(self) -> int:
        return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), TIMEOUT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        os.close(self.slave)
        os.close(self.master)
        self._reader.join(TIMEOUT)


@pytest.fixture
async def terminals() -> AsyncIterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for t in opened:
        t.close()


async def _alice_on_a_terminal(
    programs: list[Program], terminals: list[Terminal]
) -> tuple[Terminal, Program]:
    _, port = await start_server(programs)
    bob = await client(programs, port, "bob", "--json")
    await bob.expect("registered")
    alice = Terminal(["--server", f"127.0.0.1:{port}", "--nick", "alice", "--plain"])
    terminals.append(alice)
    await alice.until(rb"2 participant\(s\)")
    await bob.expect("join", nick="alice")
    await alice.raw_mode()
    return alice, bob


async def test_a_long_typed_line_is_sent_whole(
    programs: list[Program], terminals: list[Terminal]
) -> None:
    """10,000 characters typed on one line reach the others whole, not cut at 4,095."""
    alice, bob = await _alice_on_a_terminal(programs, terminals)
    text = "".join(f"{i:05d}." for i in range(10_000 // 6)) + "end"
    assert len(text) > 4095 * 2
    await alice.type(text + "\r")
    got = await bob.expect("broadcast", **{"from": "alice"})
    assert got["text"] == text
    # Ctrl+D on an empty line is the end of input: a clean exit, the terminal as it was.
    await alice.type("\x04")
    assert await alice.exit_status() == 0
    assert termios.tcgetattr(alice.slave)[3] & termios.ICANON


async def test_a_line_over_the_message_limit_is_refused_with_a_sentence(
    programs: list[Program], terminals: list[Terminal]
) -> None:
    alice, bob = await _alice_on_a_terminal(programs, terminals)
    await alice.type("x" * (DEFAULT_MAX_MESSAGE_BYTES + 1) + "\r")
    sentence = await alice.until(rb"!!! server: [^\r\n]*")
    assert b"65536" in sentence.group(), sentence.group()
    # Nothing of it was sent: the next broadcast bob gets is the next line.
    await alice.type("after\r")
    assert (await bob.expect("broadcast"))["text"] == "after"
    # /quit while the reading thread waits in readline: the terminal is given back as it was.
    await alice.type("/quit\r")
    assert await alice.exit_status() == 0
    assert termios.tcgetattr(alice.slave)[3] & termios.ICANON


async def test_with_stdout_elsewhere_a_line_the_terminal_may_have_cut_is_refused(
    programs: list[Program], terminals: list[Terminal]
) -> None:
    """stdin a terminal, stdout a pipe (``p2pchat --plain | tee log``): readline cannot be
    used, the kernel keeps 4,095 bytes of a line, and a line that long is refused, not cut."""
    _, port = await start_server(programs)
    bob = await client(programs, port, "bob", "--json")
    await bob.expect("registered")
    args = ["--server", f"127.0.0.1:{port}", "--nick", "alice", "--plain"]
    alice = Terminal(args, stdout_too=False)
    terminals.append(alice)
    await bob.expect("join", nick="alice")
    await alice.type("y" * 5000 + "\r" + "after\r")
    assert (await bob.expect("broadcast"))["text"] == "after"
    await alice.type("\x04")
    assert await alice.exit_status() == 0
    assert alice.proc.stdout is not None
    shown = alice.proc.stdout.read().decode()
    assert (
        "!!! not sent: the terminal keeps only 4095 bytes of a typed line, so this one may "
        "have been cut; send long text from a file or a pipe" in shown
    ), shown
