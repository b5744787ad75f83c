"""Soak: many clients chatting at a steady rate for a long time against a real server,
alone or with attackers beside them.

    python benchmarks/soak.py                      # 500 clients, 50 broadcasts/s, 10 minutes
    python benchmarks/soak.py --clients 50 --duration 30
    python benchmarks/soak.py --attackers          # 100 honest clients and attackers, 10 minutes
    python benchmarks/soak.py --attackers --clients 6 --duration 6 --register-timeout 1

Starts ``python -m p2pchat.server`` on 127.0.0.1 (default limits, flood
control included), registers every honest client, then sends broadcasts at a
steady total rate, each from an honest client picked at random. Every honest
client records each delivery by (sender, sequence), so lost, duplicated and
reordered messages are counted exactly.

With ``--attackers`` (or any attacker count) hostile clients run in the same
process beside the honest ones: bursters (registered, bursts of
maximum-size broadcasts in one write; they read), stallers (registered,
never read), LIST flooders (registered, ``LIST`` over and over, never read),
garbage senders (invalid input of every kind) and churners (connect and
abandon, or connect and wait for the registration timeout). The honest
clients must get every bursters' broadcast too.

The server's RSS (VmRSS, VmHWM) is sampled; its peak must stay within the
bound the limits allow (printed with its terms, see benchmarks/README.md).
The exit status is 1 if an honest client lost a message, got a duplicate or
an ERROR, was disconnected, if the server's peak RSS went past the bound, or
if it left a garbage sender's or an idle connection open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import os
import random
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from p2pchat.protocol import (
    DEFAULT_MAX_LINE_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
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
MIB = 1 << 20

# Honest clients, attackers that register, and strangers that never do each
# connect from their own loopback address, so a per-address limit on one
# group never touches another.
HONEST_SOURCE = "127.0.0.1"
ATTACK_SOURCE = "127.0.0.2"
STRANGER_SOURCE = "127.0.0.3"
JOIN_WAVE = 50  # honest clients connect this many at a time
# Every client's socket is shaped like one across a network: Ethernet-sized
# segments (loopback's are 64 KiB) and a fixed receive buffer. Then the kernel
# holds about what a real path would (12 to 13 times the receive buffer here,
# 0.8 MiB for 64 KiB), not the 4 MiB loopback allows.
NETWORK_MSS = 1460
READ_ALLOWANCE = 64 * 1024  # a paced reader may read this much at once

# The server's defaults the bound is made of, where it has no option for them.
SERVER_SENDQ_BYTES = MIB
SERVER_READ_CHUNK = 256 * 1024  # the most one read hands to a connection (asyncio and uvloop)
SERVER_DROP_GRACE = 2.0  # a dropped client's socket is cut this long after its ERROR
RSS_SLACK = 32 * MIB


# -- the record of every broadcast ------------------------------------------------------


class Ledger:
    """Every broadcast of the soak by message id: its sender and that sender's sequence."""

    def __init__(self) -> None:
        self.nicks: list[str] = []  # by sender index
        self.index: dict[str, int] = {}
        self.senders = array("i")  # by message id
        self.sequences = array("q")  # by message id
        self.sent_by: list[int] = []  # by sender index
        self.highest_seen: list[int] = []  # the highest sequence anyone received, by sender

    def add_sender(self, nick: str) -> int:
        index = len(self.nicks)
        self.nicks.append(nick)
        self.index[nick] = index
        self.sent_by.append(0)
        self.highest_seen.append(-1)
        return index

    def new_message(self, sender: int) -> tuple[int, int]:
        """The next message id and the sender's next sequence, recorded as sent."""
        message_id, sequence = len(self.senders), self.sent_by[sender]
        self.senders.append(sender)
        self.sequences.append(sequence)
        self.sent_by[sender] += 1
        return message_id, sequence

    @property
    def sent(self) -> int:
        return len(self.senders)


@dataclass
class Totals:
    """What a group of clients saw, summed."""

    delivered: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    misattributed: int = 0  # a message whose nickname is not the one that sent it
    to_sender: int = 0  # a broadcast echoed to the client that sent it
    foreign: int = 0  # a broadcast that no client of the soak sent
    errors: list[str] = field(default_factory=list)
    protocol_errors: list[str] = field(default_factory=list)
    disconnects: int = 0
    dropped: list[str] = field(default_factory=list)  # nicknames
    leaves: int = 0
    latency_ms: array[int] = field(default_factory=lambda: array("q", [0] * (LATENCY_BUCKETS + 1)))
    burst_latency_ms: array[int] = field(
        default_factory=lambda: array("q", [0] * (LATENCY_BUCKETS + 1))
    )


class Roster:
    """Joins and leaves as the honest clients hear them: how an attacker that does not
    read learns that the server registered it, and that the server dropped it."""

    def __init__(self) -> None:
        self._events: dict[tuple[Action, str], asyncio.Event] = {}

    def watch(self, nick: str) -> tuple[asyncio.Event, asyncio.Event]:
        """Events set when ``nick``'s JOIN and its LEAVE are heard; ``forget`` ends the watch."""
        joined = self._events[Action.JOIN, nick] = asyncio.Event()
        left = self._events[Action.LEAVE, nick] = asyncio.Event()
        return joined, left

    def forget(self, nick: str) -> None:
        self._events.pop((Action.JOIN, nick), None)
        self._events.pop((Action.LEAVE, nick), None)

    def heard(self, action: Action, nick: str) -> None:
        event = self._events.get((action, nick))
        if event is not None:
            event.set()


