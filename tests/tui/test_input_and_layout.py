"""The full-screen client under fast keys, pastes, narrow screens, hosting and odd nicknames.

Keys are sent in one burst (as tmux send-keys or a fast typist deliver them):
each must be handled in order, by the widget that has the focus at its turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from textual.events import Key, Paste
from textual.pilot import Pilot
from textual.widgets import RichLog, TabbedContent

from p2pchat.client import ChatClient
from p2pchat.events import BroadcastReceived, ChatOpened, ChatReceived
from p2pchat.protocol import DEFAULT_MAX_MESSAGE_BYTES
from p2pchat.server import ChatServer
from p2pchat.tui import ChatApp
from p2pchat.tui.widgets import CommandInput, ParticipantList, StatusBar

from ..integration._support import joined, wait_event
from .test_app import people, until


def log_text(app: ChatApp, pane: str = "group") -> str:
    """A tab's lines by its pane id ("group", or "direct-" and the nick key in hex)."""
    return "\n".join(s.text for s in app.query_one(f"#log-{pane}", RichLog).lines)


def direct_pane(nick: str) -> str:
    return "direct-" + nick.casefold().encode().hex()


async def burst(pilot: Pilot, *keys: str) -> None:
    """Delivers ``keys`` as one read from the terminal would: all queued before any is handled
    (``pilot.press`` lets the app settle after each key)."""
    app = pilot.app
    for key in keys:
        event = Key(key, key if len(key) == 1 else None)
        event.set_sender(app)
        app.post_message(event)
    await pilot.pause()


async def next_broadcasts(client: ChatClient, count: int) -> list[str]:
    return [(await wait_event(client, BroadcastReceived)).text for _ in range(count)]


@pytest.fixture
async def bob(server: ChatServer) -> AsyncIterator[ChatClient]:
    client = await joined(server.port, "bob")
    yield client
    await client.close()


async def _app(server: ChatServer, hosting: str | None = None) -> ChatApp:
    client = await joined(server.port, "alice")
    return ChatApp(client, server=f"127.0.0.1:{server.port}", hosting=hosting)


@pytest.fixture
async def alice(server: ChatServer, bob: ChatClient) -> AsyncIterator[ChatApp]:
    app = await _app(server)
    yield app
    await app.client.close()


async def test_keys_typed_in_a_burst_send_each_line_once(alice: ChatApp, bob: ChatClient) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await burst(pilot, "a", "1", "enter", "a", "2", "enter", "a", "3", "enter")
        await pilot.press(*"end", "enter")
        assert await next_broadcasts(bob, 4) == ["a1", "a2", "a3", "end"]


async def test_answers_to_lines_typed_in_a_burst_come_in_the_order_typed(
    alice: ChatApp, bob: ChatClient
) -> None:
    """A line that is no valid command answers in its turn, not ahead of the lines before it."""
    async with alice.run_test(size=(120, 30)) as pilot:
        await burst(pilot, *"/who", "enter", *"/nope", "enter")
        await until(pilot, lambda: "unknown command /nope" in log_text(alice))
        await until(pilot, lambda: log_text(alice).count("participant(s)") == 2)
        answers = log_text(alice).splitlines()[-2:]
        assert "participant(s)" in answers[0]
        assert "unknown command /nope" in answers[1]


async def test_a_pasted_block_sends_each_line_once_in_order(
    alice: ChatApp, bob: ChatClient
) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        alice.query_one(CommandInput).post_message(Paste("one\ntwo\nthree"))
        await pilot.press(*"end", "enter")
        assert await next_broadcasts(bob, 4) == ["one", "two", "three", "end"]


async def test_a_paste_carries_the_largest_broadcast_whole(alice: ChatApp, bob: ChatClient) -> None:
    """A paste with Windows line ends, its middle line the largest broadcast the server takes
    (one byte more is refused): each line arrives whole, in order."""
    largest = "é" + "x" * (DEFAULT_MAX_MESSAGE_BYTES - 2)  # multi-byte: counted in bytes
    assert len(largest.encode()) == DEFAULT_MAX_MESSAGE_BYTES
    async with alice.run_test(size=(120, 30)):
        alice.query_one(CommandInput).post_message(Paste(f"before\r\n{largest}\r\nafter\r\n"))
        assert await next_broadcasts(bob, 3) == ["before", largest, "after"]
        assert alice.query_one(CommandInput).value == ""


async def test_a_paste_of_many_lines_asks_first(alice: ChatApp, bob: ChatClient) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        box = alice.query_one(CommandInput)
        box.post_message(Paste("\n".join(f"x{i}" for i in range(12))))
        await until(pilot, lambda: "Paste 12 lines?" in box.placeholder)
        await pilot.press("escape")  # cancelled: nothing sent
        box.post_message(Paste("\n".join(f"line {i}" for i in range(12))))
        await until(pilot, lambda: "Paste 12 lines?" in box.placeholder)
        await pilot.press("enter")
        assert await next_broadcasts(bob, 12) == [f"line {i}" for i in range(12)]


