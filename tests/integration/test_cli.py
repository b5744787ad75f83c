"""The programs as users and scripts run them: real processes, stdin and stdout."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket

import pytest

from ._programs import TIMEOUT, Program, client, start_server


async def test_json_clients_chat_and_survive_the_server(programs: list[Program]) -> None:
    """Three clients (two in --json), broadcasts, joins, leaves, a direct chat both ways,
    and the direct chat going on after the server stops (SIGTERM: clean exit 0)."""
    server, port = await start_server(programs)
    alice = await client(programs, port, "alice", "--json")
    reg = await alice.expect("registered", nick="alice")
    assert reg["ip"] == "127.0.0.1" and isinstance(reg["udp_port"], int)
    listed = await alice.expect("participants")
    assert [p["nick"] for p in listed["participants"]] == ["alice"]
    bob = await client(programs, port, "bob", "--json")
    await bob.expect("registered")
    joined = await alice.expect("join", nick="bob")
    assert set(joined) == {"event", "nick", "ip", "udp_port"}
    carol = await client(programs, port, "carol", "--plain")
    await alice.expect("join", nick="carol")
    await bob.expect("join", nick="carol")

    await alice.type("hello: everyone 🎉")
    assert (await bob.expect("broadcast"))["text"] == "hello: everyone 🎉"
    assert "<alice> hello: everyone 🎉" in await _plain_line(carol, "<alice>")

    await alice.type("/msg bob psst")
    assert (await alice.expect("chat_opened"))["initiator"] is True
    assert (await bob.expect("chat_opened", peer="alice"))["initiator"] is False
    assert (await bob.expect("chat"))["text"] == "psst"
    await bob.type("/msg alice hi back")
    assert await alice.expect("chat", **{"from": "bob", "text": "hi back"})

    server.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(TIMEOUT):
        assert await server.proc.wait() == 0
    assert (await alice.expect("error"))["message"] == "server is shutting down"
    gone = await alice.expect("disconnected")
    assert 0 <= gone["retry_in"] < 1  # the first attempt: up to 1 s, jittered
    await alice.type("/msg bob without the server")
    assert (await bob.expect("chat"))["text"] == "without the server"
    await bob.type("/msg alice still here")
    assert (await alice.expect("chat"))["text"] == "still here"

    await bob.type("/quit")
    await alice.expect("chat_closed", peer="bob")
    for p in (alice, bob, carol):
        status, _ = await p.finish()
        assert status == 0


async def _plain_line(p: Program, needle: str) -> str:
    while True:
        line = await p.line()
        if needle in line:
            return line


async def test_plain_mode_shows_control_sequences_escaped(programs: list[Program]) -> None:
    """Text from others never reaches the terminal raw: ESC, C1 and bidi overrides are escaped."""
    _, port = await start_server(programs)
    alice = await client(programs, port, "alice", "--plain")
    await _plain_line(alice, "participant")
    bob = await client(programs, port, "bob", "--json")
    await bob.expect("registered")
    await _plain_line(alice, "joined")
    await bob.type("\x1b[31mred\x9b2J \u202etxt")
    line = await _plain_line(alice, "<bob>")
    assert "\x1b" not in line and "\x9b" not in line and "\u202e" not in line
    assert line.rstrip("\n").endswith("<bob> \\e[31mred\\x9b2J \\u202etxt")


async def test_json_mode_carries_control_sequences_as_json_escapes(
    programs: list[Program],
) -> None:
    """In --json the text arrives exact once decoded, and the raw line is plain ASCII."""
    _, port = await start_server(programs)
    alice = await client(programs, port, "alice", "--json")
    await alice.expect("participants")
    bob = await client(programs, port, "bob", "--json")
    await bob.expect("registered")
    await alice.expect("join", nick="bob")
    text = "\x1b[31mred\x9b2J \u202etxt 🎉"
    await bob.type(text)
    raw = await alice.line()
    assert raw.isascii() and "\x1b" not in raw, raw
    assert json.loads(raw) == {"event": "broadcast", "from": "bob", "text": text}


async def test_eof_waits_for_a_pending_direct_message(programs: list[Program]) -> None:
    """End of input acts like /quit, after a /msg waiting for its chat has been sent."""
    _, port = await start_server(programs)
    bob = await client(programs, port, "bob", "--json")
    await bob.expect("registered")
    alice = await client(programs, port, "alice", "--json")
    await alice.expect("registered")
    await alice.type("/msg bob sent before the end")
    status, _ = await alice.finish()
    assert status == 0
    assert (await bob.expect("chat"))["text"] == "sent before the end"


async def test_local_errors_are_reported_not_fatal(programs: list[Program]) -> None:
    _, port = await start_server(programs)
    alice = await client(programs, port, "alice", "--json")
    await alice.expect("registered")
    await alice.type("/bogus", "/msg nobody hi", "/close bob", "/msg", "/who")
    assert (await alice.expect("error"))[
        "message"
    ] == "unknown command /bogus; /help lists the commands"
    assert (await alice.expect("error"))["message"] == "no participant named 'nobody'"
    assert (await alice.expect("error"))["message"] == "no direct chat with bob"
    assert (await alice.expect("error"))["message"] == "usage: /msg NICK TEXT"
    who = await alice.expect("participants")
    assert who["participants"][0]["nick"] == "alice"
    status, _ = await alice.finish()
    assert status == 0


async def test_closing_a_direct_chat_says_who_closed_it(programs: list[Program]) -> None:
    _, port = await start_server(programs)
    bob = await client(programs, port, "bob", "--plain")
    await _plain_line(bob, "participant")
    alice = await client(programs, port, "alice", "--plain")
    await _plain_line(alice, "participant")
    await alice.type("/msg bob hi")
    await _plain_line(alice, "direct chat with bob open")
    await _plain_line(bob, "<alice> hi")
    await alice.type("/close bob")
    assert (
        (await _plain_line(alice, "closed"))
        .rstrip("\n")
        .endswith("*** direct chat with bob closed (you closed it)")
    )
    assert (
        (await _plain_line(bob, "closed"))
        .rstrip("\n")
        .endswith("*** direct chat with alice closed (alice closed it)")
    )
    for p in (alice, bob):
        status, _ = await p.finish()
        assert status == 0


async def test_ignore_refuses_yourself_and_strangers(programs: list[Program]) -> None:
    _, port = await start_server(programs)
    bob = await client(programs, port, "bob", "--json")
    await bob.expect("registered")
    alice = await client(programs, port, "alice", "--json")
    await alice.expect("participants")
    await alice.type("/ignore ALICE", "/ignore zed", "/ignore Bob")
    assert (await alice.expect("error"))["message"] == "you cannot ignore yourself"
    assert (await alice.expect("error"))["message"] == "nobody called 'zed' is here"
    assert (await alice.expect("info"))["message"].startswith("ignoring Bob:")
    status, _ = await alice.finish()
    assert status == 0


async def test_exit_1_when_the_nickname_is_taken(programs: list[Program]) -> None:
    _, port = await start_server(programs)
    first = await client(programs, port, "alice", "--json")
    await first.expect("registered")
    second = await client(programs, port, "Alice", "--json")
    status, err = await second.finish()
    assert status == 1
    assert err.strip() == "p2pchat: nickname 'Alice' is already in use"


async def test_exit_1_when_the_server_is_unreachable(programs: list[Program]) -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    p = await client(programs, port, "alice", "--json")
    status, err = await p.finish()
    assert status == 1
    assert err.startswith(f"p2pchat: cannot connect to 127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--nick", "a:b"], "nickname 'a:b' contains ':'"),
        (
            ["--nick", "eve\u202e"],
            "nickname 'eve\\u202e' contains U+202E: no invisible or formatting characters allowed",
        ),
        (["--nick", "x\u3164"], "nickname 'x\u3164' contains U+3164"),  # drawn as a blank
        (["--server", "localhost:99999"], "port must be a number from 0 to 65535"),
        (["--ip", "not-an-ip"], "is not an IPv4 or IPv6 address"),
        (["--ip", "fe80::1%" + "z" * 16], "zone id (after '%') is too long: 16 characters"),
        (["--plain", "--json"], "not allowed with argument"),
    ],
)
async def test_exit_2_on_usage_errors(
    programs: list[Program], args: list[str], reason: str
) -> None:
    p = await Program.start("p2pchat", *args)
    programs.append(p)
    status, err = await p.finish()
    assert status == 2
    assert reason in err.strip().splitlines()[-1]


async def test_server_usage_error_exits_2(programs: list[Program]) -> None:
    p = await Program.start("p2pchat.server", "--max-message-bytes", "9999999")
    programs.append(p)
    status, err = await p.finish()
    assert status == 2
    assert "max message bytes must be 1 to 1048576" in err


async def test_serve_hosts_and_others_join(programs: list[Program]) -> None:
    """--serve starts a server in the process, joins it and says where others can join."""
    host = await Program.start("p2pchat", "--serve", "127.0.0.1:0", "--nick", "host", "--json")
    programs.append(host)
    address = (await host.expect("hosting"))["address"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", address)
    await host.expect("registered", nick="host")
    port = int(address.rsplit(":", 1)[1])
    guest = await client(programs, port, "guest", "--json")
    await guest.expect("registered")
    await host.expect("join", nick="guest")
    await guest.type("hi host")
    assert (await host.expect("broadcast"))["text"] == "hi host"
    await host.type("/quit")
    async with asyncio.timeout(TIMEOUT):
        assert await host.proc.wait() == 0
    assert (await guest.expect("error"))["message"] == "server is shutting down"


async def test_log_dir_keeps_each_conversation(programs: list[Program], tmp_path) -> None:
    """--log-dir appends the group and each direct chat to their own files."""
    _, port = await start_server(programs)
    bob = await client(programs, port, "bob", "--json")
    await bob.expect("registered")
    alice = await client(programs, port, "alice", "--plain", "--log-dir", str(tmp_path))
    await _plain_line(alice, "participant")
    await bob.type("hello alice", "/msg alice direct words")
    await _plain_line(alice, "[direct] <bob> direct words")
    await alice.type("/msg bob back at you")
    assert (await bob.expect("chat"))["text"] == "back at you"
    status, _ = await alice.finish()
    assert status == 0
    root = tmp_path / f"127.0.0.1%3A{port}"
    group = (root / "group.log").read_text()
    direct = (root / "direct" / "bob.log").read_text()
    assert "<bob> hello alice" in group
    assert "<bob> direct words" in direct and "<alice> back at you" in direct


async def test_exit_1_with_the_reason_when_the_udp_port_is_taken(
    programs: list[Program],
) -> None:
    """The OS's words reach the user on every event loop (uvloop drops errno from its own)."""
    _, port = await start_server(programs)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("0.0.0.0", 0))
        taken = holder.getsockname()[1]
        p = await client(programs, port, "alice", "--json", "--udp-port", str(taken))
        status, err = await p.finish()
    assert status == 1
    assert err.strip() == f"p2pchat: cannot bind UDP port {taken}: Address already in use"


