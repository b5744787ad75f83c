"""Tests of the server's core (p2pchat.server_core): events applied in their place in
one global order, and what each local connection is owed (decisions 9, 13, 14, 15).

No sockets: each server's connection side is reduced to ``Node``, which
records what each of its connections is owed. Several cores share one order
through ``MemoryOrder``, a stand-in for a cluster's sequencer that tells each
server of the order when the test says so.
"""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from p2pchat.protocol import (
    Action,
    Error,
    Participant,
    ParticipantList,
    Update,
    encode_broadcast,
    nick_key,
)
from p2pchat.server_core import (
    BroadcastEvent,
    JoinEvent,
    LeaveEvent,
    LocalSequencer,
    Sequencer,
    ServerCore,
)
from p2pchat.state import RegistrationRefused, Remote
from tests.fixtures.memory_order import MemoryOrder


class Node:
    """One server: its local connections (names), what each was owed, in order, and
    the connection side's part (check, submit, forget a connection that ended)."""

    def __init__(self, order: MemoryOrder | None = None) -> None:
        self.got: dict[str, list[bytes]] = {}
        self.members: dict[str, None] = {}
        self.ended: set[str] = set()
        self.core: ServerCore[str] = ServerCore(self)
        self.seq: Sequencer[str] = (
            LocalSequencer(self.core) if order is None else order.node(self.core)
        )

    # -- the outbox
    def admit(self, conn: str) -> None:
        pass

    def welcome(self, conn: str, participant: Participant, data: bytes) -> None:
        if conn in self.ended:
            self.seq.submit(LeaveEvent(participant))
            return
        self.members[conn] = None
        self.got[conn].append(data)

    def fan_out(self, data: bytes, exclude: str | None, *, soon: bool = True) -> None:
        for conn in self.members:
            if conn != exclude:
                self.got[conn].append(data)

    def refuse(self, conn: str, reason: str) -> None:
        self.got[conn].append(Error(reason).encode())

    def expel(self, conn: str, reason: str) -> None:
        if conn in self.members:
            del self.members[conn]
            self.ended.add(conn)
            self.got[conn].append(Error(reason).encode())

    # -- the connection side
    def register(self, conn: str, participant: Participant) -> None:
        self.got.setdefault(conn, [])
        try:
            self.core.registry.check(conn, participant)
        except RegistrationRefused as refused:
            self.refuse(conn, str(refused))
            return
        self.seq.submit(JoinEvent(participant, conn))

    def say(self, conn: str, text: str) -> None:
        sender = self.core.registry.get(conn)
        assert sender is not None and conn in self.members
        self.seq.submit(BroadcastEvent(sender.nick, encode_broadcast(sender.nick, text), conn))

    def end(self, conn: str) -> None:
        self.ended.add(conn)
        if conn in self.members:
            del self.members[conn]
            participant = self.core.registry.get(conn)
            assert participant is not None
            self.seq.submit(LeaveEvent(participant))


def p(nick: str, port: int) -> Participant:
    return Participant(nick, "192.0.2.1", port)


def listed(*participants: Participant) -> bytes:
    return ParticipantList(participants).encode()


def join(participant: Participant) -> bytes:
    return Update(Action.JOIN, participant).encode()


def leave(participant: Participant) -> bytes:
    return Update(Action.LEAVE, participant).encode()


ALICE, BOB, CAROL = p("alice", 1), p("bob", 2), p("carol", 3)


def test_one_process_applies_each_event_in_the_call_that_submits_it() -> None:
    node = Node()
    node.register("a", ALICE)
    assert node.got["a"] == [listed(ALICE)]  # decision 9: at once, before anything else
    node.register("b", BOB)
    assert node.got == {"a": [listed(ALICE), join(BOB)], "b": [listed(ALICE, BOB)]}
    node.say("b", "hi")
    assert node.got["a"][-1] == encode_broadcast("bob", "hi")
    assert node.got["b"] == [listed(ALICE, BOB)]  # decision 13: no echo
    node.end("a")
    assert node.got["b"][-1] == leave(ALICE)
    assert node.core.registry.participants() == (BOB,)


