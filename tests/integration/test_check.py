"""``p2pchat check``: the checker run against our own server, and its command line."""

from __future__ import annotations

import asyncio
import itertools
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from p2pchat.check._core import Verdict
from p2pchat.check.cli import run_client_checks, run_server_checks
from p2pchat.check.client import ClientSession, CommandDriver
from p2pchat.check.client import checks as client_checks
from p2pchat.check.server import checks as server_checks
from p2pchat.events import BroadcastReceived, PeerJoined, PeerLeft
from p2pchat.server import ChatServer

from ._programs import PYTHON
from ._support import collect, joined


async def test_our_server_passes_every_server_check(start_server) -> None:
    # A short registration timeout, so that the slow check of it is quick too.
    server = await start_server(register_timeout=1.0)
    chosen = server_checks.select([], slow=True)
    results = await run_server_checks("127.0.0.1", server.port, chosen, register_timeout=1.0)
    assert results is not None
    bad = {r.check.id: r.notes for r in results if r.verdict is not Verdict.PASS}
    assert not bad, bad
    assert len(results) == len(server_checks.checks) >= 30


async def checker(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "p2pchat", "check", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_list_shows_every_check_with_its_decision() -> None:
    status, out, _ = await checker("server", "--list")
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == len(server_checks.checks)
    assert all("(decision " in line for line in lines)
    assert lines[0].startswith("register-list ")


async def test_only_selects_and_junit_records(server: ChatServer, tmp_path: Path) -> None:
    junit = tmp_path / "check.xml"
    status, out, _ = await checker(
        "server",
        f"127.0.0.1:{server.port}",
        "--only",
        "broadcast",
        "leave-reset",
        "--junit",
        str(junit),
    )
    assert status == 0, out
    ran = [line.split()[1] for line in out.splitlines() if line.startswith("PASS")]
    assert ran and all(i.startswith("broadcast-") or i == "leave-reset" for i in ran)
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "0"
    assert [case.get("name") for case in suite] == ran


async def test_usage_errors_and_an_unreachable_server() -> None:
    status, _, err = await checker("server", "127.0.0.1:1", "--only", "no-such-check")
    assert status == 2 and "no check named no-such-check" in err
    status, _, err = await checker("server", "127.0.0.1:1")
    assert status == 1 and err.startswith("p2pchat check: cannot connect to 127.0.0.1:1")


async def test_our_client_passes_every_client_check() -> None:
    command = f"{shlex.quote(PYTHON)} -m p2pchat --server {{server}} --nick {{nick}} --json"
    session = ClientSession(CommandDriver(command), "alice")
    results = await run_client_checks(session, client_checks.checks)
    assert results is not None
    bad = {r.check.id: r.notes for r in results if r.verdict is not Verdict.PASS}
    assert not bad, bad
    assert len(results) == len(client_checks.checks) >= 15


async def test_a_client_command_that_cannot_start_is_reported() -> None:
    status, _, err = await checker("client", "--cmd", "/nonexistent/client --json")
    assert status == 1 and err.startswith("p2pchat check: cannot start the client:")


async def test_a_port_that_is_no_chat_server_fails_cleanly() -> None:
    """A peer that accepts and says nothing, or sends garbage: every check fails with a
    sentence, none hangs, and the run ends with its summary."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(bytes(range(256)) * 64)
        await reader.read()
        writer.close()

    for handler in (silent, garbage):
        peer = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = peer.sockets[0].getsockname()[1]
        chosen = server_checks.select(["register-list", "broadcast-order", "error-line-too-long"])
        results = await run_server_checks("127.0.0.1", port, chosen, patience=0.5)
        peer.close()
        assert results is not None and len(results) == 3
        for r in results:
            assert r.verdict is Verdict.FAIL, r
            assert "hung" not in r.notes[0].got and "checker" not in r.notes[0].got, r


async def test_checks_share_a_server_with_someone_who_talks(server: ChatServer) -> None:
    """Another participant broadcasting all the while changes no verdict."""
    chatter = await joined(server.port, "chatter")

    async def talk() -> None:
        for i in itertools.count():
            await chatter.broadcast(f"chatting {i}")
            await asyncio.sleep(0.02)

    talking = asyncio.create_task(talk())
    try:
        chosen = server_checks.select(["broadcast", "limit-flood", "leave-close"])
        results = await run_server_checks("127.0.0.1", server.port, chosen, force=True)
    finally:
        talking.cancel()
        await chatter.close()
    assert results is not None
    bad = {r.check.id: r.notes for r in results if r.verdict is not Verdict.PASS}
    assert not bad, bad


async def test_bad_options_are_usage_errors() -> None:
    for args in (
        ["client", "--cmd", "client 'unbalanced"],
        ["client", "--patience", "0"],
        ["server", "127.0.0.1:1", "--register-timeout", "-1"],
    ):
        status, _, err = await checker(*args)
        assert status == 2 and "p2pchat check: error:" in err, err


async def test_a_server_in_use_is_left_alone_unless_forced(server: ChatServer) -> None:
    """Someone is chatting: the checker looks at the LIST with one probe participant, says so
    in one line and exits 1, and the person in the chat sees that probe come and go, nothing
    else. With --force the checks run."""
    dana = await joined(server.port, "dana")
    try:
        status, out, err = await checker("server", f"127.0.0.1:{server.port}")
        assert status == 1 and out == "", out
        assert err.count("\n") == 1, err
        assert err.startswith(
            f"p2pchat check: 1 other participant is in the chat on 127.0.0.1:{server.port} (dana);"
        ), err
        assert err.endswith("add --force to run them anyway.\n"), err
        # The server sends in one order: whatever the checker caused comes before this join.
        marker = await joined(server.port, "marker")
        seen = await collect(dana, PeerJoined)
        while not (isinstance(seen[-1], PeerJoined) and seen[-1].participant.nick == "marker"):
            seen += await collect(dana, PeerJoined)
        await marker.close()
        traffic = [e for e in seen if isinstance(e, PeerJoined | PeerLeft | BroadcastReceived)]
        assert [type(e) for e in traffic] == [PeerJoined, PeerLeft, PeerJoined], traffic
        assert traffic[0].participant.nick.startswith("probe")  # type: ignore[union-attr]

        status, out, err = await checker(
            "server", f"127.0.0.1:{server.port}", "--only", "broadcast-order", "--force"
        )
        assert status == 0 and re.search(r"^PASS +broadcast-order ", out, re.M), (out, err)
        # The checks' own participants broadcast, then leave.
        seen = await collect(dana, PeerLeft)
        while seen[-1].participant.nick == "marker":  # type: ignore[union-attr]
            seen += await collect(dana, PeerLeft)
        assert any(isinstance(e, BroadcastReceived) for e in seen)
    finally:
        await dana.close()
