"""What a client process holds under the attacks of the "no cliffs" issue.

    python benchmarks/client_bounds.py [stalled-frames|unpolled-chat|join-flood] [options]

Each scenario runs the attacked client in a process of its own (this script
with ``victim``), so that its memory and descriptors are its own, and
reports them: VmRSS and VmHWM (the peak) from /proc, and open descriptors.

- ``stalled-frames``: 400 participants each get a direct chat with the client
  and send all but one byte of a 1 MiB CHAT frame. The client reads its
  events all the while; it reports after ``--hold`` seconds (8: before the
  10 s a peer has to finish a frame).
- ``unpolled-chat``: one peer sends 1,500 CHAT frames of 1 MiB to a client
  that does not take its events for ``--hold`` seconds, then takes them all.
- ``join-flood``: a fake server sends 724,000 ``UPDATE:JOIN``; the client
  reads its events all the while.

Only the plain ChatClient calls are used in the client, so the same script
measures an older tree too (PYTHONPATH=that/tree/src).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from p2pchat import _net
from p2pchat.client import ChatClient
from p2pchat.events import ChatReceived
from p2pchat.protocol import Init, Participant, Register
from p2pchat.server import ChatServer, ServerConfig

MIB = 1 << 20


def usage() -> dict[str, int]:
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f.read().splitlines())
    kib = {key: int(status[key].split()[0]) for key in ("VmRSS", "VmHWM")}
    return {
        "rss_mb": kib["VmRSS"] // 1024,
        "peak_mb": kib["VmHWM"] // 1024,
        "fds": len(os.listdir("/proc/self/fd")),
    }


def say(**keys: Any) -> None:
    print(json.dumps(keys), flush=True)


# -- the attacked client --------------------------------------------------------------


async def victim(port: int, mode: str, hold: float, expect: int) -> None:
    client = ChatClient("victim", "127.0.0.1", port)
    me = await client.connect()
    say(event="ready", udp_port=me.udp_port)
    kinds: dict[str, int] = {}

    async def take() -> None:
        while True:
            event = await client.next_event()
            kinds[type(event).__name__] = kinds.get(type(event).__name__, 0) + 1

    if mode == "poll":
        taker = asyncio.ensure_future(take())
        await asyncio.sleep(hold)
        taker.cancel()
        say(event="held", **usage(), events=kinds, participants=len(client.participants))
    else:  # hold: take nothing for a while, then everything
        await asyncio.sleep(hold)
        say(event="held", **usage())
        received = 0
        try:
            async with asyncio.timeout(60):
                while received < expect:
                    if isinstance(await client.next_event(), ChatReceived):
                        received += 1
        except TimeoutError:
            pass
        say(event="drained", **usage(), received=received)
    await client.close()


# -- the attackers --------------------------------------------------------------------


class Victim:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, timeout: float = 120) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            return dict(json.loads(await self.proc.stdout.readline()))


async def spawn(port: int, mode: str, hold: float, expect: int = 0) -> Victim:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "victim",
        str(port),
        mode,
        str(hold),
        str(expect),
        stdout=asyncio.subprocess.PIPE,
    )
    return Victim(proc)


class Peer:
    """A participant by hand: registered over TCP, a UDP socket, a listener for the victim."""

    def __init__(self, nick: str) -> None:
        self.nick = nick
        self.accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def register(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self.udp, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )

        async def on_connect(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self.accepted.put(writer)

        self.listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        me = Participant(self.nick, "127.0.0.1", self.udp.get_extra_info("sockname")[1])
        reader, self.tcp = await asyncio.open_connection("127.0.0.1", port)
        self.tcp.write(Register(me).encode())
        await reader.readline()

    def invite(self, udp_port: int) -> None:
        tcp_port = self.listener.sockets[0].getsockname()[1]
        self.udp.sendto(Init(f"secret-{self.nick}", tcp_port).encode(), ("127.0.0.1", udp_port))


async def stalled_frames(args: argparse.Namespace) -> None:
    server = ChatServer(ServerConfig(max_message_bytes=MIB))
    await server.start("127.0.0.1", 0)
    peers = [Peer(f"p{i}") for i in range(args.peers)]
    for peer in peers:
        await peer.register(server.port)
    v = await spawn(server.port, "poll", args.hold)
    ready = await v.line()

    async def stall(peer: Peer) -> None:
        writer = await peer.accepted.get()
        writer.write(b"CHAT:%d:" % MIB + b"x" * (MIB - 1))
        await writer.drain()

    for peer in peers:  # paced, so that the client's UDP buffer drops none
        peer.invite(ready["udp_port"])
        await asyncio.sleep(0.002)
    stalling = [asyncio.ensure_future(stall(peer)) for peer in peers]
    print(f"{args.peers} peers, each a direct chat with all but one byte of a 1 MiB frame:")
    print(f"  after {args.hold:g} s: {await v.line()}")
    for task in stalling:
        task.cancel()
    await v.proc.wait()


async def unpolled_chat(args: argparse.Namespace) -> None:
    server = ChatServer()
    await server.start("127.0.0.1", 0)
    peer = Peer("flood")
    await peer.register(server.port)
    v = await spawn(server.port, "hold", args.hold, args.frames)
    ready = await v.line()
    peer.invite(ready["udp_port"])
    writer = await peer.accepted.get()
    frame = b"CHAT:%d:" % MIB + b"x" * MIB + b"\r\n"

    async def flood() -> None:
        for _ in range(args.frames):
            writer.write(frame)
            await writer.drain()

    sending = asyncio.ensure_future(flood())
    print(
        f"{args.frames} CHAT frames of 1 MiB to a client that takes no events for {args.hold:g} s:"
    )
    print(f"  while it takes none: {await v.line()}")
    print(f"  after taking them all: {await v.line()}")
    sending.cancel()
    await v.proc.wait()


async def join_flood(args: argparse.Namespace) -> None:
    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"LIST\r\n")
        batch = 10_000
        for start in range(0, args.joins, batch):
            end = min(start + batch, args.joins)
            writer.write(
                b"".join(
                    b"UPDATE:JOIN:u%d:10.%d.%d.%d:%d\r\n"
                    % (i, i >> 16 & 255, i >> 8 & 255, i & 255, 1024 + i % 60000)
                    for i in range(start, end)
                )
            )
            await writer.drain()
        await reader.read()

    fake = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    v = await spawn(fake.sockets[0].getsockname()[1], "poll", args.hold)
    await v.line()
    print(f"a server sending {args.joins} UPDATE:JOIN to a client that reads its events:")
    print(f"  after {args.hold:g} s: {await v.line()}")
    await v.proc.wait()
    fake.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "victim":
        port, mode, hold, expect = sys.argv[2:6]
        _net.run(lambda: victim(int(port), mode, float(hold), int(expect)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["stalled-frames", "unpolled-chat", "join-flood"])
    parser.add_argument("--hold", type=float, default=8.0, help="seconds before the report")
    parser.add_argument("--peers", type=int, default=400)
    parser.add_argument("--frames", type=int, default=1500)
    parser.add_argument("--joins", type=int, default=724_000)
    args = parser.parse_args()
    _net.raise_open_files_limit(8192)
    run = {
        "stalled-frames": stalled_frames,
        "unpolled-chat": unpolled_chat,
        "join-flood": join_flood,
    }
    _net.run(lambda: run[args.scenario](args))


if __name__ == "__main__":
    main()
