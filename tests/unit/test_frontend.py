"""frontend.execute: each command's effect on a client, and failures shown as errors."""

from __future__ import annotations

from typing import Any

from p2pchat import commands
from p2pchat.conversations import GROUP, Conversation, Direct
from p2pchat.errors import ChatError, NotConnectedError
from p2pchat.frontend import execute
from p2pchat.present import Presenter, Report
from p2pchat.protocol import Participant


class Client:
    """Records what a command asks of the library; ``change_nick`` may refuse."""

    def __init__(self, refuse: str | None = None, refuse_with: ChatError | None = None) -> None:
        self.nick = "alice"
        self.participants = (
            Participant("alice", "127.0.0.1", 1),
            Participant("bob", "127.0.0.1", 2),
        )
        self.calls: list[tuple[str, Any]] = []
        self._refuse = ChatError(refuse) if refuse else refuse_with

    async def change_nick(self, nick: str) -> None:
        if self._refuse is not None:
            raise self._refuse
        self.calls.append(("change_nick", nick))

    def ignore(self, nick: str) -> None:
        self.calls.append(("ignore", nick))

    def close_chat(self, nick: str) -> bool:
        self.calls.append(("close_chat", nick))
        return False


class Session:
    def __init__(self, client: Client) -> None:
        self.client = client
        self.presenter = Presenter("alice")
        self.current: Conversation = GROUP
        self.shown: list[Report] = []

    def show(self, report: Report) -> None:
        self.shown.append(report)

    def focus(self, chat: Direct) -> None:
        pass

    async def quit(self) -> None:
        pass

    def help_text(self) -> str:
        return commands.HELP


async def run(session: Session, line: str) -> list[str]:
    command = commands.parse(line)
    assert command is not None
    await execute(session, command)  # type: ignore[arg-type]
    return [line.text for report in session.shown for line in report.lines]


async def test_nick_asks_the_library_for_the_new_nickname() -> None:
    client = Client()
    assert await run(Session(client), "/nick zed") == []  # NickChanged will say it
    assert client.calls == [("change_nick", "zed")]


async def test_a_refused_nick_is_an_error_shown() -> None:
    lines = await run(Session(Client(refuse="nickname 'bob' is already in use")), "/nick bob")
    assert lines == ["!!! nickname 'bob' is already in use"]


async def test_ignore_asks_the_library_which_closes_their_chat() -> None:
    client = Client()
    lines = await run(Session(client), "/ignore Bob")
    assert client.calls == [("ignore", "Bob")]  # which closes the chat itself
    assert lines == ["ignoring Bob: broadcasts hidden, direct chats refused"]


async def test_a_command_failing_for_the_server_connection_says_what_was_not_done() -> None:
    """Only a broadcast is a message not sent; /nick while the server is away says
    just why it failed."""
    client = Client(refuse_with=NotConnectedError("not connected to the server"))
    assert await run(Session(client), "/nick zed") == ["!!! not connected to the server"]


async def test_a_broadcast_while_the_server_is_away_is_a_message_not_sent() -> None:
    class Away(Client):
        async def broadcast(self, text: str) -> None:
            raise NotConnectedError("not connected to the server")

    lines = await run(Session(Away()), "hello")
    assert lines == ["!!! not connected to the server; message not sent"]
