"""Draws docs/screenshot.svg: the full-screen client in a real conversation.

Run from the repository root: ``python docs/screenshot.py``. It starts a
server on a free loopback port, three clients, and alice's full-screen app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot

from p2pchat.client import ChatClient
from p2pchat.conversations import GROUP
from p2pchat.events import ChatReceived
from p2pchat.server import ChatServer
from p2pchat.tui import ChatApp


async def until(pilot: Pilot, condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await pilot.pause(0.05)


async def main() -> None:
    server = ChatServer()
    await server.start("127.0.0.1", 0)
    port = server.port
    bob, carol, alice = (ChatClient(n, "127.0.0.1", port) for n in ("bob", "carol", "alice"))
    for client in (bob, carol, alice):
        await client.connect()
    app = ChatApp(alice, server=f"127.0.0.1:{port}")
    async with app.run_test(size=(110, 28)) as pilot:
        await bob.broadcast("morning all! standup in 5 minutes")
        await carol.broadcast("alice: could you share yesterday's notes?")
        await until(pilot, lambda: any("notes?" in s.text for s in app.conversation(GROUP).lines))
        await pilot.press(*"sure, posting them in a sec", "enter")
        await pilot.press(*"/msg bob got a minute after standup?", "enter")
        async with asyncio.timeout(10):
            while not isinstance(await bob.next_event(), ChatReceived):
                pass
        await bob.send_chat("alice", "yes, ping me")
        await carol.broadcast("thanks!")
        await until(
            pilot, lambda: "bob (1)" in str(app.query_one("#tabs").get_tab("direct-626f62").label)
        )
        await pilot.press(*"/ch", "tab", *"c", "tab")
        app.save_screenshot(str(Path(__file__).with_name("screenshot.svg")))
    for client in (alice, bob, carol):
        await client.close()
    await server.close()


if __name__ == "__main__":
    asyncio.run(main())
