"""The sans-IO client core at exact instants: no sockets, no sleeping."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import p2pchat
from p2pchat.core import (
    ClientConfig,
    ClientCore,
    Connect,
    DirectAction,
    Emit,
    Listen,
    OpenSession,
    Release,
    SendDatagram,
    SetTimer,
    Settle,
    StopListening,
    Write,
    fallback_nick,
    nick_taken,
)
from p2pchat.errors import DirectChatError, InvalidInputError
from p2pchat.events import (
    BroadcastReceived,
    ChatClosed,
    ChatFailed,
    ChatOpened,
    NickChanged,
    Notice,
    ParticipantsListed,
    PeerJoined,
    PeerLeft,
    Registered,
)
from p2pchat.protocol import (
    Ack,
    Action,
    Broadcast,
    Init,
    Participant,
    ParticipantList,
    Update,
    decode_datagram,
)
from p2pchat.state import ChatState, Handshake

ALICE = Participant("alice", "127.0.0.1", 4001)
BOB = Participant("bob", "127.0.0.1", 4002)
AARON = Participant("aaron", "127.0.0.1", 4003)


def core_with(*others: Participant, nick: str = "alice") -> ClientCore:
    core = ClientCore(ClientConfig(nick))
    me = Participant(nick, "127.0.0.1", 4001)
    core.registered(me, (me, *others), "", 0.0)
    core.direct.ready = True
    return core


def events(actions: Sequence[DirectAction]) -> list[object]:
    return [a.event for a in actions if isinstance(a, Emit)]


def of(kind: type, actions: list[DirectAction]) -> list[DirectAction]:
    return [a for a in actions if isinstance(a, kind)]


def started(core: ClientCore, nick: str, now: float, port: int = 5000) -> Handshake:
    """A chat asked for at ``now`` whose listener opened at once on ``port``."""
    (listen,) = core.direct.request(nick, now)
    assert isinstance(listen, Listen)
    core.direct.listening(listen.chat, port, now)
    return listen.chat


# -- INIT resend and give-up schedule (decision 20) ---------------------------------------


def test_the_init_goes_out_when_the_listener_is_open_then_at_each_resend_instant() -> None:
    core = core_with(BOB)
    (listen,) = core.direct.request("bob", 100.0)
    assert isinstance(listen, Listen)
    hs = listen.chat
    actions = core.direct.listening(hs, 5000, 100.0)
    (sent,) = of(SendDatagram, actions)
    assert isinstance(sent, SendDatagram)
    assert sent.to == BOB.udp_address
    assert decode_datagram(sent.data) == Init(hs.secret, 5000)
    assert of(SetTimer, actions) == [SetTimer(hs, 100.25)]
    resends = []
    for at in (100.25, 100.75, 101.75, 103.75):
        actions = core.direct.timer(hs, at)
        assert len(of(SendDatagram, actions)) == 1
        (timer,) = of(SetTimer, actions)
        assert isinstance(timer, SetTimer)
        resends.append(timer.at)
    assert resends == [100.75, 101.75, 103.75, 105.0]
    actions = core.direct.timer(hs, 105.0)
    assert events(actions) == [ChatFailed("bob", "bob did not answer")]
    assert Release(hs) in actions and Settle("bob", "bob did not answer") in actions
    assert core.direct.get("bob") is None


def test_an_ack_stops_the_resends_and_leaves_five_seconds_to_connect() -> None:
    core = core_with(BOB)
    hs = started(core, "bob", 10.0)
    actions = core.direct.datagram(Ack(hs.secret), *BOB.udp_address, 10.1)
    assert actions == [SetTimer(hs, 15.1)]
    assert core.direct.timer(hs, 15.0) == [SetTimer(hs, 15.1)]  # early: nothing yet
    failed = events(core.direct.timer(hs, 15.1))
    assert failed == [ChatFailed("bob", "bob answered but did not connect")]


def test_an_ack_with_an_unknown_secret_or_for_an_ended_chat_is_ignored() -> None:
    core = core_with(BOB)
    hs = started(core, "bob", 0.0)
    assert core.direct.datagram(Ack("nobody's"), *BOB.udp_address, 0.1) == []
    core.direct.close_chat("bob", "closed", 0.2)
    assert core.direct.datagram(Ack(hs.secret), *BOB.udp_address, 0.3) == []


def test_unsent_texts_are_written_once_when_the_chat_opens() -> None:
    core = core_with(BOB)
    core.direct.send("bob", "one", 0.0)
    hs = core.direct.get("bob")
    assert hs is not None
    core.direct.listening(hs, 5000, 0.0)
    core.direct.send("bob", "two", 0.1)
    actions = core.direct.connection(hs, "127.0.0.1", 0.2)
    (opened,) = of(OpenSession, actions)
    assert isinstance(opened, OpenSession)
    assert opened.frames == (b"CHAT:3:one\r\n", b"CHAT:3:two\r\n")
    assert StopListening(hs) in actions and SetTimer(hs, None) in actions
    assert events(actions) == [ChatOpened("bob", True)]
    assert core.direct.send("bob", "three", 0.3) == [Write(hs, b"CHAT:5:three\r\n")]
    ended = core.direct.session_ended(hs, "bob closed the chat", 9.0)
    assert events(ended) == [ChatClosed("bob", "bob closed the chat")]


def test_unsent_texts_are_reported_once_when_the_chat_fails() -> None:
    core = core_with(BOB)
    core.direct.send("bob", "one", 0.0)
    core.direct.send("bob", "two", 0.0)
    hs = core.direct.get("bob")
    assert hs is not None
    core.direct.listening(hs, 5000, 0.0)
    failed = events(core.direct.timer(hs, 5.0))
    assert failed == [ChatFailed("bob", "bob did not answer", ("one", "two"))]
    core.direct.send("bob", "three", 6.0)  # a new attempt starts with only its own text
    hs2 = core.direct.get("bob")
    assert hs2 is not None and hs2 is not hs
    core.direct.listening(hs2, 5001, 6.0)
    assert events(core.direct.peer_left(BOB, 6.5)) == [ChatFailed("bob", "bob left", ("three",))]


def test_a_text_too_long_or_not_encodable_is_refused_and_kept_nowhere() -> None:
    core = core_with(BOB)
    with pytest.raises(InvalidInputError, match="message too long: 65537 bytes"):
        core.direct.send("bob", "x" * 65537, 0.0)
    with pytest.raises(InvalidInputError):
        core.direct.send("bob", "\ud800", 0.0)
    assert core.direct.get("bob") is None


def test_requests_that_cannot_be_made() -> None:
    core = core_with(BOB)
    with pytest.raises(DirectChatError, match="yourself"):
        core.direct.request("ALICE", 0.0)
    with pytest.raises(DirectChatError, match="no participant named 'carol'"):
        core.direct.request("carol", 0.0)
    core.direct.ready = False
    with pytest.raises(DirectChatError, match="not connected"):
        core.direct.request("bob", 0.0)


# -- incoming INITs, crossing INITs (decisions 21 and 24) ----------------------------------


def test_an_init_from_a_participant_is_acked_and_connected_to() -> None:
    core = core_with(BOB)
    actions = core.direct.datagram(Init("s1", 6000), *BOB.udp_address, 1.0)
    hs = core.direct.get("bob")
    assert hs is not None and hs.state is ChatState.CONNECTING
    assert actions == [
        SendDatagram(b"ACK:INIT:s1\r\n", BOB.udp_address),
        SetTimer(hs, 6.0),
        Connect(hs, "127.0.0.1", 6000),
    ]
    assert core.direct.datagram(Init("s1", 6000), *BOB.udp_address, 1.5) == [
        SendDatagram(b"ACK:INIT:s1\r\n", BOB.udp_address)
    ]
    assert core.direct.datagram(Init("s2", 6000), "127.0.0.9", 4002, 1.5) == []


def test_crossing_inits_the_nickname_that_sorts_first_wins() -> None:
    """alice and bob: alice wins, bob's INIT is not answered. alice and aaron: aaron
    wins, alice drops her request and answers his, keeping her unsent text."""
    core = core_with(BOB, AARON)
    started(core, "bob", 0.0)
    assert core.direct.datagram(Init("bobs", 7000), *BOB.udp_address, 0.1) == []
    core.direct.send("aaron", "hi", 0.0)
    mine = core.direct.get("aaron")
    assert mine is not None
    core.direct.listening(mine, 5001, 0.0)
    actions = core.direct.datagram(Init("aarons", 7001), *AARON.udp_address, 0.1)
    assert Release(mine) in actions and events(actions) == []
    theirs = core.direct.get("aaron")
    assert theirs is not None and theirs.state is ChatState.CONNECTING
    (opened,) = of(OpenSession, core.direct.connected(theirs, 0.2))
    assert isinstance(opened, OpenSession) and opened.frames == (b"CHAT:2:hi\r\n",)


def test_the_tie_break_uses_the_nickname_we_hold_now() -> None:
    """Decision 24 after a rename: as 'zed', alice no longer sorts before bob."""
    core = core_with(BOB)
    started(core, "bob", 0.0)
    zed = Participant("zed", "127.0.0.1", 4001)
    core.registered(zed, (zed, BOB), "you changed it", 1.0)
    actions = core.direct.datagram(Init("bobs", 7000), *BOB.udp_address, 0.1)
    assert of(Connect, actions)


def test_a_connection_only_from_the_peers_ip_and_only_while_pending() -> None:
    core = core_with(BOB)
    hs = started(core, "bob", 0.0)
    assert core.direct.connection(hs, "127.0.0.2", 0.1) == []
    assert of(OpenSession, core.direct.connection(hs, "127.0.0.1", 0.1))
    assert core.direct.connection(hs, "127.0.0.1", 0.2) == []


# -- ignores ----------------------------------------------------------------------------


def test_ignoring_closes_an_open_chat_and_refuses_what_follows() -> None:
    core = core_with(BOB)
    core.direct.datagram(Init("s1", 6000), *BOB.udp_address, 0.0)
    hs = core.direct.get("bob")
    assert hs is not None
    core.direct.connected(hs, 0.1)
    actions = core.ignore("BOB", 1.0)
    assert events(actions) == [ChatClosed("bob", "you ignored bob")]
    assert Release(hs) in actions
    assert core.direct.datagram(Init("s2", 6001), *BOB.udp_address, 1.1) == []
    assert core.server_message(Broadcast("bob", "hi"), 1.2) == []
    with pytest.raises(DirectChatError, match="you ignore bob"):
        core.direct.request("bob", 1.3)
    core.unignore("bob")
    assert events(core.server_message(Broadcast("bob", "hi"), 1.4)) == [
        BroadcastReceived("bob", "hi")
    ]


def test_ignoring_a_pending_request_reports_its_unsent_text() -> None:
    core = core_with(BOB)
    core.direct.send("bob", "psst", 0.0)
    actions = core.ignore("bob", 0.5)
    assert events(actions) == [ChatFailed("bob", "you ignored bob", ("psst",))]
    assert Settle("bob", "you ignored bob") in actions


def test_no_direct_refuses_incoming_but_not_outgoing_chats() -> None:
    core = core_with(BOB)
    core.accept_direct = False
    assert core.direct.datagram(Init("s1", 6000), *BOB.udp_address, 0.0) == []
    assert of(Listen, core.direct.request("bob", 0.0))


def test_a_pending_request_ends_when_the_peer_leaves() -> None:
    core = core_with(BOB)
    started(core, "bob", 0.0)
    actions = core.server_message(Update(Action.LEAVE, BOB), 1.0)
    assert events(actions) == [ChatFailed("bob", "bob left"), PeerLeft(BOB)]


def test_a_pending_request_ends_when_a_list_no_longer_has_the_peer() -> None:
    core = core_with(BOB, AARON)
    started(core, "bob", 0.0)
    started(core, "aaron", 0.0, port=5001)
    # A LIST after a reconnect: bob is gone, aaron came back at another port.
    moved = Participant("aaron", "127.0.0.1", 4013)
    actions = core.server_message(ParticipantList((ALICE, moved)), 1.0)
    assert events(actions)[:2] == [ChatFailed("bob", "bob left"), ChatFailed("aaron", "aaron left")]
    assert core.direct.get("bob") is None and core.direct.get("aaron") is None


def test_a_pending_request_goes_on_when_the_list_still_has_the_peer() -> None:
    core = core_with(BOB)
    hs = started(core, "bob", 0.0)
    assert events(core.server_message(ParticipantList((ALICE, BOB)), 1.0)) == [
        ParticipantsListed((ALICE, BOB))
    ]
    assert core.direct.get("bob") is hs and hs.pending


# -- registration and nicknames ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "taken"),
    [
        ("nickname 'bob' is already in use", True),
        ("Nickname bob is taken", True),
        ("address 127.0.0.1:4000 is already registered by 'bob'; use another UDP port", False),
        ("nickname must be 1 to 32 characters", False),
    ],
)
def test_what_counts_as_a_taken_nickname(text: str, taken: bool) -> None:
    assert nick_taken(text) is taken


def test_fallback_nicknames_stay_within_32_characters() -> None:
    assert [fallback_nick("bob", n) for n in (1, 2, 3)] == ["bob_", "bob__", "bob___"]
    long = "x" * 32
    assert fallback_nick(long, 1) == "x" * 31 + "_"
    assert fallback_nick(long, 3) == "x" * 29 + "___"
    assert ClientCore(ClientConfig("bob")).candidates(fallback=False) == ["bob"]
    assert ClientCore(ClientConfig("bob")).candidates(fallback=True)[:3] == ["bob", "bob_", "bob__"]


def test_a_fallback_registration_tells_the_user_and_keeps_the_wanted_nickname() -> None:
    core = core_with(nick="bob")
    me = Participant("bob_", "127.0.0.1", 4001)
    actions = core.registered(me, (me,), "'bob' was taken", 0.0)
    assert events(actions)[:2] == [NickChanged("bob", "bob_", "'bob' was taken"), Registered(me)]
    assert core.nick == "bob_" and core.wanted == "bob"
    assert core.candidates(fallback=True)[0] == "bob"
    # Our own broadcasts echoed under the new nickname are not shown.
    assert core.server_message(Broadcast("bob_", "echo"), 0.0) == []
    assert events(core.server_message(Broadcast("bob", "other"), 0.0))


def test_a_reconnect_says_whether_the_wanted_nickname_was_taken_or_is_free_again() -> None:
    core = core_with(nick="bob")
    fallback = Participant("bob_", "127.0.0.1", 4001)
    assert events(core.registered(fallback, (fallback,), None, 0.0))[0] == NickChanged(
        "bob", "bob_", "'bob' was taken"
    )
    back = Participant("bob", "127.0.0.1", 4001)
    assert events(core.registered(back, (back,), None, 1.0))[0] == NickChanged(
        "bob_", "bob", "'bob' is free again"
    )


def test_the_reconnect_schedule_runs_from_each_loss() -> None:
    class Half:
        def random(self) -> float:
            return 0.5

    core = ClientCore(ClientConfig("bob"), rng=Half())  # type: ignore[arg-type]
    assert core.lost("gone", 10.0)[0] == 10.5
    assert core.lost("refused", 10.5)[0] == 11.5
    me = Participant("bob", "127.0.0.1", 4001)
    core.registered(me, (me,), "", 0.0)
    when, told = core.lost("gone again", 50.0)
    assert when == 50.5
    assert [e.retry_in for e in events(told)] == [0.5]  # type: ignore[attr-defined]
    no_retry = ClientCore(ClientConfig("bob", reconnect=False))
    assert no_retry.lost("gone", 0.0)[0] is None


def test_config_is_checked_when_built() -> None:
    with pytest.raises(InvalidInputError):
        ClientConfig("bad nick")
    with pytest.raises(InvalidInputError):
        ClientConfig("bob", ip="not an address")
    with pytest.raises(InvalidInputError):
        ClientConfig("bob", reconnect_caps=())
    assert isinstance(InvalidInputError("x"), p2pchat.ChatError)


def test_the_core_loads_no_io() -> None:
    src = str(Path(p2pchat.__file__).resolve().parents[1])
    probe = (
        "import json, sys; import p2pchat.core; "
        "print(json.dumps(sorted(m for m in ('asyncio', 'socket', 'selectors') if m in sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout) == []


# -- properties -------------------------------------------------------------------------

# Steps of a random history: what the user, the peer and the network may do, in any order.
STEPS = st.lists(
    st.sampled_from(
        [
            "send",
            "request",
            "listening",
            "init",
            "init_again",
            "ack",
            "connected",
            "connect_failed",
            "incoming",
            "ended",
            "close",
            "ignore",
            "unignore",
            "left",
            "tick",
        ]
    ),
    max_size=40,
)


class World:
    """What the I/O layer would hold, built from the actions alone."""

    def __init__(self) -> None:
        self.timers: dict[Handshake, float] = {}
        self.listening: set[Handshake] = set()  # a Listen not yet answered
        self.sessions: set[Handshake] = set()
        self.connecting: set[Handshake] = set()
        self.sent: list[bytes] = []
        self.reported: list[str] = []

    def apply(self, actions: list[DirectAction]) -> None:
        for a in actions:
            match a:
                case SetTimer(chat=hs, at=at):
                    if at is None:
                        self.timers.pop(hs, None)
                    else:
                        self.timers[hs] = at
                case Listen(chat=hs):
                    self.listening.add(hs)
                case Connect(chat=hs):
                    self.connecting.add(hs)
                case OpenSession(chat=hs, frames=frames):
                    self.sessions.add(hs)
                    self.sent += frames
                case Write(frame=frame):
                    self.sent.append(frame)
                case Release(chat=hs):
                    self.timers.pop(hs, None)
                    self.listening.discard(hs)
                    self.sessions.discard(hs)
                    self.connecting.discard(hs)
                case Emit(event=ChatFailed(unsent=unsent)):
                    self.reported += unsent


@settings(max_examples=300, deadline=None)
@given(STEPS)
def test_any_history_leaves_no_live_chat_without_a_timer_or_session(steps: list[str]) -> None:
    """Whatever happens in whatever order: every live chat has a timer, a listener being
    opened or a session; and every text is either written once or reported once."""
    core = core_with(BOB)
    world = World()
    now = 0.0
    texts = 0
    secret = 0
    for step in steps:
        now += 0.3
        hs = core.direct.get("bob")
        try:
            match step:
                case "send":  # a text refused at once (DirectChatError) is the caller's
                    world.apply(core.direct.send("bob", f"t{texts + 1}", now))
                    texts += 1
                case "request":
                    world.apply(core.direct.request("bob", now))
                case "listening":
                    for pending in list(world.listening):
                        world.listening.discard(pending)
                        world.apply(core.direct.listening(pending, 5000, now))
                case "init" | "init_again":
                    secret += step == "init"
                    init = Init(f"s{secret}", 6000)
                    world.apply(core.direct.datagram(init, *BOB.udp_address, now))
                case "ack" if hs is not None:
                    world.apply(core.direct.datagram(Ack(hs.secret), *BOB.udp_address, now))
                case "connected":
                    for c in list(world.connecting):
                        world.connecting.discard(c)
                        world.apply(core.direct.connected(c, now))
                case "connect_failed":
                    for c in list(world.connecting):
                        world.connecting.discard(c)
                        world.apply(core.direct.connect_failed(c, "refused", now))
                case "incoming" if hs is not None and hs not in world.listening:
                    world.apply(core.direct.connection(hs, "127.0.0.1", now))
                case "ended":
                    for s in list(world.sessions):
                        world.apply(core.direct.session_ended(s, "bob closed the chat", now))
                case "close":
                    world.apply(core.direct.close_chat("bob", "closed", now) or [])
                case "ignore":
                    world.apply(core.ignore("bob", now))
                case "unignore":
                    core.unignore("bob")
                case "left":
                    world.apply(core.server_message(Update(Action.LEAVE, BOB), now))
                    core.server_message(Update(Action.JOIN, BOB), now)
                case "tick":
                    for t_hs, at in list(world.timers.items()):
                        if at <= now:
                            world.apply(core.direct.timer(t_hs, now))
        except DirectChatError:
            pass
        live = core.direct.get("bob")
        if live is not None:
            assert live in world.timers or live in world.listening or live in world.sessions
            if live.state is ChatState.OPEN:
                assert live in world.sessions
        for stale in world.timers:
            assert stale.live, "a timer left behind for a chat that ended"
    # Run the clock out: every chat still pending settles.
    for _ in range(20):
        now += 1.0
        for pending in list(world.listening):
            world.listening.discard(pending)
            world.apply(core.direct.listening(pending, 5000, now))
        for t_hs in list(world.timers):
            world.apply(core.direct.timer(t_hs, now))
    world.apply(core.direct.close_chat("bob", "closed", now) or [])
    sent = [frame.decode().split(":", 2)[2].rstrip("\r\n") for frame in world.sent]
    outcomes = sorted(sent + world.reported)
    assert outcomes == sorted(f"t{i}" for i in range(1, texts + 1))


def test_an_ignored_participant_found_under_another_nickname_at_their_address() -> None:
    """After a reconnect the LIST may show bob, ignored, under a new nickname at his
    address: he stays ignored, once told; someone at another address is not touched."""
    core = core_with(BOB, AARON)
    core.ignore("bob", 0.0)
    robert = Participant("robert", BOB.ip, BOB.udp_port)
    me = Participant("alice", "127.0.0.1", 4001)
    listed = core.registered(me, (me, robert, AARON), "", 0.0)
    notices = [a.event.text for a in listed if isinstance(a.event, Notice)]
    assert notices == ["still ignoring bob: now robert, at the same address"]
    assert core.ignored == {"bob", "robert"}
    again = core.server_message(ParticipantList((me, robert, AARON)), 1.0)
    assert not [a for a in again if isinstance(a, Emit) and isinstance(a.event, Notice)]
    core.unignore("robert")
    bobby = Participant("bobby", BOB.ip, BOB.udp_port)
    joined = core.server_message(Update(Action.JOIN, bobby), 2.0)
    assert [type(a.event) for a in joined if isinstance(a, Emit)] == [PeerJoined]
