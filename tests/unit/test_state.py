"""Tests of the pure state in p2pchat.state: no sockets, no clock, no sleeping.

Covers the server's Registry (decisions 5, 9, 11), the client's PeerTable
(decisions 10, 21), the direct-chat Handshake state machine and its INIT
retransmission schedule (decisions 19, 20, 22) and the DirectChats arbiter of
incoming INITs (decisions 21, 24). Time is an argument everywhere, so the
schedule is checked at exact instants.
"""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.protocol import Action, Init, Participant, ParticipantList, Update, nick_key
from p2pchat.state import (
    ANSWER_TIMEOUT,
    CONNECT_TIMEOUT,
    RETRY_DELAYS,
    ChatEvent,
    ChatState,
    DirectChats,
    Handshake,
    InitVerdict,
    InvalidTransition,
    PeerTable,
    PeerTableFull,
    RegistrationRefused,
    Registry,
    TimerAction,
    TooManyChats,
    Waiting,
    new_secret,
)
from p2pchat.state import (
    ChatRole as Role,
)

# When judge_init is asked in these tests: long after every handshake started,
# so that only the state of a handshake matters, not its age.
LATER = 1000.0

ALICE = Participant("alice", "192.0.2.1", 5000)
BOB = Participant("bob", "192.0.2.2", 5001)
CAROL = Participant("carol", "2001:db8::3", 5002)
DAVE = Participant("dave", "192.0.2.4", 5003)


# -- Registry (server side) ------------------------------------------------------


def test_registry_starts_empty() -> None:
    registry: Registry[str] = Registry()
    assert len(registry) == 0
    assert registry.participants() == ()
    assert list(registry.connections()) == []
    assert registry.get("c1") is None
    assert "c1" not in registry


def test_registry_register_and_get() -> None:
    registry: Registry[str] = Registry()
    registry.register("c1", ALICE)
    assert len(registry) == 1
    assert "c1" in registry
    assert "c2" not in registry
    assert registry.get("c1") == ALICE
    assert registry.get("c2") is None


def test_registry_keeps_join_order() -> None:
    registry: Registry[str] = Registry()
    registry.register("c3", CAROL)
    registry.register("c1", ALICE)
    registry.register("c2", BOB)
    assert registry.participants() == (CAROL, ALICE, BOB)
    assert list(registry.connections()) == ["c3", "c1", "c2"]


def test_registry_rejoin_goes_to_the_end() -> None:
    registry: Registry[str] = Registry()
    for conn, p in (("c1", ALICE), ("c2", BOB), ("c3", CAROL)):
        registry.register(conn, p)
    assert registry.unregister("c1") == ALICE
    assert registry.participants() == (BOB, CAROL)
    registry.register("c4", ALICE)
    assert registry.participants() == (BOB, CAROL, ALICE)
    assert list(registry.connections()) == ["c2", "c3", "c4"]


def test_registry_unregister_returns_the_participant_and_frees_the_nickname() -> None:
    registry: Registry[str] = Registry()
    registry.register("c1", ALICE)
    assert registry.unregister("c1") == ALICE
    assert len(registry) == 0
    assert "c1" not in registry
    # The nickname (in any case) is free again, on any connection.
    registry.register("c2", Participant("ALICE", "192.0.2.9", 9000))
    assert registry.get("c2") == Participant("ALICE", "192.0.2.9", 9000)


def test_registry_unregister_unknown_connection_returns_none() -> None:
    registry: Registry[str] = Registry()
    assert registry.unregister("nobody") is None
    registry.register("c1", ALICE)
    assert registry.unregister("nobody") is None
    assert registry.unregister("c1") == ALICE
    assert registry.unregister("c1") is None  # a second time
    assert registry.participants() == ()


def test_registry_same_connection_may_register_again_after_unregister() -> None:
    registry: Registry[str] = Registry()
    registry.register("c1", ALICE)
    registry.unregister("c1")
    registry.register("c1", BOB)
    assert registry.get("c1") == BOB


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("alice", "alice"),
        ("alice", "ALICE"),
        ("Alice", "aLiCe"),
        ("Straße", "STRASSE"),  # casefold, not lower(): 'ß' folds to 'ss'
        ("STRASSE", "straße"),
        ("ΣΊΣΥΦΟΣ", "σίσυφος"),  # final sigma folds like sigma
        ("José", "Jose\u0301"),  # NFC and NFD: one name
        ("Jose\u0301", "JOSÉ"),
    ],
)
def test_registry_nickname_unique_casefolded(first: str, second: str) -> None:
    registry: Registry[str] = Registry()
    registry.register("c1", Participant(first, "192.0.2.1", 5000))
    with pytest.raises(RegistrationRefused) as excinfo:
        registry.register("c2", Participant(second, "192.0.2.2", 5001))
    assert str(excinfo.value) == f"nickname '{second}' is already in use"
    # The refusal changes nothing.
    assert len(registry) == 1
    assert "c2" not in registry
    assert registry.participants() == (Participant(first, "192.0.2.1", 5000),)


def test_registry_lower_is_not_enough_for_uniqueness() -> None:
    # 'straße'.lower() != 'strasse'.lower(): only casefold makes them one name.
    assert "straße".lower() != "STRASSE".lower()
    registry: Registry[str] = Registry()
    registry.register("c1", Participant("straße", "192.0.2.1", 5000))
    with pytest.raises(RegistrationRefused, match="already in use"):
        registry.register("c2", Participant("STRASSE", "192.0.2.1", 5001))


def test_registry_refuses_a_second_registration_on_one_connection() -> None:
    registry: Registry[str] = Registry()
    registry.register("c1", ALICE)
    with pytest.raises(RegistrationRefused) as excinfo:
        registry.register("c1", BOB)
    assert str(excinfo.value) == "already registered as 'alice' on this connection"
    # Same nickname again on the same connection: the connection check comes first.
    with pytest.raises(RegistrationRefused) as excinfo:
        registry.register("c1", ALICE)
    assert str(excinfo.value) == "already registered as 'alice' on this connection"
    assert registry.participants() == (ALICE,)
    # BOB's nickname was not reserved by the refused attempt.
    registry.register("c2", BOB)
    assert registry.participants() == (ALICE, BOB)


