"""A direct tab closed with F4 stays closed, whatever state its chat was in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from textual.widgets import TabbedContent

from p2pchat.client import ChatClient
from p2pchat.server import ChatServer
from p2pchat.state import ChatState
from p2pchat.tui import ChatApp

from ..integration._support import joined
from .test_app import people, until
from .test_input_and_layout import direct_pane, log_text


@pytest.fixture
async def shy_bob(server: ChatServer) -> AsyncIterator[ChatClient]:
    """bob, who answers no direct chat: one asked of him stays pending."""
    client = await joined(server.port, "bob", accept_direct=False)
    yield client
    await client.close()


@pytest.fixture
async def alice(server: ChatServer, shy_bob: ChatClient) -> AsyncIterator[ChatApp]:
    client = await joined(server.port, "alice")
    app = ChatApp(client, server=f"127.0.0.1:{server.port}")
    yield app
    await client.close()


def _panes(app: ChatApp) -> list[str]:
    return [pane.id or "" for pane in app.query_one(TabbedContent).query("TabPane")]


async def test_f4_on_a_chat_still_opening_does_not_bring_the_tab_back(
    alice: ChatApp, shy_bob: ChatClient
) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: "bob" in people(alice))
        await pilot.press(*"/chat bob", "enter")
        await until(pilot, lambda: direct_pane("bob") in _panes(alice))
        assert alice.client.chat_state("bob") is ChatState.INVITING
        await pilot.press("f4")
        await until(pilot, lambda: alice.client.chat_state("bob") is None)
        await shy_bob.broadcast("after the close")  # comes after the chat's end event
        await until(pilot, lambda: "after the close" in log_text(alice))
        assert direct_pane("bob") not in _panes(alice)
