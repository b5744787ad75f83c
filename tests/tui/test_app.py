"""The full-screen client driven by Textual's pilot against a real server and real clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from textual.events import Key
from textual.pilot import Pilot
from textual.widgets import TabbedContent

from p2pchat.client import ChatClient
from p2pchat.conversations import GROUP, Conversation, Direct
from p2pchat.events import BroadcastReceived, ChatOpened, ChatReceived
from p2pchat.server import ChatServer
from p2pchat.tui import ChatApp
from p2pchat.tui.widgets import CommandInput, ParticipantList, StatusBar

from ..integration._support import joined, wait_event


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Lets the app run until ``condition`` holds; fails after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not condition():
            await pilot.pause(0.02)


def shown(app: ChatApp, chat: Conversation = GROUP) -> str:
    """The text of a conversation as drawn on screen."""
    return "\n".join(strip.text for strip in app.conversation(chat).lines)


def people(app: ChatApp) -> str:
    sidebar = app.query_one(ParticipantList)
    return "\n".join(
        str(sidebar.get_option_at_index(i).prompt) for i in range(sidebar.option_count)
    )


@pytest.fixture
async def bob(server: ChatServer) -> AsyncIterator[ChatClient]:
    client = await joined(server.port, "bob")
    yield client
    await client.close()


@pytest.fixture
async def alice(server: ChatServer, bob: ChatClient) -> AsyncIterator[ChatApp]:
    """alice's full-screen client; bob is already there."""
    client = await joined(server.port, "alice")
    app = ChatApp(client, server=f"127.0.0.1:{server.port}")
    yield app
    await client.close()


async def test_typing_in_the_group_tab_broadcasts(alice: ChatApp, bob: ChatClient) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await pilot.press(*"hello all", "enter")
        assert (await wait_event(bob, BroadcastReceived)).text == "hello all"
        await until(pilot, lambda: "<alice> hello all" in shown(alice))  # our own, at once


async def test_a_broadcast_from_another_client_appears(alice: ChatApp, bob: ChatClient) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await bob.broadcast("hi from bob")
        await until(pilot, lambda: "<bob> hi from bob" in shown(alice))


async def test_joins_and_leaves_update_the_sidebar(alice: ChatApp, server: ChatServer) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: "bob" in people(alice))
        assert "alice (you)" in people(alice)
        carol = await joined(server.port, "carol")
        await until(pilot, lambda: "carol" in people(alice))
        assert "--> carol joined" in shown(alice)
        assert "3 participants" in str(alice.query_one(StatusBar).render())
        await carol.close()
        await until(pilot, lambda: "carol" not in people(alice))
        assert "<-- carol left" in shown(alice)


async def test_enter_on_a_participant_opens_a_direct_tab_both_ways(
    alice: ChatApp, bob: ChatClient
) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: "bob" in people(alice))
        await pilot.press("f2", "enter")  # F2 starts on the first participant who is not us
        await wait_event(bob, ChatOpened)
        tabs = alice.query_one(TabbedContent)
        assert tabs.active == "direct-" + b"bob".hex()
        assert alice.focused is alice.query_one(CommandInput)
        await pilot.press(*"psst", "enter")  # a direct tab sends CHAT, not a broadcast
        assert await wait_event(bob, ChatReceived) == ChatReceived("alice", "psst")
        await bob.send_chat("alice", "hi back")
        await until(pilot, lambda: "<bob> hi back" in shown(alice, Direct("bob")))
        assert "<bob> hi back" not in shown(alice)  # not in the group tab


async def test_clicking_a_participant_opens_a_direct_chat(alice: ChatApp, bob: ChatClient) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: "bob" in people(alice))
        sidebar = alice.query_one(ParticipantList)
        row = next(
            i for i in range(sidebar.option_count) if sidebar.get_option_at_index(i).id == "bob"
        )
        top = sidebar.content_region.y - sidebar.region.y  # below the border
        await pilot.click(ParticipantList, offset=(4, top + 2 * row))  # two lines per participant
        assert (await wait_event(bob, ChatOpened)).peer == "alice"
        await until(pilot, lambda: "open (you asked)" in shown(alice, Direct("bob")))
        await until(pilot, lambda: "⇄ bob" in people(alice))


async def test_markup_and_escape_sequences_show_literally(
    alice: ChatApp, bob: ChatClient, server: ChatServer
) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        eve = await joined(server.port, "[red]eve")
        try:
            await bob.broadcast("[bold]not bold[/bold] \x1b[31mnot red\x1b[0m \u202eltr")
            await eve.broadcast("[link=http://x]click[/link]")
            await until(pilot, lambda: "not bold" in shown(alice) and "click" in shown(alice))
            text = shown(alice)
            assert "<bob> [bold]not bold[/bold] \\e[31mnot red\\e[0m \\u202eltr" in text
            assert "<[red]eve> [link=http://x]click[/link]" in text
            assert "\x1b" not in text and "\u202e" not in text
            await until(pilot, lambda: "[red]eve" in people(alice))
            line = next(s for s in alice.conversation(GROUP).lines if "not bold" in s.text)
            assert not any(seg.style and seg.style.bold and "not bold" in seg.text for seg in line)
        finally:
            await eve.close()


