"""Faults from outside: clients and servers killed, machines that vanish, datagrams lost.

Real processes where the fault needs one (SIGKILL), real sockets throughout.
The server-side limits (slow readers, flooders, a full server, clients that
never register) are in test_server.py and test_server_faults.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from p2pchat.client import ChatClient
from p2pchat.events import (
    ChatClosed,
    ChatFailed,
    ChatOpened,
    ChatReceived,
    ClientEvent,
    Disconnected,
    PeerJoined,
    PeerLeft,
    Registered,
)
from p2pchat.server import ChatServer
from p2pchat.state import ChatState

from ._programs import Program, client, start_server
from ._support import joined, wait_event

VANISHED_HOST = Path(__file__).with_name("_vanished_host.py")


async def test_a_client_killed_with_sigkill_is_announced_gone_at_once(
    server: ChatServer, programs: list[Program]
) -> None:
    watcher = await joined(server.port, "watcher")
    victim = await client(programs, server.port, "victim", "--json")
    await victim.expect("registered")
    await wait_event(watcher, PeerJoined, lambda e: e.participant.nick == "victim")
    victim.proc.send_signal(signal.SIGKILL)
    # The kernel closes a killed process's sockets, so the LEAVE needs no timeout.
    left = await wait_event(watcher, PeerLeft, timeout=2.0)
    assert left.participant.nick == "victim"
    assert [p.nick for p in watcher.participants] == ["watcher"]
    await watcher.close()


def _can_drop_packets() -> str | None:
    """Why packets cannot be dropped in a namespace of our own here, or None if they can."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs Linux and root for a network namespace"
    missing = [tool for tool in ("unshare", "tc", "ip") if shutil.which(tool) is None]
    return f"needs {', '.join(missing)} (util-linux, iproute2)" if missing else None