@pytest.mark.parametrize("server", [":7777", "[]:7777", ""])
async def test_exit_2_when_the_server_has_no_host(programs: list[Program], server: str) -> None:
    p = await Program.start("p2pchat", "--server", server, "--json")
    programs.append(p)
    status, err = await p.finish()
    assert status == 2
    assert err.strip().splitlines()[-1] == (
        f"p2pchat: error: --server {server!r}: no host; give HOST:PORT, e.g. 127.0.0.1:7777"
    )


async def test_exit_2_before_connecting_when_the_log_dir_is_unusable(
    programs: list[Program], tmp_path
) -> None:
    """Logs the user asked for are not silently dropped: one line, exit 2, no registration."""
    server, port = await start_server(programs, "--log-level", "info")
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for log_dir, why in [
        ("/proc/nope", "No such file or directory"),
        (str(a_file), "File exists"),
        (str(a_file / "below"), "Not a directory"),
    ]:
        p = await client(programs, port, "alice", "--json", "--log-dir", log_dir)
        status, err = await p.finish()
        assert status == 2
        assert err.strip() == f"p2pchat: cannot write logs in {log_dir}: {why}"
    # The server saw no one join: the first join it logs is the one that follows.
    bob = await client(programs, port, "bob", "--json")
    await bob.expect("registered")
    while " join " not in (line := await server.line("stderr")):
        pass
    assert " join bob " in line