def test_registry_refused_texts_are_actionable_sentences() -> None:
    # Decision 18: short English sentences, as the ERROR text.
    registry: Registry[object] = Registry()
    conn = object()
    registry.register(conn, Participant("bob", "192.0.2.1", 5000))
    with pytest.raises(RegistrationRefused) as excinfo:
        registry.register(object(), Participant("bob", "192.0.2.2", 5000))
    assert str(excinfo.value) == "nickname 'bob' is already in use"


@pytest.mark.parametrize(
    ("taken", "claim"),
    [
        (ALICE, Participant("mallory", "192.0.2.1", 5000)),
        # Compared in canonical form: IPv6 spellings, IPv4-mapped IPv6.
        (CAROL, Participant("mallory", "2001:DB8:0:0::3", 5002)),
        (CAROL, Participant("mallory", "[2001:db8:0::0:3]", 5002)),
        (ALICE, Participant("mallory", "::ffff:192.0.2.1", 5000)),
    ],
)
def test_registry_refuses_an_address_another_participant_has(
    taken: Participant, claim: Participant
) -> None:
    """Decision 21: an INIT is credited to whoever is registered at its source,
    so two participants at one address would let one take the other's chats."""
    registry: Registry[str] = Registry()
    registry.register("c1", taken)
    with pytest.raises(RegistrationRefused) as excinfo:
        registry.register("c2", claim)
    assert str(excinfo.value) == (
        f"address {taken.endpoint} is already registered by '{taken.nick}'; use another UDP port"
    )
    # The refusal changes nothing and reserves nothing.
    assert registry.participants() == (taken,)
    assert "c2" not in registry
    registry.register("c2", Participant("mallory", claim.ip, claim.udp_port + 1))


def test_registry_same_port_on_another_ip_or_same_ip_on_another_port_is_fine() -> None:
    registry: Registry[str] = Registry()
    registry.register("c1", Participant("alice", "192.0.2.1", 5000))
    registry.register("c2", Participant("bob", "192.0.2.2", 5000))
    registry.register("c3", Participant("carol", "192.0.2.1", 5001))
    registry.register("c4", Participant("dave", "fe80::1%eth0", 5000))
    registry.register("c5", Participant("erin", "fe80::1%eth1", 5000))  # another link
    assert len(registry) == 5


def test_registry_unregister_frees_the_address() -> None:
    registry: Registry[str] = Registry()
    registry.register("c1", ALICE)
    registry.unregister("c1")
    registry.register("c2", Participant("bob", ALICE.ip, ALICE.udp_port))
    assert registry.get("c2") == Participant("bob", ALICE.ip, ALICE.udp_port)


def test_registry_nickname_is_checked_before_the_address() -> None:
    registry: Registry[str] = Registry()
    registry.register("c1", ALICE)
    with pytest.raises(RegistrationRefused) as excinfo:
        registry.register("c2", ALICE)
    assert str(excinfo.value) == "nickname 'alice' is already in use"


_NICK_POOL = ("alice", "ALICE", "Alice", "bob", "Bob", "straße", "STRASSE", "carol")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["register", "unregister"]),
            st.integers(min_value=0, max_value=4),
            st.sampled_from(_NICK_POOL),
            st.integers(min_value=5000, max_value=5002),
        ),
        max_size=40,
    )
)
def test_registry_matches_a_simple_model(ops: list[tuple[str, int, str, int]]) -> None:
    registry: Registry[int] = Registry()
    model: list[tuple[int, Participant]] = []  # join order
    for op, conn, nick, port in ops:
        if op == "register":
            participant = Participant(nick, "192.0.2.1", port)
            if any(c == conn for c, _ in model):
                with pytest.raises(RegistrationRefused, match="on this connection"):
                    registry.register(conn, participant)
            elif any(p.nick.casefold() == nick.casefold() for _, p in model):
                with pytest.raises(RegistrationRefused, match="already in use"):
                    registry.register(conn, participant)
            elif any(p.udp_port == port for _, p in model):
                with pytest.raises(RegistrationRefused, match="already registered by"):
                    registry.register(conn, participant)
            else:
                registry.register(conn, participant)
                model.append((conn, participant))
        else:
            expected = next((p for c, p in model if c == conn), None)
            assert registry.unregister(conn) == expected
            model = [(c, p) for c, p in model if c != conn]
        assert registry.participants() == tuple(p for _, p in model)
        assert list(registry.connections()) == [c for c, _ in model]
        assert len(registry) == len(model)
        # The LIST made from the cached entries is the codec's own, and its size is known.
        assert registry.encoded_list() == ParticipantList(registry.participants()).encode()
        assert registry.list_bytes == len(registry.encoded_list())


# -- PeerTable (client side) --------------------------------------------------------


def test_peer_table_replace_drops_our_own_entry() -> None:
    table = PeerTable("bob")
    table.replace((ALICE, BOB, CAROL))
    assert list(table) == [ALICE, CAROL]
    assert len(table) == 2
    assert table.get("bob") is None


def test_peer_table_replace_drops_our_own_entry_casefolded() -> None:
    table = PeerTable("Straße")
    me = Participant("STRASSE", "192.0.2.7", 7000)
    table.replace((ALICE, me, BOB))
    assert list(table) == [ALICE, BOB]
    assert table.get("strasse") is None


def test_peer_table_replace_without_us_keeps_everyone_in_order() -> None:
    table = PeerTable("zed")
    table.replace((CAROL, ALICE, BOB))
    assert list(table) == [CAROL, ALICE, BOB]


def test_peer_table_replace_forgets_previous_entries() -> None:
    table = PeerTable("bob")
    table.replace((ALICE, CAROL))
    table.replace((DAVE,))
    assert list(table) == [DAVE]
    assert table.get("alice") is None


def test_peer_table_get_is_case_insensitive() -> None:
    table = PeerTable("bob")
    table.replace((ALICE,))
    assert table.get("ALICE") == ALICE
    assert table.get("Alice") == ALICE
    assert table.get("carol") is None


def test_peer_table_join_of_a_new_participant() -> None:
    table = PeerTable("bob")
    assert table.apply(Update(Action.JOIN, ALICE)) is True
    assert table.get("alice") == ALICE
    assert list(table) == [ALICE]


def test_peer_table_duplicate_join_changes_nothing() -> None:
    table = PeerTable("bob")
    table.replace((ALICE,))
    assert table.apply(Update(Action.JOIN, ALICE)) is False
    assert list(table) == [ALICE]


