"""The README's library example is the file in examples/, and it works."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from p2pchat.events import BroadcastReceived, ChatReceived, PeerJoined
from p2pchat.server import ChatServer

from ._support import joined, wait_event

ROOT = Path(__file__).resolve().parents[2]
BOT = ROOT / "examples" / "echo_bot.py"


def test_readme_shows_the_example_verbatim() -> None:
    assert BOT.read_text() in (ROOT / "README.md").read_text()


async def test_echo_bot_answers(server: ChatServer) -> None:
    alice = await joined(server.port, "alice")
    bot = await asyncio.create_subprocess_exec(sys.executable, str(BOT), f"127.0.0.1:{server.port}")
    try:
        await wait_event(alice, PeerJoined, lambda e: e.participant.nick == "echobot", timeout=10)
        await wait_event(alice, BroadcastReceived, lambda e: e.nick == "echobot")
        await alice.broadcast("!ping")
        assert (await wait_event(alice, BroadcastReceived)).text == "pong, alice"
        await alice.send_chat("echobot", "hi bot")
        assert (await wait_event(alice, ChatReceived)).text == "you said: hi bot"
    finally:
        bot.kill()
        await bot.wait()
        await alice.close()
