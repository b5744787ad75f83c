"""The shapes that used to be cliffs: a burst of the largest broadcasts, hundreds of
participants that never read beside many bursting senders, and LIST floods.

    python benchmarks/bench_cliffs.py                         # this tree's server
    python benchmarks/bench_cliffs.py --compare OTHER/src     # side by side with another

Each scenario starts ``python -m p2pchat.server`` with the default limits on
127.0.0.1 and reports what the honest readers received, who was dropped, and
the server's memory: VmRSS before the load and VmHWM (the peak) after it.
``--compare`` runs every scenario a second time against the server in another
source tree (for example a worktree of an older commit), in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from p2pchat.protocol import (
    LENGTH_HARD_LIMIT,
    MAX_LIST_LINE_BYTES,
    NEED_DATA,
    Broadcast,
    Decoder,
    Error,
    ParticipantList,
    RemoteProtocolError,
    Role,
    Update,
    encode_broadcast,
)

BIG = 65536  # the default --max-message-bytes
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def server(src: Path | None) -> Iterator[tuple[int, int]]:
    """The server (from ``src`` if given) with default limits; yields (pid, port)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    with tempfile.TemporaryFile() as log:  # a pipe nobody reads would stall the server
        proc = subprocess.Popen(
            [sys.executable, "-m", "p2pchat.server", "--host", "127.0.0.1", "--port", "0"],
            stderr=log,
            env=env,
        )
        try:
            deadline = time.monotonic() + 10
            while not (match := LISTENING.search(os.pread(log.fileno(), 4096, 0))):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the server did not start")
                time.sleep(0.02)
            yield proc.pid, int(match.group(1))
        finally:
            proc.terminate()
            proc.wait(10)


class Peer(asyncio.Protocol):
    """A registered connection; counts what it receives, reads at ``rate`` bytes/s (0: as
    fast as it can) or not at all."""

    def __init__(
        self,
        nick: str,
        udp_port: int,
        *,
        rate: float = 0.0,
        reads: bool = True,
        sink: bool = False,
    ):
        self.nick, self.udp_port, self.rate, self.reads = nick, udp_port, rate, reads
        self.sink = sink  # once registered, reads and throws away: a sender on its own machine
        self.decoder = Decoder(
            Role.CLIENT, max_message_bytes=LENGTH_HARD_LIMIT, max_line_bytes=MAX_LIST_LINE_BYTES
        )
        self.transport: asyncio.Transport | None = None
        self.broadcasts = 0
        self.leaves = 0
        self.joins = 0
        self.lists = 0
        self.errors: list[str] = []
        self.closed = asyncio.Event()
        self.registered = asyncio.Event()
        self.last_at = 0.0
        self._budget_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(f"REGISTER:{self.nick}:127.0.0.1:{self.udp_port}\r\n".encode())  # type: ignore[attr-defined]
        if not self.reads:
            transport.pause_reading()  # type: ignore[attr-defined]
        self._budget_at = time.monotonic()

    def data_received(self, data: bytes) -> None:
        if self.sink and self.registered.is_set():
            return
        self.decoder.feed(data)
        while True:
            try:
                event = self.decoder.next_event()
            except RemoteProtocolError:
                continue
            if event is NEED_DATA:
                break
            match event:
                case Broadcast():
                    self.broadcasts += 1
                    self.last_at = time.monotonic()
                case Update(action=action) if action.name == "LEAVE":
                    self.leaves += 1
                case Update():
                    self.joins += 1
                case ParticipantList():
                    self.lists += 1
                    self.registered.set()
                case Error(text=text):
                    self.errors.append(text)
        if self.rate and self.transport is not None:
            # A link of ``rate`` bytes/s: read no more until this much has had time to pass.
            self._budget_at = max(self._budget_at, time.monotonic()) + len(data) / self.rate
            delay = self._budget_at - time.monotonic()
            if delay > 0:
                self.transport.pause_reading()
                asyncio.get_running_loop().call_later(delay, self.transport.resume_reading)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()


async def open_peer(port: int, peer: Peer, rcvbuf: int | None = None) -> Peer:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.create_connection(lambda: peer, sock=sock)
    return peer


@dataclass
class Row:
    scenario: str
    figures: dict[str, str] = field(default_factory=dict)


async def burst(port: int, pid: int) -> dict[str, str]:
    """Problem 1: three readers on 2 MiB/s links; 200 x 64 KiB in one write."""
    readers = [
        await open_peer(port, Peer(f"r{i}", 9001 + i, rate=2 << 20), rcvbuf=BIG) for i in range(3)
    ]
    sender = await open_peer(port, Peer("sender", 9000, sink=True))
    for peer in [*readers, sender]:
        await asyncio.wait_for(peer.registered.wait(), 10)
    started = time.monotonic()
    assert sender.transport is not None
    sender.transport.write(
        b"".join(encode_broadcast("sender", f"{i:04d}" + "x" * (BIG - 4)) for i in range(200))
    )
    deadline = started + 60
    while time.monotonic() < deadline and not all(
        r.broadcasts == 200 or r.closed.is_set() for r in readers
    ):
        await asyncio.sleep(0.05)
    dropped = sum(r.closed.is_set() for r in readers)
    done = max(r.last_at for r in readers) - started
    for peer in [*readers, sender]:
        if peer.transport is not None:
            peer.transport.close()
    return {
        "received": "/".join(str(r.broadcasts) for r in readers) + " of 200",
        "readers dropped": f"{dropped} of 3",
        "last delivery": f"{done:.1f} s",
        "peak RSS": f"{status_mb(pid, 'VmHWM'):.1f} MB",
    }


