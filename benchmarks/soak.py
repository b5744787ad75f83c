"""Soak: many clients chatting at a steady rate for a long time against a real server.

    python benchmarks/soak.py                      # 500 clients, 50 broadcasts/s, 10 minutes
    python benchmarks/soak.py --clients 50 --duration 30

Starts ``python -m p2pchat.server`` on 127.0.0.1 (default limits, flood
control included), registers every client, then sends broadcasts at a steady
total rate, each from a client picked at random. Every receiver records each
delivery by (sender, sequence), so lost, duplicated and reordered messages
are counted exactly. The server's RSS is sampled every 10 seconds. At the end
it prints a report; the exit status is 1 if a message was lost or duplicated,
an ERROR arrived or a client was disconnected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from p2pchat.protocol import (
    LENGTH_HARD_LIMIT,
    MAX_LIST_LINE_BYTES,
    NEED_DATA,
    Action,
    Broadcast,
    Decoder,
    Error,
    ParticipantList,
    RemoteProtocolError,
    Role,
    Update,
    encode_broadcast,
)

LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
LATENCY_BUCKETS = 10_000  # 1 ms each; slower deliveries land in the last one


@dataclass
class Totals:
    """What every client saw, summed."""

    sent: int = 0
    delivered: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    misattributed: int = 0  # a message whose nickname is not the one that sent it
    to_sender: int = 0  # a broadcast echoed to the client that sent it
    errors: list[str] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)
    disconnects: int = 0
    leaves: int = 0
    latency_ms: array[int] = field(default_factory=lambda: array("q", [0] * (LATENCY_BUCKETS + 1)))
    senders: array[int] = field(default_factory=lambda: array("i"))  # by message id


class Client(asyncio.Protocol):
    """One participant: registers, then records every broadcast it receives."""

    def __init__(self, index: int, capacity: int, clients: int, totals: Totals) -> None:
        self.index = index
        self.nick = f"c{index}"
        self.totals = totals
        self.decoder = Decoder(
            Role.CLIENT, max_message_bytes=LENGTH_HARD_LIMIT, max_line_bytes=MAX_LIST_LINE_BYTES
        )
        self.transport: asyncio.Transport | None = None
        self.registered = False
        self.joins_seen = 0
        self.closed = False
        # One byte per message id: set once delivered, so a second copy is a duplicate.
        self.seen = bytearray(capacity)
        self.last_seq = array("q", [-1] * clients)  # per sender, to see reordering
        self.counting = False  # join announcements before the soak are not deliveries

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        udp_port = 1024 + self.index % 64000  # registered, never used: no direct chats here
        self.transport.write(b"REGISTER:%s:127.0.0.1:%d\r\n" % (self.nick.encode(), udp_port))

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        self.decoder.feed(data)
        while True:
            try:
                event = self.decoder.next_event()
            except RemoteProtocolError as error:
                self.totals.protocol_errors.append(f"{self.nick}: {error}")
                if error.fatal:
                    if self.transport is not None:
                        self.transport.close()
                    return
                continue
            if event is NEED_DATA:
                return
            if isinstance(event, Broadcast):
                self.delivery(event, now)
            elif isinstance(event, ParticipantList):
                self.registered = True
            elif isinstance(event, Update):
                if event.action is Action.JOIN:
                    self.joins_seen += 1
                elif self.counting:
                    self.totals.leaves += 1
            elif isinstance(event, Error):
                self.totals.errors.append(f"{self.nick}: {event.text}")

    def delivery(self, message: Broadcast, now: int) -> None:
        totals = self.totals
        # Text: "<id> <sender's sequence> <send time, ns> <padding>".
        ident, seq, stamp, _ = message.text.split(" ", 3)
        message_id, sequence, sender = int(ident), int(seq), int(message.nick[1:])
        if totals.senders[message_id] != sender:
            totals.misattributed += 1
            return
        if sender == self.index:
            totals.to_sender += 1
            return
        if self.seen[message_id]:
            totals.duplicates += 1
            return
        self.seen[message_id] = 1
        totals.delivered += 1
        if sequence <= self.last_seq[sender]:
            totals.out_of_order += 1
        self.last_seq[sender] = sequence
        latency = (now - int(stamp)) // 1_000_000
        totals.latency_ms[min(max(latency, 0), LATENCY_BUCKETS)] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.counting:
            self.totals.disconnects += 1


def rss_kb(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


@contextlib.contextmanager
def server_process(log_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The server on 127.0.0.1, a free port; yields the process and its port, then stops it."""
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2pchat.server", "--host", "127.0.0.1", "--port", "0"],
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            found = LISTENING.search(log_path.read_text(errors="replace"))
            if found:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"soak: the server did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield proc, int(found[1])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


