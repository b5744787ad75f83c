"""A bot in 20 lines: answers !ping in the group and echoes direct messages."""

import asyncio
import sys

from p2pchat import ChatClient
from p2pchat.events import BroadcastReceived, ChatReceived


async def main(host: str, port: int) -> None:
    async with ChatClient("echobot", host, port) as bot:
        await bot.broadcast("echobot here: say !ping, or /msg echobot anything")
        async for event in bot.events():
            match event:
                case BroadcastReceived(nick=nick, text="!ping"):
                    await bot.broadcast(f"pong, {nick}")
                case ChatReceived(peer=peer, text=text):
                    await bot.send_chat(peer, f"you said: {text}")


host, _, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:7777").rpartition(":")
asyncio.run(main(host, int(port)))
