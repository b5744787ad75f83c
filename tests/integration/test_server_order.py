"""Two real servers whose events take their place in one order kept in memory
(``MemoryOrder``, a stand-in for a cluster's sequencer), spoken to over real
sockets by raw clients.

What a cluster must give, checked on the server's side of it: one list in one
join order on both servers (decision 10), decision 9 on each, one order of
broadcasts for everyone (decision 14), leaves announced across servers
(decision 15), and a connection's messages read in order while its REGISTER
waits for its place.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from p2pchat.server import ChatServer, ServerConfig
from p2pchat.server_core import BroadcastEvent
from tests.fixtures.memory_order import MemoryOrder

from ._support import Connect, RawClient
from .test_server import bcast, error, join, leave, plist, register

ALICE = "alice:127.0.0.1:5001"
BOB = "bob:127.0.0.1:5002"
CAROL = "carol:127.0.0.1:5003"
DAVE = "dave:127.0.0.1:5004"


@pytest.fixture
async def two_servers() -> AsyncIterator[Callable[..., object]]:
    started: list[ChatServer] = []

    async def start(
        auto: bool = True, **config: object
    ) -> tuple[MemoryOrder, ChatServer, ChatServer]:
        order = MemoryOrder(auto=auto)
        for _ in range(2):
            server = ChatServer(ServerConfig(**config), sequencer=order.node)
            await server.start("127.0.0.1", 0)
            started.append(server)
        return order, started[-2], started[-1]

    yield start
    for server in started:
        await server.close(timeout=1.0)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def joined_on(server: ChatServer, connect: Connect, entry: str) -> RawClient:
    client = await connect(server, entry.split(":")[0])
    client.send(register(entry))
    assert (await client.recv()).startswith(b"LIST:")
    return client


async def test_d10_both_servers_list_everyone_in_one_join_order(two_servers, connect) -> None:
    _, a, b = await two_servers()
    alice = await connect(a, "alice")
    alice.send(register(ALICE))
    await alice.expect(plist(ALICE))
    bob = await connect(b, "bob")
    bob.send(register(BOB))
    await bob.expect(plist(ALICE, BOB))  # decision 9: its LIST first, alice from the other server
    await alice.expect(join(BOB))
    carol = await connect(a, "carol")
    carol.send(register(CAROL))
    await carol.expect(plist(ALICE, BOB, CAROL))
    for client in (alice, bob):
        await client.expect(join(CAROL))
    for client in (alice, bob, carol):
        client.send(b"LIST\r\n")
        await client.expect(plist(ALICE, BOB, CAROL))
    assert a.registry.participants() == b.registry.participants()


async def test_d13_d14_broadcasts_cross_servers_in_one_order_never_echoed(
    two_servers, connect
) -> None:
    order, a, b = await two_servers()
    alice = await joined_on(a, connect, ALICE)
    bob = await joined_on(b, connect, BOB)
    carol = await joined_on(a, connect, CAROL)
    dave = await joined_on(b, connect, DAVE)
    await until(lambda: all(n.applied == len(order.log) for n in order.nodes))
    for client, seen in ((alice, 3), (bob, 2), (carol, 1)):
        for _ in range(seen):
            assert (await client.recv()).startswith(b"UPDATE:JOIN:")
    senders = {"alice": alice, "bob": bob, "carol": carol, "dave": dave}
    for i in range(20):  # all at once, from both servers
        for nick, client in senders.items():
            client.send(f"BROADCAST:{nick}:{len(str(i))}:{i}\r\n".encode())
    sent = [bcast(nick, str(i)) for i in range(20) for nick in senders]
    heard = {}
    for nick, client in senders.items():
        heard[nick] = [await client.recv() for _ in range(60)]
    # One global order: each hears every broadcast of the others once, in that order.
    ordered = [e.data for e in order.events if isinstance(e, BroadcastEvent)]
    assert sorted(ordered) == sorted(sent)
    for nick, messages in heard.items():
        assert messages == [m for m in ordered if not m.startswith(f"BROADCAST:{nick}:".encode())]
        await senders[nick].expect_nothing(0.05)


async def test_d9_a_register_waiting_for_its_place_holds_what_follows_it(
    two_servers, connect
) -> None:
    """REGISTER, BROADCAST and LIST in one write: the REGISTER's place in the order is
    known only later, and the connection is read no further until then."""
    order, a, b = await two_servers(auto=False)
    alice = await connect(a, "alice")
    alice.send(register(ALICE))
    await until(lambda: len(order.log) == 1)
    order.deliver()
    await alice.expect(plist(ALICE))
    bob = await connect(b, "bob")
    bob.send(register(BOB) + bcast("bob", "first") + b"LIST\r\n")
    await until(lambda: len(order.log) == 2)
    order.deliver()
    # Read on at once, its BROADCAST would have had "register first" before this LIST.
    await bob.expect(plist(ALICE, BOB))
    await until(lambda: len(order.log) == 3)
    order.deliver()
    await alice.expect(join(BOB))
    await alice.expect(bcast("bob", "first"))
    await bob.expect(plist(ALICE, BOB))  # its LIST, and no echo before it


async def test_d5_one_of_two_simultaneous_claims_of_a_nickname_wins(two_servers, connect) -> None:
    order, a, b = await two_servers(auto=False)
    alice = await connect(a, "alice")
    other = await connect(b, "other")
    alice.send(register(ALICE))
    other.send(register("ALICE:127.0.0.1:5009"))
    await until(lambda: len(order.log) == 2)  # both passed their server's own checks
    order.deliver()
    await alice.expect(plist(ALICE))
    await other.expect(error("nickname 'ALICE' is already in use"))
    other.send(register(BOB))  # decision 11: the connection stays open
    await until(lambda: len(order.log) == 3)
    order.deliver()
    await other.expect(plist(ALICE, BOB))
    await alice.expect(join(BOB))


async def _bob_joined_then_alice_waiting(order, a, b, connect):
    """bob joined through b; alice's REGISTER on a waits for its place in the order."""
    bob = await connect(b, "bob")
    bob.send(register(BOB))
    await until(lambda: len(order.log) == 1)
    order.deliver()
    await bob.expect(plist(BOB))
    alice = await connect(a, "alice")
    alice.send(register(ALICE))
    await until(lambda: len(order.log) == 2)
    return bob, alice


