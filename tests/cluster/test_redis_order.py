"""Real servers of one chat ordered through a real Redis (``RedisSequencer``),
spoken to over real sockets by raw clients.

What a cluster must give: one list in one join order on every server
(decision 10), decision 9 on each, a broadcast reaching every other
participant once and never its sender (decisions 13, 14), leaves announced
across servers (decision 15), one winner of a nickname claimed through two
servers at once (decision 5), the list loaded by a server that starts later,
and an ERROR saying the chat is unavailable while Redis is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from p2pchat.check._core import Recorder, Verdict, run_check
from p2pchat.check._wire import Wire
from p2pchat.check.cli import run_server_checks
from p2pchat.check.server import ServerContext
from p2pchat.check.server import checks as server_checks
from p2pchat.cluster import CALL_TIMEOUT, UNAVAILABLE, ClusterUnavailable, RedisCluster
from p2pchat.server import ChatServer, ServerConfig
from tests.integration._programs import Program, start_server
from tests.integration._support import RawClient
from tests.integration.test_server import bcast, error, join, leave, plist, register

from .conftest import RedisServer

ALICE = "alice:127.0.0.1:5001"
BOB = "bob:127.0.0.1:5002"
CAROL = "carol:127.0.0.1:5003"

StartNode = Callable[..., Awaitable[ChatServer]]
Connect = Callable[[ChatServer], Awaitable[RawClient]]


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[StartNode]:
    """Starts ChatServers on 127.0.0.1, port 0, each a node of one chat on the test's Redis."""
    started: list[tuple[ChatServer, RedisCluster]] = []

    async def start(
        name: str = "test", url: str | None = None, queue_max: int = 10_000, **config: object
    ) -> ChatServer:
        cluster = RedisCluster(url or redis_server.url, name, queue_max=queue_max)
        server = ChatServer(ServerConfig(**config), sequencer=cluster)
        await cluster.start()
        await server.start("127.0.0.1", 0)
        started.append((server, cluster))
        return server

    yield start
    for server, cluster in started:
        await server.close(timeout=1.0)
        await cluster.close(timeout=1.0)


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    clients: list[RawClient] = []

    async def open_client(server: ChatServer) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        clients.append(RawClient(reader, writer, "client"))
        return clients[-1]

    yield open_client
    for client in clients:
        await client.close()


async def joined_on(server: ChatServer, connect: Connect, entry: str, *others: str) -> RawClient:
    client = await connect(server)
    client.send(register(entry))
    await client.expect(plist(*others, entry))
    return client


async def test_d9_d10_every_node_lists_everyone_in_one_join_order(nodes, connect) -> None:
    a, b, c = await nodes(), await nodes(), await nodes()
    alice = await joined_on(a, connect, ALICE)
    bob = await joined_on(b, connect, BOB, ALICE)  # its LIST first, alice from node a
    await alice.expect(join(BOB))
    carol = await joined_on(c, connect, CAROL, ALICE, BOB)
    for client in (alice, bob):
        await client.expect(join(CAROL))
    for client in (alice, bob, carol):
        client.send(b"LIST\r\n")
        await client.expect(plist(ALICE, BOB, CAROL))
    assert a.registry.participants() == b.registry.participants() == c.registry.participants()


async def test_d13_d14_a_broadcast_reaches_the_others_once_in_one_order(nodes, connect) -> None:
    a, b = await nodes(), await nodes()
    alice = await joined_on(a, connect, ALICE)
    bob = await joined_on(b, connect, BOB, ALICE)
    carol = await joined_on(a, connect, CAROL, ALICE, BOB)
    await alice.expect(join(BOB))
    await alice.expect(join(CAROL))
    await bob.expect(join(CAROL))
    senders = {"alice": alice, "bob": bob, "carol": carol}
    for i in range(20):  # all at once, through both nodes
        for nick, client in senders.items():
            client.send(bcast(nick, str(i)))
    heard = {nick: [await client.recv() for _ in range(40)] for nick, client in senders.items()}
    for nick, messages in heard.items():
        # Every other participant's broadcasts, each once; never its own.
        assert sorted(messages) == sorted(
            bcast(n, str(i)) for i in range(20) for n in senders if n != nick
        )
        await senders[nick].expect_nothing(0.1)
    # One global order: any two hear what they both heard in the same order.
    for one, two in (("alice", "bob"), ("alice", "carol"), ("bob", "carol")):
        common = set(heard[one]) & set(heard[two])
        assert [m for m in heard[one] if m in common] == [m for m in heard[two] if m in common]


async def test_d5_one_of_two_simultaneous_claims_of_a_nickname_wins(nodes, connect) -> None:
    a, b = await nodes(), await nodes()
    one, other = await connect(a), await connect(b)
    one.send(register(ALICE))
    other.send(register("ALICE:127.0.0.1:5009"))
    answers = [await one.recv(), await other.recv()]
    winners = [m for m in answers if m.startswith(b"LIST:")]
    assert len(winners) == 1
    loser = other if winners[0] == answers[0] else one
    refused = answers[1] if loser is other else answers[0]
    nick = "ALICE" if loser is other else "alice"
    assert refused == error(f"nickname '{nick}' is already in use")
    loser.send(register(BOB))  # decision 11: the connection stays open
    assert (await loser.recv()).startswith(b"LIST:")
    assert a.registry.participants() == b.registry.participants()
    assert len(a.registry) == 2


