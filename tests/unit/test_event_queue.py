"""The user's event queue: counted in events and bytes, room lost at a limit, back at half."""

from __future__ import annotations

import sys

from p2pchat.events import (
    BroadcastReceived,
    ChatFailed,
    EventQueue,
    ParticipantsListed,
    PeerJoined,
    event_bytes,
)
from p2pchat.protocol import Participant

ALICE = Participant("alice", "192.0.2.1", 5000)


def test_an_event_costs_its_texts_and_a_fixed_share() -> None:
    small = event_bytes(BroadcastReceived("bob", ""))
    big = event_bytes(BroadcastReceived("bob", "x" * 100_000))
    assert big - small == sys.getsizeof("x" * 100_000) - sys.getsizeof("")
    failed = event_bytes(ChatFailed("bob", "gone", ("a" * 5000, "b" * 5000)))
    assert failed > 10_000
    listed = event_bytes(ParticipantsListed((ALICE,) * 1000))
    assert listed >= 1000 * event_bytes(PeerJoined(ALICE)) // 2


def test_room_goes_at_the_byte_limit_and_comes_back_at_half() -> None:
    one = event_bytes(BroadcastReceived("bob", "x" * 1000))
    queue = EventQueue(max_events=1000, max_bytes=4 * one)
    for _ in range(3):
        queue.put(BroadcastReceived("bob", "x" * 1000))
    assert queue.has_room and queue.bytes == 3 * one
    queue.put(BroadcastReceived("bob", "x" * 1000))
    assert not queue.has_room and queue.bytes == 4 * one
    assert queue.poll() is not None
    assert not queue.has_room  # three left: over half
    assert queue.poll() is not None
    assert queue.has_room and queue.bytes == 2 * one and len(queue) == 2


def test_room_goes_at_the_event_limit_and_comes_back_at_half() -> None:
    queue = EventQueue(max_events=4, max_bytes=1 << 30)
    for i in range(4):
        assert queue.has_room
        queue.put(BroadcastReceived("bob", str(i)))
    assert not queue.has_room
    queue.poll()
    assert not queue.has_room
    queue.poll()
    assert queue.has_room
    assert [queue.poll(), queue.poll(), queue.poll()] == [
        BroadcastReceived("bob", "2"),
        BroadcastReceived("bob", "3"),
        None,
    ]
    assert queue.bytes == 0