def test_peer_table_join_with_a_new_address_replaces_the_entry() -> None:
    table = PeerTable("bob")
    table.replace((ALICE,))
    moved = Participant("alice", "192.0.2.100", 6000)
    assert table.apply(Update(Action.JOIN, moved)) is True
    assert list(table) == [moved]


@pytest.mark.parametrize("me", ["bob", "BOB", "Bob"])
@pytest.mark.parametrize("action", list(Action))
def test_peer_table_ignores_updates_about_ourselves(me: str, action: Action) -> None:
    table = PeerTable(me)
    table.replace((ALICE,))
    assert table.apply(Update(action, BOB)) is False
    assert list(table) == [ALICE]
    assert table.get("bob") is None


def test_peer_table_leave_of_a_known_participant() -> None:
    table = PeerTable("bob")
    table.replace((ALICE, CAROL))
    assert table.apply(Update(Action.LEAVE, ALICE)) is True
    assert list(table) == [CAROL]
    assert table.apply(Update(Action.LEAVE, ALICE)) is False  # already gone


def test_peer_table_leave_is_matched_casefolded() -> None:
    table = PeerTable("bob")
    table.replace((ALICE,))
    assert table.apply(Update(Action.LEAVE, Participant("ALICE", "192.0.2.1", 5000))) is True
    assert len(table) == 0


def test_peer_table_leave_of_unknown_changes_nothing() -> None:
    table = PeerTable("bob")
    table.replace((ALICE,))
    assert table.apply(Update(Action.LEAVE, CAROL)) is False
    assert list(table) == [ALICE]


def test_peer_table_by_address_matches_ip_and_port() -> None:
    table = PeerTable("zed")
    table.replace((ALICE, BOB, CAROL))
    assert table.by_address("192.0.2.1", 5000) == (ALICE,)
    assert table.by_address("192.0.2.2", 5001) == (BOB,)
    assert table.by_address("2001:db8::3", 5002) == (CAROL,)
    # Both must match.
    assert table.by_address("192.0.2.1", 5001) == ()
    assert table.by_address("192.0.2.2", 5000) == ()
    assert table.by_address("192.0.2.9", 5000) == ()


def test_peer_table_by_address_of_a_bracketed_ipv6_participant() -> None:
    table = PeerTable("zed")
    carol = Participant("carol", "[2001:DB8:0::3]", 5002)  # stored canonical
    table.replace((carol,))
    assert table.by_address("2001:db8::3", 5002) == (carol,)


def test_peer_table_by_address_never_finds_ourselves() -> None:
    table = PeerTable("bob")
    table.replace((ALICE, BOB))
    assert table.by_address(BOB.ip, BOB.udp_port) == ()


def test_peer_table_by_address_after_leave() -> None:
    table = PeerTable("zed")
    table.replace((ALICE,))
    table.apply(Update(Action.LEAVE, ALICE))
    assert table.by_address("192.0.2.1", 5000) == ()


MALLORY_AT_ALICES = Participant("mallory", ALICE.ip, ALICE.udp_port)


def test_peer_table_by_address_reports_two_participants_at_one_address() -> None:
    """Two participants registered at one UDP address: both come back, in join order,
    so that an INIT from there is credited to neither."""
    table = PeerTable("zed")
    table.replace((ALICE, BOB, MALLORY_AT_ALICES))
    assert table.by_address(ALICE.ip, ALICE.udp_port) == (ALICE, MALLORY_AT_ALICES)
    table.apply(Update(Action.LEAVE, ALICE))
    assert table.by_address(ALICE.ip, ALICE.udp_port) == (MALLORY_AT_ALICES,)


def test_peer_table_by_address_ambiguity_made_by_a_join_and_ended_by_a_move() -> None:
    table = PeerTable("zed")
    table.replace((ALICE,))
    assert table.apply(Update(Action.JOIN, MALLORY_AT_ALICES)) is True
    assert table.by_address(ALICE.ip, ALICE.udp_port) == (ALICE, MALLORY_AT_ALICES)
    elsewhere = Participant("mallory", "192.0.2.66", 6666)  # a JOIN again, at a new address
    assert table.apply(Update(Action.JOIN, elsewhere)) is True
    assert table.by_address(ALICE.ip, ALICE.udp_port) == (ALICE,)
    assert table.by_address("192.0.2.66", 6666) == (elsewhere,)
    assert list(table) == [ALICE, elsewhere]


_ADDRESSES = [("192.0.2.1", 5000), ("192.0.2.1", 5001), ("2001:db8::1", 5000)]
_updates = st.lists(
    st.tuples(
        st.sampled_from(list(Action)),
        st.sampled_from(["alice", "Alice", "bob", "carol", "zed"]),
        st.sampled_from(_ADDRESSES),
    ),
    max_size=30,
)


@given(first=_updates, then=_updates)
@settings(max_examples=200, deadline=None)
def test_peer_table_by_address_agrees_with_a_scan_of_the_table(
    first: list[tuple[Action, str, tuple[str, int]]],
    then: list[tuple[Action, str, tuple[str, int]]],
) -> None:
    """Whatever LIST and UPDATEs came, by_address names exactly the held participants
    at that address, in the table's order."""
    table = PeerTable("zed")
    table.replace(tuple(Participant(nick, ip, port) for _, nick, (ip, port) in first))
    for action, nick, (ip, port) in then:
        table.apply(Update(action, Participant(nick, ip, port)))
    for ip, port in _ADDRESSES:
        expected = tuple(p for p in table if (p.ip, p.udp_port) == (ip, port))
        assert table.by_address(ip, port) == expected


def test_peer_table_holds_at_most_its_limit_from_a_list() -> None:
    """A LIST longer than the limit is cut in its order; replace says how many were left out."""
    table = PeerTable("zed", limit=2)
    assert table.replace((ALICE, BOB, CAROL, DAVE)) == 2
    assert list(table) == [ALICE, BOB]
    assert table.by_address(CAROL.ip, CAROL.udp_port) == ()
    assert table.replace((ALICE, Participant("zed", "192.0.2.9", 9), BOB)) == 0  # we don't count