async def test_server_going_away_shows_reconnecting_and_coming_back_restores(
    alice: ChatApp, server: ChatServer
) -> None:
    port = server.port
    status = alice.query_one
    async with alice.run_test(size=(120, 30)) as pilot:
        await server.close()
        await until(pilot, lambda: "reconnecting in" in str(status(StatusBar).render()))
        assert "disconnected" in shown(alice)
        again = ChatServer()
        await again.start("127.0.0.1", port)
        try:
            await until(
                pilot,
                lambda: (
                    "connected" in str(status(StatusBar).render())
                    and "reconnecting" not in str(status(StatusBar).render())
                ),
                timeout=10,
            )
            assert shown(alice).count("registered as alice") == 2
            carol = await joined(port, "carol")
            await until(pilot, lambda: "carol" in people(alice))
            await carol.close()
        finally:
            await again.close()


async def test_unread_count_and_mention_highlight(alice: ChatApp, bob: ChatClient) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await pilot.press(*"/chat bob", "enter")
        await wait_event(bob, ChatOpened)
        tabs = alice.query_one(TabbedContent)
        await until(pilot, lambda: tabs.active == "direct-" + b"bob".hex())
        group_tab = tabs.get_tab("group")
        await bob.broadcast("no mention here")
        await until(pilot, lambda: str(group_tab.label) == "group (1)")
        assert not group_tab.has_class("-mention")
        await bob.broadcast("ALICE, look")
        await until(pilot, lambda: str(group_tab.label) == "group (2)")
        assert group_tab.has_class("-mention")
        await pilot.press("ctrl+n")  # back to the group: read
        await until(pilot, lambda: str(group_tab.label) == "group")
        assert not group_tab.has_class("-mention")


async def test_history_and_tab_completion(alice: ChatApp, bob: ChatClient) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        box = alice.query_one(CommandInput)
        await until(pilot, lambda: "bob" in people(alice))
        await pilot.press(*"/wh", "tab")
        assert box.value == "/who "
        await pilot.press("enter")
        await pilot.press(*"b", "tab", *"hi", "enter")
        assert (await wait_event(bob, BroadcastReceived)).text == "bob: hi"
        await pilot.press(*"hey ", *"al", "tab", "tab")  # Tab again cycles the candidates
        assert box.value in ("hey alice ", "hey bob ")
        box.value = ""
        await pilot.press("up")
        assert box.value == "bob: hi"
        await pilot.press("up")
        assert box.value == "/who "
        await pilot.press("down", "down")
        assert box.value == ""


async def test_long_message_wraps_and_the_ui_stays_responsive(
    alice: ChatApp, bob: ChatClient
) -> None:
    async with alice.run_test(size=(100, 30)) as pilot:
        await bob.broadcast("word " * 3300)  # 16.5 KiB
        await until(pilot, lambda: "<bob> word" in shown(alice))
        assert len(alice.conversation(GROUP).lines) > 100  # wrapped, not cut
        await pilot.press(*"still typing", "enter")
        assert (await wait_event(bob, BroadcastReceived)).text == "still typing"


async def test_f4_closes_the_direct_chat_and_its_tab(alice: ChatApp, bob: ChatClient) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await pilot.press(*"/msg bob hello", "enter")
        await wait_event(bob, ChatOpened)
        tabs = alice.query_one(TabbedContent)
        await pilot.press("ctrl+n")
        await until(pilot, lambda: tabs.active == "direct-" + b"bob".hex())
        await pilot.press("f4")
        await until(pilot, lambda: tabs.tab_count == 1)
        assert alice.client.chat_state("bob") is None


async def test_help_lists_commands_and_keys(alice: ChatApp) -> None:
    async with alice.run_test(size=(120, 40)) as pilot:
        await pilot.press(*"/help", "enter")
        await until(pilot, lambda: "/msg NICK TEXT" in shown(alice) and "F4" in shown(alice))
        assert "F1             show this help" in shown(alice)


async def test_errors_are_shown_where_they_belong(alice: ChatApp) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await pilot.press(*"/msg nobody hi", "enter")
        await until(pilot, lambda: "no participant named 'nobody'" in shown(alice))
        await pilot.press(*"/frobnicate", "enter")
        await until(pilot, lambda: "unknown command /frobnicate" in shown(alice))


async def test_quit_exits_with_status_0(alice: ChatApp) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await pilot.press(*"/quit", "enter")
        await pilot.pause()
    assert alice.return_code == 0


async def test_completion_keeps_up_with_fast_typing(alice: ChatApp, bob: ChatClient) -> None:
    """Tab completes the word before it even when the keys after it arrive in the same
    read (a fast typist, or keys pasted): they are handled in order."""
    async with alice.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: "bob" in people(alice))
        box = alice.query_one(CommandInput)
        for key in (*"hi b", "tab", *"there"):  # posted at once, processed in order
            box.post_message(Key(key, key if len(key) == 1 else None))
        await until(pilot, lambda: box.value == "hi bob there")
