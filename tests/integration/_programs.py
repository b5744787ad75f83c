"""Our programs run as users and scripts run them: real processes, stdin, stdout and stderr."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from typing import Any

PYTHON = sys.executable
TIMEOUT = 10.0


class Program:
    """A running p2pchat process with line-wise access to its output."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *args: str) -> Program:
        proc = await asyncio.create_subprocess_exec(
            PYTHON,
            "-m",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def type(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        for line in lines:
            self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def line(self, stream: str = "stdout") -> str:
        reader = getattr(self.proc, stream)
        async with asyncio.timeout(TIMEOUT):
            raw = await reader.readline()
        assert raw, f"{stream} ended"
        return raw.decode()

    async def expect(self, event: str, **keys: Any) -> dict[str, Any]:
        """The next JSON event named ``event`` with these keys; earlier others are passed over."""
        while True:
            obj = json.loads(await self.line())
            if obj["event"] == event and all(obj.get(k) == v for k, v in keys.items()):
                return obj

    async def finish(self) -> tuple[int, str]:
        """Closes stdin (end of input), waits for the exit, returns (status, stderr)."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        async with asyncio.timeout(TIMEOUT):
            _, err = await self.proc.communicate()
        return self.proc.returncode or 0, err.decode()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


async def start_server(programs: list[Program], *extra: str, port: int = 0) -> tuple[Program, int]:
    """The server program on 127.0.0.1 (any free port unless given) and its port."""
    server = await Program.start(
        "p2pchat.server", "--host", "127.0.0.1", "--port", str(port), *extra
    )
    programs.append(server)
    while True:
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", await server.line("stderr"))
        if match:
            return server, int(match.group(1))


async def client(programs: list[Program], port: int, nick: str, *extra: str) -> Program:
    p = await Program.start("p2pchat", "--server", f"127.0.0.1:{port}", "--nick", nick, *extra)
    programs.append(p)
    return p