def test_peer_table_refuses_a_join_past_its_limit_and_takes_one_after_a_leave() -> None:
    table = PeerTable("zed", limit=2)
    table.replace((ALICE, BOB))
    with pytest.raises(PeerTableFull, match="2 participants"):
        table.apply(Update(Action.JOIN, CAROL))
    assert list(table) == [ALICE, BOB]
    moved = Participant("alice", "192.0.2.77", 7777)  # someone known, at a new address: no growth
    assert table.apply(Update(Action.JOIN, moved)) is True
    assert table.apply(Update(Action.JOIN, Participant("ZED", "192.0.2.9", 9))) is False
    assert table.apply(Update(Action.LEAVE, BOB)) is True
    assert table.apply(Update(Action.JOIN, CAROL)) is True
    assert list(table) == [moved, CAROL]


# -- Handshake: the state machine -------------------------------------------------

S, E = ChatState, ChatEvent

# The table, restated from decisions 20-23 (and independent of the module's own).
EXPECTED: dict[tuple[ChatState, ChatEvent], ChatState] = {
    (S.INVITING, E.ACK): S.ACKED,
    (S.INVITING, E.CONNECTED): S.OPEN,  # the connection may beat the ACK (decision 22)
    (S.INVITING, E.TIMEOUT): S.FAILED,
    (S.INVITING, E.CLOSE): S.CLOSED,
    (S.ACKED, E.ACK): S.ACKED,  # a repeated INIT is acknowledged again (decision 21)
    (S.ACKED, E.CONNECTED): S.OPEN,
    (S.ACKED, E.TIMEOUT): S.FAILED,
    (S.ACKED, E.CLOSE): S.CLOSED,
    (S.CONNECTING, E.CONNECTED): S.OPEN,
    (S.CONNECTING, E.TIMEOUT): S.FAILED,
    (S.CONNECTING, E.CLOSE): S.CLOSED,
    (S.OPEN, E.ACK): S.OPEN,  # an ACK that lost the race with the connection
    (S.OPEN, E.CLOSE): S.CLOSED,
}

# Ways to reach each state, from either role: (role, events to apply after creation).
PATHS: dict[ChatState, list[tuple[Role, tuple[ChatEvent, ...]]]] = {
    S.INVITING: [(Role.INITIATOR, ())],
    S.ACKED: [(Role.INITIATOR, (E.ACK,)), (Role.INITIATOR, (E.ACK, E.ACK))],
    S.CONNECTING: [(Role.RESPONDER, ())],
    S.OPEN: [
        (Role.INITIATOR, (E.CONNECTED,)),
        (Role.INITIATOR, (E.ACK, E.CONNECTED)),
        (Role.INITIATOR, (E.CONNECTED, E.ACK)),
        (Role.RESPONDER, (E.CONNECTED,)),
    ],
    S.CLOSED: [
        (Role.INITIATOR, (E.CLOSE,)),
        (Role.INITIATOR, (E.ACK, E.CLOSE)),
        (Role.INITIATOR, (E.ACK, E.CONNECTED, E.CLOSE)),
        (Role.RESPONDER, (E.CLOSE,)),
        (Role.RESPONDER, (E.CONNECTED, E.CLOSE)),
    ],
    S.FAILED: [
        (Role.INITIATOR, (E.TIMEOUT,)),
        (Role.INITIATOR, (E.ACK, E.TIMEOUT)),
        (Role.RESPONDER, (E.TIMEOUT,)),
    ],
}


def _new(role: Role, now: float = 0.0) -> Handshake:
    if role is Role.INITIATOR:
        return Handshake.outgoing(BOB, now)
    return Handshake.incoming(BOB, "the-secret", now)


def _reach(role: Role, events: tuple[ChatEvent, ...]) -> Handshake:
    hs = _new(role)
    for event in events:
        hs.handle(event, 1.0)
    return hs


def test_paths_cover_every_state() -> None:
    assert set(PATHS) == set(ChatState)
    for state, paths in PATHS.items():
        for role, events in paths:
            assert _reach(role, events).state is state


_CASES = [
    pytest.param(
        state,
        role,
        events,
        event,
        id=f"{state.name}-via-{role.name}{''.join('+' + e.name for e in events)}-{event.name}",
    )
    for state, paths in PATHS.items()
    for role, events in paths
    for event in ChatEvent
]


@pytest.mark.parametrize(("state", "role", "events", "event"), _CASES)
def test_every_state_event_pair(
    state: ChatState, role: Role, events: tuple[ChatEvent, ...], event: ChatEvent
) -> None:
    hs = _reach(role, events)
    assert hs.state is state
    expected = EXPECTED.get((state, event))
    if expected is None:
        with pytest.raises(InvalidTransition) as excinfo:
            hs.handle(event, 2.0)
        assert str(excinfo.value) == f"{event.name} in state {state.name}"
        assert hs.state is state  # unchanged
    else:
        assert hs.handle(event, 2.0) is expected
        assert hs.state is expected


def test_cross_product_is_complete() -> None:
    pairs = set(itertools.product(ChatState, ChatEvent))
    assert set(EXPECTED) <= pairs
    assert {(state, event) for state, _, _, event in (c.values for c in _CASES)} == pairs


def test_initial_states_and_roles() -> None:
    out = Handshake.outgoing(BOB, 10.0)
    assert (out.role, out.state, out.peer, out.started) == (
        Role.INITIATOR,
        S.INVITING,
        BOB,
        10.0,
    )
    inc = Handshake.incoming(BOB, "abc", 10.0)
    assert (inc.role, inc.state, inc.secret) == (Role.RESPONDER, S.CONNECTING, "abc")


@pytest.mark.parametrize(
    ("state", "pending"),
    [
        (S.INVITING, True),
        (S.ACKED, True),
        (S.CONNECTING, True),
        (S.OPEN, False),
        (S.CLOSED, False),
        (S.FAILED, False),
    ],
)
def test_pending(state: ChatState, pending: bool) -> None:
    for role, events in PATHS[state]:
        assert _reach(role, events).pending is pending


def test_handshakes_compare_by_identity() -> None:
    a = Handshake.incoming(BOB, "same", 1.0)
    b = Handshake.incoming(BOB, "same", 1.0)
    assert a != b
    assert len({a, b}) == 2


# -- Handshake: the retransmission schedule ----------------------------------------


def test_schedule_constants_follow_decision_20() -> None:
    assert RETRY_DELAYS == (0.25, 0.5, 1.0, 2.0)
    assert ANSWER_TIMEOUT == 5.0
    assert CONNECT_TIMEOUT == 5.0