async def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"soak: timed out waiting for {what}")
        await asyncio.sleep(0.05)


def percentile(histogram: array[int], q: float) -> int | None:
    total = sum(histogram)
    if not total:
        return None
    rank, seen = q * total, 0
    for bucket, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return bucket
    return LATENCY_BUCKETS


@dataclass
class Result:
    clients: int
    rate: float
    text_bytes: int
    sending_s: float
    totals: Totals
    expected: int
    lost: int
    lost_examples: list[str]
    rss_samples: list[tuple[float, int]]  # (seconds into the soak, kB)
    hwm_start_kb: int
    hwm_end_kb: int
    server_alive: bool = True
    server_warnings: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        t = self.totals
        return bool(
            self.lost
            or t.duplicates
            or t.misattributed
            or t.to_sender
            or t.errors
            or t.protocol_errors
            or t.disconnects
            or not self.server_alive
        )

    def report(self) -> str:
        t = self.totals
        rss = [kb / 1024 for _, kb in self.rss_samples]
        growth_kb = self.rss_samples[-1][1] - self.rss_samples[0][1]
        p50, p99 = percentile(t.latency_ms, 0.5), percentile(t.latency_ms, 0.99)
        slowest = max((b for b, count in enumerate(t.latency_ms) if count), default=None)
        return "\n".join(
            [
                f"clients              {self.clients}",
                f"duration             {self.sending_s:.1f} s at {self.rate:g} broadcasts/s"
                f" ({self.text_bytes}-byte texts)",
                f"messages sent        {t.sent}",
                f"deliveries expected  {t.sent} x {self.clients - 1} = {self.expected}",
                f"delivered            {t.delivered}",
                f"lost                 {self.lost}  {' '.join(self.lost_examples)}",
                f"duplicates           {t.duplicates}",
                f"out of order         {t.out_of_order}",
                f"wrong sender         {t.misattributed}, echoed to the sender {t.to_sender}",
                f"ERRORs received      {len(t.errors)}  {' | '.join(t.errors[:3])}",
                f"undecodable input    {len(t.protocol_errors)}  {' | '.join(t.protocol_errors[:3])}",
                f"disconnects          {t.disconnects} (LEAVEs seen: {t.leaves})",
                f"latency ms           p50 {ms(p50)}  p99 {ms(p99)}  max {ms(slowest)}",
                f"server RSS MB        start {rss[0]:.1f} (all joined)  end {rss[-1]:.1f}"
                f"  max sampled {max(rss):.1f}  change {growth_kb:+d} kB",
                f"server VmHWM MB      {self.hwm_start_kb / 1024:.1f} at start,"
                f" {self.hwm_end_kb / 1024:.1f} at end",
                f"server warnings      {len(self.server_warnings)}"
                f"  {' | '.join(self.server_warnings[:3])}",
                f"server still running {'yes' if self.server_alive else 'NO'}",
                "RSS samples (s:MB)   "
                + " ".join(f"{s:.0f}:{kb / 1024:.1f}" for s, kb in self.rss_samples),
                f"result               {'FAILED' if self.failed else 'ok'}",
            ]
        )


def ms(bucket: int | None) -> str:
    if bucket is None:
        return "-"
    return f">={bucket}" if bucket >= LATENCY_BUCKETS else str(bucket)


def message_text(message_id: int, sequence: int, size: int) -> str:
    """ "<id> <sender's sequence> <send time, ns> " padded with x to ``size`` characters."""
    head = f"{message_id} {sequence} {time.time_ns()} "
    return head + "x" * max(1, size - len(head))