async def test_keys_after_f2_go_to_the_participant_list(alice: ChatApp, bob: ChatClient) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: "bob" in people(alice))
        await pilot.press(*"hello", "enter")
        assert await next_broadcasts(bob, 1) == ["hello"]
        await burst(pilot, "f2", "up", "enter")  # Up: to alice herself; Enter: "that is you"
        assert isinstance(alice.focused, ParticipantList)
        await until(pilot, lambda: "that is you" in log_text(alice))
        await pilot.press("escape", *"end", "enter")
        assert await next_broadcasts(bob, 1) == ["end"]  # "hello" was not sent again
        assert alice.client.chat_state("bob") is None


async def test_the_first_direct_text_shows_after_the_chat_opens(
    alice: ChatApp, bob: ChatClient
) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await pilot.press(*"/msg bob psst", "enter")
        assert (await wait_event(bob, ChatReceived)).text == "psst"
        await until(pilot, lambda: direct_pane("bob") in _panes(alice))
        await pilot.press("ctrl+n")  # a tab draws its lines once shown
        await until(pilot, lambda: "<alice> psst" in log_text(alice, direct_pane("bob")))
        lines = log_text(alice, direct_pane("bob")).splitlines()
        assert "open (you asked)" in lines[0] and "<alice> psst" in lines[1]


async def test_f4_on_the_group_tab_says_why_it_stays(alice: ChatApp) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await pilot.press("f4")
        await until(pilot, lambda: "the group tab stays" in log_text(alice))


async def test_tab_completes_a_nickname_where_a_command_takes_one(
    alice: ChatApp, bob: ChatClient
) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: "bob" in people(alice))
        box = alice.query_one(CommandInput)
        for command in ("/msg", "/chat", "/close", "/ignore", "/unignore"):
            box.value = ""
            await pilot.press(*command, "space", "tab")
            assert box.value == f"{command} bob "  # yourself is no one to /msg


async def test_no_head_count_while_disconnected(alice: ChatApp, server: ChatServer) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        status = alice.query_one(StatusBar)
        await until(pilot, lambda: "2 participants" in str(status.render()))
        await server.close()
        await until(pilot, lambda: "reconnecting in" in str(status.render()))
        assert "participant" not in str(status.render())


@pytest.mark.parametrize("width", [60, 30])
async def test_a_narrow_screen_hides_the_participant_list_until_f2(
    alice: ChatApp, bob: ChatClient, width: int
) -> None:
    async with alice.run_test(size=(width, 24)) as pilot:
        sidebar = alice.query_one(ParticipantList)
        await until(pilot, lambda: "bob" in people(alice))
        assert not sidebar.display
        assert alice.query_one("#log-group", RichLog).size.width >= width - 2
        await pilot.press("f2")
        assert sidebar.display and alice.focused is sidebar
        await pilot.press("escape")
        assert not sidebar.display and isinstance(alice.focused, CommandInput)


async def test_a_wide_screen_keeps_the_participant_list(alice: ChatApp) -> None:
    async with alice.run_test(size=(100, 24)) as pilot:
        await pilot.pause()
        assert alice.query_one(ParticipantList).display


async def test_ctrl_c_quits_like_quit(alice: ChatApp) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await pilot.press("ctrl+c")
        async with asyncio.timeout(5):
            while alice.is_running:
                await pilot.pause(0.02)
    assert alice.return_code == 0


async def test_quitting_a_hosted_chat_with_others_asks_first(
    server: ChatServer, bob: ChatClient
) -> None:
    app = await _app(server, hosting=f"127.0.0.1:{server.port}")
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            box = app.query_one(CommandInput)
            await until(pilot, lambda: "bob" in people(app))
            for keys in (("ctrl+q",), ("ctrl+c",), (*"/quit", "enter")):
                await pilot.press(*keys)
                await until(
                    pilot,
                    lambda: (
                        "You are hosting this chat: 1 participant will be disconnected. Quit?"
                        in box.placeholder
                    ),
                )
                await pilot.press("escape")  # stays
                assert app.is_running
            await pilot.press("ctrl+q", "enter")
            async with asyncio.timeout(5):
                while app.is_running:
                    await pilot.pause(0.02)
        assert app.return_code == 0
    finally:
        await app.client.close()