def test_outgoing_resends_with_backoff_then_gives_up() -> None:
    hs = Handshake.outgoing(BOB, 100.0)
    assert hs.get_timer() == pytest.approx(100.25)
    assert hs.handle_timer(100.0) is TimerAction.NOTHING
    assert hs.handle_timer(100.2499) is TimerAction.NOTHING
    for deadline, following in [
        (100.25, 100.75),
        (100.75, 101.75),
        (101.75, 103.75),
        (103.75, 105.0),
    ]:
        assert hs.get_timer() == pytest.approx(deadline)
        assert hs.handle_timer(deadline - 0.001) is TimerAction.NOTHING
        assert hs.handle_timer(deadline) is TimerAction.RESEND_INIT
        assert hs.state is S.INVITING
        assert hs.get_timer() == pytest.approx(following)
        # The same deadline fires once.
        assert hs.handle_timer(deadline) is TimerAction.NOTHING
    assert hs.handle_timer(104.999) is TimerAction.NOTHING
    assert hs.handle_timer(105.0) is TimerAction.GIVE_UP
    assert hs.state is S.FAILED
    assert hs.get_timer() is None
    assert hs.handle_timer(105.0) is TimerAction.NOTHING
    assert hs.handle_timer(1000.0) is TimerAction.NOTHING
    assert hs.state is S.FAILED


def test_outgoing_timer_called_exactly_at_each_get_timer() -> None:
    hs = Handshake.outgoing(BOB, 100.0)
    actions = []
    while (at := hs.get_timer()) is not None:
        actions.append((at, hs.handle_timer(at)))
    assert actions == [
        (pytest.approx(100.25), TimerAction.RESEND_INIT),
        (pytest.approx(100.75), TimerAction.RESEND_INIT),
        (pytest.approx(101.75), TimerAction.RESEND_INIT),
        (pytest.approx(103.75), TimerAction.RESEND_INIT),
        (pytest.approx(105.0), TimerAction.GIVE_UP),
    ]


def test_a_late_timer_resends_once_and_skips_missed_deadlines() -> None:
    hs = Handshake.outgoing(BOB, 100.0)
    assert hs.handle_timer(102.0) is TimerAction.RESEND_INIT
    assert hs.get_timer() == pytest.approx(103.75)
    assert hs.handle_timer(102.0) is TimerAction.NOTHING


def test_a_very_late_timer_gives_up_at_once() -> None:
    hs = Handshake.outgoing(BOB, 100.0)
    assert hs.handle_timer(200.0) is TimerAction.GIVE_UP
    assert hs.state is S.FAILED


def test_after_ack_no_more_resends_and_give_up_moves() -> None:
    hs = Handshake.outgoing(BOB, 100.0)
    assert hs.handle_timer(100.25) is TimerAction.RESEND_INIT
    assert hs.handle(E.ACK, 101.0) is S.ACKED
    assert hs.get_timer() == pytest.approx(101.0 + CONNECT_TIMEOUT)
    for t in (101.75, 103.75, 105.0, 105.9):  # old resend and give-up times
        assert hs.handle_timer(t) is TimerAction.NOTHING
        assert hs.state is S.ACKED
    assert hs.handle_timer(106.0) is TimerAction.GIVE_UP
    assert hs.state is S.FAILED
    assert hs.get_timer() is None


def test_ack_just_before_the_answer_timeout_gets_a_full_connect_timeout() -> None:
    hs = Handshake.outgoing(BOB, 100.0)
    hs.handle(E.ACK, 104.9)
    assert hs.handle_timer(105.0) is TimerAction.NOTHING
    assert hs.get_timer() == pytest.approx(109.9)


def test_a_repeated_ack_does_not_extend_the_give_up() -> None:
    hs = Handshake.outgoing(BOB, 100.0)
    hs.handle(E.ACK, 101.0)
    hs.handle(E.ACK, 104.0)
    assert hs.state is S.ACKED
    assert hs.get_timer() == pytest.approx(106.0)
    assert hs.handle_timer(106.0) is TimerAction.GIVE_UP


def test_connected_before_ack_opens() -> None:
    # Decision 22: the peer's connection may arrive before its ACK.
    hs = Handshake.outgoing(BOB, 100.0)
    assert hs.handle(E.CONNECTED, 100.1) is S.OPEN
    assert hs.get_timer() is None
    assert hs.handle_timer(100.25) is TimerAction.NOTHING
    assert hs.handle_timer(105.0) is TimerAction.NOTHING
    # The ACK that arrives afterwards changes nothing.
    assert hs.handle(E.ACK, 100.2) is S.OPEN
    assert hs.get_timer() is None


def test_connected_after_ack_opens() -> None:
    hs = Handshake.outgoing(BOB, 100.0)
    hs.handle(E.ACK, 100.1)
    assert hs.handle(E.CONNECTED, 100.2) is S.OPEN
    assert hs.get_timer() is None
    assert hs.handle_timer(200.0) is TimerAction.NOTHING
    assert hs.state is S.OPEN


def test_incoming_has_one_deadline() -> None:
    hs = Handshake.incoming(BOB, "s3cret", 50.0)
    assert hs.get_timer() == pytest.approx(50.0 + CONNECT_TIMEOUT)
    for t in (50.0, 50.25, 50.75, 51.75, 53.75, 54.999):
        assert hs.handle_timer(t) is TimerAction.NOTHING  # never RESEND_INIT
        assert hs.get_timer() == pytest.approx(55.0)
    assert hs.handle_timer(55.0) is TimerAction.GIVE_UP
    assert hs.state is S.FAILED
    assert hs.get_timer() is None


def test_incoming_connected_in_time() -> None:
    hs = Handshake.incoming(BOB, "s3cret", 50.0)
    hs.handle(E.CONNECTED, 51.0)
    assert hs.get_timer() is None
    assert hs.handle_timer(55.0) is TimerAction.NOTHING
    assert hs.state is S.OPEN


@pytest.mark.parametrize("state", [S.OPEN, S.CLOSED, S.FAILED])
def test_no_timer_once_settled(state: ChatState) -> None:
    for role, events in PATHS[state]:
        hs = _reach(role, events)
        assert hs.get_timer() is None
        assert hs.handle_timer(1e9) is TimerAction.NOTHING
        assert hs.state is state


