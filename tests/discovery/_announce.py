"""Announces a chat by name, port and address, and nothing else: a record that outlives
its chat, as one cached on the LAN does after its host vanished. Runs until stdin ends."""

from __future__ import annotations

import asyncio
import sys

from p2pchat.discovery import Announcer


async def main(name: str, port: int, address: str) -> None:
    announcer = Announcer(name, port, [address], lambda: 1)
    await announcer.start()
    print("announced", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await announcer.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
