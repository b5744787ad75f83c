"""What a cluster's faults cost, measured with real processes: a redis-server of
its own and three ``p2pchat-server --cluster`` nodes.

    python benchmarks/cluster_faults.py [--clients 30] [--rate 300] [--pause 3]

1. Redis paused under steady load: clients spread over the three nodes
   broadcast numbered messages at ``--rate`` a second in all; Redis is stopped
   with SIGSTOP for ``--pause`` seconds, then continued. Every delivery is
   counted by (sender, number): an accepted broadcast (one its sender got no
   ERROR for) must reach every other client exactly once, and a refused one
   nobody. Prints lost, duplicated and refused, the nodes' log lines about the
   pause, and their ``p2pchat_cluster_*`` metrics when they serve them.
2. A node killed with SIGKILL: the seconds until a client on another node
   gets UPDATE:LEAVE for the participant of the killed node (default node
   timeout), over ``--kills`` runs.

Exit status 1 if anything was lost or duplicated, or a LEAVE took 10 s or more.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PYTHON = sys.executable


@dataclass
class Node:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int | None
    log: Path


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    sock = directory / "redis.sock"
    proc = subprocess.Popen(
        [
            *("redis-server", "--save", "", "--appendonly", "no", "--port", "0"),
            *("--unixsocket", str(sock), "--dir", str(directory)),
        ],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline:
            raise SystemExit("redis-server did not start")
        time.sleep(0.02)
    return proc, f"unix://{sock}"


def start_node(url: str, directory: Path, index: int, metrics: bool) -> Node:
    log = directory / f"node{index}.log"
    argv = [PYTHON, "-m", "p2pchat.server", "--host", "127.0.0.1", "--port", "0"]
    argv += ["--cluster", url, "--flood-rate", "0", "--flood-rate-bytes", "0"]
    if metrics:
        argv += ["--metrics", "127.0.0.1:0"]
    proc = subprocess.Popen(argv, stderr=log.open("wb"), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    port = metrics_port = None
    while port is None or (metrics and metrics_port is None):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"node {index} did not start: {log.read_text()}")
        text = log.read_text()
        if m := re.search(r"listening on 127\.0\.0\.1:(\d+)", text):
            port = int(m.group(1))
        if m := re.search(r"metrics on http://127\.0\.0\.1:(\d+)", text):
            metrics_port = int(m.group(1))
        time.sleep(0.02)
    return Node(proc, port, metrics_port, log)


@dataclass
class Client:
    nick: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    got: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: int = 0
    sent: int = 0
    leaves: list[tuple[str, float]] = field(default_factory=list)

    async def read(self) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while line := await self.reader.readline():
                if line.startswith(b"BROADCAST:"):
                    _, sender, _, text = line.rstrip(b"\r\n").split(b":", 3)
                    self.got[(sender.decode(), int(text))] += 1
                elif line.startswith(b"ERROR:"):
                    self.errors += 1
                elif line.startswith(b"UPDATE:LEAVE:"):
                    self.leaves.append((line.split(b":")[2].decode(), time.monotonic()))


async def join(port: int, nick: str, udp_port: int) -> Client:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"REGISTER:{nick}:127.0.0.1:{udp_port}\r\n".encode())
    line = await asyncio.wait_for(reader.readline(), 10)
    if not line.startswith(b"LIST:"):
        raise SystemExit(f"{nick} could not register: {line!r}")
    return Client(nick, reader, writer)


def metrics_lines(node: Node) -> list[str]:
    if node.metrics_port is None:
        return []
    url = f"http://127.0.0.1:{node.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    wanted = (
        "p2pchat_cluster_link_failures",
        "p2pchat_cluster_unavailable",
        "p2pchat_cluster_redis_up",
    )
    return [line for line in text.splitlines() if line.startswith(wanted)]


async def paused_under_load(nodes: list[Node], redis_pid: int, args: argparse.Namespace) -> bool:
    clients = [
        await join(nodes[i % len(nodes)].port, f"c{i}", 20000 + i) for i in range(args.clients)
    ]
    readers = [asyncio.create_task(c.read()) for c in clients]
    await asyncio.sleep(1.0)  # every UPDATE:JOIN has gone out
    interval = 1 / args.rate
    duration = args.before + args.pause + args.after
    started = time.monotonic()
    paused_at = started + args.before
    paused = continued = False
    n = 0
    while (now := time.monotonic()) < started + duration:
        if not paused and now >= paused_at:
            os.kill(redis_pid, signal.SIGSTOP)
            paused = True
        if paused and not continued and now >= paused_at + args.pause:
            os.kill(redis_pid, signal.SIGCONT)
            continued = True
        sender = clients[n % len(clients)]
        sender.sent += 1
        sender.writer.write(
            f"BROADCAST:{sender.nick}:{len(str(sender.sent))}:{sender.sent}\r\n".encode()
        )
        n += 1
        await asyncio.sleep(max(0.0, started + n * interval - time.monotonic()))

    # Everything accepted has arrived once nothing has for a while.
    def total() -> int:
        return sum(sum(c.got.values()) for c in clients)

    last, since = total(), time.monotonic()
    while time.monotonic() - since < 2.0:
        await asyncio.sleep(0.2)
        if total() != last:
            last, since = total(), time.monotonic()
    lost = duplicated = wrong = 0
    for sender in clients:
        # A refused broadcast has no number the sender can tell apart: a receiver must
        # get exactly sent - refused of them, none twice, and all receivers the same.
        accepted = sender.sent - sender.errors
        heard = [{k for k in c.got if k[0] == sender.nick} for c in clients if c is not sender]
        for c in clients:
            if c is sender:
                wrong += sum(v for k, v in c.got.items() if k[0] == sender.nick)
                continue
            mine = {k: v for k, v in c.got.items() if k[0] == sender.nick}
            duplicated += sum(v - 1 for v in mine.values() if v > 1)
            lost += max(0, accepted - len(mine))
            wrong += max(0, len(mine) - accepted)
        if heard and any(h != heard[0] for h in heard):
            wrong += 1
    sent = sum(c.sent for c in clients)
    refused = sum(c.errors for c in clients)
    print(
        f"Redis paused {args.pause:.1f} s under {args.rate:.0f} broadcasts/s from "
        f"{args.clients} clients on {len(nodes)} nodes: sent {sent}, refused {refused} "
        f"(ERROR: the chat is unavailable), lost {lost}, duplicated {duplicated}, "
        f"delivered though refused or to its sender {wrong}"
    )
    for i, node in enumerate(nodes):
        lines = [
            line.split(": ", 1)[-1]
            for line in node.log.read_text().splitlines()
            if "p2pchat.cluster" in line and "WARNING" in line
        ]
        print(f"  node {i} log: {lines[:4]}")
        for line in metrics_lines(node):
            print(f"  node {i} metrics: {line}")
    for c in clients:
        c.writer.close()
    for task in readers:
        task.cancel()
    return lost == duplicated == wrong == 0


async def killed_node_leave(url: str, directory: Path, kills: int) -> bool:
    ok = True
    figures = []
    for k in range(kills):
        doomed = start_node(url, directory, 100 + k, metrics=False)
        survivor = start_node(url, directory, 200 + k, metrics=False)
        victim = await join(doomed.port, f"victim{k}", 30000 + k)
        watcher = await join(survivor.port, f"watcher{k}", 31000 + k)
        reading = asyncio.create_task(watcher.read())
        doomed.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while not watcher.leaves and time.monotonic() - killed < 15:
            await asyncio.sleep(0.01)
        took = watcher.leaves[0][1] - killed if watcher.leaves else float("inf")
        figures.append(took)
        ok = ok and took < 10
        reading.cancel()
        for c in (victim, watcher):
            c.writer.close()
        doomed.proc.wait()
        survivor.proc.terminate()
        survivor.proc.wait()
    print(
        "node killed with SIGKILL, UPDATE:LEAVE at another node after (s): "
        + ", ".join(f"{f:.2f}" for f in figures)
        + " (node timeout 5 s, heartbeats every 1 s)"
    )
    return ok


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--rate", type=float, default=300.0, help="broadcasts a second in all")
    parser.add_argument("--pause", type=float, default=3.0, help="seconds Redis is stopped")
    parser.add_argument("--before", type=float, default=3.0)
    parser.add_argument("--after", type=float, default=4.0)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--metrics", action="store_true", help="nodes serve --metrics")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="p2pchat-faults-") as tmp:
        directory = Path(tmp)
        redis_proc, url = start_redis(directory)
        nodes: list[Node] = []
        try:
            nodes = [start_node(url, directory, i, args.metrics) for i in range(3)]
            ok = await paused_under_load(nodes, redis_proc.pid, args)
            ok = await killed_node_leave(url, directory, args.kills) and ok
        finally:
            for node in nodes:
                node.proc.terminate()
            for node in nodes:
                node.proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.kill(redis_proc.pid, signal.SIGCONT)
            redis_proc.terminate()
            redis_proc.wait()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
