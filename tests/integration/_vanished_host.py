"""A participant whose machine vanishes, run in a network namespace of its own.

    unshare --net python tests/integration/_vanished_host.py IDLE INTERVAL COUNT

On the namespace's own loopback: a server with the given keepalive settings,
a watcher and a victim. Then every packet the victim sends is dropped (a tc
class whose queue holds nothing), as when its machine is unplugged: nothing
answers, nothing resets. (Dropping the server's probes on their way out would
not do: Linux counts a packet its own queue drops as local congestion and
retries it without end, not as a lost probe.) Prints one JSON object: the
line the watcher got next and the seconds it took.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from p2pchat.server import ChatServer, ServerConfig


def run(command: str) -> None:
    subprocess.run(command.split(), check=True, capture_output=True)


def drop_everything_from(port: int) -> None:
    run("tc qdisc add dev lo root handle 1: htb default 20 r2q 1000000")
    run("tc class add dev lo parent 1: classid 1:10 htb rate 1gbit")
    run("tc class add dev lo parent 1: classid 1:20 htb rate 10gbit")
    run("tc qdisc add dev lo parent 1:10 handle 10: pfifo limit 0")
    run(
        f"tc filter add dev lo parent 1: protocol ip prio 1 u32 match ip sport {port} 0xffff flowid 1:10"
    )


async def main(idle: int, interval: int, count: int) -> None:
    run("ip link set lo up")
    config = ServerConfig(keepalive_idle=idle, keepalive_interval=interval, keepalive_count=count)
    server = ChatServer(config)
    await server.start("127.0.0.1", 0)
    watcher, watcher_out = await asyncio.open_connection("127.0.0.1", server.port)
    watcher_out.write(b"REGISTER:watcher:127.0.0.1:4000\r\n")
    await watcher.readline()  # the LIST
    victim, victim_out = await asyncio.open_connection("127.0.0.1", server.port)
    victim_out.write(b"REGISTER:victim:127.0.0.1:4001\r\n")
    await victim.readline()
    joined = await watcher.readline()
    assert joined.startswith(b"UPDATE:JOIN:victim:"), joined
    drop_everything_from(victim_out.get_extra_info("sockname")[1])
    started = time.monotonic()
    line = await asyncio.wait_for(watcher.readline(), timeout=10 * (idle + interval * count))
    print(json.dumps({"line": line.decode(), "seconds": time.monotonic() - started}))
    victim_out.transport.abort()
    watcher_out.close()
    await server.close(timeout=1.0)


if __name__ == "__main__":
    asyncio.run(main(*(int(arg) for arg in sys.argv[1:4])))
