"""Ordered broadcasts through a whole cluster: a redis-server and three
``p2pchat-server --cluster`` processes, senders on some nodes and receivers on
others, all in one run.

    python benchmarks/cluster_bench.py                 # 4 senders x 25,000 messages
    python benchmarks/cluster_bench.py --messages 5000 # a first look

By default nodes 1 and 2 have two senders each, nodes 2 and 3 two receivers
each (``--senders 2,2,0 --receivers 0,2,2``). Every sender keeps at most
``--window`` of its messages on their way (sent, not yet at every receiver),
so the run measures how many broadcasts a second the cluster puts in order and
delivers, not how many a node can queue. The check: every receiver gets the
same sequence, every message exactly once, each sender's in the order it sent
them; each sender gets that sequence without its own. Exit status 1 if not,
or if the rate is under ``--goal``.

Placement on this 2-core machine (``--node-cores``, ``--redis-core``,
``--load-core``, as for ``taskset -c``): the nodes on core 0, like the
standalone server of run.py; Redis and this process, which plays every
client, on core 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

# The comparison's own helpers (this file is run from benchmarks/, beside run.py).
from run import cpu_seconds, free_port, redis_ping, wait_ready

PYTHON = sys.executable
# The text of each broadcast starts with its id, SENDER.SEQUENCE.
DELIVERY = re.compile(rb"BROADCAST:[^:\r\n]+:\d+:(s\d+\.\d+)\.")
LINE_END = b"\r\n"


def tcp_ready(port: int) -> None:
    socket.create_connection(("127.0.0.1", port), 0.2).close()


@contextlib.contextmanager
def process(argv: list[str], core: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` pinned to ``core``, stopped by its PID at the end."""
    with log.open("w") as out:
        proc = subprocess.Popen(["taskset", "-c", core, *argv], stdout=out, stderr=out)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Client(asyncio.Protocol):
    """One participant: records the id of every broadcast it gets, in order."""

    def __init__(self, progress: asyncio.Event) -> None:
        self.ids: list[bytes] = []
        self.buffer = b""
        self.listed = asyncio.Event()
        self.errors: list[bytes] = []
        self.progress = progress
        self.last = 0.0
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.rfind(LINE_END)
        if end < 0:
            return
        whole, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
        found = DELIVERY.findall(whole)
        if found:
            self.ids += found
            self.last = time.perf_counter()
            self.progress.set()
        if not self.listed.is_set() and b"LIST:" in whole:
            self.listed.set()
        if b"ERROR:" in whole:
            self.errors += [line for line in whole.split(LINE_END) if line.startswith(b"ERROR:")]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.progress.set()


async def load(args: argparse.Namespace, ports: list[int]) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    progress = asyncio.Event()
    senders: list[tuple[str, Client]] = []
    receivers: list[tuple[str, Client]] = []
    udp = 1024
    for node, port in enumerate(ports):
        for kind, count, into in (
            ("s", args.senders[node], senders),
            ("r", args.receivers[node], receivers),
        ):
            for _ in range(count):
                nick = f"{kind}{len(into)}"
                _, client = await loop.create_connection(
                    lambda: Client(progress), "127.0.0.1", port
                )
                assert client.transport is not None
                udp += 1
                client.transport.write(b"REGISTER:%s:127.0.0.1:%d\r\n" % (nick.encode(), udp))
                into.append((f"{nick}@node{node + 1}", client))
    everyone = senders + receivers
    # A broadcast sent once every LIST is here is in the order after every join.
    try:
        await asyncio.wait_for(asyncio.gather(*(c.listed.wait() for _, c in everyone)), 30)
    except TimeoutError:
        raise SystemExit("cluster_bench: not every client got its LIST within 30 s") from None
    n = args.messages
    total = n * len(senders)
    sent = [0] * len(senders)
    pad = b"x" * args.size

    def behind() -> int:
        return sum(sent) - min(len(c.ids) for _, c in receivers)

    async def send(index: int, client: Client) -> None:
        assert client.transport is not None
        nick = b"s%d" % index
        head = b"BROADCAST:%s:%d:" % (nick, args.size)
        chunk = 100
        for first in range(0, n, chunk):
            while sum(sent) - min(len(c.ids) for _, c in receivers) > args.window:
                if any(c.closed for _, c in everyone):
                    return
                progress.clear()
                await progress.wait()
            lines = []
            for seq in range(first, min(first + chunk, n)):
                text = (b"%s.%d." % (nick, seq) + pad)[: args.size]
                lines.append(head + text + LINE_END)
            client.transport.write(b"".join(lines))
            sent[index] += len(lines)

    started = time.perf_counter()
    await asyncio.gather(*(send(i, c) for i, (_, c) in enumerate(senders)))
    deadline = time.perf_counter() + args.timeout
    while behind() > 0 and time.perf_counter() < deadline:
        if any(c.closed for _, c in everyone):
            break
        progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(progress.wait(), 1.0)
    # Anything more (a duplicate) would come right after; give it a moment.
    await asyncio.sleep(0.5)
    finished = max(c.last for _, c in receivers)
    elapsed = max(finished - started, 1e-9)
    for _, c in everyone:
        if c.transport is not None:
            c.transport.close()
    return check(args, senders, receivers, total, elapsed)