# -- Handshake: random event sequences --------------------------------------------

_STEP = st.one_of(
    st.tuples(st.just("event"), st.sampled_from(ChatEvent)),
    st.tuples(st.just("timer"), st.floats(min_value=0.0, max_value=3.0)),
)


@settings(max_examples=300, deadline=None)
@given(
    role=st.sampled_from(Role),
    start=st.floats(min_value=0.0, max_value=1e6),
    steps=st.lists(_STEP, max_size=30),
)
def test_random_sequences_stay_in_the_table(
    role: Role, start: float, steps: list[tuple[str, object]]
) -> None:
    hs = _new(role, start)
    now = start
    reachable = {S.INVITING, S.CONNECTING, *EXPECTED.values()}
    resends = 0
    for kind, arg in steps:
        before = hs.state
        if kind == "event":
            assert isinstance(arg, ChatEvent)
            expected = EXPECTED.get((before, arg))
            if expected is None:
                with pytest.raises(InvalidTransition):
                    hs.handle(arg, now)
                assert hs.state is before
            else:
                assert hs.handle(arg, now) is expected
        else:
            assert isinstance(arg, float)
            now += arg
            action = hs.handle_timer(now)
            if action is TimerAction.GIVE_UP:
                assert before in (S.INVITING, S.ACKED, S.CONNECTING)
                assert hs.state is S.FAILED
            else:
                assert hs.state is before
            if action is TimerAction.RESEND_INIT:
                assert role is Role.INITIATOR
                assert before is S.INVITING
                resends += 1
            if before not in (S.INVITING, S.ACKED, S.CONNECTING):
                assert action is TimerAction.NOTHING
            # After handling, the next deadline lies in the future (or there is none).
            timer = hs.get_timer()
            assert timer is None or timer > now
        assert hs.state in reachable
        assert (hs.get_timer() is None) is (not hs.pending)
    assert resends <= len(RETRY_DELAYS)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=0.5), max_size=60))
def test_an_unanswered_init_gives_up_between_answer_timeout_and_the_next_tick(
    ticks: list[float],
) -> None:
    hs = Handshake.outgoing(BOB, 0.0)
    now = 0.0
    for tick in ticks:
        now += tick
        action = hs.handle_timer(now)
        if action is TimerAction.GIVE_UP:
            assert now >= ANSWER_TIMEOUT
            return
    assert now < ANSWER_TIMEOUT or hs.state is S.FAILED


# -- secrets -------------------------------------------------------------------------


def test_new_secret_is_long_url_safe_and_fresh() -> None:
    secrets_seen = [new_secret() for _ in range(200)]
    for secret in secrets_seen:
        assert len(secret) >= 22  # 128 bits in base64
        assert re.fullmatch(r"[A-Za-z0-9_-]+", secret), secret
        Init(secret, 1)  # a valid Secret field (decision 8)
    assert len(set(secrets_seen)) == len(secrets_seen)


def test_outgoing_handshakes_get_fresh_secrets() -> None:
    a = Handshake.outgoing(BOB, 0.0)
    b = Handshake.outgoing(BOB, 0.0)
    assert a.secret != b.secret
    assert len(a.secret) >= 22


# -- DirectChats: judging INITs (decisions 21, 24) -----------------------------------


def test_init_with_no_chat_is_accepted() -> None:
    chats = DirectChats("alice")
    assert chats.judge_init(BOB, "s1", LATER) is InitVerdict.ACCEPT
    hs, replaced = chats.accept(BOB, "s1", 10.0)
    assert replaced is None
    assert (hs.role, hs.state, hs.secret, hs.peer, hs.started) == (
        Role.RESPONDER,
        S.CONNECTING,
        "s1",
        BOB,
        10.0,
    )
    assert chats.get("bob") is hs
    assert chats.get("BOB") is hs  # casefolded
    assert list(chats) == [hs]


@pytest.mark.parametrize("opened", [False, True])
def test_repeat_of_an_answered_init_is_acked_again(opened: bool) -> None:
    chats = DirectChats("alice")
    hs, _ = chats.accept(BOB, "s1", 10.0)
    if opened:
        hs.handle(E.CONNECTED, 10.5)
    assert chats.judge_init(BOB, "s1", LATER) is InitVerdict.ACK_AGAIN
    assert chats.judge_init(BOB, "s1", LATER) is InitVerdict.ACK_AGAIN
    assert chats.get("bob") is hs


@pytest.mark.parametrize("acked", [False, True])
def test_crossing_inits_our_nick_first_ignores_theirs(acked: bool) -> None:
    chats = DirectChats("alice")  # 'alice' < 'bob'
    ours = chats.start(BOB, 10.0)
    if acked:  # Bob's ACK for our INIT may come before his INIT
        ours.handle(E.ACK, 10.1)
    assert chats.judge_init(BOB, "theirs", LATER) is InitVerdict.IGNORE
    assert chats.judge_init(BOB, "theirs", LATER) is InitVerdict.IGNORE  # a retransmission
    assert chats.get("bob") is ours
    # Our chat opens; a late retransmission of the INIT that lost still must not
    # replace it (it is not a fresh INIT from a restarted peer).
    ours.handle(E.CONNECTED, 10.2)
    assert chats.judge_init(BOB, "theirs", LATER) is InitVerdict.IGNORE
    assert chats.get("bob") is ours
    assert ours.state is S.OPEN


def test_crossing_lost_secret_stays_ignored_until_the_peer_leaves() -> None:
    chats = DirectChats("alice")
    ours = chats.start(BOB, 10.0)
    assert chats.judge_init(BOB, "theirs", LATER) is InitVerdict.IGNORE
    ours.handle(E.CONNECTED, 10.2)
    ours.handle(E.CLOSE, 11.0)
    chats.forget(ours)
    assert chats.get("bob") is None
    assert chats.judge_init(BOB, "theirs", LATER) is InitVerdict.IGNORE
    chats.peer_left("BOB")  # casefolded
    assert chats.judge_init(BOB, "theirs", LATER) is InitVerdict.ACCEPT