async def soak(args: argparse.Namespace, pid: int, port: int) -> Result:
    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed)
    planned = int(args.rate * args.duration)
    totals = Totals()
    clients: list[Client] = []
    for index in range(args.clients):
        _, client = await loop.create_connection(
            lambda index=index: Client(index, planned, args.clients, totals), "127.0.0.1", port
        )
        clients.append(client)
    await wait_for(lambda: all(c.registered for c in clients), 120, "every client to register")
    # Client i, registered i-th, is told of the n-1-i who joined after it.
    n = len(clients)
    await wait_for(
        lambda: all(c.joins_seen >= n - 1 - i for i, c in enumerate(clients)),
        120,
        "every join to be announced",
    )
    for client in clients:
        client.counting = True
    await asyncio.sleep(1.0)  # let the server settle before the first sample
    samples: list[tuple[float, int]] = [(0.0, rss_kb(pid))]
    hwm_start = rss_kb(pid, "VmHWM")
    print(
        f"soak: {n} clients registered; server RSS {samples[0][1] / 1024:.1f} MB; "
        f"sending {args.rate:g}/s for {args.duration:g} s",
        file=sys.stderr,
        flush=True,
    )

    sequences = [0] * n
    started = time.monotonic()
    next_sample = started + args.sample
    next_progress = started + 60
    for tick in range(planned):
        delay = started + tick / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        if now >= next_sample:
            samples.append((now - started, rss_kb(pid)))
            next_sample += args.sample
        if now >= next_progress:
            next_progress += 60
            print(
                f"soak: {now - started:4.0f} s  sent {totals.sent}  delivered {totals.delivered}"
                f"  server RSS {samples[-1][1] / 1024:.1f} MB",
                file=sys.stderr,
                flush=True,
            )
        sender = clients[rng.randrange(n)]
        if sender.closed or sender.transport is None:
            continue  # counted as a disconnect already
        text = message_text(totals.sent, sequences[sender.index], args.size)
        totals.senders.append(sender.index)
        sequences[sender.index] += 1
        totals.sent += 1
        sender.transport.write(encode_broadcast(sender.nick, text))
    sending_s = time.monotonic() - started

    expected = sum(totals.sent - sequences[c.index] for c in clients)
    await wait_for_drain(totals, expected, quiet=60)
    await asyncio.sleep(1.0)
    samples.append((time.monotonic() - started, rss_kb(pid)))
    hwm_end = rss_kb(pid, "VmHWM")
    for client in clients:
        client.counting = False
        if client.transport is not None:
            client.transport.close()

    # Lost: a message id a client neither sent nor received.
    lost, examples = 0, []
    for client in clients:
        missing = client.seen[: totals.sent].count(0) - sequences[client.index]
        lost += missing
        if missing and len(examples) < 5:
            ids = (
                i
                for i in range(totals.sent)
                if not client.seen[i] and totals.senders[i] != client.index
            )
            examples.extend(f"id {i} from c{totals.senders[i]} to {client.nick}" for i in ids)
    return Result(
        clients=n,
        rate=args.rate,
        text_bytes=args.size,
        sending_s=sending_s,
        totals=totals,
        expected=expected,
        lost=lost,
        lost_examples=examples[:5],
        rss_samples=samples,
        hwm_start_kb=hwm_start,
        hwm_end_kb=hwm_end,
    )


async def wait_for_drain(totals: Totals, expected: int, quiet: float) -> None:
    """Until every delivery arrived, or none arrived for ``quiet`` seconds."""
    last, quiet_since = -1, time.monotonic()
    while totals.delivered < expected:
        if totals.delivered != last:
            last, quiet_since = totals.delivered, time.monotonic()
        elif time.monotonic() - quiet_since > quiet:
            return
        await asyncio.sleep(0.05)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--rate", type=float, default=50, help="broadcasts per second, in total")
    ap.add_argument("--duration", type=float, default=600, help="seconds of sending")
    ap.add_argument("--size", type=int, default=100, help="characters of each text")
    ap.add_argument("--sample", type=float, default=10, help="seconds between RSS samples")
    ap.add_argument("--seed", type=int, default=1, help="for the choice of senders")
    args = ap.parse_args()
    if args.clients < 2 or args.rate <= 0 or args.duration <= 0:
        ap.error("--clients must be at least 2, --rate and --duration positive")
    # The clients' sockets are in this process, the server's in its child: room for both.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with tempfile.TemporaryDirectory(prefix="p2pchat-soak-") as tmp:
        log_path = Path(tmp) / "server.log"
        with server_process(log_path) as (proc, port):
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                result = runner.run(soak(args, proc.pid, port))
            result.server_alive = proc.poll() is None
        result.server_warnings = [
            line
            for line in log_path.read_text(errors="replace").splitlines()
            if " WARNING " in line or " ERROR " in line
        ]
    print(result.report())
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
