"""A stateful property test of a three-node cluster: real ``ChatServer`` nodes with
``RedisCluster`` in this process, one real redis-server, raw clients over real sockets.

A hypothesis state machine spreads clients over the nodes and drives them with
random registrations (a few nicknames in several cases, a few UDP ports, so that
claims collide across nodes), broadcasts one at a time or several at once through
different nodes, clean closes, resets, and at most one node crash per example
(its tasks stop and its links end without a word: no leave is written, and the
others sweep it once its heartbeat lapses). Every example is a chat of its own
(a fresh cluster name), so examples never meet.

A model says what every step must cause. After each step, once the cluster has
settled (each client got what it is owed, Redis holds exactly the stream entries
the model counts, every live node has applied all of them, then a LIST barrier on
every connection), it checks:

- a REGISTER gets exactly what the model predicts: ERROR when its nickname (by
  nick_key, decision 5) or its UDP address is held anywhere in the cluster, else
  the LIST with the newcomer last (decisions 9, 21);
- every node's registry, and every client's view built from its LIST and then its
  UPDATEs, is the model's list in join order (decisions 10, 15);
- every accepted broadcast reached every other participant that stayed connected
  exactly once, never its sender (decisions 13, 14);
- the broadcasts, joins and leaves every client saw fit one global order: the
  orders of all clients, taken together, have no cycle.
"""

from __future__ import annotations

import asyncio
import graphlib
import itertools
import os
import tempfile
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from p2pchat.cluster import RedisCluster
from p2pchat.protocol import Participant, nick_key
from p2pchat.server import ChatServer, ServerConfig
from p2pchat.state import address_in_use, nickname_in_use
from tests.integration._support import RawClient
from tests.integration.test_server import REGISTER_FIRST, bcast, error, plist, register

from .conftest import RedisServer, _start

T = TypeVar("T")

NODES = 3
# Short, so that a crashed node is swept quickly; not so short that a busy machine
# (every node shares this process's event loop) has a live node declared dead.
NODE_TIMEOUT = 1.0
TIMEOUT = 5.0  # for anything expected: far above what loopback and Redis need
MAX_CLIENTS = 7  # connections open at once, over all nodes
# Four nicknames, some in several cases, four UDP ports: claims collide, by
# nickname and by address, within a node and across nodes.
NICKS = ("alice", "ALICE", "Alice", "bob", "BOB", "carol", "dave")
FIRST = ("alice", "bob", "carol", "dave")  # the first participants, one of each
PORTS = (5001, 5002, 5003, 5004)
IP = "127.0.0.1"
# More for a longer search: P2PCHAT_CLUSTER_EXAMPLES=200.
EXAMPLES = int(os.environ.get("P2PCHAT_CLUSTER_EXAMPLES", "25"))

# What a client saw: ("J", n) the n-th join of the example, ("L", n) its leave,
# ("B", text) a broadcast (every text is unique in an example).
Event = tuple[str, int | str]


class Loop:
    """An event loop in a thread of its own: nodes and clients run there, rules stay
    synchronous."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cluster-loop")
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 3 * TIMEOUT) -> T:
        assert self.thread.is_alive(), "the event loop thread has died"
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise AssertionError(f"a step did not end within {timeout} s") from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture(scope="module")
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[RedisServer]:
    """One redis-server for every example (each is a chat of its own name), as the
    ``redis_server`` fixture starts it."""
    with tempfile.TemporaryDirectory(prefix="p2pchat-redis-") as tmp:
        server = _start(Path(tmp), tcp=False)
        try:
            yield server
        finally:
            server.stop()


@dataclass
class Node:
    server: ChatServer
    cluster: RedisCluster
    alive: bool = True


@dataclass
class Member:
    """A participant on the cluster's list, per the model."""

    participant: Participant
    serial: int  # the how-many-th join of the example
    client: Client

    @property
    def entry(self) -> str:
        return f"{self.participant.nick}:{self.participant.ip}:{self.participant.udp_port}"