def test_crossing_inits_peer_nick_first_accepts_and_replaces_ours() -> None:
    chats = DirectChats("bob")  # 'alice' < 'bob': Alice's INIT wins
    ours = chats.start(ALICE, 10.0)
    assert chats.judge_init(ALICE, "theirs", LATER) is InitVerdict.ACCEPT
    hs, replaced = chats.accept(ALICE, "theirs", 10.1)
    assert replaced is ours
    assert chats.get("alice") is hs
    assert hs.role is Role.RESPONDER
    # Our own INIT's secret no longer names a handshake: its ACK will be ignored.
    assert chats.by_secret(ours.secret) is None
    # Alice's retransmissions of the winning INIT are acknowledged again.
    assert chats.judge_init(ALICE, "theirs", LATER) is InitVerdict.ACK_AGAIN


@pytest.mark.parametrize(
    ("me", "peer_nick", "verdict"),
    [
        # Raw comparison says 'Zed' < 'adam' ('Z' < 'a'); casefolded, 'adam' sorts first.
        ("Zed", "adam", InitVerdict.ACCEPT),
        ("adam", "Zed", InitVerdict.IGNORE),
        ("ADAM", "zed", InitVerdict.IGNORE),
        ("zed", "ADAM", InitVerdict.ACCEPT),
        # 'straße' folds to 'strasse' < 'strasse2'
        ("Straße", "STRASSE2", InitVerdict.IGNORE),
        ("STRASSE2", "Straße", InitVerdict.ACCEPT),
    ],
)
def test_crossing_inits_compare_casefolded(me: str, peer_nick: str, verdict: InitVerdict) -> None:
    peer = Participant(peer_nick, "192.0.2.50", 5050)
    chats = DirectChats(me)
    chats.start(peer, 0.0)
    assert chats.judge_init(peer, "theirs", LATER) is verdict


_NICKS = st.text(
    st.characters(categories=("Lu", "Ll", "Nd"), max_codepoint=0x24F), min_size=1, max_size=12
)


@settings(max_examples=200, deadline=None)
@given(_NICKS, _NICKS)
def test_crossing_inits_exactly_one_side_wins(nick_a: str, nick_b: str) -> None:
    if nick_key(nick_a) == nick_key(nick_b):
        return  # one participant
    a = Participant(nick_a, "192.0.2.1", 5000)
    b = Participant(nick_b, "192.0.2.2", 5000)
    chats_a, chats_b = DirectChats(nick_a), DirectChats(nick_b)
    init_a = chats_a.start(b, 0.0)
    init_b = chats_b.start(a, 0.0)
    # Each side gets the other's INIT while its own is pending.
    verdict_at_b = chats_b.judge_init(a, init_a.secret, LATER)
    verdict_at_a = chats_a.judge_init(b, init_b.secret, LATER)
    assert {verdict_at_a, verdict_at_b} == {InitVerdict.ACCEPT, InitVerdict.IGNORE}
    a_wins = nick_key(nick_a) < nick_key(nick_b)  # compared as the one 'same nickname' key
    assert (verdict_at_b is InitVerdict.ACCEPT) is a_wins


@pytest.mark.parametrize("role", list(Role))
def test_fresh_init_replaces_an_open_chat(role: Role) -> None:
    chats = DirectChats("alice")
    if role is Role.INITIATOR:
        old = chats.start(BOB, 10.0)
    else:
        old, _ = chats.accept(BOB, "old", 10.0)
    old.handle(E.CONNECTED, 10.5)
    assert old.state is S.OPEN
    # A new Secret: Bob likely restarted (decision 24), whoever sorts first.
    assert chats.judge_init(BOB, "fresh", LATER) is InitVerdict.ACCEPT
    hs, replaced = chats.accept(BOB, "fresh", 20.0)
    assert replaced is old
    assert chats.get("bob") is hs
    assert hs.state is S.CONNECTING


def test_fresh_init_replaces_a_pending_incoming_handshake() -> None:
    chats = DirectChats("alice")
    old, _ = chats.accept(BOB, "old", 10.0)
    assert chats.judge_init(BOB, "fresh", LATER) is InitVerdict.ACCEPT
    hs, replaced = chats.accept(BOB, "fresh", 11.0)
    assert replaced is old
    assert chats.get("bob") is hs


@pytest.mark.parametrize("end", [E.CLOSE, E.TIMEOUT])
def test_an_ended_handshake_is_not_replaced(end: ChatEvent) -> None:
    chats = DirectChats("alice")
    old = chats.start(BOB, 10.0)
    old.handle(end, 11.0)
    assert chats.judge_init(BOB, "fresh", LATER) is InitVerdict.ACCEPT
    hs, replaced = chats.accept(BOB, "fresh", 12.0)
    assert replaced is None
    assert chats.get("bob") is hs


def test_inits_from_other_peers_are_independent() -> None:
    chats = DirectChats("alice")
    with_bob = chats.start(BOB, 0.0)
    assert chats.judge_init(CAROL, "c1", LATER) is InitVerdict.ACCEPT
    hs, replaced = chats.accept(CAROL, "c1", 0.1)
    assert replaced is None
    assert chats.get("bob") is with_bob
    assert chats.get("carol") is hs
    assert set(chats) == {with_bob, hs}


def test_forget_only_removes_the_current_handshake() -> None:
    chats = DirectChats("bob")
    first = chats.start(ALICE, 0.0)
    second, replaced = chats.accept(ALICE, "theirs", 1.0)
    assert replaced is first
    chats.forget(first)  # ended after being replaced: must not drop the new one
    assert chats.get("alice") is second
    chats.forget(second)
    assert chats.get("alice") is None
    chats.forget(second)  # twice: harmless
    chats.forget(Handshake.incoming(CAROL, "x", 0.0))  # never known: harmless
    assert list(chats) == []


def test_forget_while_iterating() -> None:
    chats = DirectChats("alice")
    chats.start(BOB, 0.0)
    chats.start(CAROL, 0.0)
    for hs in chats:
        chats.forget(hs)
    assert list(chats) == []


def test_by_secret_finds_only_our_outgoing_handshakes() -> None:
    chats = DirectChats("alice")
    ours = chats.start(BOB, 0.0)
    theirs, _ = chats.accept(CAROL, "carols-secret", 0.0)
    assert chats.by_secret(ours.secret) is ours
    assert chats.by_secret("carols-secret") is None
    assert theirs.secret == "carols-secret"
    assert chats.by_secret("unknown") is None
    chats.forget(ours)
    assert chats.by_secret(ours.secret) is None


