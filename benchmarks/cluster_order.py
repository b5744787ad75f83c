"""Ordered broadcasts through a two-node cluster in one process: one sender on
node a, one receiver on node b, flood control off. Needs a Redis of its own:

    redis-server --save "" --appendonly no --port 0 --unixsocket /tmp/r.sock &
    PYTHONPATH=src python benchmarks/cluster_order.py unix:///tmp/r.sock 20000
"""

from __future__ import annotations

import asyncio
import sys
import time

from p2pchat.cluster import RedisCluster
from p2pchat.server import ChatServer, ServerConfig


async def main(url: str, count: int) -> None:
    config = ServerConfig(flood_rate=0, flood_rate_bytes=0)
    nodes = []
    name = f"bench-{time.time_ns()}"  # a chat of its own on that Redis
    for _ in range(2):
        cluster = RedisCluster(url, name)
        server = ChatServer(config, sequencer=cluster)
        await cluster.start()
        await server.start("127.0.0.1", 0)
        nodes.append((server, cluster))
    (a, _), (b, _) = nodes
    rx_reader, rx_writer = await asyncio.open_connection("127.0.0.1", b.port)
    rx_writer.write(b"REGISTER:rx:127.0.0.1:6001\r\n")
    await rx_reader.readline()
    tx_reader, tx_writer = await asyncio.open_connection("127.0.0.1", a.port)
    tx_writer.write(b"REGISTER:tx:127.0.0.1:6002\r\n")
    await tx_reader.readline()
    await rx_reader.readline()  # UPDATE:JOIN:tx
    message = b"BROADCAST:tx:5:hello\r\n"
    started = time.perf_counter()

    async def send() -> None:
        for i in range(count):
            tx_writer.write(message)
            if i % 100 == 0:
                await tx_writer.drain()
        await tx_writer.drain()

    sender = asyncio.create_task(send())
    for _ in range(count):
        line = await rx_reader.readline()
        assert line == message, line
    elapsed = time.perf_counter() - started
    await sender
    print(f"{count} ordered broadcasts in {elapsed:.2f} s: {count / elapsed:.0f}/s")
    for writer in (rx_writer, tx_writer):
        writer.close()
    for server, cluster in nodes:
        await server.close(timeout=1.0)
        await cluster.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20000))