def check(
    args: argparse.Namespace,
    senders: list[tuple[str, Client]],
    receivers: list[tuple[str, Client]],
    total: int,
    elapsed: float,
) -> dict[str, object]:
    problems: list[str] = []
    order = receivers[0][1].ids
    if len(set(order)) != len(order):
        problems.append(f"{receivers[0][0]} got {len(order) - len(set(order))} duplicates")
    # Each sender's messages exactly once, in the order it sent them.
    by_sender: dict[bytes, list[int]] = {}
    for message in order:
        who, _, seq = message.partition(b".")
        by_sender.setdefault(who, []).append(int(seq))
    for index in range(len(senders)):
        seqs = by_sender.get(b"s%d" % index, [])
        if seqs != list(range(args.messages)):
            problems.append(
                f"s{index}'s messages at {receivers[0][0]}: {len(seqs)} of {args.messages}, "
                f"{'in' if seqs == sorted(seqs) else 'NOT in'} its order"
            )
    for name, client in receivers[1:]:
        if client.ids != order:
            same = next(
                (i for i, (a, b) in enumerate(zip(client.ids, order, strict=False)) if a != b),
                min(len(client.ids), len(order)),
            )
            problems.append(
                f"{name}: {len(client.ids)} received, differs from {receivers[0][0]} at {same}"
            )
    for name, client in senders:
        own = name.split("@")[0].encode() + b"."
        expected = [m for m in order if not m.startswith(own)]
        if client.ids != expected:
            problems.append(f"{name}: {len(client.ids)} received, not the order less its own")
    for name, client in senders + receivers:
        if client.errors:
            problems.append(f"{name}: {len(client.errors)} ERRORs, first {client.errors[0]!r}")
    # How often the order switches from one sending node's message to another's.
    node_of = {name.split("@")[0].encode(): name.split("@")[1] for name, _ in senders}
    nodes = [node_of.get(m.partition(b".")[0]) for m in order]
    switches = sum(1 for a, b in itertools.pairwise(nodes) if a != b)
    delivered = sum(len(c.ids) for _, c in senders + receivers)
    return {
        "senders": [name for name, _ in senders],
        "receivers": [name for name, _ in receivers],
        "messages": total,
        "in_order_at_first_receiver": len(order),
        "deliveries": delivered,
        "elapsed_s": round(elapsed, 3),
        "messages_per_s": round(len(order) / elapsed),
        "deliveries_per_s": round(delivered / elapsed),
        "node_switches_in_order": switches,
        "problems": problems,
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--messages", type=int, default=25_000, help="per sender")
    ap.add_argument("--senders", default="2,2,0", help="senders on each node")
    ap.add_argument("--receivers", default="0,2,2", help="receivers on each node")
    ap.add_argument("--window", type=int, default=4000, help="messages on their way, at most")
    ap.add_argument("--size", type=int, default=100, help="bytes of each message text")
    ap.add_argument("--goal", type=float, default=30_000, help="messages/s in order, at least")
    ap.add_argument("--node-cores", default="0")
    ap.add_argument("--redis-core", default="1")
    ap.add_argument("--load-core", default="1")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--redis", default="/usr/bin/redis-server")
    args = ap.parse_args()
    args.senders = [int(x) for x in args.senders.split(",")]
    args.receivers = [int(x) for x in args.receivers.split(",")]
    if len(args.senders) != len(args.receivers) or not any(args.receivers):
        raise SystemExit("cluster_bench: --senders and --receivers need one count per node")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    os.sched_setaffinity(0, {int(c) for c in args.load_core.split(",")})
    with (
        tempfile.TemporaryDirectory(prefix="p2pchat-cluster-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        workdir = Path(tmp)
        sock = workdir / "r.sock"
        redis_argv = [args.redis, "--save", "", "--appendonly", "no", "--port", "0"]
        redis_argv += ["--unixsocket", str(sock)]
        redis = stack.enter_context(process(redis_argv, args.redis_core, workdir / "redis.log"))
        wait_ready(lambda: redis_ping(sock), redis, "redis-server")
        ports, nodes = [], []
        for index in range(len(args.senders)):
            port = free_port()
            argv = [PYTHON, "-m", "p2pchat.server", "--host", "127.0.0.1", "--port", str(port)]
            argv += ["--flood-rate", "0", "--flood-rate-bytes", "0"]
            argv += ["--sendq-bytes", str(256 << 20), "--log-level", "warning"]
            argv += ["--cluster", f"unix://{sock}", "--cluster-name", "bench"]
            log = workdir / f"node{index + 1}.log"
            node = stack.enter_context(process(argv, args.node_cores, log))
            wait_ready(lambda port=port: tcp_ready(port), node, f"node {index + 1}")
            ports.append(port)
            nodes.append(node)
        cpu_before = [cpu_seconds(p.pid) for p in [*nodes, redis]]
        own_before = resource.getrusage(resource.RUSAGE_SELF)
        try:
            import uvloop

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                result = runner.run(load(args, ports))
        except ImportError:
            result = asyncio.run(load(args, ports))
        except SystemExit:
            for i in range(len(nodes)):
                for line in (workdir / f"node{i + 1}.log").read_text().splitlines()[-5:]:
                    print(f"node{i + 1} log: {line}", file=sys.stderr)
            raise
        cpu = [cpu_seconds(p.pid) - b for p, b in zip([*nodes, redis], cpu_before, strict=True)]
        own = resource.getrusage(resource.RUSAGE_SELF)
        clients_cpu = own.ru_utime + own.ru_stime - own_before.ru_utime - own_before.ru_stime
        logs = [(workdir / f"node{i + 1}.log").read_text().strip() for i in range(len(nodes))]
    problems: list[str] = result["problems"]  # type: ignore[assignment]
    rate: int = result["messages_per_s"]  # type: ignore[assignment]
    print(f"senders:   {', '.join(result['senders'])}")  # type: ignore[arg-type]
    print(f"receivers: {', '.join(result['receivers'])}")  # type: ignore[arg-type]
    print(
        f"{result['messages']:,} messages sent, {result['in_order_at_first_receiver']:,} in the "
        f"order, {result['deliveries']:,} deliveries in {result['elapsed_s']} s; the order "
        f"switches between sending nodes {result['node_switches_in_order']:,} times"
    )
    print(
        "CPU s: "
        + ", ".join(f"node{i + 1} {c:.2f}" for i, c in enumerate(cpu[:-1]))
        + f", redis {cpu[-1]:.2f}, clients (this process) {clients_cpu:.2f}"
    )
    for i, text in enumerate(logs):
        if text:
            print(f"node{i + 1} log: {text.splitlines()[-1]}")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    ok = not problems and result["in_order_at_first_receiver"] == result["messages"]
    met = ok and rate >= args.goal
    print(
        f"RESULT: {rate:,} messages/s in one order through {len(nodes)} nodes "
        f"({result['deliveries_per_s']:,} deliveries/s); order "
        f"{'identical at every receiver, nothing lost or duplicated' if ok else 'BROKEN'}; "
        f"goal {args.goal:,.0f}/s {'met' if met else 'NOT met'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
