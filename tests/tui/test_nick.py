"""/nick in the full-screen client, under Textual's pilot, against a real server."""

from __future__ import annotations

from p2pchat.events import PeerJoined, PeerLeft
from p2pchat.server import ChatServer
from p2pchat.tui import ChatApp
from p2pchat.tui.widgets import StatusBar

from ..integration._support import joined, wait_event
from .test_app import people, shown, until


async def test_nick_updates_the_status_line_and_the_you_mark(server: ChatServer) -> None:
    bob = await joined(server.port, "bob")
    client = await joined(server.port, "alice")
    app = ChatApp(client, server=f"127.0.0.1:{server.port}")
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: "alice (you)" in people(app) and "bob" in people(app))
            await pilot.press(*"/nick alicia", "enter")
            await until(pilot, lambda: "alicia (you)" in people(app))
            assert "alice (you)" not in people(app)
            assert " alicia" in str(app.query_one(StatusBar).render())
            assert "alice is now alicia" in shown(app)
            assert (await wait_event(bob, PeerLeft)).participant.nick == "alice"
            assert (await wait_event(bob, PeerJoined)).participant.nick == "alicia"
            await pilot.press(*"/nick Bob", "enter")
            await until(pilot, lambda: "'Bob' is already in use" in shown(app))
            await until(pilot, lambda: "alicia (you)" in people(app))
            assert client.nick == "alicia"
            assert " alicia" in str(app.query_one(StatusBar).render())
    finally:
        await client.close()
        await bob.close()
