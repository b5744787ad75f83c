"""A cluster's nodes come and go, and so may Redis: what each fault looks like to
clients, with real node processes or real nodes in this process, a real
redis-server and real sockets.

- a node killed (SIGKILL): its participants leave on every other node, and
  their nicknames are free, within 10 s with the default node timeout;
- a node cut off from Redis (its link silent, not closed): the others drop
  its participants after the node timeout; it notices within seconds, and once
  its link is back its clients are told they were dropped and closed;
- a link killed by Redis (CLIENT KILL): the node reconnects and reads on;
- Redis restarted empty: every node claims its own participants again, the
  ones of a node that died meanwhile leave, and every list converges;
- the stream is trimmed to what every live node has applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from p2pchat.cluster import CALL_TIMEOUT, DROPPED, NODE_TIMEOUT, UNAVAILABLE, RedisCluster
from p2pchat.server import ChatServer, ServerConfig
from tests.integration._programs import start_server
from tests.integration._support import RawClient
from tests.integration.test_server import bcast, error, join, leave, plist, register

from .conftest import RedisServer

ALICE = "alice:127.0.0.1:5001"
BOB = "bob:127.0.0.1:5002"
CAROL = "carol:127.0.0.1:5003"


class FreezableLink:
    """A TCP relay between nodes and Redis that can go silent: while frozen it reads
    nothing and writes nothing, and keeps every connection open, as a network that
    drops packets would."""

    def __init__(self, redis_server: RedisServer) -> None:
        self._redis = redis_server
        self._open = asyncio.Event()
        self._open.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}"

    def freeze(self) -> None:
        self._open.clear()

    def thaw(self) -> None:
        self._open.set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._redis.unix_socket is not None
        up_reader, up_writer = await asyncio.open_unix_connection(self._redis.unix_socket)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                await self._open.wait()
                data = await source.read(65536)
                await self._open.wait()
                if not data:
                    break
                sink.write(data)
                await sink.drain()
        sink.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()


StartNode = Callable[..., Awaitable[tuple[ChatServer, RedisCluster]]]


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[StartNode]:
    started: list[tuple[ChatServer, RedisCluster]] = []

    async def start(
        url: str | None = None, node_timeout: float = NODE_TIMEOUT
    ) -> tuple[ChatServer, RedisCluster]:
        cluster = RedisCluster(url or redis_server.url, "test", node_timeout=node_timeout)
        server = ChatServer(ServerConfig(), sequencer=cluster)
        await cluster.start()
        await server.start("127.0.0.1", 0)
        started.append((server, cluster))
        return server, cluster

    yield start
    for server, cluster in started:
        await server.close(timeout=1.0)
        await cluster.close(timeout=1.0)


@pytest.fixture
async def clients() -> AsyncIterator[list[RawClient]]:
    opened: list[RawClient] = []
    yield opened
    for client in opened:
        await client.close()


async def joined(port: int, clients: list[RawClient], entry: str, *others: str) -> RawClient:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = RawClient(reader, writer, entry.split(":")[0])
    clients.append(client)
    client.send(register(entry))
    await client.expect(plist(*others, entry))
    return client


async def alice_and_bob(
    a: ChatServer, b: ChatServer, clients: list[RawClient]
) -> tuple[RawClient, RawClient]:
    """alice joined through a, bob through b, each having heard of the other."""
    alice = await joined(a.port, clients, ALICE)
    bob = await joined(b.port, clients, BOB, ALICE)
    await alice.expect(join(BOB))
    return alice, bob


async def until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Waits for ``condition``, polling; the seconds it took."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}") from None
    return time.monotonic() - started


async def test_a_killed_node_has_its_participants_leave_within_10_s(
    redis_server, programs, clients
) -> None:
    """Two real node processes with the default node timeout; one is killed with
    SIGKILL, so nothing of it says goodbye."""
    url = redis_server.url
    doomed, port_one = await start_server(programs, "--cluster", url)
    _, port_two = await start_server(programs, "--cluster", url)
    await joined(port_one, clients, ALICE)
    bob = await joined(port_two, clients, BOB, ALICE)
    doomed.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    await bob.expect(leave(ALICE), timeout=10)
    took = time.monotonic() - killed
    assert NODE_TIMEOUT - 0.5 < took < 10, took  # not before its heartbeat lapsed
    # Its nickname and address are free again, through the node that is left.
    await joined(port_two, clients, ALICE, BOB)


async def test_a_node_cut_off_from_redis_is_dropped_and_its_clients_are_told(
    redis_server, nodes, clients
) -> None:
    link = FreezableLink(redis_server)
    try:
        a, a_cluster = await nodes(await link.start(), node_timeout=1.0)
        b, _ = await nodes(node_timeout=1.0)
        alice, bob = await alice_and_bob(a, b, clients)
        link.freeze()  # silent: no reset, no end, nothing
        # The others drop its participants once its heartbeat lapsed ...
        await bob.expect(leave(ALICE), timeout=1.0 + CALL_TIMEOUT)
        # ... and it notices its link is dead within seconds, not never.
        sequencer = a_cluster.sequencer
        assert sequencer is not None
        await until(lambda: not sequencer.reachable, CALL_TIMEOUT + 2, "the node notices")
        bob.send(bcast("bob", "meanwhile"))  # the order moves on without it
        link.thaw()
        # Back: its client is told it was dropped, and closed; its list is the others'.
        await alice.expect(error(DROPPED), timeout=CALL_TIMEOUT + 3)
        await alice.expect_closed()
        await until(
            lambda: a.registry.participants() == b.registry.participants(),
            5,
            "one list again",
        )
        assert sequencer.stats.dropped == 1
        await bob.expect_nothing(0.2)  # nothing of it reached bob twice
        again = await joined(a.port, clients, ALICE, BOB)
        await bob.expect(join(ALICE))
        again.send(bcast("alice", "back"))
        await bob.expect(bcast("alice", "back"))
    finally:
        await link.close()


async def test_a_link_killed_by_redis_is_taken_up_again(redis_server, nodes, clients) -> None:
    a, _ = await nodes()
    b, _ = await nodes()
    alice, bob = await alice_and_bob(a, b, clients)
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        # Every client link of every node, the blocked readers' too.
        assert await admin.client_kill_filter(_type="normal", skipme=True) >= 4
    finally:
        await admin.aclose()
    # What is said after that arrives; a broadcast the writer's dead link refused
    # got an ERROR, so it is said again.
    deadline = time.monotonic() + 3 * CALL_TIMEOUT
    while True:
        bob.send(bcast("bob", "still there?"))
        try:
            await alice.expect(bcast("bob", "still there?"), timeout=1.0)
            break
        except AssertionError:
            assert time.monotonic() < deadline, "the chat did not come back"
    await alice.expect_nothing(0.2)


async def test_redis_restarted_empty_every_node_claims_its_own_again(
    redis_server, nodes, programs, clients
) -> None:
    """Three nodes; the one holding carol dies while Redis restarts with nothing in it.
    Within 10 s (default timeout): every list is alice and bob, carol's leave was
    announced, and the nicknames are claimed again cluster-wide."""
    a, a_cluster = await nodes()
    b, _ = await nodes()
    doomed, port_c = await start_server(
        programs, "--cluster", redis_server.url, "--cluster-name", "test"
    )
    alice, bob = await alice_and_bob(a, b, clients)
    await joined(port_c, clients, CAROL, ALICE, BOB)
    await alice.expect(join(CAROL))
    await bob.expect(join(CAROL))
    doomed.proc.send_signal(signal.SIGKILL)
    redis_server.restart_empty()
    restarted = time.monotonic()
    await alice.expect(leave(CAROL), timeout=10)
    await bob.expect(leave(CAROL), timeout=10 - (time.monotonic() - restarted))
    assert a.registry.participants() == b.registry.participants()
    assert [p.nick for p in a.registry.participants()] == ["alice", "bob"]
    check = aioredis.Redis.from_url(redis_server.url)
    try:
        claims = await check.hgetall("p2pchat:{test}:claims")
    finally:
        await check.aclose()
    assert set(claims) == {b"alice", b"bob"}
    assert a_cluster.sequencer is not None and a_cluster.sequencer.stats.reclaimed == 1
    # Nothing more, and the chat works on: carol's nickname is free, alice's is held.
    await alice.expect_nothing(0.2)
    await bob.expect_nothing(0.2)
    await joined(b.port, clients, CAROL, ALICE, BOB)
    await alice.expect(join(CAROL))
    twin_reader, twin_writer = await asyncio.open_connection("127.0.0.1", b.port)
    twin = RawClient(twin_reader, twin_writer, "twin")
    clients.append(twin)
    twin.send(register("ALICE:127.0.0.1:5009"))
    reply = await twin.recv()
    assert reply.startswith(b"ERROR:"), reply


async def test_the_stream_keeps_only_what_some_live_node_has_not_applied(
    redis_server, nodes, clients
) -> None:
    a, _ = await nodes(node_timeout=1.0)
    b, _ = await nodes(node_timeout=1.0)
    alice, bob = await alice_and_bob(a, b, clients)
    for i in range(300):
        alice.send(bcast("alice", str(i)))
    for i in range(300):
        await bob.expect(bcast("alice", str(i)))
    check = aioredis.Redis.from_url(redis_server.url)
    try:
        lengths: list[int] = []

        async def trimmed() -> bool:
            lengths.append(await check.xlen("p2pchat:{test}:log"))
            return lengths[-1] <= 1

        async with asyncio.timeout(3):
            while not await trimmed():
                await asyncio.sleep(0.05)
    finally:
        await check.aclose()
    assert max(lengths) <= 302


async def test_errors_redis_answers_with_are_refusals_not_a_deaf_node(
    redis_server, nodes, clients
) -> None:
    """Redis out of memory refuses every write (OOM): REGISTER and BROADCAST get the
    ERROR; once it has room again the chat goes on, through the same tasks."""
    a, _ = await nodes()
    b, _ = await nodes()
    alice, bob = await alice_and_bob(a, b, clients)
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", "1")
        try:
            alice.send(bcast("alice", "no room"))
            await alice.expect(error(UNAVAILABLE))
        finally:
            await admin.config_set("maxmemory", "0")
    finally:
        await admin.aclose()
    alice.send(bcast("alice", "room again"))
    await bob.expect(bcast("alice", "room again"))
    await bob.expect_nothing(0.3)


async def test_redis_away_longer_than_the_node_timeout_drops_nobody(
    redis_server, nodes, clients
) -> None:
    """Redis paused for longer than the node timeout: every heartbeat key has expired
    when it is back, yet nobody was silent by choice, so nobody is declared dead."""
    a, a_cluster = await nodes(node_timeout=1.0)
    b, b_cluster = await nodes(node_timeout=1.0)
    alice, bob = await alice_and_bob(a, b, clients)
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        # Until both nodes have given up on Redis: longer than the timeout by then.
        await until(
            lambda: (
                not (a_cluster.sequencer and a_cluster.sequencer.reachable)
                and not (b_cluster.sequencer and b_cluster.sequencer.reachable)
            ),
            CALL_TIMEOUT + 2,
            "both nodes notice",
        )
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    back = time.time()
    sequencers = [c.sequencer for c in (a_cluster, b_cluster) if c.sequencer is not None]
    # Past a whole timeout of steady heartbeats after it, a sweep could happen.
    await until(
        lambda: all((s.last_heartbeat or 0) > back + 1.5 for s in sequencers),
        5,
        "heartbeats well past the timeout",
    )
    assert [s.stats.nodes_swept for s in sequencers] == [0, 0]
    alice.send(bcast("alice", "still here"))
    await bob.expect(bcast("alice", "still here"))
    assert a.registry.participants() == b.registry.participants()


async def test_an_entry_no_node_wrote_is_skipped_and_the_chat_goes_on(
    redis_server, nodes, clients
) -> None:
    """Whatever else wrote to the chat's stream (another program, a damaged copy)
    costs a node that entry, never its reader."""
    a, _ = await nodes()
    b, _ = await nodes()
    alice, bob = await alice_and_bob(a, b, clients)
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        for fields in ({"t": "j"}, {"x": "y"}, {"t": "b"}, {"t": "l", "n": "z", "nick": "q"}):
            await admin.xadd("p2pchat:{test}:log", fields)
    finally:
        await admin.aclose()
    alice.send(bcast("alice", "after the damage"))
    await bob.expect(bcast("alice", "after the damage"))
    await bob.expect_nothing(0.2)


async def test_a_nickname_taken_while_redis_was_empty_is_dropped_where_it_was_held(
    redis_server, nodes, clients
) -> None:
    """Redis restarted empty; before node a notices (its heartbeat is slow here), a new
    node that loaded the empty list registers alice too. a cannot claim its alice
    again: it is told why and closed, and every list ends up with the new one."""
    a, a_cluster = await nodes(node_timeout=10.0)  # a heartbeat every 2 s
    old_alice = await joined(a.port, clients, ALICE)
    redis_server.restart_empty()
    c, _ = await nodes(node_timeout=10.0)
    new_alice = await joined(c.port, clients, "alice:127.0.0.1:5011")
    await old_alice.expect(error(DROPPED), timeout=10)
    await old_alice.expect_closed()
    assert a_cluster.sequencer is not None and a_cluster.sequencer.stats.dropped == 1
    await until(
        lambda: a.registry.participants() == c.registry.participants(),
        5,
        "one list",
    )
    assert [(p.nick, p.udp_port) for p in a.registry.participants()] == [("alice", 5011)]
    await new_alice.expect_nothing(0.2)


async def test_a_leave_while_redis_restarts_empty_frees_the_nickname_for_good(
    redis_server, nodes, clients
) -> None:
    """alice leaves while Redis is down; it comes back empty. Her leave finds no claim
    to release, and she must not be claimed again as if still here: bob sees her
    leave, and her nickname is free."""
    a, _ = await nodes()
    b, _ = await nodes()
    alice, bob = await alice_and_bob(a, b, clients)
    redis_server.stop()
    await alice.close()
    await until(lambda: not a._members, 5, "a has seen alice's connection end")
    redis_server.restart_empty()
    await bob.expect(leave(ALICE), timeout=10)
    again = await joined(b.port, clients, ALICE, BOB)
    await bob.expect(join(ALICE))
    again.send(bcast("alice", "back"))
    await bob.expect(bcast("alice", "back"))