@pytest.mark.skipif(_can_drop_packets() is not None, reason=str(_can_drop_packets()))
def test_a_client_whose_machine_vanishes_is_dropped_within_the_keepalive_time() -> None:
    """Nothing answers and nothing resets: keepalive (idle 1 s, then 2 probes 1 s apart
    in this test; 60 s, 10 s and 6 by default) finds the machine gone."""
    idle, interval, count = 1, 1, 2
    done = subprocess.run(
        [
            "unshare",
            "--net",
            sys.executable,
            str(VANISHED_HOST),
            *map(str, (idle, interval, count)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["line"] == "UPDATE:LEAVE:victim:127.0.0.1:4001\r\n"
    keepalive_time = idle + interval * count
    assert keepalive_time - 0.5 <= result["seconds"] <= keepalive_time + 2.0, result


async def _until(client: ChatClient, done: Callable[[], bool], seen: list[ClientEvent]) -> None:
    """Takes the client's events (keeping them in ``seen``) until ``done()`` holds."""
    async with asyncio.timeout(15):
        while not done():
            seen.append(await client.next_event())


def _nicks(client: ChatClient) -> list[str]:
    """Who the client knows of, itself included, in a fixed order."""
    return sorted(p.nick for p in client.participants)


async def test_server_killed_and_restarted_everyone_comes_back_and_direct_chats_hold(
    programs: list[Program],
) -> None:
    server, port = await start_server(programs)
    people = [await joined(port, nick) for nick in ("alice", "bob", "carol")]
    alice, bob, carol = people
    seen: dict[str, list[ClientEvent]] = {c.nick: [] for c in people}
    everyone = ["alice", "bob", "carol"]
    for c in people:
        await _until(c, lambda c=c: _nicks(c) == everyone, seen[c.nick])
    await alice.send_chat("bob", "before")
    await _until(bob, lambda: any(isinstance(e, ChatReceived) for e in seen["bob"]), seen["bob"])

    server.proc.send_signal(signal.SIGKILL)
    await server.proc.wait()
    for c in people:
        await _until(
            c, lambda c=c: any(isinstance(e, Disconnected) for e in seen[c.nick]), seen[c.nick]
        )
    # No server: the direct chat goes on, both ways.
    await alice.send_chat("bob", "while the server is down")
    await bob.send_chat("alice", "still here")
    texts = {"alice": ["still here"], "bob": ["before", "while the server is down"]}

    def received(nick: str) -> list[str]:
        return [e.text for e in seen[nick] if isinstance(e, ChatReceived)]

    for c in (alice, bob):
        await _until(c, lambda c=c: received(c.nick) == texts[c.nick], seen[c.nick])

    await start_server(programs, port=port)
    for c in people:
        # Each registers again by itself, and its list converges on the server's.
        await _until(
            c,
            lambda c=c: (
                sum(isinstance(e, Registered) for e in seen[c.nick]) == 2 and _nicks(c) == everyone
            ),
            seen[c.nick],
        )

    assert alice.chat_state("bob") is ChatState.OPEN
    assert bob.chat_state("alice") is ChatState.OPEN
    await alice.send_chat("bob", "after")
    texts["bob"].append("after")
    await _until(bob, lambda: received("bob") == texts["bob"], seen["bob"])
    for c in people:
        broken = [e for e in seen[c.nick] if isinstance(e, ChatClosed | ChatFailed)]
        assert not broken, broken
        assert sum(isinstance(e, ChatOpened) for e in seen[c.nick]) == (c is not carol)
        await c.close()


# -- lost datagrams ----------------------------------------------------------------------


class LossyUdp:
    """A client's UDP transport on a lossy network: the datagrams ``lose`` picks vanish."""

    def __init__(self, transport: Any, lose: Callable[[bytes], bool]) -> None:
        self._transport = transport
        self._lose = lose
        self.lost: list[bytes] = []

    def sendto(self, data: bytes, addr: Any = None) -> None:
        if self._lose(data):
            self.lost.append(data)
        else:
            self._transport.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def lossy(client: ChatClient, lose: Callable[[bytes], bool]) -> LossyUdp:
    manager = client._direct
    network = LossyUdp(manager._udp, lose)
    manager._udp = network  # type: ignore[assignment]
    return network


def first(n: int, kind: bytes) -> Callable[[bytes], bool]:
    """Loses the first ``n`` datagrams of ``kind`` (b"INIT" or b"ACK")."""
    left = [n]

    def lose(data: bytes) -> bool:
        if data.startswith(kind) and left[0] > 0:
            left[0] -= 1
            return True
        return False

    return lose


async def test_lost_inits_are_resent_and_the_chat_opens(
    pair: tuple[ChatClient, ChatClient],
) -> None:
    alice, bob = pair
    network = lossy(alice, first(2, b"INIT"))
    await alice.send_chat("bob", "through the loss")
    await wait_event(alice, ChatOpened)
    assert (await wait_event(bob, ChatReceived)).text == "through the loss"
    assert len(network.lost) == 2


async def test_lost_acks_do_not_stop_the_chat_from_opening_once(
    pair: tuple[ChatClient, ChatClient],
) -> None:
    """Every ACK lost: the INIT is resent, bob acks each again, and the TCP connection
    bob made at the first INIT opens the chat, once."""
    alice, bob = pair
    network = lossy(bob, lambda data: data.startswith(b"ACK"))
    await alice.send_chat("bob", "no ack needed")
    assert (await wait_event(bob, ChatReceived)).text == "no ack needed"
    assert (await wait_event(alice, ChatOpened)).peer == "bob"
    await bob.send_chat("alice", "back")
    assert (await wait_event(alice, ChatReceived)).text == "back"
    assert network.lost
    alice.close_chat("bob")
    await wait_event(bob, ChatClosed)
    # Exactly one chat was opened on bob's side, whatever the resends did.
    assert bob.chat_state("alice") is None


async def test_every_datagram_lost_is_reported_in_the_documented_time(
    pair: tuple[ChatClient, ChatClient],
) -> None:
    """docs/PROTOCOL.md: resends after 0.25, 0.5, 1 and 2 s, gives up after 5 s."""
    alice, _bob = pair
    network = lossy(alice, lambda data: True)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await alice.send_chat("bob", "into the void")
    failed = await wait_event(alice, ChatFailed, timeout=10)
    elapsed = loop.time() - started
    assert failed.reason == "bob did not answer"
    assert failed.unsent == ("into the void",)
    assert 4.9 <= elapsed <= 7.0, elapsed
    assert len(network.lost) == 5  # the INIT and its four resends
