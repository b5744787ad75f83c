"""The picker the full-screen client shows when several chats are found on the LAN."""

from __future__ import annotations

from textual.widgets import OptionList

from p2pchat.discovery import SERVICE_TYPE, Chat
from p2pchat.tui.picker import ChatPicker

CHATS = [
    Chat("Room 101", 7777, ("10.0.0.1",), 2, f"Room 101.{SERVICE_TYPE}", True, "10.0.0.1"),
    Chat("Room 102", 7000, ("10.0.0.2",), 0, f"Room 102.{SERVICE_TYPE}", True, "10.0.0.2"),
]


async def test_enter_picks_the_highlighted_chat() -> None:
    app = ChatPicker(CHATS)
    async with app.run_test() as pilot:
        options = app.query_one(OptionList)
        assert [str(options.get_option_at_index(i).prompt) for i in range(2)] == [
            "Room 101  10.0.0.1:7777  2 participants",
            "Room 102  10.0.0.2:7000  0 participants",
        ]
        await pilot.press("down", "enter")
    assert app.return_value == CHATS[1]


async def test_escape_picks_none() -> None:
    app = ChatPicker(CHATS)
    async with app.run_test() as pilot:
        await pilot.press("escape")
    assert app.return_value is None