async def test_d15_leaves_cross_servers(two_servers, connect) -> None:
    order, a, b = await two_servers(auto=False)
    bob, alice = await _bob_joined_then_alice_waiting(order, a, b, connect)
    await alice.close()  # before its place in the order is known
    order.deliver()
    await until(lambda: len(order.log) == 3)  # its end is seen once it is read again
    order.deliver()
    await bob.expect(join(ALICE))
    await bob.expect(leave(ALICE))
    assert a.registry.participants() == b.registry.participants()
    assert [p.nick for p in b.registry.participants()] == ["bob"]


async def test_d15_a_connection_ended_while_its_join_waits_is_announced_leaving(
    two_servers, connect
) -> None:
    """The server ends a connection whose REGISTER waits for its place (here: the
    registration timeout): once the join has its place, the others hear it leave."""
    order, a, b = await two_servers(auto=False, register_timeout=0.2)
    bob, alice = await _bob_joined_then_alice_waiting(order, a, b, connect)
    await alice.expect(error("registration timeout: no REGISTER within 0.2 s"))
    await alice.expect_closed()
    order.deliver()  # a learns of the join, and submits the leave
    assert len(order.log) == 3
    order.deliver()
    await bob.expect(join(ALICE))
    await bob.expect(leave(ALICE))
    assert a.registry.participants() == b.registry.participants()
    assert [p.nick for p in b.registry.participants()] == ["bob"]