def test_a_participant_dropped_by_the_order_while_connected_is_told_and_closed() -> None:
    # Its server was declared dead by the others (cut off for too long): the order
    # carries its leave, and where it is still connected it is told why and closed.
    node = Node()
    node.register("a", ALICE)
    node.register("b", BOB)
    node.core.apply(LeaveEvent(ALICE, "dropped: this server lost touch"))
    assert node.got["a"][-1] == Error("dropped: this server lost touch").encode()
    assert leave(ALICE) not in node.got["a"]  # nothing about itself after its ERROR
    assert node.got["b"][-1] == leave(ALICE)
    assert "a" not in node.members and node.core.registry.participants() == (BOB,)


def test_a_participant_of_another_server_is_on_the_list_in_global_join_order() -> None:
    order = MemoryOrder()
    a, b = Node(order), Node(order)
    b.register("b1", BOB)  # ordered first, though a hears of it only later
    a.register("a1", ALICE)
    assert a.got["a1"] == [] and b.got["b1"] == []  # nothing before its place is known
    order.deliver(a.seq)
    assert a.got["a1"] == [listed(BOB, ALICE)]
    assert a.core.registry.holder(BOB.key) == Remote(BOB.key)
    assert a.core.registry.holder(ALICE.key) == "a1"
    order.deliver(b.seq)
    assert b.got["b1"] == [listed(BOB), join(ALICE)]
    assert a.core.registry.participants() == b.core.registry.participants() == (BOB, ALICE)


def test_events_of_another_server_reach_local_connections_as_updates_and_broadcasts() -> None:
    order = MemoryOrder()
    a, b = Node(order), Node(order)
    a.register("a1", ALICE)
    order.deliver()
    b.register("b1", BOB)
    order.deliver()
    b.say("b1", "from b")
    a.say("a1", "from a")
    b.end("b1")
    order.deliver()
    assert a.got["a1"] == [
        listed(ALICE),
        join(BOB),
        encode_broadcast("bob", "from b"),
        leave(BOB),
    ]
    # bob ended before the order reached b: it was owed nothing more.
    assert b.got["b1"] == [listed(ALICE, BOB)]
    assert a.core.registry.participants() == b.core.registry.participants() == (ALICE,)


def test_every_server_delivers_the_same_order_to_its_connections() -> None:
    order = MemoryOrder()
    a, b = Node(order), Node(order)
    a.register("a1", ALICE)
    b.register("b1", BOB)
    a.register("a2", CAROL)
    order.deliver()
    for i in range(3):  # interleaved across servers, each told of the order at its own pace
        a.say("a1", f"a1 {i}")
        b.say("b1", f"b1 {i}")
        order.deliver(b.seq)
        a.say("a2", f"a2 {i}")
    order.deliver()
    said = [e.data for e in order.events if isinstance(e, BroadcastEvent)]
    assert said == [
        encode_broadcast(nick, f"{who} {i}")
        for i in range(3)
        for nick, who in (("alice", "a1"), ("bob", "b1"), ("carol", "a2"))
    ]
    for node, conn, nick in ((a, "a1", "alice"), (b, "b1", "bob"), (a, "a2", "carol")):
        heard = [m for m in node.got[conn] if m.startswith(b"BROADCAST:")]
        assert heard == [m for m in said if not m.startswith(f"BROADCAST:{nick}:".encode())]


def test_one_of_two_simultaneous_claims_of_a_nickname_wins() -> None:
    order = MemoryOrder()
    a, b = Node(order), Node(order)
    a.register("a1", ALICE)
    b.register("b1", p("ALICE", 9))  # both pass their local checks
    order.deliver()
    assert a.got["a1"] == [listed(ALICE)]
    assert b.got["b1"] == [Error("nickname 'ALICE' is already in use").encode()]
    assert a.core.registry.participants() == b.core.registry.participants() == (ALICE,)
    b.register("b1", BOB)  # a refused REGISTER keeps the connection (decision 11)
    order.deliver()
    assert b.got["b1"][-1] == listed(ALICE, BOB)


def test_a_join_the_list_cannot_take_is_refused_alike_wherever_it_is_applied() -> None:
    node = Node()
    node.core.apply(JoinEvent(ALICE))  # through another server
    node.got["a1"] = []
    node.core.apply(JoinEvent(p("Alice", 7), "a1"))  # in the order after it: no room
    assert node.got["a1"] == [Error("nickname 'Alice' is already in use").encode()]
    assert node.core.registry.participants() == (ALICE,)


