"""Direct chats: time to open one, and messages per second one way over an open one.

    python benchmarks/bench_direct.py [--opens 200] [--messages 300000]

A server and two clients in this process, on loopback. "Open" is the time
from asking for a chat (what /msg does) to ChatOpened on the asking side:
INIT over UDP, ACK, the TCP connection. Throughput counts CHAT frames of
100-byte texts from the moment the first is sent until the last arrives.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from p2pchat import _net
from p2pchat.client import ChatClient
from p2pchat.events import ChatClosed, ChatOpened, ChatReceived
from p2pchat.server import ChatServer


async def next_of(client: ChatClient, kind: type) -> object:
    while True:
        event = await client.next_event()
        if isinstance(event, kind):
            return event


async def main(opens: int, messages: int) -> None:
    server = ChatServer()
    await server.start("127.0.0.1", 0)
    alice = ChatClient("alice", "127.0.0.1", server.port)
    bob = ChatClient("bob", "127.0.0.1", server.port)
    await alice.connect()
    await bob.connect()
    await asyncio.sleep(0.2)
    times = []
    for _ in range(opens):
        started = time.perf_counter()
        alice.start_chat("bob")
        await next_of(alice, ChatOpened)
        times.append((time.perf_counter() - started) * 1000)
        await next_of(bob, ChatOpened)
        alice.close_chat("bob")
        await next_of(alice, ChatClosed)
        await next_of(bob, ChatClosed)
    times.sort()
    print(
        f"open a direct chat ({opens} times): median {statistics.median(times):.2f} ms, "
        f"p99 {times[int(0.99 * (len(times) - 1))]:.2f} ms"
    )

    await alice.open_chat("bob")
    await next_of(bob, ChatOpened)
    text = "x" * 100
    received = 0
    done = asyncio.Event()

    async def count() -> None:
        nonlocal received
        while received < messages:
            event = await bob.next_event()
            if isinstance(event, ChatReceived):
                received += 1
        done.set()

    counter = asyncio.create_task(count())
    started = time.perf_counter()
    for _ in range(messages):
        await alice.send_chat("bob", text)
    await done.wait()
    elapsed = time.perf_counter() - started
    await counter
    print(
        f"one way over an open chat: {messages:,} messages in {elapsed:.2f} s = "
        f"{messages / elapsed:,.0f} messages/s"
    )
    await alice.close()
    await bob.close()
    await server.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--opens", type=int, default=200)
    ap.add_argument("--messages", type=int, default=300_000)
    args = ap.parse_args()
    _net.run(lambda: main(args.opens, args.messages))