async def test_a_participant_called_group_gets_a_direct_tab(
    alice: ChatApp, server: ChatServer
) -> None:
    group = await joined(server.port, "Group")
    try:
        async with alice.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: "Group" in people(alice))
            await group.send_chat("alice", "from Group")
            await until(pilot, lambda: direct_pane("group") in _panes(alice))
            await pilot.press("ctrl+n")  # a tab draws its lines once shown
            await until(
                pilot, lambda: "<Group> from Group" in log_text(alice, direct_pane("group"))
            )
            await pilot.press(*"/msg group secret", "enter")
            assert (await wait_event(group, ChatReceived)).text == "secret"
            await until(pilot, lambda: "<alice> secret" in log_text(alice, direct_pane("group")))
            await pilot.press("ctrl+n")  # back to the group tab, drawn again
            await until(pilot, lambda: "registered as alice" in log_text(alice))
            assert "secret" not in log_text(alice) and "from Group" not in log_text(alice)
    finally:
        await group.close()


def _panes(app: ChatApp) -> list[str]:
    tabs = app.query_one(TabbedContent)
    return [pane.id or "" for pane in tabs.query("TabPane")]


async def test_ignoring_someone_closes_their_tab_and_hides_them(
    alice: ChatApp, bob: ChatClient
) -> None:
    async with alice.run_test(size=(120, 30)) as pilot:
        await pilot.press(*"/chat bob", "enter")
        await wait_event(bob, ChatOpened)
        await until(pilot, lambda: "open" in log_text(alice, direct_pane("bob")))  # /chat shows it
        await pilot.press(*"/ignore bob", "enter")
        await until(pilot, lambda: "closed" in log_text(alice, direct_pane("bob")))
        await bob.broadcast("you cannot see this")
        await pilot.press(*"/who", "enter")
        await until(pilot, lambda: "participant(s)" in log_text(alice, direct_pane("bob")))
        assert "cannot see" not in log_text(alice)


def _labels(app: ChatApp) -> list[str]:
    tabs = app.query_one(TabbedContent)
    return [str(tab.label) for tab in tabs.query("ContentTab")]


async def test_tabs_switched_in_a_burst_keep_their_names(
    alice: ChatApp, bob: ChatClient, server: ChatServer
) -> None:
    carol = await joined(server.port, "carol")
    try:
        async with alice.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: "carol" in people(alice))
            for peer in (bob, carol):
                await peer.send_chat("alice", "hi")
            await until(pilot, lambda: len(_panes(alice)) == 3)
            await until(pilot, lambda: _labels(alice) == ["group", "bob (1)", "carol (1)"])
            await burst(pilot, "ctrl+n", "ctrl+n")  # to carol's tab, through bob's
            await until(pilot, lambda: alice.query_one(TabbedContent).active == _panes(alice)[2])
            await pilot.pause()
            assert _labels(alice) == ["group", "bob", "carol"]
    finally:
        await carol.close()


async def test_narrowing_the_terminal_hides_the_participant_list(
    alice: ChatApp, bob: ChatClient
) -> None:
    async with alice.run_test(size=(120, 24)) as pilot:
        sidebar = alice.query_one(ParticipantList)
        await until(pilot, lambda: "bob" in people(alice))
        assert sidebar.display
        await pilot.resize_terminal(60, 24)
        await until(pilot, lambda: not sidebar.display)
        await pilot.resize_terminal(100, 24)
        await until(pilot, lambda: sidebar.display)


async def test_on_a_narrow_screen_the_list_hides_once_someone_is_chosen(
    alice: ChatApp, bob: ChatClient
) -> None:
    async with alice.run_test(size=(60, 24)) as pilot:
        sidebar = alice.query_one(ParticipantList)
        await until(pilot, lambda: "bob" in people(alice))
        await burst(pilot, "f2", "enter")  # F2 starts on bob
        await wait_event(bob, ChatOpened)
        await until(pilot, lambda: isinstance(alice.focused, CommandInput))
        assert not sidebar.display
        await pilot.resize_terminal(100, 24)
        await until(pilot, lambda: sidebar.display)
        await pilot.resize_terminal(60, 24)
        await until(pilot, lambda: not sidebar.display)


async def test_hosting_with_the_web_client_names_its_address_in_the_status_line(
    server: ChatServer,
) -> None:
    client = await joined(server.port, "alice")
    hosting = f"127.0.0.1:{server.port}"
    app = ChatApp(
        client,
        server=hosting,
        hosting=hosting,
        join=f"p2pchat --server {hosting}",
        web="http://127.0.0.1:8080/",
    )
    try:
        async with app.run_test(size=(200, 30)) as pilot:
            await until(
                pilot,
                lambda: (
                    f"others join with: p2pchat --server {hosting} or http://127.0.0.1:8080/"
                    in str(app.query_one(StatusBar).render())
                ),
            )
    finally:
        await client.close()