class Client(asyncio.Protocol):
    """A participant that reads everything: registers, then records every broadcast."""

    def __init__(
        self,
        index: int,
        ledger: Ledger,
        totals: Totals,
        roster: Roster,
        honest: int,
        read_rate: float = 0.0,
    ) -> None:
        self.index = index
        self.nick = ledger.nicks[index]
        self.ledger = ledger
        self.totals = totals
        self.roster = roster
        self.honest = honest  # senders below this index are honest clients
        self.decoder = Decoder(
            Role.CLIENT, max_message_bytes=LENGTH_HARD_LIMIT, max_line_bytes=MAX_LIST_LINE_BYTES
        )
        self.transport: asyncio.Transport | None = None
        self.registered = False
        self.joins_seen = 0
        self.closed = False
        # One byte per message id: set once delivered, so a second copy is a duplicate.
        self.seen = bytearray()
        self.received = 0  # distinct messages delivered while counting
        self.last_seq = array("q", [-1] * len(ledger.nicks))  # per sender, to see reordering
        self.counting = False  # join announcements before the soak are not deliveries
        self.read_rate = read_rate  # bytes per second; 0: as fast as it comes
        self.allowance = float(READ_ALLOWANCE)
        self.allowance_at = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        udp_port = 1024 + self.index % 64000  # registered, never used: no direct chats here
        self.transport.write(b"REGISTER:%s:127.0.0.1:%d\r\n" % (self.nick.encode(), udp_port))

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        if self.read_rate:
            self.pace(len(data))
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
                self.roster.heard(event.action, event.participant.nick)
                if event.action is Action.JOIN:
                    self.joins_seen += 1
                elif self.counting:
                    self.totals.leaves += 1
            elif isinstance(event, Error):
                self.totals.errors.append(f"{self.nick}: {event.text}")

    def pace(self, size: int) -> None:
        """Past ``read_rate``, stops reading until the rate allows what was read."""
        now = time.monotonic()
        elapsed, self.allowance_at = now - self.allowance_at, now
        self.allowance = min(READ_ALLOWANCE, self.allowance + elapsed * self.read_rate) - size
        if self.allowance < 0 and self.transport is not None:
            self.transport.pause_reading()
            loop = asyncio.get_running_loop()
            loop.call_later(-self.allowance / self.read_rate, self.resume_reading)

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def delivery(self, message: Broadcast, now: int) -> None:
        totals, ledger = self.totals, self.ledger
        # Text: "<id> <sender's sequence> <send time, ns> <padding>".
        sender = ledger.index.get(message.nick)
        try:
            ident, seq, stamp, _ = message.text.split(" ", 3)
            message_id, sequence, sent_ns = int(ident), int(seq), int(stamp)
        except ValueError:
            sender = None
        if sender is None:
            totals.foreign += 1
            return
        if (
            message_id >= ledger.sent
            or ledger.senders[message_id] != sender
            or ledger.sequences[message_id] != sequence
        ):
            totals.misattributed += 1
            return
        if sender == self.index:
            totals.to_sender += 1
            return
        seen = self.seen
        if message_id >= len(seen):
            seen.extend(bytes(message_id - len(seen) + 4096))
        if seen[message_id]:
            totals.duplicates += 1
            return
        seen[message_id] = 1
        if sequence > ledger.highest_seen[sender]:
            ledger.highest_seen[sender] = sequence
        if not self.counting:
            return
        self.received += 1
        totals.delivered += 1
        if sequence <= self.last_seq[sender]:
            totals.out_of_order += 1
        self.last_seq[sender] = sequence
        latency = (now - sent_ns) // 1_000_000
        histogram = totals.latency_ms if sender < self.honest else totals.burst_latency_ms
        histogram[min(max(latency, 0), LATENCY_BUCKETS)] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.counting:
            self.totals.disconnects += 1
            self.totals.dropped.append(self.nick)


def message_text(message_id: int, sequence: int, size: int) -> str:
    """ "<id> <sender's sequence> <send time, ns> " padded with x to ``size`` characters."""
    head = f"{message_id} {sequence} {time.time_ns()} "
    return head + "x" * max(1, size - len(head))


# -- the server -----------------------------------------------------------------------


