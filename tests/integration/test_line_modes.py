"""The line modes when the user hosts the chat and leaves it."""

from __future__ import annotations

import asyncio

from ._programs import TIMEOUT, Program, client


async def _host(programs: list[Program], mode: str) -> tuple[Program, int]:
    host = await Program.start("p2pchat", "--serve", "127.0.0.1:0", "--nick", "host", mode)
    programs.append(host)
    if mode == "--json":
        address = (await host.expect("hosting"))["address"]
    else:
        address = (await host.line()).rsplit(" ", 1)[1]
    return host, int(address.rsplit(":", 1)[1])


async def test_json_quit_while_hosting_warns_and_quits(programs: list[Program]) -> None:
    host, port = await _host(programs, "--json")
    await host.expect("registered")
    for nick in ("guest1", "guest2"):
        guest = await client(programs, port, nick, "--json")
        await guest.expect("registered")
        await host.expect("join", nick=nick)
    await host.type("/quit")
    warned = await host.expect("notice")
    assert warned["message"] == "you are hosting: 2 participants will be disconnected"
    async with asyncio.timeout(TIMEOUT):
        assert await host.proc.wait() == 0


async def test_plain_end_of_input_while_hosting_warns_and_quits(programs: list[Program]) -> None:
    host, port = await _host(programs, "--plain")
    guest = await client(programs, port, "guest", "--json")
    await guest.expect("registered")
    assert host.proc.stdin is not None
    while "guest joined" not in await host.line():
        pass
    host.proc.stdin.close()
    async with asyncio.timeout(TIMEOUT):
        while "hosting" not in (line := await host.line()):
            pass
    assert line.endswith("!!! you are hosting: 1 participant will be disconnected\n")
    async with asyncio.timeout(TIMEOUT):
        assert await host.proc.wait() == 0
