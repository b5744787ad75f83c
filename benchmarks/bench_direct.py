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
import sys
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
        f"one way over an open chat, one process: {messages:,} messages in {elapsed:.2f} s = "
        f"{messages / elapsed:,.0f} messages/s"
    )
    await bob.close()
    await two_processes(server, alice, messages)
    await alice.close()
    await server.close()


async def two_processes(server: ChatServer, alice: ChatClient, messages: int) -> None:
    """The same, with the receiver in a process of its own, as two people would be."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--receive",
        str(server.port),
        str(messages),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    await proc.stdout.readline()  # "ready": registered
    async with asyncio.timeout(10):
        while alice.participants[-1].nick != "carol":
            await asyncio.sleep(0.01)
    await alice.open_chat("carol")
    text = "x" * 100
    started = time.time()
    for _ in range(messages):
        await alice.send_chat("carol", text)
    finished = float((await proc.stdout.readline()).decode())
    await proc.wait()
    elapsed = finished - started
    print(
        f"one way over an open chat, two processes: {messages:,} messages in {elapsed:.2f} s = "
        f"{messages / elapsed:,.0f} messages/s"
    )


async def receive(port: int, messages: int) -> None:
    carol = ChatClient("carol", "127.0.0.1", port)
    await carol.connect()
    print("ready", flush=True)
    received = 0
    while received < messages:
        if isinstance(await carol.next_event(), ChatReceived):
            received += 1
    print(time.time(), flush=True)
    await carol.close()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--receive":  # the receiving process
        _net.run(lambda: receive(int(sys.argv[2]), int(sys.argv[3])))
        sys.exit(0)
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--opens", type=int, default=200)
    ap.add_argument("--messages", type=int, default=300_000)
    args = ap.parse_args()
    _net.run(lambda: main(args.opens, args.messages))
