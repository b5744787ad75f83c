"""The checker against implementations it was not written with: tests/fixtures/.

naive_server.py and naive_client.py implement the protocol in another style
(threads, blocking sockets, standard library only). Run as they are, they
pass every check. Each ``--break RULE`` breaks one rule, and the check meant
for that rule must fail; accepted variants must come out non-strict, never
failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from p2pchat.check._core import Result, Verdict
from p2pchat.check.cli import run_client_checks, run_server_checks
from p2pchat.check.client import ClientSession, CommandDriver
from p2pchat.check.client import checks as client_checks
from p2pchat.check.server import checks as server_checks

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REGISTER_TIMEOUT = 1.0  # the naive server's, so that the slow check is quick
PATIENCE = 1.0  # loopback answers in well under a second; a missing one fails sooner

# Each server check, and the break it is meant to catch.
SERVER_BREAKS = {
    "register-list": "no-self-in-list",
    "register-list-order": "list-newest-first",
    "register-join-update": "no-join-update",
    "register-list-request": "no-list-request",
    "register-nick-taken": "no-dup-error",
    "register-nick-case": "case-sensitive",
    "register-nick-invalid": "any-nick",
    "register-bad-ip": "any-ip",
    "register-bad-port": "any-port",
    "register-twice": "re-register",
    "register-ipv6": "ipv6-unbracketed",
    "register-unspecified-ip": "literal-unspecified",
    "leave-close": "no-leave",
    "leave-reset": "no-leave-on-reset",
    "broadcast-forward": "drop-last",
    "broadcast-no-echo": "echo",
    "broadcast-length-bytes": "char-length",
    "broadcast-payload-intact": "split-crlf",
    "broadcast-char-count": "no-char-fallback",
    "broadcast-any-case": "upper-only",
    "broadcast-bare-lf": "crlf-only",
    "broadcast-before-register": "no-register-check",
    "broadcast-spoofed": "accept-spoof",
    "broadcast-order": "unordered",
    "error-unknown-command": "no-error",
    "error-invalid-utf8": "no-utf8-check",
    "error-message-too-long": "no-size-limit",
    "error-length-not-a-number": "no-close-on-fatal",
    "error-length-absurd": "no-close-on-fatal",
    "error-no-line-end": "no-close-on-fatal",
    "error-line-too-long": "no-close-on-fatal",
    "limit-register-timeout": "no-register-timeout",
    "limit-slow-consumer": "no-sendq-limit",
    "limit-flood": "flood-discards",
}
# Variants a lenient peer copes with: graded non-strict, never failed.
SERVER_VARIANTS = ["list-count", "lf-only", "join-to-self", "no-flood-control"]

CLIENT_BREAKS = {
    "client-register": "register-no-ip",
    "client-udp-bound": "wrong-udp-port",
    "client-list-shown": "ignore-list",
    "client-join-leave-shown": "ignore-updates",
    "client-broadcast-shown": "split-crlf",
    "client-ignores-self": "show-self",
    "client-sends-broadcast": "char-length",
    "client-init": "init-from-other-port",
    "client-init-resent": "no-retransmit",
    "client-direct-connect": "wrong-tcp-port",
    "client-chat-sends": "char-length",
    "client-chat-shown": "split-crlf",
    "client-chat-closed": "silent-close",
    "client-accepts-init": "no-ack",
    "client-ignores-stranger": "accept-stranger",
}
CLIENT_VARIANTS = ["register-lf"]


def test_every_check_has_a_break_meant_for_it() -> None:
    assert set(SERVER_BREAKS) == {c.id for c in server_checks.checks}
    assert set(CLIENT_BREAKS) == {c.id for c in client_checks.checks}


@contextlib.asynccontextmanager
async def naive_server(*breaks: str) -> AsyncIterator[int]:
    args = [f"--break={b}" for b in breaks]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(FIXTURES / "naive_server.py"), "--port", "0",
        "--register-timeout", str(REGISTER_TIMEOUT), *args,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(10):
            line = (await proc.stdout.readline()).decode()
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert match, line
        yield int(match.group(1))
    finally:
        proc.kill()
        await proc.wait()


async def check_server(breaks: tuple[str, ...], only: list[str]) -> dict[str, Result]:
    async with naive_server(*breaks) as port:
        chosen = server_checks.select(only, slow=True)
        results = await run_server_checks("127.0.0.1", port, chosen, REGISTER_TIMEOUT, PATIENCE)
    assert results is not None
    return {r.check.id: r for r in results}


async def check_client(breaks: tuple[str, ...], only: list[str]) -> dict[str, Result]:
    command = " ".join(
        [shlex.quote(sys.executable), shlex.quote(str(FIXTURES / "naive_client.py"))]
        + ["--server {server} --nick {nick}"]
        + [f"--break={b}" for b in breaks]
    )
    session = ClientSession(CommandDriver(command, PATIENCE), "alice", patience=PATIENCE)
    results = await run_client_checks(session, client_checks.select(only))
    assert results is not None
    return {r.check.id: r for r in results}


def assert_caught(result: Result) -> None:
    """A FAIL that says what was expected and what came, not a hang or a checker error."""
    assert result.verdict is Verdict.FAIL, result
    note = result.notes[0]
    assert note.expected and note.got, result
    assert "something hung" not in note.got and "error in the checker" not in note.got, result


def verdicts(results: dict[str, Result]) -> dict[str, Verdict]:
    return {i: r.verdict for i, r in results.items()}


async def test_the_naive_server_passes_every_check() -> None:
    results = await check_server((), [])
    assert all(v is Verdict.PASS for v in verdicts(results).values()), verdicts(results)
    assert len(results) == len(server_checks.checks)


async def test_the_naive_client_passes_every_check() -> None:
    results = await check_client((), [])
    assert all(v is Verdict.PASS for v in verdicts(results).values()), verdicts(results)


@pytest.mark.parametrize(("check", "rule"), sorted(SERVER_BREAKS.items()))
async def test_each_server_check_catches_its_break(check: str, rule: str) -> None:
    result = (await check_server((rule,), [check]))[check]
    assert_caught(result)


@pytest.mark.parametrize(("check", "rule"), sorted(CLIENT_BREAKS.items()))
async def test_each_client_check_catches_its_break(check: str, rule: str) -> None:
    result = (await check_client((rule,), [check]))[check]
    assert_caught(result)


@pytest.mark.parametrize("rule", SERVER_VARIANTS)
async def test_server_variants_are_non_strict_not_failures(rule: str) -> None:
    found = verdicts(await check_server((rule,), []))
    assert Verdict.FAIL not in found.values(), found
    assert Verdict.NONSTRICT in found.values(), found


@pytest.mark.parametrize("rule", CLIENT_VARIANTS)
async def test_client_variants_are_non_strict_not_failures(rule: str) -> None:
    found = verdicts(await check_client((rule,), []))
    assert Verdict.FAIL not in found.values(), found
    assert Verdict.NONSTRICT in found.values(), found
