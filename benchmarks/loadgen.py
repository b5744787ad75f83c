"""Fan-out load generator: receivers and senders against a chat server, in one process.

Speaks p2pchat, IRC (NICK/USER, JOIN, PRIVMSG) and Redis pub/sub, so that
the same workload drives our server and the ones we compare it with. It
prints one JSON object: deliveries, elapsed time, deliveries per second,
lost messages, latency percentiles (from send timestamps in the messages).

    python benchmarks/loadgen.py --proto p2pchat --port 7777 --receivers 200 \\
        --senders 4 --messages 2000

Join storms: ``--batch 500`` registers the receivers 500 at a time (each
batch all at once, the next once the batch has its LIST), until everyone
has seen everyone join; ``--server-pid`` reports the server's CPU seconds
over exactly that span; ``--probe`` adds two clients registered before the
storm, in a process of their own, one broadcasting every 200 ms during it
and the other timing each delivery.

Run it pinned to a core of its own (``taskset -c 1``); ``run.py`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

STAMP = re.compile(rb"@(\d{19})@")
JOIN_ATTEMPTS = 20


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
        self.lost: Exception | None = None
        self.attempts = 1  # connections it took to join

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        window = self.tail + data
        kept = len(self.tail)
        for i, mark in enumerate(self.marks):
            # Only marks that end in the new data: one wholly inside the tail was counted.
            self.counts[i] += window.count(mark, max(0, kept - len(mark) + 1))
        self.tail = window[-self.keep :] if self.keep else b""
        self.last = time.perf_counter()
        if self.on_data is not None:
            self.on_data(window)
        self.changed.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self.changed.set()


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise SystemExit(f"loadgen: timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Lost(Exception):
    """The connection closed before what we waited for came."""


async def wait_mark(counter: Counter, index: int, what: str) -> None:
    """Waits, without polling, until ``counter`` has seen mark ``index`` once."""
    while counter.counts[index] == 0:
        if counter.transport is None or counter.transport.is_closing():
            why = f": {counter.lost!r}" if counter.lost else ""
            raise Lost(f"connection closed waiting for {what}{why}")
        counter.changed.clear()
        await counter.changed.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def join_one(
    p: Protocols,
    marks: list[bytes],
    nick: str,
    index: int,
    port: int,
    slots: asyncio.Semaphore,
    attempt_timeout: float | None,
) -> Counter:
    """Connects and joins one client, as a real one would: again if it is reset first.

    It holds a slot from its connect until it has joined, so that connections
    the server has not accepted yet stay under its listen backlog (ours 1024;
    ngircd's is 10, and past it the kernel drops or resets connections).
    """
    loop = asyncio.get_running_loop()
    async with slots:
        for attempt in range(JOIN_ATTEMPTS):
            counter = None
            try:
                _, counter = await loop.create_connection(
                    lambda: Counter(marks, None), "127.0.0.1", port
                )
                assert counter.transport is not None
                counter.transport.write(p.join(nick, index))
                async with asyncio.timeout(attempt_timeout):
                    if p.proto == "irc":  # JOIN #bench once welcomed
                        await wait_mark(counter, 1, f"{nick} welcome")
                        counter.transport.write(p.after_welcome(nick, oper=False))
                    await wait_mark(counter, 2, f"{nick} to join")
                counter.attempts = attempt + 1
                return counter
            except (Lost, OSError, TimeoutError) as error:
                # A connection the server never accepted (its backlog was full
                # when the handshake ended) waits on TCP retransmissions for
                # minutes: start again, as a client would.
                if counter is not None and counter.transport is not None:
                    counter.transport.abort()
                failure = error
        raise SystemExit(f"loadgen: {nick} did not join in {JOIN_ATTEMPTS} attempts: {failure!r}")


async def storm(args: argparse.Namespace) -> dict[str, object]:
    """Registers ``--receivers`` clients ``--batch`` at a time until each knows everyone."""
    p = Protocols(args.proto)
    if args.proto == "redis":
        raise SystemExit("loadgen: --batch needs members that see joins (p2pchat or irc)")
    joined = p.joined_mark()
    marks = [p.delivery_mark(), joined, p.channel_joined_mark() or joined, p.join_mark() or joined]
    probe = None
    if args.probe:  # registered before the storm, in a process of its own
        probe = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--proto",
            args.proto,
            "--port",
            str(args.port),
            "--probe-child",
            str(args.probe_interval),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert probe.stdout is not None and probe.stdin is not None
        ready = await asyncio.wait_for(probe.stdout.readline(), 30)
        if ready.strip() != b"ready":
            raise SystemExit("loadgen: the probe did not register")
    slots = asyncio.Semaphore(args.connect_concurrency)
    n = args.receivers
    cpu_before = cpu_seconds(args.server_pid) if args.server_pid else None
    started = time.perf_counter()
    clients: list[Counter] = []
    for first in range(0, n, args.batch):
        batch = [
            join_one(p, marks, f"r{i}", i, args.port, slots, args.attempt_timeout or None)
            for i in range(first, min(n, first + args.batch))
        ]
        clients += await asyncio.wait_for(asyncio.gather(*batch), args.timeout)
    batches_s = time.perf_counter() - started
    # Everyone knows everyone: each member has seen the JOIN of everyone who came
    # after it (IRC: and its own), n(n-1)/2 in all, whatever the order within a batch.
    expected = n * (n - 1) // 2 + (n if args.proto == "irc" else 0)
    deadline = started + args.timeout
    while sum(c.counts[3] for c in clients) < expected:
        if time.perf_counter() > deadline:
            seen = sum(c.counts[3] for c in clients)
            raise SystemExit(f"loadgen: timed out: {seen} of {expected} joins seen")
        await asyncio.sleep(0.02)
    wall = time.perf_counter() - started
    cpu = None if cpu_before is None else cpu_seconds(args.server_pid) - cpu_before
    result: dict[str, object] = {
        "proto": args.proto,
        "receivers": n,
        "senders": 0,
        "messages": 0,
        "expected": 0,
        "delivered": 0,
        "lost": 0,
        "deliveries_per_s": 0,
        "batch": args.batch,
        "join_storm_s": round(wall, 3),
        "all_registered_s": round(batches_s, 3),
        "joins_seen": sum(c.counts[3] for c in clients),
        "reconnects": sum(c.attempts - 1 for c in clients),
        "storm_server_cpu_s": None if cpu is None else round(cpu, 2),
    }
    if probe is not None:
        assert probe.stdout is not None and probe.stdin is not None
        probe.stdin.write(b"stop\n")
        await probe.stdin.drain()
        result.update(json.loads(await asyncio.wait_for(probe.stdout.readline(), 30)))
        await probe.wait()
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    return result


async def probe_child(args: argparse.Namespace) -> None:
    """Two members: one broadcasts every ``interval`` s until told to stop, the other times it.

    Prints ``ready`` once both are registered, then (after ``stop`` on stdin)
    one JSON object: probes sent, received, and delivery latency p99 and max.
    """
    p = Protocols(args.proto)
    interval = args.probe_child
    latencies: list[int] = []

    def sample(window: bytes) -> None:
        now = time.time_ns()
        latencies.extend(now - int(s) for s in STAMP.findall(window))

    loop = asyncio.get_running_loop()
    joined = p.joined_mark()
    marks = [p.delivery_mark(), joined, p.channel_joined_mark() or joined]
    members: list[Counter] = []
    # Ports of their own, above the storm's: a server refuses an address already taken.
    for index, nick, on_data in ((64510, "probe-rx", sample), (64511, "probe-tx", None)):
        _, counter = await loop.create_connection(
            lambda on_data=on_data: Counter(marks, on_data), "127.0.0.1", args.port
        )
        counter.transport.write(p.join(nick, index))  # type: ignore[union-attr]
        if p.proto == "irc":
            await wait_mark(counter, 1, f"{nick} welcome")
            counter.transport.write(p.after_welcome(nick, oper=True))  # type: ignore[union-attr]
        await wait_mark(counter, 2, f"{nick} to join")
        members.append(counter)
    rx, tx = members
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    stop = asyncio.ensure_future(reader.readline())
    sent = 0
    while not stop.done():
        # A line ending and LF-safe pad: the stamp is all the receiver reads.
        payload = (b"@%019d@" % time.time_ns()).ljust(args.size, b"p")
        tx.transport.write(p.message("probe-tx", payload))  # type: ignore[union-attr]
        sent += 1
        await asyncio.wait([stop], timeout=interval)
    deadline = time.perf_counter() + 10  # the last probes may still be on their way
    while len(latencies) < sent and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    latencies.sort()
    ms = [x / 1e6 for x in latencies]
    print(
        json.dumps(
            {
                "probes_sent": sent,
                "probes_received": len(ms),
                "probe_p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1) if ms else None,
                "probe_max_ms": round(ms[-1], 1) if ms else None,
            }
        ),
        flush=True,
    )
    for c in (rx, tx):
        c.transport.close()  # type: ignore[union-attr]


async def run(args: argparse.Namespace) -> dict[str, object]:
    if args.batch:
        return await storm(args)
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
        # Every --time-every'th receiver times what it gets; the others only count it.
        timed = args.latency and not is_sender and index % args.time_every == 0
        on_data = sample if timed else None
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
    # With --latency, the rate the senders kept (a busy load generator falls behind --rate).
    sent_per_s = args.senders * args.messages / max(time.perf_counter() - started, 1e-9)

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
        "sent_per_s": round(sent_per_s),
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
    ap.add_argument(
        "--time-every",
        type=int,
        default=1,
        metavar="N",
        help="with --latency: only every Nth receiver reads the stamps (reading them all "
        "at 1 M deliveries/s keeps this process's core busy, and its own queueing then "
        "shows in the latencies)",
    )
    ap.add_argument("--stagger", action="store_true", help="register one client after another")
    ap.add_argument(
        "--batch",
        type=int,
        default=0,
        metavar="N",
        help="join storm: register N at a time (all at once within a batch) until each "
        "knows everyone; no messages",
    )
    ap.add_argument(
        "--connect-concurrency",
        type=int,
        default=1000,
        metavar="N",
        help="with --batch: clients connecting or registering at once (under the server's "
        "listen backlog)",
    )
    ap.add_argument(
        "--attempt-timeout",
        type=float,
        default=0,
        metavar="SECONDS",
        help="with --batch: a client not joined this long after connecting starts again "
        "(a connection that ended its handshake while the backlog was full waits minutes "
        "on TCP retransmissions); 0: never",
    )
    ap.add_argument(
        "--server-pid", type=int, metavar="PID", help="with --batch: report its CPU seconds"
    )
    ap.add_argument(
        "--probe",
        action="store_true",
        help="with --batch: two members registered before the storm time a broadcast "
        "sent every --probe-interval seconds during it",
    )
    ap.add_argument("--probe-interval", type=float, default=0.2, metavar="SECONDS")
    ap.add_argument("--probe-child", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument(
        "--report-rss", type=int, metavar="PID", help="report this process's RSS once all joined"
    )
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    main_coro = run(args) if args.probe_child is None else probe_child(args)
    try:
        import uvloop

        result = uvloop.run(main_coro) if sys.version_info >= (3, 12) else None
        if result is None:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                result = runner.run(main_coro)
    except ImportError:
        result = asyncio.run(main_coro)
    if args.probe_child is None:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
