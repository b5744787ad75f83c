"""What every client front end shares: showing reports, and carrying out typed commands.

The line modes, the conversation logs and the full-screen client each
implement ``Output``: they show the ``Report``s of ``present.Presenter``.
``run_line`` parses a typed line and ``execute`` carries out the command on a
``commands.Session``; every failure becomes an error shown, so the front ends differ only in how they
show things and in what they offer (tabs, a question before quitting).
"""

from __future__ import annotations

from typing import Protocol

from . import commands
from .client import ChatClient
from .errors import ChatError, NotConnectedError
from .present import Report
from .protocol import ProtocolError


class Output(Protocol):
    def show(self, report: Report) -> None:
        """Shows one report: its lines, or its JSON object."""


class Tee:
    """An Output that shows every report on each of several."""

    def __init__(self, *outputs: Output) -> None:
        self._outputs = outputs

    def show(self, report: Report) -> None:
        for out in self._outputs:
            out.show(report)


def others_hosted(client: ChatClient, hosting: str | None) -> int:
    """How many others leaving would disconnect: everyone else, if we host the chat."""
    return max(0, len(client.participants) - 1) if hosting is not None else 0


async def execute(session: commands.Session, command: commands.Command) -> None:
    """Carries out one command; every failure becomes an error shown, never an exception."""
    error = session.presenter.error
    where = command.conversation
    try:
        await command.run(session)
    except NotConnectedError as failure:
        lost = "; message not sent" if isinstance(command, commands.Say) else ""
        session.show(error(f"{failure}{lost}", where))
    except (ChatError, ProtocolError, ValueError) as failure:
        session.show(error(str(failure), where))
    except OSError as failure:
        session.show(error(f"could not send: {failure}", where))


async def run_line(session: commands.Session, line: str) -> None:
    """Carries out one typed line; a malformed one is answered with the error, in its turn
    among the lines typed before and after it."""
    try:
        command = commands.parse(line)
    except commands.InputError as error:
        session.show(session.presenter.error(str(error)))
        return
    if command is not None:
        await execute(session, command)
