"""Stays on in a namespace and prints, as JSON lines, each p2pchat service it sees come
(with the addresses its records carry) and go. The LAN tests use it to time the
announcement and its withdrawal as another machine's browser sees them."""

from __future__ import annotations

import asyncio
import json
import time

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from p2pchat.discovery import SERVICE_TYPE


def say(**fields: object) -> None:
    print(json.dumps({**fields, "t": time.monotonic()}), flush=True)


async def main() -> None:
    zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
    tasks: set[asyncio.Task[None]] = set()

    async def resolve(name: str, change: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        await info.async_request(zc.zeroconf, 3000)
        props = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
        say(event=change, name=name, addresses=info.parsed_addresses(), port=info.port, txt=props)

    def on_change(
        zeroconf: object, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            say(event="removed", name=name)
            return
        task = asyncio.create_task(resolve(name, state_change.name.lower()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    browser = AsyncServiceBrowser(zc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    say(event="browsing")
    try:
        await asyncio.Event().wait()
    finally:
        await browser.async_cancel()
        await zc.async_close()


if __name__ == "__main__":
    asyncio.run(main())