def test_a_connection_that_ends_while_its_join_is_ordered_is_announced_leaving() -> None:
    order = MemoryOrder()
    a, b = Node(order), Node(order)
    b.register("b1", BOB)
    order.deliver()
    a.register("a1", ALICE)
    a.end("a1")
    order.deliver()
    order.deliver()  # the leave a submitted when it learned of the join
    assert b.got["b1"] == [listed(BOB), join(ALICE), leave(ALICE)]
    assert a.got["a1"] == []
    assert a.core.registry.participants() == b.core.registry.participants() == (BOB,)


# -- one property over many interleavings -------------------------------------------

NICKS = ["alice", "ALICE", "bob", "carol", "Dave", "dave"]
CONNS = 6

steps = st.lists(
    st.one_of(
        st.tuples(st.just("register"), st.integers(0, CONNS - 1), st.sampled_from(NICKS)),
        st.tuples(st.just("say"), st.integers(0, CONNS - 1), st.integers(0, 99)),
        st.tuples(st.just("end"), st.integers(0, CONNS - 1), st.just(0)),
        st.tuples(st.just("deliver"), st.integers(0, 1), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps)
@example([("register", 0, "alice"), ("deliver", 0, 0), ("end", 0, 0), ("register", 1, "alice")])
def test_every_connection_is_owed_its_projection_of_the_one_order(
    script: list[tuple[str, int, object]],
) -> None:
    """Two servers, six connections (even ones on the first), any interleaving of
    registers, broadcasts, ends and deliveries. Each connection that joined got
    its LIST (the list at its place in the order, itself included) and then
    every later event of the order about others, in order, until it ended:
    nothing about itself, no broadcast of its own, nothing twice or missing."""
    order = MemoryOrder()
    nodes = [Node(order), Node(order)]
    port = {f"c{i}": 1000 + i for i in range(CONNS)}
    state: dict[str, str] = {}  # conn -> "registering", "ended"
    for op, i, arg in script:
        conn = f"c{i % CONNS}"
        node = nodes[i % 2]
        if op == "register" and conn not in state:
            state[conn] = "registering"
            node.register(conn, Participant(str(arg), "192.0.2.1", port[conn]))
        elif op == "say" and conn in node.members:
            node.say(conn, f"{conn} {arg}")
        elif op == "end" and state.get(conn) == "registering":
            state[conn] = "ended"
            node.end(conn)
        elif op == "deliver":
            order.deliver(nodes[i].seq)
    order.deliver()
    order.deliver()  # leaves submitted while catching up

    assert nodes[0].core.registry.participants() == nodes[1].core.registry.participants()
    # Replay the order: the list at each join, and what each event owes the others.
    present: dict[str, Participant] = {}
    owed: list[tuple[str, bytes]] = []  # (nickname key it is about, bytes)
    # By the connection that joined: one nickname can join twice (left, then taken again).
    list_at: dict[object, tuple[bytes, int]] = {}
    for event in order.events:
        if isinstance(event, JoinEvent):
            present[event.participant.key] = event.participant
            owed.append((event.participant.key, join(event.participant)))
            list_at[event.origin] = (listed(*present.values()), len(owed))
        elif isinstance(event, LeaveEvent):
            del present[event.participant.key]
            owed.append((event.participant.key, leave(event.participant)))
        else:
            owed.append((nick_key(event.sender), event.data))
    assert tuple(present.values()) == nodes[0].core.registry.participants()

    for node in nodes:
        for conn, got in node.got.items():
            mine = [
                e.participant.key
                for e in order.events
                if isinstance(e, JoinEvent) and e.origin == conn
            ]
            if not mine:
                assert all(m.startswith(b"ERROR:") for m in got), got
                continue
            (key,) = mine
            if not got:  # ended before it learned of its place
                assert state[conn] == "ended"
                continue
            first, at = list_at[conn]
            assert got[0] == first
            expected = [data for about, data in owed[at:] if about != key]
            if state[conn] == "ended":
                assert got[1:] == expected[: len(got) - 1]
            else:
                assert got[1:] == expected