def test_peer_left_only_clears_that_peers_lost_secrets() -> None:
    chats = DirectChats("alice")
    chats.start(BOB, 0.0)
    chats.start(CAROL, 0.0)
    assert chats.judge_init(BOB, "b", LATER) is InitVerdict.IGNORE
    assert chats.judge_init(CAROL, "c", LATER) is InitVerdict.IGNORE
    chats.peer_left("bob")
    chats.peer_left("nobody")  # unknown: harmless
    # Bob's handshake is still there and pending: a fresh crossing INIT loses again,
    # but the secret itself is no longer remembered as lost.
    bob_hs = chats.get("bob")
    assert bob_hs is not None
    bob_hs.handle(E.CLOSE, 1.0)
    chats.forget(bob_hs)
    assert chats.judge_init(BOB, "b", LATER) is InitVerdict.ACCEPT
    carol_hs = chats.get("carol")
    assert carol_hs is not None
    carol_hs.handle(E.CLOSE, 1.0)
    chats.forget(carol_hs)
    assert chats.judge_init(CAROL, "c", LATER) is InitVerdict.IGNORE


def test_d21_a_repeat_after_the_chat_ended_opens_nothing() -> None:
    """Decision 21: a late copy of an answered INIT is ACKed again, even once that chat
    has ended and been forgotten; it never opens a second connection."""
    chats = DirectChats("alice")
    hs, _ = chats.accept(BOB, "s1", 10.0)
    hs.handle(ChatEvent.CONNECTED, 10.1)
    hs.handle(ChatEvent.CLOSE, 11.0)
    chats.forget(hs)
    assert chats.judge_init(BOB, "s1", 11.5) is InitVerdict.ACK_AGAIN
    assert chats.judge_init(BOB, "s2", 11.5) is InitVerdict.ACCEPT


def test_d24_a_delayed_losing_init_does_not_replace_the_chat_that_won() -> None:
    """Decision 24: we (alice) won a crossing and our chat opened; a delayed copy of bob's
    losing INIT arrives while INITs are still being resent: ignored. Later, a fresh INIT
    from bob means he restarted, and replaces the chat."""
    chats = DirectChats("alice")
    ours = chats.start(BOB, 10.0)
    ours.handle(ChatEvent.CONNECTED, 10.2)
    assert chats.judge_init(BOB, "delayed", 12.0) is InitVerdict.IGNORE
    assert chats.judge_init(BOB, "delayed", 30.0) is InitVerdict.IGNORE  # stays lost
    assert chats.judge_init(BOB, "restarted", 30.0) is InitVerdict.ACCEPT


def test_remembered_secrets_are_bounded() -> None:
    chats = DirectChats("alice")
    chats.start(BOB, 0.0)
    for i in range(100):
        assert chats.judge_init(BOB, f"lost-{i}", 1.0) is InitVerdict.IGNORE
    assert len(chats._lost[BOB.key]) == DirectChats.REMEMBERED_SECRETS  # not 100


# -- DirectChats: the limit on chats pending or open --------------------------------


def test_past_the_chat_limit_a_new_chat_is_refused_both_ways() -> None:
    chats = DirectChats("alice", max_chats=2)
    chats.start(BOB, 0.0)
    chats.accept(CAROL, "c1", 0.0)
    assert chats.full
    with pytest.raises(TooManyChats, match="2 direct chats pending or open, the limit"):
        chats.start(DAVE, 1.0)
    assert chats.judge_init(DAVE, "d1", LATER) is InitVerdict.FULL
    assert chats.get("dave") is None
    # A fresh INIT replaces Carol's chat, adding none; a repeat is acked again.
    assert chats.judge_init(CAROL, "c2", LATER) is InitVerdict.ACCEPT
    assert chats.judge_init(CAROL, "c1", LATER) is InitVerdict.ACK_AGAIN


def test_a_chat_that_ended_frees_its_place_at_once() -> None:
    chats = DirectChats("alice", max_chats=2)
    with_bob = chats.start(BOB, 0.0)
    chats.accept(CAROL, "c1", 0.0)
    with_bob.handle(E.TIMEOUT, 5.0)  # failed, not forgotten yet: no longer counts
    assert not chats.full
    assert chats.judge_init(DAVE, "d1", LATER) is InitVerdict.ACCEPT
    chats.accept(DAVE, "d1", 6.0)
    assert chats.full
    chats.forget(with_bob)
    assert chats.full  # Carol and Dave


# -- Waiting: connections that have not registered -------------------------------------


def test_waiting_closes_the_oldest_of_the_address_with_the_most() -> None:
    waiting: Waiting[str] = Waiting()
    assert waiting.to_close() is None
    waiting.add("honest", "10.0.0.1")
    for i in range(3):
        waiting.add(f"idle{i}", "10.0.0.2")
    assert waiting.to_close() == "idle0"
    waiting.remove("idle0")
    assert waiting.to_close() == "idle1"
    waiting.remove("idle1")
    waiting.remove("idle2")
    assert waiting.to_close() == "honest"  # alone now: it is the one that waits longest
    waiting.remove("honest")
    assert waiting.to_close() is None
    assert len(waiting) == 0


def test_waiting_remove_of_an_unknown_connection_is_harmless() -> None:
    waiting: Waiting[str] = Waiting()
    waiting.remove("never added")
    waiting.add("a", "10.0.0.1")
    waiting.remove("a")
    waiting.remove("a")
    assert len(waiting) == 0 and waiting.to_close() is None


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 9), st.integers(0, 3))))
def test_waiting_matches_a_model(steps: list[tuple[bool, int, int]]) -> None:
    """Whatever the adds and removes, to_close names the oldest waiting connection of
    an address that has the most waiting."""
    waiting: Waiting[int] = Waiting()
    model: list[tuple[int, str]] = []  # (conn, address), oldest first
    for add, conn, address in steps:
        if add and all(c != conn for c, _ in model):
            waiting.add(conn, str(address))
            model.append((conn, str(address)))
        elif not add:
            waiting.remove(conn)
            model = [(c, a) for c, a in model if c != conn]
        assert len(waiting) == len(model)
        chosen = waiting.to_close()
        if not model:
            assert chosen is None
            continue
        counts = {a: sum(1 for _, b in model if b == a) for _, a in model}
        top = max(counts.values())
        first_of = {a: next(c for c, b in model if b == a) for a in counts}
        assert chosen in {first_of[a] for a, n in counts.items() if n == top}
