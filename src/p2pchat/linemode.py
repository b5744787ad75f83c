"""The line modes of the terminal client: ``--plain`` for people, ``--json`` for scripts.

Both read commands from stdin, one per line, and write what the presenter
makes of each event on stdout: its lines in plain mode, its JSON object
(ASCII only) in JSON mode, so nothing others send can steer the terminal.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from . import commands, typedlines
from .client import ChatClient
from .conversations import GROUP, Conversation, Direct
from .frontend import Output, others_hosted, run_line
from .present import Kind, Presenter, Report


def _write(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class PlainOutput:
    """Timestamped lines for people."""

    def show(self, report: Report) -> None:
        for line in report.lines:
            if line.kind is Kind.OWN:
                continue  # the terminal already shows what was typed
            direct = isinstance(line.conversation, Direct) and line.kind is Kind.MESSAGE
            _write(f"[{time.strftime('%H:%M:%S')}] {'[direct] ' if direct else ''}{line.text}")


class JsonOutput:
    """One JSON object per line, as promised in the interface documentation."""

    def show(self, report: Report) -> None:
        if report.record is not None:
            _write(json.dumps(report.record, ensure_ascii=True))


class LineSession:
    """What commands act on in the line modes: no tabs, so always the group."""

    def __init__(self, client: ChatClient, presenter: Presenter, out: Output) -> None:
        self.client = client
        self.presenter = presenter
        self.out = out
        self.quitting = False

    @property
    def current(self) -> Conversation:
        return GROUP

    def show(self, report: Report) -> None:
        self.out.show(report)

    def focus(self, chat: Direct) -> None:
        pass

    async def quit(self) -> None:
        self.quitting = True

    def help_text(self) -> str:
        return commands.HELP


async def run(
    client: ChatClient, out: Output, presenter: Presenter, *, hosting: str | None = None
) -> int:
    """Shows events and carries out typed commands until /quit or end of input."""
    loop = asyncio.get_running_loop()
    session = LineSession(client, presenter, out)

    async def show_events() -> None:
        async for event in client.events():
            out.show(presenter.event(event))

    shower = loop.create_task(show_events())
    lines = typedlines.stdin_lines(loop, lambda text: out.show(presenter.error(text)))
    try:
        while not session.quitting:
            line = await lines.get()
            if line is None:
                await client.wait_pending_chats()
                break
            await run_line(session, line)
        if others := others_hosted(client, hosting):
            out.show(presenter.leaving_hosted(others))
    finally:
        shower.cancel()
        await client.close()
        # Events already queued (e.g. a last chat_failed) still reach the output.
        while (event := client.poll_event()) is not None:
            out.show(presenter.event(event))
    return 0