async def test_a_udp_address_claimed_through_another_node_is_refused(nodes, connect) -> None:
    a, b = await nodes(), await nodes()
    await joined_on(a, connect, ALICE)
    bob = await connect(b)
    bob.send(register("bob:127.0.0.1:5001"))
    await bob.expect(
        error("address 127.0.0.1:5001 is already registered by 'alice'; use another UDP port")
    )


async def test_d15_a_leave_on_one_node_reaches_the_others(nodes, connect) -> None:
    a, b = await nodes(), await nodes()
    alice = await joined_on(a, connect, ALICE)
    bob = await joined_on(b, connect, BOB, ALICE)
    await alice.expect(join(BOB))
    await alice.close()
    await bob.expect(leave(ALICE))
    # Its nickname is free again, through either node.
    again = await joined_on(b, connect, ALICE, BOB)
    await bob.expect(join(ALICE))
    again.send(b"LIST\r\n")
    await again.expect(plist(BOB, ALICE))


async def test_a_node_started_later_loads_the_list_in_join_order(nodes, connect) -> None:
    a = await nodes()
    alice = await joined_on(a, connect, ALICE)
    bob = await joined_on(a, connect, BOB, ALICE)
    await alice.expect(join(BOB))
    await alice.close()
    await bob.expect(leave(ALICE))
    carol_node = await nodes()
    await joined_on(a, connect, ALICE, BOB)
    await bob.expect(join(ALICE))
    late = await nodes()
    assert [p.nick for p in late.registry.participants()] == ["bob", "alice"]
    carol = await joined_on(late, connect, CAROL, BOB, ALICE)
    await bob.expect(join(CAROL))
    assert carol_node.registry.participants() == late.registry.participants()
    carol.send(bcast("carol", "hi"))
    await bob.expect(bcast("carol", "hi"))


async def test_nodes_of_other_chats_do_not_meet(nodes, connect) -> None:
    a, b = await nodes("one"), await nodes("two")
    await joined_on(a, connect, ALICE)
    await joined_on(b, connect, "alice:127.0.0.1:5001")


async def test_while_redis_is_unreachable_register_and_broadcast_get_an_error(
    nodes, connect, redis_server
) -> None:
    a = await nodes()
    alice = await joined_on(a, connect, ALICE)
    redis_server.stop()
    alice.send(bcast("alice", "lost?"))
    await alice.expect(error(UNAVAILABLE))
    bob = await connect(a)
    bob.send(register(BOB))
    await bob.expect(error(UNAVAILABLE))
    assert [p.nick for p in a.registry.participants()] == ["alice"]  # nothing applied here only


async def test_a_node_that_cannot_reach_redis_does_not_start(redis_server) -> None:
    redis_server.stop()
    cluster = RedisCluster(redis_server.url)
    ChatServer(sequencer=cluster)
    with pytest.raises(ClusterUnavailable):
        await cluster.start()


async def test_a_node_of_a_two_node_cluster_passes_every_server_check(nodes, connect) -> None:
    a = await nodes(register_timeout=1.0)
    b = await nodes(register_timeout=1.0)
    await joined_on(b, connect, "bob:127.0.0.1:5999")  # someone on the other node
    chosen = server_checks.select([], slow=True)
    results = await run_server_checks("127.0.0.1", a.port, chosen, register_timeout=1.0, force=True)
    assert results is not None
    bad = {r.check.id: r.notes for r in results if r.verdict is not Verdict.PASS}
    assert not bad, bad
    assert len(results) == len(server_checks.checks)
    async with asyncio.timeout(5):  # the checker's last leaves reach b too
        while a.registry.participants() != b.registry.participants():
            await asyncio.sleep(0.01)


async def test_p2pchat_server_cluster_serves_one_chat_from_two_processes(
    redis_server, programs, connect
) -> None:
    url = redis_server.url
    _, port_one = await start_server(programs, "--cluster", url, "--cluster-name", "x")
    two, port_two = await start_server(programs, "--cluster", url, "--cluster-name", "x")
    clients = []
    for port, entry, others in ((port_one, ALICE, ()), (port_two, BOB, (ALICE,))):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        clients.append(RawClient(reader, writer, entry))
        clients[-1].send(register(entry))
        await clients[-1].expect(plist(*others, entry))
    alice, bob = clients
    await alice.expect(join(BOB))
    bob.send(bcast("bob", "across"))
    await alice.expect(bcast("bob", "across"))
    two.proc.send_signal(signal.SIGTERM)  # a clean stop: its participants leave
    await alice.expect(leave(BOB))
    async with asyncio.timeout(10):
        assert await two.proc.wait() == 0
    for client in clients:
        await client.close()


