"""``p2pchat-server --cluster URL --workers N``: real worker processes sharing one port,
serving one chat through a real Redis, stopped by a signal to their parent and
started again when one dies."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration._programs import Program
from tests.integration._support import RawClient
from tests.integration.test_server import bcast, error, leave, register

from .conftest import RedisServer

TIMEOUT = 20.0
MAX_CLIENTS = 24  # connections tried for each worker to get one; 2^-23 to miss by chance


class Log:
    """The lines of the parent's stderr (its own and its workers'), read as they come."""

    def __init__(self, program: Program) -> None:
        self.lines: list[str] = []
        self._new = asyncio.Event()
        self._task = asyncio.create_task(self._read(program))

    async def _read(self, program: Program) -> None:
        assert program.proc.stderr is not None
        while raw := await program.proc.stderr.readline():
            self.lines.append(raw.decode())
            self._new.set()
        self._new.set()

    async def wait_for(self, pattern: str, start: int = 0) -> tuple[re.Match[str], int]:
        """The first line from ``start`` on matching ``pattern``, and the index after it."""
        async with asyncio.timeout(TIMEOUT):
            i = start
            while True:
                while i < len(self.lines):
                    match = re.search(pattern, self.lines[i])
                    i += 1
                    if match:
                        return match, i
                assert not self._task.done(), "stderr ended:\n" + "".join(self.lines)
                self._new.clear()
                await self._new.wait()

    async def close(self) -> None:
        self._task.cancel()


class Workers:
    """A running ``--workers 2`` parent: its port, and each worker's pid and metrics URL."""

    def __init__(self, program: Program, log: Log, port: int) -> None:
        self.program = program
        self.log = log
        self.port = port
        self.pids: dict[int, int] = {}
        self.metrics: dict[int, str] = {}
        self.clients: list[RawClient] = []
        self.entries: dict[RawClient, str] = {}  # nick:ip:port each registered
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def learn(self, index: int, start: int = 0) -> int:
        """Worker ``index``'s pid and metrics address, from its log lines from ``start``."""
        match, at = await self.log.wait_for(
            rf"\[worker {index} pid (\d+)\]: metrics on (http://\S+)/metrics", start
        )
        self.pids[index], self.metrics[index] = int(match[1]), match[2]
        await self.log.wait_for(rf"\[worker {index} pid {match[1]}\]: listening on", at)
        return at

    async def local_participants(self, index: int) -> float:
        async with self.session.get(self.metrics[index] + "/metrics") as response:
            text = await response.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "p2pchat_local_participants":
                    return sample.value
        raise AssertionError("no p2pchat_local_participants")

    async def join(self, nick: str, udp_port: int) -> tuple[RawClient, int]:
        """A client registered as ``nick``, and the worker it landed on."""
        before = {i: await self.local_participants(i) for i in self.metrics}
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        client = RawClient(reader, writer, nick)
        self.clients.append(client)
        entry = self.entries[client] = f"{nick}:127.0.0.1:{udp_port}"
        client.send(register(entry))
        reply = await client.recv()
        assert reply.startswith(b"LIST:") and entry.encode() in reply, reply
        after = {i: await self.local_participants(i) for i in self.metrics}
        (worker,) = [i for i in after if after[i] == before[i] + 1]
        return client, worker

    async def one_on_each(self, prefix: str, port: int) -> dict[int, RawClient]:
        """Connects clients until each worker holds one of them."""
        on: dict[int, RawClient] = {}
        for n in range(MAX_CLIENTS):
            client, worker = await self.join(f"{prefix}{n}", port + n)
            on.setdefault(worker, client)
            if len(on) == len(self.metrics):
                return on
        raise AssertionError(f"{MAX_CLIENTS} connections all landed on worker {list(on)}")

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        await self.session.close()
        await self.log.close()
        self.program.kill()  # the parent only, if a test failed before stopping it
        await self.program.proc.wait()


@pytest.fixture
async def workers(redis_server: RedisServer) -> AsyncIterator[Workers]:
    program = await Program.start(
        "p2pchat.server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--cluster",
        redis_server.url,
        "--node-timeout",
        "1",
        "--workers",
        "2",
        "--metrics",
        "127.0.0.1:0",
    )
    log = Log(program)
    started = Workers(program, log, 0)
    try:
        match, _ = await log.wait_for(r"p2pchat\.workers: listening on 127\.0\.0\.1:(\d+) with 2")
        started.port = int(match[1])
        for index in range(2):
            await started.learn(index)
        yield started
    finally:
        pids = list(started.pids.values())
        await started.close()
        for pid in pids:  # a worker whose parent was killed stops when its stdin ends
            await _gone(pid)


async def _gone(pid: int) -> None:
    async with asyncio.timeout(TIMEOUT):
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            # Our child's child: once it exits it is reaped by its parent, or by init.
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split(") ")[-1].startswith("Z"):
                    return
            await asyncio.sleep(0.05)


async def until(client: RawClient, expected: bytes) -> None:
    """Reads until ``expected`` arrives (joins and leaves of others may come first)."""
    while (got := await client.recv()) != expected:
        assert not got.startswith(b"BROADCAST:"), f"{client.name}: {got!r}"


async def test_workers_share_the_port_serve_one_chat_and_stop_on_sigterm(
    workers: Workers,
) -> None:
    assert workers.pids[0] != workers.pids[1]
    on = await workers.one_on_each("u", 6000)
    # A broadcast through either worker reaches every other participant, on both.
    for sender in (on[0], on[1]):
        sender.send(bcast(sender.name, f"hello from {sender.name}"))
        for receiver in workers.clients:
            if receiver is not sender:
                await until(receiver, bcast(sender.name, f"hello from {sender.name}"))

    workers.program.proc.send_signal(signal.SIGTERM)
    for client in workers.clients:
        await until(client, error("server is shutting down"))
    async with asyncio.timeout(TIMEOUT):
        assert await workers.program.proc.wait() == 0
    await workers.log.wait_for(r"p2pchat\.workers: workers stopped")
    for pid in workers.pids.values():
        await _gone(pid)


async def test_a_killed_worker_is_started_again_and_the_chat_goes_on(workers: Workers) -> None:
    on = await workers.one_on_each("u", 6000)
    killed = workers.pids[1]
    os.kill(killed, signal.SIGKILL)
    _, at = await workers.log.wait_for(
        rf"worker 1 \(pid {killed}\) exited with status -9; starting it again"
    )
    await workers.learn(1, at)
    assert workers.pids[1] != killed
    # The killed worker's participant is announced leaving by the cluster's liveness.
    await until(on[0], leave(workers.entries[on[1]]))

    again = await workers.one_on_each("v", 7000)
    for sender, receiver in ((again[0], again[1]), (again[1], again[0])):
        sender.send(bcast(sender.name, "still one chat"))
        await until(receiver, bcast(sender.name, "still one chat"))

    workers.program.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(TIMEOUT):
        assert await workers.program.proc.wait() == 0