async def non_readers(port: int, pid: int, count: int) -> dict[str, str]:
    """``count`` participants that never read; 20 senders write 20 x 64 KiB each at once;
    one reader reads."""
    stalled = [
        await open_peer(port, Peer(f"s{i}", 10000 + i, reads=False), rcvbuf=4096)
        for i in range(count)
    ]
    reader = await open_peer(port, Peer("reader", 9000))
    senders = [await open_peer(port, Peer(f"t{i}", 40000 + i, sink=True)) for i in range(20)]
    for peer in [reader, *senders]:
        await asyncio.wait_for(peer.registered.wait(), 30)
    while reader.lists < 1 or any(not p.registered.is_set() for p in senders):
        await asyncio.sleep(0.05)
    base = status_mb(pid, "VmRSS")
    started = time.monotonic()
    for i, sender in enumerate(senders):
        assert sender.transport is not None
        sender.transport.write(
            b"".join(encode_broadcast(f"t{i}", f"{j:04d}" + "x" * (BIG - 4)) for j in range(20))
        )
    deadline = started + 120
    while time.monotonic() < deadline and reader.broadcasts < 400 and not reader.closed.is_set():
        await asyncio.sleep(0.05)
    while time.monotonic() < deadline and reader.leaves < count and not reader.closed.is_set():
        await asyncio.sleep(0.05)
    peak = status_mb(pid, "VmHWM")
    figures = {
        "reader received": f"{reader.broadcasts} of 400 in {reader.last_at - started:.1f} s",
        "reader dropped": "yes" if reader.closed.is_set() else "no",
        "non-readers dropped": f"{reader.leaves} of {count}",
        "RSS before": f"{base:.1f} MB",
        "peak RSS": f"{peak:.1f} MB",
    }
    for peer in [*stalled, reader, *senders]:
        if peer.transport is not None:
            peer.transport.abort()
    return figures


async def list_flood(port: int, pid: int, members: int) -> dict[str, str]:
    """``members`` participants with long nicknames make a long LIST; 10 connections send
    LIST 200 times each without reading."""
    crowd = []
    for i in range(members):
        nick = f"{i:05d}" + "\u00e9" * 27  # 32 characters, 59 bytes
        crowd.append(await open_peer(port, Peer(nick, 1024 + i)))
    for peer in crowd:
        await asyncio.wait_for(peer.registered.wait(), 60)
    flooders = [
        await open_peer(port, Peer(f"f{i}", 30000 + i, reads=False), rcvbuf=4096) for i in range(10)
    ]
    watcher = crowd[0]
    while watcher.joins < members - 1 + 10:  # the flooders are registered
        await asyncio.sleep(0.05)
    base = status_mb(pid, "VmRSS")
    list_size = members * 70 + 600
    for flooder in flooders:
        assert flooder.transport is not None
        flooder.transport.write(b"LIST\r\n" * 200)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and watcher.leaves < 10:
        await asyncio.sleep(0.05)
    peak = status_mb(pid, "VmHWM")
    for peer in [*crowd, *flooders]:
        if peer.transport is not None:
            peer.transport.abort()
    return {
        "LIST size": f"about {list_size / 1e6:.2f} MB",
        "flooders dropped": f"{watcher.leaves} of 10",
        "RSS before": f"{base:.1f} MB",
        "peak RSS": f"{peak:.1f} MB",
        "200 copies each would be": f"{10 * 200 * list_size / 1e6:.0f} MB",
    }


async def run_all(src: Path | None, args: argparse.Namespace) -> list[Row]:
    rows = []
    for name in args.scenarios:
        with server(src) as (pid, port):
            if name == "burst":
                figures = await burst(port, pid)
            elif name == "non-readers":
                figures = await non_readers(port, pid, args.non_readers)
            else:
                figures = await list_flood(port, pid, args.list_members)
        rows.append(Row(name, figures))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--compare", type=Path, help="another source tree's src/, run beside this one")
    ap.add_argument(
        "--scenarios",
        nargs="+",
        default=["burst", "non-readers", "list-flood"],
        choices=["burst", "non-readers", "list-flood"],
    )
    ap.add_argument("--non-readers", type=int, default=500)
    ap.add_argument("--list-members", type=int, default=5000)
    args = ap.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    columns = [("this tree", None)]
    if args.compare is not None:
        columns.append((str(args.compare), args.compare.resolve()))
    results = [asyncio.run(run_all(src, args)) for _, src in columns]
    for i, name in enumerate(args.scenarios):
        print(f"\n{name}")
        keys = list(results[0][i].figures)
        width = max(map(len, keys))
        print(f"  {'':{width}}  " + "  ".join(f"{label:>28}" for label, _ in columns))
        for key in keys:
            cells = "  ".join(f"{r[i].figures.get(key, '-'):>28}" for r in results)
            print(f"  {key:{width}}  {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