async def test_p2pchat_server_cluster_refuses_what_is_no_redis_url() -> None:
    program = await Program.start("p2pchat.server", "--cluster", "http://127.0.0.1:1")
    status, err = await program.finish()
    assert status == 2
    assert "is not a Redis URL" in err


async def test_p2pchat_server_cluster_says_when_redis_cannot_be_reached(redis_server) -> None:
    redis_server.stop()
    program = await Program.start(
        "p2pchat.server", "--host", "127.0.0.1", "--port", "0", "--cluster", redis_server.url
    )
    status, err = await program.finish()
    assert status == 1
    assert "p2pchat-server: cannot reach Redis" in err


@pytest.mark.parametrize("tcp", [False, True], ids=["unix-socket", "tcp"])
async def test_what_was_refused_while_redis_was_paused_never_arrives_later(
    nodes, connect, start_redis, tcp
) -> None:
    """Redis paused (SIGSTOP): the BROADCAST and REGISTER sent meanwhile get an ERROR
    once the node gives up waiting, and are not carried out when Redis comes back;
    what is sent after that is, and the reader reads on from where it was."""
    redis_server = start_redis(tcp=tcp)
    a, b = await nodes(url=redis_server.url), await nodes(url=redis_server.url)
    alice = await joined_on(a, connect, ALICE)
    bob = await joined_on(b, connect, BOB, ALICE)
    await alice.expect(join(BOB))
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        alice.send(bcast("alice", "refused"))
        await alice.expect(error(UNAVAILABLE), timeout=CALL_TIMEOUT + 1)
        carol = await connect(a)
        carol.send(register(CAROL))
        await carol.expect(error(UNAVAILABLE), timeout=CALL_TIMEOUT + 1)
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    alice.send(bcast("alice", "after"))
    await bob.expect(bcast("alice", "after"), timeout=CALL_TIMEOUT + 1)
    carol.send(register(CAROL))
    await carol.expect(plist(ALICE, BOB, CAROL))
    await bob.expect(join(CAROL))
    await alice.expect(join(CAROL))
    await bob.expect_nothing(0.2)
    assert a.registry.participants() == b.registry.participants()


async def test_past_its_queue_a_node_refuses_at_once_instead_of_holding_on(
    nodes, connect, redis_server
) -> None:
    """Redis paused: one broadcast waits to be sent, one waits in the queue (of one);
    the third is refused at once, long before the node gives up on the first."""
    a = await nodes(queue_max=1)
    alice = await joined_on(a, connect, ALICE)
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        alice.send(bcast("alice", "1") + bcast("alice", "2") + bcast("alice", "3"))
        await alice.expect(error(UNAVAILABLE), timeout=CALL_TIMEOUT / 2)
        await alice.expect(error(UNAVAILABLE), timeout=CALL_TIMEOUT + 1)
        await alice.expect(error(UNAVAILABLE), timeout=CALL_TIMEOUT + 1)
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)


async def test_a_cluster_over_tls(nodes, connect, start_redis) -> None:
    """``rediss://``, as redis-py takes it (the CA in the URL's query)."""
    tls_redis = start_redis(tls=True)
    assert tls_redis.url.startswith("rediss://")
    a, b = await nodes(url=tls_redis.url), await nodes(url=tls_redis.url)
    alice = await joined_on(a, connect, ALICE)
    bob = await joined_on(b, connect, BOB, ALICE)
    await alice.expect(join(BOB))
    bob.send(bcast("bob", "over tls"))
    await alice.expect(bcast("bob", "over tls"))


class SpreadContext(ServerContext):
    """A check's context whose connections go to the nodes in turn: the check's own
    participants are spread over the cluster."""

    def __init__(self, ports: list[int], record: Recorder, register_timeout: float) -> None:
        super().__init__("127.0.0.1", ports[0], record, register_timeout)
        self._ports = itertools.cycle(ports)

    async def connect(self, label: str = "client") -> Wire:
        self.port = next(self._ports)
        return await super().connect(label)


async def test_every_server_check_passes_with_its_clients_spread_over_three_nodes(
    nodes: StartNode, connect: Connect
) -> None:
    a, b, c = [await nodes(register_timeout=1.0) for _ in range(3)]
    await joined_on(c, connect, "carol:127.0.0.1:5999")  # someone not of the checker's
    ports = [a.port, b.port, c.port]
    results = []
    for check in server_checks.select([], slow=True):
        if check.timeout == 0:  # as run_server_checks does: the registration timeout's
            check = dataclasses.replace(check, timeout=1.0 + 10)
        results.append(await run_check(check, lambda r: SpreadContext(ports, r, 1.0)))
    bad = {r.check.id: r.notes for r in results if r.verdict is not Verdict.PASS}
    assert not bad, bad
    assert len(results) == len(server_checks.checks)
    # Every participant of the checker leaves, on every node: only carol is left.
    async with asyncio.timeout(5):
        while any([p.nick for p in n.registry.participants()] != ["carol"] for n in (a, b, c)):
            await asyncio.sleep(0.01)