def rss_kb(pid: int, key: str = "VmRSS") -> int:
    """From /proc/PID/status; 0 once the process has exited."""
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time used so far by process ``pid`` (from /proc), or by this process."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@contextlib.contextmanager
def server_process(
    log_path: Path, options: list[str]
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The server on 127.0.0.1, a free port; yields the process and its port, then stops it."""
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "p2pchat.server", "--host", "127.0.0.1", "--port", "0", *options],
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


def server_options(args: argparse.Namespace) -> list[str]:
    options = [
        "--sendq-bytes",
        str(args.sendq_bytes),
        "--max-message-bytes",
        str(args.max_message_bytes),
    ]
    if args.register_timeout is not None:
        options += ["--register-timeout", f"{args.register_timeout:g}"]
    for option in args.server_option:
        options += option.split()
    return options


@dataclass(frozen=True)
class RssBound:
    """The most the server may hold beyond its RSS before the soak, with its terms."""

    base_kb: int
    input_bytes: int
    output_bytes: int

    @property
    def limit_kb(self) -> int:
        return self.base_kb + (2 * (self.input_bytes + self.output_bytes) + RSS_SLACK) // 1024

    def describe(self) -> str:
        return (
            f"{self.limit_kb / 1024:.1f} = {self.base_kb / 1024:.1f} before the soak"
            f" + 2 x ({self.input_bytes / MIB:.1f} input + {self.output_bytes / MIB:.1f} queued)"
            f" + {RSS_SLACK // MIB} slack"
        )


def rss_bound(base_kb: int, args: argparse.Namespace) -> RssBound:
    """What the limits allow the server to hold (benchmarks/README.md gives the reasons).

    Input: a connection that sends holds at most one read and one unfinished
    message. Queued: every registered client is owed a run of the one global
    order of broadcasts, no longer than its send queue, so all readers together
    pin at most two send queues' worth of distinct broadcasts; each client that
    does not read may pin its own send queue, twice while a dropped one awaits
    its cut and its replacement fills.
    """
    per_input = SERVER_READ_CHUNK + args.max_message_bytes + DEFAULT_MAX_LINE_BYTES
    sending = args.bursters + args.list_flooders + args.garbage
    per_queue = args.sendq_bytes + args.max_message_bytes
    non_readers = args.stallers + args.list_flooders
    return RssBound(base_kb, sending * per_input, (2 + 2 * non_readers) * per_queue)


# -- attackers ------------------------------------------------------------------------


@dataclass
class AttackStats:
    """What the attackers did, and what the server answered them."""

    bursts: int = 0
    bursts_skipped: int = 0  # the previous burst had not left this process yet
    burst_messages: int = 0
    burst_bytes: int = 0
    bursters_unregistered: int = 0
    stallers: int = 0  # registered (their JOIN was heard)
    stallers_dropped: int = 0  # their LEAVE was heard
    staller_lifetimes: list[float] = field(default_factory=list)
    list_flooders: int = 0
    list_flooders_dropped: int = 0
    list_requests: int = 0
    never_joined: int = 0  # stallers and LIST flooders whose JOIN was never heard
    # Garbage connections and idle churn connections are counted once the server
    # closed them or the wait for it ran out, not when the soak's end cut them short.
    garbage_connections: int = 0
    garbage_answered: int = 0  # ERROR, then closed by the server
    garbage_closed_silently: int = 0  # closed by the server without an ERROR
    garbage_left_open: int = 0  # still open when the wait ran out
    churn_abandoned: int = 0
    churn_idle: int = 0
    churn_idle_closed_with_error: int = 0
    churn_idle_closed_silently: int = 0
    churn_idle_left_open: int = 0
    socket_errors: int = 0  # a connect refused, a REGISTER that could not be sent
    error_samples: dict[str, list[str]] = field(default_factory=dict)

    def sample_error(self, kind: str, text: str) -> None:
        samples = self.error_samples.setdefault(kind, [])
        if len(samples) < 3 and text not in samples:
            samples.append(text)


class Burster(Client):
    """A registered client that sends bursts of maximum-size broadcasts in one write, and
    reads everything it is sent."""

    def burst(self, count: int, size: int, stats: AttackStats) -> None:
        transport = self.transport
        if self.closed or transport is None:
            return
        if transport.get_write_buffer_size():
            stats.bursts_skipped += 1  # keeps the attack bounded: one burst in flight
            return
        data = b"".join(
            encode_broadcast(self.nick, message_text(*self.ledger.new_message(self.index), size))
            for _ in range(count)
        )
        transport.write(data)
        stats.bursts += 1
        stats.burst_messages += count
        stats.burst_bytes += len(data)


class Stranger(asyncio.Protocol):
    """A short-lived connection that reads what the server answers: ERRORs and the close."""

    def __init__(self) -> None:
        self.decoder = Decoder(
            Role.CLIENT, max_message_bytes=LENGTH_HARD_LIMIT, max_line_bytes=MAX_LIST_LINE_BYTES
        )
        self.transport: asyncio.Transport | None = None
        self.errors: list[str] = []
        self.closed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.decoder.feed(data)
        while True:
            try:
                event = self.decoder.next_event()
            except RemoteProtocolError as error:
                if error.fatal:
                    return
                continue
            if event is NEED_DATA:
                return
            if isinstance(event, Error):
                self.errors.append(event.text)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


# Each script ends with a Length over 1 MiB, which the server must answer with
# ERROR and a close, if nothing before it did.
FATAL_TAIL = b"BROADCAST:x:2000000:\r\n"
INVALID_LINES = (
    b"HELLO\r\n"
    b"REGISTER:bad nick:127.0.0.1:5\r\n"
    b"REGISTER:x:999.1.1.1:0\r\n"
    b"BROADCAST:nobody:5:hello\r\n"
    b"LIST\r\n"
    b"UPDATE:JOIN:x:127.0.0.1:5\r\n"
    b"\xff\xfe\xfd\r\n"
)
ABSURD_LENGTHS = (
    b"BROADCAST:x:2000000:",
    b"BROADCAST:x:" + b"9" * 5000,
    b"BROADCAST:x:abc:hi\r\n",
    b"BROADCAST:x:-1:\r\n",
    b"ERROR:99999999999999999999:\r\n",
)
GARBAGE_KINDS = ("random bytes", "invalid lines", "absurd Length", "oversized", "endless line")


def garbage(rng: random.Random, nick: str) -> bytes:
    """One hostile script. Half of them register first, so that the server must drop a
    participant (and announce its LEAVE) for them."""
    kind = rng.choice(GARBAGE_KINDS)
    if kind == "random bytes":
        body = rng.randbytes(rng.randrange(1, 4096)) + b"\r\n"
    elif kind == "invalid lines":
        body = INVALID_LINES
    elif kind == "absurd Length":
        body = rng.choice(ABSURD_LENGTHS)
    elif kind == "oversized":  # over the message limit, under 1 MiB: skipped with an ERROR
        body = b"BROADCAST:x:70000:" + b"a" * 70000 + b"\r\n"
    else:
        body = b"A" * (DEFAULT_MAX_LINE_BYTES + 1000)
    if rng.random() < 0.5:
        body = b"REGISTER:%s:%s:9\r\n" % (nick.encode(), STRANGER_SOURCE.encode()) + body
    return body + FATAL_TAIL


class Arena:
    """What every attacker shares: the server, the options, the roster, the stop signal."""

    def __init__(
        self, port: int, args: argparse.Namespace, roster: Roster, stats: AttackStats
    ) -> None:
        self.port = port
        self.args = args
        self.roster = roster
        self.stats = stats
        self.stop = asyncio.Event()
        self._nicks = itertools.count()
        self.wait_for_close = (args.register_timeout or 30.0) + SERVER_DROP_GRACE + 3.0

    def nick(self, prefix: str) -> str:
        return f"{prefix}{next(self._nicks)}"

    @staticmethod
    def udp_port(nick: str) -> int:
        """A UDP port of the attacker's own: the server refuses an address already taken."""
        return 1024 + int(nick.lstrip("abcdefghijklmnopqrstuvwxyz")) % 64000

    async def until(self, event: asyncio.Event, timeout: float | None) -> bool:
        """True once ``event`` is set; False if the soak stops or ``timeout`` passes first."""
        if event.is_set():
            return True
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self.stop.wait())]
        _, pending = await asyncio.wait(
            waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in pending:
            waiter.cancel()
        return event.is_set()

    async def rest(self, seconds: float) -> None:
        """Sleeps ``seconds``, less if the soak stops."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), seconds)

    async def stranger(self) -> tuple[asyncio.Transport, Stranger]:
        sock = await open_socket(self.port, STRANGER_SOURCE, self.args.rcvbuf)
        transport, protocol = await asyncio.get_running_loop().create_connection(
            Stranger, sock=sock
        )
        return transport, protocol


async def run_burster(arena: Arena, burster: Burster, offset: float) -> None:
    args = arena.args
    await arena.rest(offset)
    next_burst = time.monotonic()
    while not arena.stop.is_set() and not burster.closed:
        burster.burst(args.burst_messages, args.max_message_bytes, arena.stats)
        next_burst += args.burst_interval
        await arena.rest(next_burst - time.monotonic())


async def run_non_reader(arena: Arena, floods_list: bool) -> None:
    """Registers, never reads, until the server drops it (its LEAVE is heard); then again
    under a new nickname. A LIST flooder also asks for ``LIST`` over and over."""
    args, stats = arena.args, arena.stats
    while not arena.stop.is_set():
        nick = arena.nick("l" if floods_list else "s")
        joined, left = arena.roster.watch(nick)
        try:
            sock = await open_socket(arena.port, ATTACK_SOURCE, args.stall_rcvbuf)
        except OSError:
            stats.socket_errors += 1
            arena.roster.forget(nick)
            await arena.rest(1.0)
            continue
        try:
            sock.send(
                b"REGISTER:%s:%s:%d\r\n"
                % (nick.encode(), ATTACK_SOURCE.encode(), arena.udp_port(nick))
            )
            if not await arena.until(joined, 10.0):
                if not arena.stop.is_set():
                    stats.never_joined += 1
                continue
            started = time.monotonic()
            if floods_list:
                stats.list_flooders += 1
                await flood_list(arena, sock, left)
                stats.list_flooders_dropped += left.is_set()
            else:
                stats.stallers += 1
                if await arena.until(left, None):
                    stats.stallers_dropped += 1
                    stats.staller_lifetimes.append(time.monotonic() - started)
        except OSError:
            stats.socket_errors += 1
        finally:
            sock.close()
            arena.roster.forget(nick)
        await arena.rest(0.5)


async def flood_list(arena: Arena, sock: socket.socket, left: asyncio.Event) -> None:
    """``LIST\\r\\n`` in batches, a new batch once the kernel took the last, until dropped."""
    pending = b""
    while not left.is_set() and not arena.stop.is_set():
        if not pending:
            pending = b"LIST\r\n" * arena.args.list_batch
        try:
            sent = sock.send(pending)
        except BlockingIOError:
            sent = 0
        except OSError:
            break  # cut by the server; its LEAVE is on the way
        pending = pending[sent:]
        arena.stats.list_requests += sent // 6
        await arena.until(left, 1.0)
    await arena.until(left, 10.0)


async def run_garbage(arena: Arena, seed: int) -> None:
    """One hostile script per connection, each answered with ERROR and a close."""
    rng = random.Random(seed)
    stats = arena.stats
    while not arena.stop.is_set():
        data = garbage(rng, arena.nick("g"))
        try:
            transport, stranger = await arena.stranger()
        except OSError:
            stats.socket_errors += 1
            await arena.rest(1.0)
            continue
        transport.write(data)
        closed = await arena.until(stranger.closed, arena.wait_for_close)
        transport.abort()
        if not closed and arena.stop.is_set():
            break  # cut short: no verdict
        stats.garbage_connections += 1
        if not closed:
            stats.garbage_left_open += 1
        elif stranger.errors:
            stats.garbage_answered += 1
            stats.sample_error("garbage", stranger.errors[0])
        else:
            stats.garbage_closed_silently += 1
        await arena.rest(1.0 / arena.args.garbage_rate)


async def run_churner(arena: Arena, seed: int) -> None:
    """Connects and abandons: closes at once (after half a REGISTER, or nothing), or,
    one time in ``--churn-idle-every``, sits idle until the server gives up on it."""
    rng = random.Random(seed)
    args, stats = arena.args, arena.stats
    idle: set[asyncio.Task[None]] = set()
    try:
        for count in itertools.count(1):
            if arena.stop.is_set():
                break
            if count % args.churn_idle_every == 0:
                task = asyncio.create_task(churn_idle(arena))
                idle.add(task)
                task.add_done_callback(idle.discard)
            else:
                try:
                    transport, _ = await arena.stranger()
                except OSError:
                    stats.socket_errors += 1
                else:
                    if rng.random() < 0.5:
                        transport.write(b"REGISTER:half")
                    if rng.random() < 0.5:
                        transport.close()
                    else:
                        transport.abort()
                    stats.churn_abandoned += 1
            await arena.rest(1.0 / args.churn_rate)
    finally:
        for task in idle:
            task.cancel()
        await asyncio.gather(*idle, return_exceptions=True)


async def churn_idle(arena: Arena) -> None:
    stats = arena.stats
    try:
        transport, stranger = await arena.stranger()
    except OSError:
        stats.socket_errors += 1
        return
    try:
        closed = await arena.until(stranger.closed, arena.wait_for_close)
        if not closed and arena.stop.is_set():
            return  # cut short: no verdict
        stats.churn_idle += 1
        if not closed:
            stats.churn_idle_left_open += 1
        elif stranger.errors:
            stats.churn_idle_closed_with_error += 1
            stats.sample_error("idle", stranger.errors[0])
        else:
            stats.churn_idle_closed_silently += 1
    finally:
        transport.abort()


# -- the soak -------------------------------------------------------------------------


async def open_socket(port: int, source: str, rcvbuf: int) -> socket.socket:
    """A connection to the server from ``source``, shaped like one across a network."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # Both before connecting: the segment size is announced in the SYN, and the
        # receive buffer fixes the window scale.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, NETWORK_MSS)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


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


def ms(bucket: int | None) -> str:
    if bucket is None:
        return "-"
    return f">={bucket}" if bucket >= LATENCY_BUCKETS else str(bucket)


def latency(histogram: array[int]) -> str:
    slowest = max((b for b, count in enumerate(histogram) if count), default=None)
    p50, p99 = percentile(histogram, 0.5), percentile(histogram, 0.99)
    return f"p50 {ms(p50)}  p99 {ms(p99)}  max {ms(slowest)}"


@dataclass
class Result:
    args: argparse.Namespace
    sending_s: float
    ledger: Ledger
    totals: Totals
    burster_totals: Totals
    attack: AttackStats
    bursters: int
    burster_drops: int
    expected: int
    lost: int
    cut_off: int  # missed by honest clients after the server dropped them
    not_accepted: int  # sent after the server dropped the sender
    lost_examples: list[str]
    rss_samples: list[tuple[float, int, int]]  # (seconds into the soak, VmRSS kB, VmHWM kB)
    bound: RssBound
    hwm_end_kb: int
    cpu_s: tuple[float, float, float]  # server, this process, wall clock: during the soak
    server_alive: bool = True
    server_warnings: list[str] = field(default_factory=list)

    @property
    def within_bound(self) -> bool:
        return self.hwm_end_kb <= self.bound.limit_kb

    @property
    def failed(self) -> bool:
        t = self.totals
        return bool(
            self.lost
            or self.cut_off
            or t.duplicates
            or t.misattributed
            or t.to_sender
            or t.errors
            or t.protocol_errors
            or t.disconnects
            or not self.within_bound
            or not self.server_alive
            or self.attack.garbage_left_open
            or self.attack.churn_idle_left_open
        )

    def summary(self) -> dict[str, Any]:
        """The figures a test or a script checks, as JSON."""
        t, a = self.totals, self.attack
        return {
            "failed": self.failed,
            "honest_clients": self.args.clients,
            "messages_sent": self.ledger.sent,
            "deliveries_expected": self.expected,
            "delivered": t.delivered,
            "burst_deliveries": sum(t.burst_latency_ms),
            "lost": self.lost,
            "cut_off": self.cut_off,
            "duplicates": t.duplicates,
            "misattributed": t.misattributed + t.to_sender,
            "errors": t.errors[:20],
            "protocol_errors": t.protocol_errors[:20],
            "honest_dropped": t.disconnects,
            "rss_base_kb": self.bound.base_kb,
            "rss_bound_kb": self.bound.limit_kb,
            "hwm_end_kb": self.hwm_end_kb,
            "rss_max_sampled_kb": max(rss for _, rss, _ in self.rss_samples),
            "within_bound": self.within_bound,
            "server_alive": self.server_alive,
            "bursters_dropped": self.burster_drops,
            "attack": {k: v for k, v in vars(a).items() if k != "staller_lifetimes"},
        }

    def report(self) -> str:
        t, a, args = self.totals, self.attack, self.args
        burst_sent = sum(self.ledger.sent_by[args.clients :])
        chat_sent = self.ledger.sent - burst_sent
        rss = [kb / 1024 for _, kb, _ in self.rss_samples]
        lines = [
            f"honest clients       {args.clients}",
            f"duration             {self.sending_s:.1f} s at {args.rate:g} broadcasts/s"
            f" ({args.size}-byte texts)",
            f"messages sent        {self.ledger.sent}: {chat_sent} by honest clients,"
            f" {burst_sent} by bursters; {self.not_accepted} after the server dropped"
            " their sender",
            f"deliveries expected  {self.expected} (every message to every honest client"
            " but its sender)",
            f"delivered            {t.delivered} ({sum(t.burst_latency_ms)} of them bursts)",
            f"lost                 {self.lost}  {' '.join(self.lost_examples)}",
            f"cut off by drops     {self.cut_off} (missed by honest clients the server dropped)",
            f"duplicates           {t.duplicates}",
            f"out of order         {t.out_of_order}",
            f"wrong sender         {t.misattributed}, echoed to the sender {t.to_sender},"
            f" unknown {t.foreign}",
            f"ERRORs received      {len(t.errors)}  {' | '.join(t.errors[:3])}",
            f"undecodable input    {len(t.protocol_errors)}  {' | '.join(t.protocol_errors[:3])}",
            f"honest disconnected  {t.disconnects}  {' '.join(t.dropped[:10])}"
            f"{' ...' if len(t.dropped) > 10 else ''}",
            f"LEAVEs seen          {t.leaves}",
            f"latency ms           {latency(t.latency_ms)}",
        ]
        if self.bursters or args.stallers or args.list_flooders or args.garbage or args.churners:
            lifetimes = a.staller_lifetimes
            lines += [
                f"burst latency ms     {latency(t.burst_latency_ms)}",
                f"bursters             {self.bursters}: {a.bursts} bursts of"
                f" {args.burst_messages} x {args.max_message_bytes} bytes"
                f" ({a.burst_bytes / MIB:.1f} MiB), {a.bursts_skipped} skipped (last one still"
                f" leaving), {self.burster_drops} dropped, {a.bursters_unregistered} never"
                f" registered, ERRORs {len(self.burster_totals.errors)}",
                f"stallers             {a.stallers} registered, {a.stallers_dropped} dropped"
                + (
                    f" after {statistics.median(lifetimes):.1f} s median,"
                    f" {max(lifetimes):.1f} s max"
                    if lifetimes
                    else ""
                ),
                f"LIST flooders        {a.list_flooders} registered, {a.list_flooders_dropped}"
                f" dropped, {a.list_requests} LIST requests sent",
                f"never joined         {a.never_joined} (stallers and LIST flooders)",
                f"garbage              {a.garbage_connections} connections:"
                f" {a.garbage_answered} closed with ERROR, {a.garbage_closed_silently} without,"
                f" {a.garbage_left_open} left open",
                f"churn                {a.churn_abandoned} abandoned; {a.churn_idle} idle:"
                f" {a.churn_idle_closed_with_error} closed with ERROR,"
                f" {a.churn_idle_closed_silently} without, {a.churn_idle_left_open} left open",
                f"socket errors        {a.socket_errors}",
                "attackers' ERRORs    "
                + " | ".join(f"{k}: {s}" for k, v in a.error_samples.items() for s in v[:2]),
            ]
        lines += [
            f"server RSS MB        start {rss[0]:.1f}  end {rss[-1]:.1f}  max sampled {max(rss):.1f}",
            f"server VmHWM MB      {self.bound.base_kb / 1024:.1f} at start,"
            f" {self.hwm_end_kb / 1024:.1f} at end",
            f"RSS bound MB         {self.bound.describe()}",
            f"within the bound     {'yes' if self.within_bound else 'NO'}",
            f"server warnings      {len(self.server_warnings)}"
            f"  {' | '.join(self.server_warnings[:3])}",
            f"server still running {'yes' if self.server_alive else 'NO'}",
            f"CPU seconds          server {self.cpu_s[0]:.1f}, soak process {self.cpu_s[1]:.1f}"
            f" in {self.cpu_s[2]:.1f} s",
            "RSS samples (s:MB)   "
            + " ".join(f"{s:.0f}:{kb / 1024:.1f}" for s, kb, _ in self.rss_samples),
            f"result               {'FAILED' if self.failed else 'ok'}",
        ]
        return "\n".join(lines)


def log(message: str) -> None:
    print(f"soak: {message}", file=sys.stderr, flush=True)


async def soak(args: argparse.Namespace, pid: int, port: int) -> Result:
    loop = asyncio.get_running_loop()
    rng = random.Random(args.seed)
    ledger, totals, roster = Ledger(), Totals(), Roster()
    n = args.clients
    for index in range(n):
        ledger.add_sender(f"c{index}")
    for index in range(args.bursters):
        ledger.add_sender(f"b{n + index}")

    clients: list[Client] = []
    for wave in range(0, n, JOIN_WAVE):  # in waves, as a per-address limit would want
        for index in range(wave, min(n, wave + JOIN_WAVE)):
            sock = await open_socket(port, HONEST_SOURCE, args.rcvbuf)
            _, client = await loop.create_connection(
                functools.partial(Client, index, ledger, totals, roster, n, args.read_rate),
                sock=sock,
            )
            clients.append(client)
        await wait_for(lambda: all(c.registered for c in clients), 120, "every client to register")
    # Client i, registered i-th, is told of the n-1-i who joined after it.
    await wait_for(
        lambda: all(c.joins_seen >= n - 1 - i for i, c in enumerate(clients)),
        120,
        "every join to be announced",
    )
    for client in clients:
        client.counting = True
    await asyncio.sleep(1.0)  # let the server settle before the first sample
    samples = [(0.0, rss_kb(pid), rss_kb(pid, "VmHWM"))]
    bound = rss_bound(samples[0][2], args)
    log(
        f"{n} clients registered; server RSS {samples[0][1] / 1024:.1f} MB; sending"
        f" {args.rate:g}/s for {args.duration:g} s; RSS bound {bound.limit_kb / 1024:.1f} MB"
    )

    stats, burster_totals = AttackStats(), Totals()
    arena = Arena(port, args, roster, stats)
    bursters: list[Burster] = []
    for index in range(n, n + args.bursters):
        sock = await open_socket(port, ATTACK_SOURCE, args.rcvbuf)
        _, burster = await loop.create_connection(
            functools.partial(Burster, index, ledger, burster_totals, roster, n), sock=sock
        )
        bursters.append(burster)
    with contextlib.suppress(SystemExit):
        await wait_for(lambda: all(b.registered for b in bursters), 10, "the bursters")
    attack: list[asyncio.Task[None]] = []
    for k, burster in enumerate(bursters):
        if not burster.registered:
            stats.bursters_unregistered += 1
            continue
        burster.counting = True
        offset = k * args.burst_interval / len(bursters)  # staggered: one burst at a time
        attack.append(asyncio.create_task(run_burster(arena, burster, offset)))
    attack += [asyncio.create_task(run_non_reader(arena, False)) for _ in range(args.stallers)]
    attack += [asyncio.create_task(run_non_reader(arena, True)) for _ in range(args.list_flooders)]
    attack += [asyncio.create_task(run_garbage(arena, args.seed + k)) for k in range(args.garbage)]
    attack += [
        asyncio.create_task(run_churner(arena, args.seed + 1000 + k)) for k in range(args.churners)
    ]

    planned = int(args.rate * args.duration)
    cpu_start = cpu_seconds(pid), cpu_seconds()
    started = time.monotonic()
    next_sample = started + args.sample
    next_progress = started + 60
    for tick in range(planned):
        delay = started + tick / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        if now >= next_sample:
            samples.append((now - started, rss_kb(pid), rss_kb(pid, "VmHWM")))
            next_sample += args.sample
        if now >= next_progress:
            next_progress += 60
            log(
                f"{now - started:4.0f} s  sent {ledger.sent}  delivered {totals.delivered}"
                f"  honest dropped {totals.disconnects}  server RSS {samples[-1][1] / 1024:.1f} MB"
            )
        talker = clients[rng.randrange(n)]
        if talker.closed or talker.transport is None:
            continue  # counted as a disconnect already
        message_id, sequence = ledger.new_message(talker.index)
        talker.transport.write(
            encode_broadcast(talker.nick, message_text(message_id, sequence, args.size))
        )
    sending_s = time.monotonic() - started

    arena.stop.set()
    if attack:
        _, unfinished = await asyncio.wait(attack, timeout=15)
        for task in unfinished:
            task.cancel()
    everyone: list[Client] = [*clients, *bursters]

    def accepted(sender: int) -> int:
        """How many of its messages the server took: all, unless it dropped the sender;
        then those up to the last one anybody received (a sender's messages arrive in order)."""
        client = everyone[sender]
        return ledger.highest_seen[sender] + 1 if client.closed else ledger.sent_by[sender]

    def outstanding() -> int:
        total = sum(accepted(s) for s in range(len(everyone)))
        return sum(total - accepted(c.index) - c.received for c in clients if not c.closed)

    await wait_for_drain(totals, outstanding, args.drain_quiet)
    await asyncio.sleep(min(1.0, args.drain_quiet))
    samples.append((time.monotonic() - started, rss_kb(pid), rss_kb(pid, "VmHWM")))
    hwm_end = rss_kb(pid, "VmHWM")
    cpu_s = (
        cpu_seconds(pid) - cpu_start[0],
        cpu_seconds() - cpu_start[1],
        time.monotonic() - started,
    )
    burster_drops = sum(b.closed for b in bursters)
    for client in everyone:
        client.counting = False
        if client.transport is not None:
            client.transport.close()

    counts = [accepted(s) for s in range(len(everyone))]
    total = sum(counts)
    lost, cut_off, examples = 0, 0, list[str]()
    for client in clients:
        missing = total - counts[client.index] - client.received
        if not missing:
            continue
        for message_id in range(ledger.sent):
            sender, sequence = ledger.senders[message_id], ledger.sequences[message_id]
            if (
                sender == client.index
                or sequence >= counts[sender]
                or (message_id < len(client.seen) and client.seen[message_id])
            ):
                continue
            # A dropped client misses what came after its drop; a gap before it is a loss.
            if client.closed and sequence > client.last_seq[sender]:
                cut_off += 1
                continue
            lost += 1
            if len(examples) < 5:
                examples.append(f"id {message_id} from {ledger.nicks[sender]} to {client.nick}")
    return Result(
        args=args,
        sending_s=sending_s,
        ledger=ledger,
        totals=totals,
        burster_totals=burster_totals,
        attack=stats,
        bursters=len(bursters),
        burster_drops=burster_drops,
        expected=sum(total - counts[c.index] for c in clients),  # dropped clients too
        lost=lost,
        cut_off=cut_off,
        not_accepted=ledger.sent - total,
        lost_examples=examples,
        rss_samples=samples,
        bound=bound,
        hwm_end_kb=hwm_end,
        cpu_s=cpu_s,
    )


async def wait_for_drain(totals: Totals, outstanding: Callable[[], int], quiet: float) -> None:
    """Until every delivery arrived, or none arrived for ``quiet`` seconds."""
    last, quiet_since = -1, time.monotonic()
    while outstanding() > 0:
        if totals.delivered != last:
            last, quiet_since = totals.delivered, time.monotonic()
        elif time.monotonic() - quiet_since > quiet:
            return
        await asyncio.sleep(0.05)


# -- command line ---------------------------------------------------------------------

# Attacker counts with --attackers; each option overrides its own.
ATTACKER_DEFAULTS = {"bursters": 2, "stallers": 4, "list_flooders": 2, "garbage": 2, "churners": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", type=int, help="honest clients (default 500; 100 with attackers)")
    ap.add_argument("--rate", type=float, default=50, help="broadcasts per second, in total")
    ap.add_argument("--duration", type=float, default=600, help="seconds of sending")
    ap.add_argument("--size", type=int, default=100, help="characters of each text")
    ap.add_argument("--sample", type=float, default=10, help="seconds between RSS samples")
    ap.add_argument("--seed", type=int, default=1, help="for the choice of senders")
    ap.add_argument(
        "--drain-quiet",
        type=float,
        default=60,
        help="after sending, give up waiting once nothing arrived for this many seconds",
    )
    ap.add_argument(
        "--read-rate",
        type=float,
        default=2 * MIB,
        help="bytes per second each honest client reads at most (default 2 MiB); 0: no limit",
    )
    ap.add_argument(
        "--rcvbuf",
        type=int,
        default=64 * 1024,
        help="SO_RCVBUF of the clients that read (default 64 KiB)",
    )
    ap.add_argument("--json", type=Path, help="also write the figures to this file as JSON")
    server = ap.add_argument_group("the server (passed on to it; the RSS bound uses them)")
    server.add_argument("--sendq-bytes", type=int, default=SERVER_SENDQ_BYTES)
    server.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES)
    server.add_argument(
        "--register-timeout",
        type=float,
        help="seconds to register (default: the server's; 5 with attackers)",
    )
    server.add_argument(
        "--server-option",
        action="append",
        default=[],
        metavar="'--OPTION VALUE'",
        help="any other server option, e.g. '--flood-rate 100' (repeatable)",
    )
    attack = ap.add_argument_group("attackers")
    attack.add_argument(
        "--attackers",
        action="store_true",
        help="run every kind of attacker: "
        + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in ATTACKER_DEFAULTS.items()),
    )
    attack.add_argument("--bursters", type=int, help="clients sending bursts of big broadcasts")
    attack.add_argument(
        "--burst-messages",
        type=int,
        default=40,
        help="broadcasts in one burst, of --max-message-bytes each (40 x 64 KiB: 2.5 MiB,"
        " more than a reader's send queue and what the kernel holds for it together)",
    )
    attack.add_argument(
        "--burst-interval", type=float, default=5.0, help="seconds between one burster's bursts"
    )
    attack.add_argument("--stallers", type=int, help="registered clients that never read")
    attack.add_argument(
        "--list-flooders", type=int, help="registered clients that send LIST and never read"
    )
    attack.add_argument(
        "--list-batch", type=int, default=1000, help="LIST requests in one write (one a second)"
    )
    attack.add_argument(
        "--stall-rcvbuf", type=int, default=4096, help="SO_RCVBUF of the clients that never read"
    )
    attack.add_argument("--garbage", type=int, help="connections sending invalid input")
    attack.add_argument(
        "--garbage-rate", type=float, default=2.0, help="connections per second per garbage sender"
    )
    attack.add_argument("--churners", type=int, help="connect-and-abandon loops")
    attack.add_argument(
        "--churn-rate", type=float, default=10.0, help="connections per second per churner"
    )
    attack.add_argument(
        "--churn-idle-every",
        type=int,
        default=10,
        help="one churn connection in this many stays idle until the registration timeout",
    )
    args = ap.parse_args(argv)
    for name, default in ATTACKER_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default if args.attackers else 0)
    hostile = any(getattr(args, name) for name in ATTACKER_DEFAULTS)
    if args.clients is None:
        args.clients = 100 if hostile else 500
    if args.register_timeout is None and hostile:
        args.register_timeout = 5.0
    if args.clients < 2 or args.rate <= 0 or args.duration <= 0:
        ap.error("--clients must be at least 2, --rate and --duration positive")
    if min(getattr(args, name) for name in ATTACKER_DEFAULTS) < 0:
        ap.error("attacker counts must not be negative")
    if args.burst_interval <= 0 or args.garbage_rate <= 0 or args.churn_rate <= 0:
        ap.error("--burst-interval, --garbage-rate and --churn-rate must be positive")
    if args.churn_idle_every < 1 or args.burst_messages < 1 or args.list_batch < 1:
        ap.error("--churn-idle-every, --burst-messages and --list-batch must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The clients' sockets are in this process, the server's in its child: room for both.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with tempfile.TemporaryDirectory(prefix="p2pchat-soak-") as tmp:
        log_path = Path(tmp) / "server.log"
        with server_process(log_path, server_options(args)) as (proc, port):
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                result = runner.run(soak(args, proc.pid, port))
            result.server_alive = proc.poll() is None
        result.server_warnings = [
            line
            for line in log_path.read_text(errors="replace").splitlines()
            if " WARNING " in line or " ERROR " in line
        ]
    print(result.report())
    if args.json is not None:
        args.json.write_text(json.dumps(result.summary(), indent=1) + "\n")
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