@dataclass(eq=False)
class Client:
    name: str
    node: int
    raw: RawClient
    member: Member | None = None  # registered as, per the model
    view: list[str] | None = None  # its own list: its LIST, then its UPDATEs
    seen: list[Event] = field(default_factory=list)  # in the order it got them
    owed: list[Event] = field(default_factory=list)  # what the model says it must get
    # Sent by it: never to come back to it.
    said: set[str] = field(default_factory=set)

    def __repr__(self) -> str:
        return self.name


def entries(listing: bytes) -> list[str]:
    """``nick:ip:port`` entries of a LIST (IPv4 only here: every entry is three fields)."""
    assert listing.startswith(b"LIST:") and listing.endswith(b"\r\n"), listing
    fields = listing[5:-2].decode().split(":") if listing != b"LIST:\r\n" else []
    return [":".join(fields[i : i + 3]) for i in range(0, len(fields), 3)]


class ThreeNodes(RuleBasedStateMachine):
    """Three nodes of a fresh chat, clients spread over them, and the model."""

    def __init__(self, loop: Loop, redis_server: RedisServer) -> None:
        super().__init__()
        self.loop = loop
        self.url = redis_server.url
        self.name = f"prop-{uuid.uuid4().hex[:12]}"
        self.log_key = f"p2pchat:{{{self.name}}}:log"
        self.nodes_key = f"p2pchat:{{{self.name}}}:nodes"
        self.nodes: list[Node] = []
        self.clients: list[Client] = []  # open, per the model
        self.histories: list[Client] = []  # every client of the example, for the order
        self.members: list[Member] = []  # the cluster's list, in join order
        self.serials = itertools.count(1)
        self.serial_of: dict[str, int] = {}  # entry -> serial of its latest join
        self.texts = itertools.count(1)
        self.names = itertools.count(1)
        self.written = 0  # stream entries the chat must have had added, per the model
        self.killed = False
        # Broadcasts sent at the same instant, by burst: their order is the cluster's.
        self.burst_of: dict[Event, int] = {}
        self.bursts = itertools.count()
        self.admin: aioredis.Redis = loop.call(self._start())

    async def _start(self) -> aioredis.Redis:
        for _ in range(NODES):
            cluster = RedisCluster(self.url, self.name, node_timeout=NODE_TIMEOUT)
            server = ChatServer(ServerConfig(), sequencer=cluster)
            await cluster.start()
            await server.start(IP, 0)
            self.nodes.append(Node(server, cluster))
        return aioredis.Redis.from_url(self.url, socket_timeout=TIMEOUT)

    def teardown(self) -> None:
        async def stop() -> None:
            for client in self.clients:
                await client.raw.close()
            for node in self.nodes:
                await node.server.close(timeout=1.0)
                if node.alive:
                    await node.cluster.close(timeout=1.0)
            await self.admin.aclose()

        self.loop.call(stop())

    # -- the model ----------------------------------------------------------------------

    def _live_nodes(self) -> list[int]:
        return [i for i, node in enumerate(self.nodes) if node.alive]

    def _registered(self) -> list[Client]:
        return [c for c in self.clients if c.member is not None]

    def _unregistered(self) -> list[Client]:
        return [c for c in self.clients if c.member is None]

    def _expected_list(self) -> list[str]:
        return [m.entry for m in self.members]

    def _owe(self, what: Event, *, besides: Client | None = None) -> None:
        for client in self._registered():
            if client is not besides:
                client.owed.append(what)

    def _forget(self, client: Client) -> None:
        """``client`` is gone: if it was on the list, its leave is owed to the others."""
        self.clients.remove(client)
        if client.member is not None:
            self.members.remove(client.member)
            self.written += 1
            self._owe(("L", client.member.serial))
            client.member = None

    # -- what clients receive -------------------------------------------------------------

    def _learn(self, client: Client, message: bytes) -> None:
        """What a client makes of an UPDATE or a BROADCAST; anything else is wrong here."""
        if message.startswith(b"UPDATE:JOIN:") or message.startswith(b"UPDATE:LEAVE:"):
            joined = message.startswith(b"UPDATE:JOIN:")
            entry = message.split(b":", 2)[2][:-2].decode()
            assert client.view is not None, f"{client}: {message!r} before its LIST"
            assert entry in self.serial_of, f"{client}: {message!r}: nobody ever joined so"
            if joined:
                assert entry not in client.view, f"{client}: {message!r}, already listed"
                client.view.append(entry)
            else:
                assert entry in client.view, f"{client}: {message!r}, not listed"
                client.view.remove(entry)
            what: Event = ("J" if joined else "L", self.serial_of[entry])
        elif message.startswith(b"BROADCAST:"):
            nick, _, text = message[10:-2].decode().split(":", 2)
            assert text not in client.said, f"{client}: got its own broadcast back: {message!r}"
            assert message == bcast(nick, text), message
            what = ("B", text)
        else:
            raise AssertionError(f"{client}: unexpected {message!r}")
        assert what not in client.seen, f"{client}: {message!r} a second time"
        assert what in client.owed, (
            f"{client}: {message!r} ({what}) is not owed to it; owed {client.owed}"
        )
        client.seen.append(what)

    async def _receive_owed(self, client: Client, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while len(client.seen) < len(client.owed):
                self._learn(client, await client.raw.recv(timeout))

    async def _stream(self) -> tuple[int, str]:
        """How many entries the chat's stream has had added, and its last id."""
        if not await self.admin.exists(self.log_key):
            return 0, "0-0"
        info = await self.admin.xinfo_stream(self.log_key)
        last = info["last-generated-id"]
        return int(info["entries-added"]), last.decode() if isinstance(last, bytes) else last

    async def _settle(self, timeout: float = TIMEOUT) -> None:
        """Until the cluster did everything the model says the step causes, and no more."""
        for client in self._registered():
            await self._receive_owed(client, timeout)
        async with asyncio.timeout(timeout):
            added, last = await self._stream()
            while added != self.written or any(
                self.nodes[i].cluster.sequencer.last_id != last  # type: ignore[union-attr]
                for i in self._live_nodes()
            ):
                assert added <= self.written, (
                    f"the stream had {added} entries added, the model counts {self.written}"
                )
                await asyncio.sleep(0.005)
                added, last = await self._stream()
        # Every node has applied the whole order: what it owes a connection is queued
        # before its answer to a LIST, which must be the next message.
        want = plist(*self._expected_list())
        for client in self.clients:
            client.raw.send(b"LIST\r\n")
        for client in self.clients:
            got = await client.raw.recv()
            expected = want if client.member is not None else error(REGISTER_FIRST)
            assert got == expected, f"{client}: expected {expected!r}, got {got!r}"

    # -- rules --------------------------------------------------------------------------

    async def _connect(self, node: int) -> Client:
        reader, writer = await asyncio.open_connection(IP, self.nodes[node].server.port)
        client = Client(f"c{next(self.names)}@{node}", node, RawClient(reader, writer, ""))
        client.raw.name = client.name
        self.clients.append(client)
        self.histories.append(client)
        return client

    async def _register(self, client: Client, nick: str, port: int) -> bool:
        """True when it joined."""
        participant = Participant(nick, IP, port)
        holder = {m.participant.endpoint: m.participant.nick for m in self.members}
        if any(m.participant.key == nick_key(nick) for m in self.members):
            expected = error(nickname_in_use(participant))
        elif participant.endpoint in holder:
            expected = error(address_in_use(participant, holder[participant.endpoint]))
        else:
            serial = next(self.serials)
            member = Member(participant, serial, client)
            self.serial_of[member.entry] = serial
            self._owe(("J", serial))
            self.members.append(member)
            self.written += 1
            client.member = member
            expected = plist(*self._expected_list())
        client.raw.send(register(f"{nick}:{IP}:{port}"))
        got = await client.raw.recv(TIMEOUT)
        assert got == expected, (
            f"{client}: REGISTER:{nick}:{IP}:{port}: expected {expected!r}, got {got!r}"
        )
        if client.member is not None:
            client.view = entries(got)
        await self._settle()
        return client.member is not None

    @initialize(data=st.data(), n=st.integers(1, 4))
    def some_join(self, data: st.DataObject, n: int) -> None:
        """A few participants, so that most steps have someone to reach (and a crash
        often takes several, whose leaves then come in join order)."""
        for i in range(n):
            nick, port = FIRST[i], PORTS[i]
            node = data.draw(st.integers(0, NODES - 1), label="node")
            self.loop.call(self._with_new(node, nick, port))

    async def _with_new(self, node: int, nick: str, port: int) -> bool:
        return await self._register(await self._connect(node), nick, port)

    def _registered_event(self, joined: bool) -> None:
        event("REGISTER: joins" if joined else "REGISTER: refused")

    # The rules have no preconditions: a rule with nobody to act on does nothing.
    # (Preconditions that rule out most rules at once, as after a crash that took
    # every client, make hypothesis give up on the example.)

    def _pick(self, data: st.DataObject, clients: list[Client], label: str) -> Client | None:
        if not clients:
            event(f"nothing to do: no {label}")
            return None
        return data.draw(st.sampled_from(clients), label=label)

    @rule(
        data=st.data(),
        nick=st.sampled_from(NICKS),
        port=st.sampled_from(PORTS),
        again=st.booleans(),
    )
    def register(self, data: st.DataObject, nick: str, port: int, again: bool) -> None:
        """A new connection to any live node registers, or one that was refused tries
        again (it stays open: decision 11): it joins, or is refused."""
        refused = self._unregistered()
        if (again and refused) or len(self.clients) >= MAX_CLIENTS:
            client = self._pick(data, refused, "refused client")
            if client is None:
                return
            self._registered_event(self.loop.call(self._register(client, nick, port)))
        else:
            node = data.draw(st.sampled_from(self._live_nodes()), label="node")
            self._registered_event(self.loop.call(self._with_new(node, nick, port)))

    @rule(data=st.data())
    def broadcast(self, data: st.DataObject) -> None:
        client = self._pick(data, self._registered(), "sender")
        if client is None:
            return
        self.loop.call(self._broadcast([client]))

    @rule(data=st.data())
    def broadcasts_at_once(self, data: st.DataObject) -> None:
        """Several participants, through several nodes, broadcast at the same instant:
        the order between them is the cluster's to choose, but it is one order."""
        if len(self._registered()) < 2:
            event("nothing to do: fewer than two participants")
            return
        senders = data.draw(
            st.lists(st.sampled_from(self._registered()), min_size=2, max_size=6),
            label="senders",
        )
        self.loop.call(self._broadcast(senders))

    async def _broadcast(self, senders: list[Client]) -> None:
        burst = next(self.bursts)
        for client in senders:
            assert client.member is not None
            text = f"m{next(self.texts)}"
            client.said.add(text)
            if len(senders) > 1:
                self.burst_of[("B", text)] = burst
            self._owe(("B", text), besides=client)
            self.written += 1
            client.raw.send(bcast(client.member.participant.nick, text))
        await self._settle()

    @rule(data=st.data(), how=st.sampled_from(["close", "reset"]))
    def leave(self, data: st.DataObject, how: str) -> None:
        """A clean close or a TCP reset: either way, a participant's leave reaches all."""
        client = self._pick(data, self.clients, "client")
        if client is None:
            return
        event(f"{how} by {'a participant' if client.member else 'a stranger'}")
        self.loop.call(self._leave(client, how))

    async def _leave(self, client: Client, how: str) -> None:
        if how == "reset":
            client.raw.reset()
        else:
            await client.raw.close()
        self._forget(client)
        await self._wait_lists()
        await self._settle()

    async def _wait_lists(self, timeout: float = TIMEOUT) -> None:
        """Until every live node lists the model's participants: a leave nobody else
        hears has the registries as its only witness."""
        want = [m.participant for m in self.members]
        try:
            async with asyncio.timeout(timeout):
                while any(
                    list(self.nodes[i].server.registry.participants()) != want
                    for i in self._live_nodes()
                ):
                    await asyncio.sleep(0.005)
        except TimeoutError:
            lists = {i: self.nodes[i].server.registry.participants() for i in self._live_nodes()}
            raise AssertionError(f"the nodes list {lists}, the model {want}") from None

    @rule(node=st.integers(0, NODES - 1))
    def crash(self, node: int) -> None:
        """A node dies at once: it writes nothing more, not even its participants'
        leaves; the others sweep them once its heartbeat lapses. One per example."""
        if self.killed:
            event("nothing to do: a node crashed already")
            return
        self.killed = True
        event("a node crashed")
        self.loop.call(self._crash(node))

    async def _crash(self, index: int) -> None:
        node = self.nodes[index]
        sequencer = node.cluster.sequencer
        assert sequencer is not None
        node.alive = False
        # Its tasks stop and its links to Redis end: nothing of it is written any more.
        for task in sequencer._tasks:
            task.cancel()
        await asyncio.wait(sequencer._tasks)
        await sequencer._close_clients()
        # Its connections end with it (their leaves go to a sequencer that is no more).
        assert node.server._server is not None
        node.server._server.close()
        for conn in list(node.server._connections):
            if conn.transport is not None:
                conn.transport.abort()
        gone = [c for c in self.clients if c.node == index]
        for client in gone:
            await client.raw.expect_closed()
        # Its participants leave in join order, as the sweep writes them.
        for member in [m for m in self.members if m.client in gone]:
            self._forget(member.client)
        for client in gone:
            if client in self.clients:
                self.clients.remove(client)
        async with asyncio.timeout(NODE_TIMEOUT + TIMEOUT):
            while await self.admin.hexists(self.nodes_key, node.cluster.node_id):
                await asyncio.sleep(0.01)
        await self._wait_lists()
        await self._settle()

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def every_view_is_the_clusters_list(self) -> None:
        want = self._expected_list()
        for i in self._live_nodes():
            listed = [
                f"{p.nick}:{p.ip}:{p.udp_port}"
                for p in self.nodes[i].server.registry.participants()
            ]
            assert listed == want, f"node {i} lists {listed}, the model {want}"
        for client in self.clients:
            if client.member is None:
                assert client.view is None, f"{client}: unregistered, yet has a list"
            else:
                assert client.view == want, f"{client}: sees {client.view}, the cluster {want}"

    @invariant()
    def everything_owed_arrived_once(self) -> None:
        """In the model's order, one step after the other (a crashed node's participants
        leave in join order); only within a burst of broadcasts may the order differ."""
        for client in self.clients:
            assert self._canonical(client.seen) == self._canonical(client.owed), (
                f"{client}: got {client.seen}, owed {client.owed}"
            )

    def _canonical(self, events: list[Event]) -> list[Event]:
        """``events`` with each burst's broadcasts, which are side by side, sorted."""
        runs = itertools.groupby(events, lambda e: self.burst_of.get(e, e))
        return [e for _, run in runs for e in sorted(run)]

    @invariant()
    def one_global_order(self) -> None:
        """Each client's events in the order it got them are one chain; all the chains
        together must fit one total order, so they must have no cycle."""
        graph: graphlib.TopologicalSorter[Event] = graphlib.TopologicalSorter()
        for client in self.histories:
            for before, after in itertools.pairwise(client.seen):
                graph.add(after, before)
        try:
            graph.prepare()
        except graphlib.CycleError as cycle:
            raise AssertionError(
                f"no one order fits what the clients saw: {cycle.args[1]}"
            ) from None


# About 0.6 s an example here (a crash waits out the node timeout); room for a busy machine.
@pytest.mark.timeout(60 + 2 * EXAMPLES)
def test_three_nodes_under_random_clients_and_a_crash(
    loop: Loop, shared_redis: RedisServer
) -> None:
    run_state_machine_as_test(
        # A factory is accepted (hypothesis calls it per example), though typed as a class.
        lambda: ThreeNodes(loop, shared_redis),  # type: ignore[arg-type]
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=20,
            deadline=None,
            database=None,  # nothing written into the work tree
            # No shrinking, as in tests/integration/test_hostile_state_machine.py:
            # every example costs three nodes; a failure is reported with its steps.
            phases=[Phase.generate],
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# --hypothesis-show-statistics then reports the event() counts of the runs.
test_three_nodes_under_random_clients_and_a_crash.is_hypothesis_test = True  # type: ignore[attr-defined]
