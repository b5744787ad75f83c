"""Tests of the texts every front end shares (p2pchat.frontend)."""

from __future__ import annotations

import pytest

from p2pchat.events import ChatClosed
from p2pchat.frontend import closed_text


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        ("closed", "direct chat with bob closed (you closed it)"),
        ("bob closed the chat", "direct chat with bob closed (bob closed it)"),
        (
            "connection to bob lost: reset",
            "direct chat with bob closed (connection to bob lost: reset)",
        ),
        ("bob sent \x1b[2J", "direct chat with bob closed (bob sent \\e[2J)"),
    ],
)
def test_closed_chats_say_why_once(reason: str, text: str) -> None:
    assert closed_text(ChatClosed("bob", reason)) == text
