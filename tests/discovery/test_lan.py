"""Announcing and discovering chats between network namespaces of the tests' own.

Each test's namespaces are linked by veth pairs on subnets of their own; the
times measured (found after the host started, withdrawn after a clean shutdown,
a killed host shown unreachable) are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import termios
import time
from typing import Any

from .conftest import HERE, PYTHON, Lan, _ip, server_port

FOUND_WITHIN = 2.0
WITHDRAWN_WITHIN = 2.0
UNREACHABLE_WITHIN = 5.0


def named(name: str) -> Any:
    return lambda chats: any(c["name"] == name for c in chats)


def two_sides(lan: Lan, subnet: int = 61) -> tuple[str, str]:
    host, other = lan.namespace(), lan.namespace()
    lan.link(host, f"10.{subnet}.0.1", other, f"10.{subnet}.0.2")
    return host, other


def test_a_chat_is_found_and_joined_with_no_address_typed(lan: Lan) -> None:
    host, other = two_sides(lan)
    watcher = lan.watch(other)
    chat = lan.start(host, "p2pchat", "--serve", "--name", "Room 101", "--nick", "host", "--json")
    _, seen = watcher.event("added")
    found_after = seen["t"] - chat.started
    print(f"\nfound {found_after:.2f} s after the host started")
    assert found_after <= FOUND_WITHIN
    assert seen["addresses"] == ["10.61.0.1"]  # never 127.0.0.1
    # Announced as soon as it listens: before its host has joined it.
    assert seen["txt"] == {"v": "1", "name": "Room 101", "n": "0"}
    port = seen["port"]

    _, chats = lan.discover_until(other, lambda cs: [c["participants"] for c in cs] == [1])
    assert chats == [
        {"name": "Room 101", "address": f"10.61.0.1:{port}", "participants": 1, "reachable": True}
    ]
    guest = lan.start(other, "p2pchat", "--nick", "guest", "--json")
    guest.wait_line(f"joining Room 101 at 10.61.0.1:{port} (found on the LAN)")
    _, registered = guest.event("registered")
    assert registered["nick"] == "guest"
    # The count follows the chat, a few seconds late at most.
    lan.discover_until(other, lambda cs: [c["participants"] for c in cs] == [2], timeout=10)


def test_several_chats_are_listed_and_the_line_modes_ask_to_pick_one(lan: Lan) -> None:
    host, other = two_sides(lan, 62)
    for name in ("Room 101", "Room 102"):
        lan.start(host, "p2pchat.server", "--port", "0", "--name", name)
    _, chats = lan.discover_until(other, lambda cs: len(cs) == 2)
    assert [c["name"] for c in chats] == ["Room 101", "Room 102"]
    assert all(c["reachable"] and c["address"].startswith("10.62.0.1:") for c in chats)
    done = lan.run(other, "p2pchat", "--nick", "guest", "--plain")
    assert done.returncode == 1
    assert "several chats found: pick one with --server HOST:PORT" in done.stderr
    assert "Room 101" in done.stderr and "Room 102" in done.stderr


def test_a_clean_shutdown_withdraws_the_chat(lan: Lan) -> None:
    host, other = two_sides(lan, 63)
    watcher = lan.watch(other)
    server = lan.start(host, "p2pchat.server", "--port", "0", "--name", "Leaving")
    watcher.event("added")
    stopped = time.monotonic()
    server.signal(signal.SIGTERM)
    _, gone = watcher.event("removed")
    withdrawn_after = gone["t"] - stopped
    print(f"\nwithdrawn {withdrawn_after:.3f} s after a clean shutdown began")
    assert withdrawn_after <= WITHDRAWN_WITHIN
    assert server.wait() == 0
    assert lan.discover(other) == []


def test_a_killed_host_is_not_offered(lan: Lan) -> None:
    host, other = two_sides(lan, 64)
    watcher = lan.watch(other)
    server = lan.start(host, "p2pchat.server", "--port", "0", "--name", "Doomed")
    port = server_port(server)
    watcher.event("added")
    # A record that outlives the chat, as one cached on the LAN does.
    stale = lan.start(host, str(HERE / "_announce.py"), "Stale", str(port), "10.64.0.1")
    stale.wait_line("announced", "stdout")
    lan.discover_until(other, lambda cs: len(cs) == 2 and all(c["reachable"] for c in cs))
    killed = time.monotonic()
    server.signal(signal.SIGKILL)
    at, chats = lan.discover_until(
        other, lambda cs: [(c["name"], c["reachable"]) for c in cs] == [("Stale", False)]
    )
    print(f"\nkilled host shown unreachable {at - killed:.2f} s after the kill")
    assert at - killed <= UNREACHABLE_WITHIN
    assert chats[0]["address"] == f"10.64.0.1:{port}"
    # No goodbye came: a browser that saw the chat still has it, and does not say it left.
    seen = []
    while not watcher.lines["stdout"].empty():
        seen.append(json.loads(watcher.lines["stdout"].get()[1])["event"])
    assert "removed" not in seen
    done = lan.run(other, "p2pchat", "--nick", "guest", "--plain")
    assert done.returncode == 1
    assert "joining" not in done.stderr
    assert "no chat found on the LAN; start one with --serve" in done.stderr


def test_no_announce_keeps_the_chat_off_the_lan(lan: Lan) -> None:
    host, other = two_sides(lan, 65)
    watcher = lan.watch(other)
    quiet = lan.start(host, "p2pchat.server", "--port", "0", "--name", "Quiet", "--no-announce")
    server_port(quiet)
    hosted = lan.start(host, "p2pchat", "--serve", "--name", "Quiet too", "--no-announce", "--json")
    hosted.event("registered")
    # One announced after them: once it is seen, the others would have been too.
    lan.start(host, "p2pchat.server", "--port", "0", "--name", "Loud")
    _, seen = watcher.event("added")
    assert seen["txt"]["name"] == "Loud"
    _, chats = lan.discover_until(other, named("Loud"))
    assert [c["name"] for c in chats] == ["Loud"]


def test_each_interface_is_announced_with_its_own_address(lan: Lan) -> None:
    host, left, right = lan.namespace(), lan.namespace(), lan.namespace()
    end = lan.link(host, "10.66.0.1", left, "10.66.0.2")
    lan.link(host, "10.67.0.1", right, "10.67.0.2")
    # A link-local address others may not reach: never advertised.
    _ip("-n", host, "addr", "add", "169.254.7.1/16", "dev", end)
    watchers = [lan.watch(left), lan.watch(right)]
    server = lan.start(host, "p2pchat.server", "--port", "0", "--name", "Hub")
    port = server_port(server)
    for watcher in watchers:
        _, seen = watcher.event("added")
        assert sorted(seen["addresses"]) == ["10.66.0.1", "10.67.0.1"]
    for side, subnet in ((left, 66), (right, 67)):
        _, chats = lan.discover_until(side, named("Hub"))
        assert chats == [
            {
                "name": "Hub",
                "address": f"10.{subnet}.0.1:{port}",
                "participants": 0,
                "reachable": True,
            }
        ]


def test_discover_without_json_lists_name_address_and_participants(lan: Lan) -> None:
    host, other = two_sides(lan, 68)
    server = lan.start(host, "p2pchat.server", "--port", "0", "--name", "Room 101")
    port = server_port(server)
    lan.discover_until(other, named("Room 101"))
    done = lan.run(other, "p2pchat", "--discover")
    assert done.returncode == 0
    assert done.stdout == f"Room 101  10.68.0.1:{port}  0 participants\n"


def test_with_no_network_nothing_is_found_and_the_default_stays(lan: Lan) -> None:
    offline = lan.namespace()  # loopback alone
    done = lan.run(offline, "p2pchat", "--discover")
    assert (done.returncode, done.stdout) == (0, "no chat found on the LAN\n"), done.stderr
    server = lan.start(offline, "p2pchat.server", "--port", "0", "--log-level", "info")
    server.wait_line("not announced on the LAN: no address others can reach")
    done = lan.run(offline, "p2pchat", "--nick", "guest", "--plain")
    assert done.returncode == 1
    assert "cannot connect to 127.0.0.1:7777" in done.stderr
    assert "no chat found on the LAN; start one with --serve" in done.stderr


def test_the_full_screen_client_joins_the_chat_found_with_no_address_typed(lan: Lan) -> None:
    """The issue's whole story: ``p2pchat --serve --name "Room 101"`` on one side,
    ``p2pchat`` on a terminal on the other."""
    host, other = two_sides(lan, 69)
    chat = lan.start(host, "p2pchat", "--serve", "--name", "Room 101", "--nick", "host", "--json")
    chat.event("registered")
    lan.discover_until(other, named("Room 101"))
    master, slave = pty.openpty()
    termios.tcsetwinsize(slave, (30, 120))
    guest = subprocess.Popen(
        ["ip", "netns", "exec", other, PYTHON, "-m", "p2pchat", "--nick", "guest"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=lan.env,
        start_new_session=True,
    )
    os.close(slave)
    try:
        _, joined = chat.event("join")
        assert joined["nick"] == "guest"
        screen = b""
        deadline = time.monotonic() + 10
        while b"@ Room 101 at 10.69.0.1:7777" not in screen:  # the status line says which
            left = deadline - time.monotonic()
            assert left > 0, screen[-2000:]
            if select.select([master], [], [], left)[0]:
                screen += os.read(master, 65536)
    finally:
        guest.kill()
        guest.wait(5)
        os.close(master)
