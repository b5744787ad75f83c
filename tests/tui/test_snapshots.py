"""Snapshots of the full-screen client, fed a fixed script of events so every run draws the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from textual.pilot import Pilot
from textual.widgets import TabbedContent

from p2pchat.events import (
    BroadcastReceived,
    ChatOpened,
    ChatReceived,
    ClientEvent,
    ParticipantsListed,
    PeerJoined,
    Registered,
)
from p2pchat.protocol import Participant, nick_key
from p2pchat.state import ChatState
from p2pchat.tui import ChatApp

ALICE = Participant("alice", "192.0.2.10", 40001)
BOB = Participant("bob", "192.0.2.11", 40002)
CAROL = Participant("carol", "192.0.2.12", 40003)


class ScriptedClient:
    """Stands in for ChatClient: plays its events, then waits; sends nothing anywhere."""

    def __init__(self, script: list[ClientEvent], chats: dict[str, ChatState]) -> None:
        self.nick = "alice"
        self.participants = (ALICE, BOB, CAROL)
        self._script = script
        self._chats = chats

    def chat_state(self, nick: str) -> ChatState | None:
        return self._chats.get(nick_key(nick))

    async def events(self) -> AsyncIterator[ClientEvent]:
        for event in self._script:
            yield event
        await asyncio.Event().wait()


SCRIPT: list[ClientEvent] = [
    Registered(ALICE),
    ParticipantsListed((ALICE, BOB)),
    PeerJoined(CAROL),
    BroadcastReceived("bob", "good morning, everyone"),
    BroadcastReceived("carol", "alice: did you see the [bold]schedule[/bold]?"),
    BroadcastReceived("bob", "escapes stay visible: \x1b[31mred"),
    ChatOpened("bob", initiator=False),
    ChatReceived("bob", "lunch at noon?"),
]


def make_app() -> ChatApp:
    client = ScriptedClient(SCRIPT, {"bob": ChatState.OPEN})
    return ChatApp(client, server="192.0.2.1:7777", clock=lambda: "12:00:00")  # type: ignore[arg-type]


async def settled(pilot: Pilot) -> None:
    app = pilot.app
    assert isinstance(app, ChatApp)
    bob_tab = app.query_one(TabbedContent).get_tab("direct-" + b"bob".hex())
    async with asyncio.timeout(5):  # the last event of the script has been shown
        while str(bob_tab.label) != "bob (1)":
            await pilot.pause(0.02)


def test_main_screen(snap_compare) -> None:
    """The group tab: joins, broadcasts (a mention highlighted, markup shown literally), the
    sidebar with an open direct chat, the unread direct tab, the status line."""
    assert snap_compare(make_app(), terminal_size=(100, 24), run_before=settled)


def test_direct_tab(snap_compare) -> None:
    """The direct tab with bob after Ctrl+N, and a line being typed."""

    async def to_direct_tab(pilot: Pilot) -> None:
        await settled(pilot)
        await pilot.press("ctrl+n", *"sure, see you")

    assert snap_compare(make_app(), terminal_size=(100, 24), run_before=to_direct_tab)
