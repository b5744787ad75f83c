"""Fan-out load generator: receivers and senders against a chat server, in one process.

Speaks p2pchat, IRC (NICK/USER, JOIN, PRIVMSG) and Redis pub/sub, so that
the same workload drives our server and the ones we compare it with. It
prints one JSON object: deliveries, elapsed time, deliveries per second,
lost messages, latency percentiles (from send timestamps in the messages).

    python benchmarks/loadgen.py --proto p2pchat --port 7777 --receivers 200 \\
        --senders 4 --messages 2000

Run it pinned to a core of its own (``taskset -c 1``); ``run.py`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import sys
import time
from collections.abc import Callable

STAMP = re.compile(rb"@(\d{19})@")


class Protocols:
    """What each protocol sends to join, to send one message, and what marks a delivery."""

    def __init__(self, proto: str, channel: str = "bench") -> None:
        self.proto = proto
        self.channel = channel

    def join(self, nick: str, index: int) -> bytes:
        if self.proto == "p2pchat":
            return b"REGISTER:%s:127.0.0.1:%d\r\n" % (nick.encode(), 1024 + index)
        if self.proto == "irc":
            return b"NICK %s\r\nUSER %s 0 * :bench\r\n" % (nick.encode(), nick.encode())
        return b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (
            len(self.channel),
            self.channel.encode(),
        )

    def joined_mark(self) -> bytes:
        """Seen once the join has been answered."""
        return {"p2pchat": b"LIST:", "irc": b" 001 ", "redis": b"subscribe"}[self.proto]

    def after_welcome(self, nick: str, oper: bool) -> bytes:
        if self.proto != "irc":
            return b""
        extra = b"OPER bench bench\r\nMODE %s +F\r\n" % nick.encode() if oper else b""
        return extra + b"JOIN #%s\r\n" % self.channel.encode()

    def channel_joined_mark(self) -> bytes | None:
        return b" 366 " if self.proto == "irc" else None  # end of NAMES

    def message(self, nick: str, payload: bytes) -> bytes:
        if self.proto == "p2pchat":
            return b"BROADCAST:%s:%d:%s\r\n" % (nick.encode(), len(payload), payload)
        if self.proto == "irc":
            return b"PRIVMSG #%s :%s\r\n" % (self.channel.encode(), payload)
        ch = self.channel.encode()
        return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
            len(ch),
            ch,
            len(payload),
            payload,
        )

    def join_mark(self) -> bytes | None:
        """Seen by a member when someone joins (IRC: by the joiner too)."""
        return {"p2pchat": b"UPDATE:JOIN:", "irc": b" JOIN ", "redis": None}[self.proto]

    def delivery_mark(self) -> bytes:
        return {"p2pchat": b"BROADCAST:", "irc": b" PRIVMSG ", "redis": b"$7\r\nmessage\r\n"}[
            self.proto
        ]


class Counter(asyncio.Protocol):
    """One connection that counts the marks it receives, across chunk boundaries."""

    def __init__(self, marks: list[bytes], on_data: Callable[[bytes], None] | None) -> None:
        self.marks = marks
        self.counts = [0] * len(marks)
        self.tail = b""
        self.keep = max(len(m) for m in marks) - 1
        self.on_data = on_data
        self.changed = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.last = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        window = self.tail + data
        for i, mark in enumerate(self.marks):
            self.counts[i] += window.count(mark)
        self.tail = window[-self.keep :] if self.keep else b""
        self.last = time.perf_counter()
        if self.on_data is not None:
            self.on_data(window)
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.changed.set()


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise SystemExit(f"loadgen: timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def run(args: argparse.Namespace) -> dict[str, object]:
    p = Protocols(args.proto)
    loop = asyncio.get_running_loop()
    latencies: list[int] = []

    def sample(window: bytes) -> None:
        now = time.time_ns()
        latencies.extend(now - int(s) for s in STAMP.findall(window))

    delivery = p.delivery_mark()
    joined = p.joined_mark()
    chan_mark = p.channel_joined_mark() or joined
    join_mark = p.join_mark() or joined
    marks = [delivery, joined, chan_mark, join_mark]
    clients: list[Counter] = []
    names = [f"r{i}" for i in range(args.receivers)] + [f"s{i}" for i in range(args.senders)]
    members = args.proto != "redis"  # senders join too, except for pub/sub
    storm_started = time.perf_counter()
    for index, nick in enumerate(names):
        is_sender = nick.startswith("s")
        on_data = sample if args.latency and not is_sender else None
        _, counter = await loop.create_connection(
            lambda on_data=on_data: Counter(marks, on_data), "127.0.0.1", args.port
        )
        clients.append(counter)
        if is_sender and not members:
            continue
        counter.transport.write(p.join(nick, index))  # type: ignore[union-attr]
        if args.proto == "irc":  # JOIN #bench once welcomed
            await wait_until(lambda c=counter: c.counts[1] > 0, args.timeout, f"{nick} welcome")
            counter.transport.write(p.after_welcome(nick, oper=is_sender))  # type: ignore[union-attr]
        if args.stagger:  # one after another, as in a join storm
            await wait_until(lambda c=counter: c.counts[2] > 0, args.timeout, f"{nick} to join")
    listeners = [c for c, n in zip(clients, names, strict=True) if members or n[0] == "r"]
    await wait_until(lambda: all(c.counts[2] > 0 for c in listeners), args.timeout, "joining")
    # Everyone has seen everyone join: member i of n sees n-1-i JOINs (IRC: n-i, its own too).
    n = len(listeners)
    own = 1 if args.proto == "irc" else 0
    if members:
        await wait_until(
            lambda: all(c.counts[3] >= n - 1 - i + own for i, c in enumerate(listeners)),
            args.timeout,
            "every join to be seen",
        )
    join_storm_s = time.perf_counter() - storm_started
    rss_mb = None
    if args.report_rss:
        await asyncio.sleep(1.0)  # let the server settle
        for line in open(f"/proc/{args.report_rss}/status"):  # noqa: SIM115
            if line.startswith("VmRSS:"):
                rss_mb = int(line.split()[1]) / 1024
    # Let the join announcements drain before the clock starts.
    await asyncio.sleep(0.5)
    before = [c.counts[0] for c in clients]
    senders = [(c, n) for c, n in zip(clients, names, strict=True) if n[0] == "s"]
    receivers_of_each = len(listeners) - (1 if members else 0)
    expected = args.senders * args.messages * receivers_of_each
    pad = b"x" * args.size

    def payload(seq: int, stamp: bool) -> bytes:
        head = b"@%019d@" % time.time_ns() if stamp else b"#%019d#" % seq
        return (head + pad)[: args.size]

    started = time.perf_counter()

    async def send(counter: Counter, nick: str) -> None:
        transport = counter.transport
        assert transport is not None
        if args.latency:  # a steady rate: one message per sender every `gap` seconds
            gap = args.senders / args.rate
            next_at = time.perf_counter()
            for _ in range(args.messages):
                transport.write(p.message(nick, payload(0, True)))
                next_at += gap
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            return
        batch = 200
        for first in range(0, args.messages, batch):
            chunk = b"".join(
                p.message(nick, payload(seq, seq % 64 == 0))
                for seq in range(first, min(first + batch, args.messages))
            )
            transport.write(chunk)
            while transport.get_write_buffer_size() > 1 << 20:
                await asyncio.sleep(0.001)

    await asyncio.gather(*(send(c, n) for c, n in senders))

    def delivered() -> int:
        return sum(c.counts[0] for c in clients) - sum(before)

    deadline = time.perf_counter() + args.timeout
    while delivered() < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.002)
    got = delivered()
    finished = max(c.last for c in clients)
    elapsed = max(finished - started, 1e-9)
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    latencies.sort()

    def pct(q: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] / 1e6

    return {
        "join_storm_s": round(join_storm_s, 3),
        "server_rss_mb_idle": None if rss_mb is None else round(rss_mb, 1),
        "proto": args.proto,
        "receivers": args.receivers,
        "senders": args.senders,
        "messages": args.messages,
        "expected": expected,
        "delivered": got,
        "lost": expected - got,
        "elapsed_s": round(elapsed, 4),
        "deliveries_per_s": round(got / elapsed),
        "latency_p50_ms": pct(0.50),
        "latency_p99_ms": pct(0.99),
        "latency_samples": len(latencies),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--proto", choices=["p2pchat", "irc", "redis"], required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--receivers", type=int, default=200)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--messages", type=int, default=2000, help="per sender")
    ap.add_argument("--size", type=int, default=100, help="bytes of each message text")
    ap.add_argument("--latency", action="store_true", help="steady rate, every message stamped")
    ap.add_argument("--rate", type=float, default=2000, help="messages/s in total, with --latency")
    ap.add_argument("--stagger", action="store_true", help="register one client after another")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument(
        "--report-rss", type=int, metavar="PID", help="report this process's RSS once all joined"
    )
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    try:
        import uvloop

        result = uvloop.run(run(args)) if sys.version_info >= (3, 12) else None
        if result is None:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                result = runner.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
