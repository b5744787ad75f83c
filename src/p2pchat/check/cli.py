"""``p2pchat check server HOST:PORT`` and ``p2pchat check client``: arguments and the run."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import _net
from ..server import DEFAULT_PORT
from ..textsafe import printable
from ._core import C, Check, Registry, Result, Verdict, run_check
from .client import ClientSession, CommandDriver, PersonDriver
from .client import checks as client_checks
from .report import line, list_checks, summary, write_junit
from .server import ServerContext, others_in_chat
from .server import checks as server_checks

PERSON_PATIENCE = 18  # a person gets 3 minutes where a program gets 10 s


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="p2pchat check",
        description="Conformance checks for implementations of the p2pchat protocol. "
        "Each check has an id, tests one decision of the protocol, and ends as pass, "
        "non-strict (an accepted variant) or fail. Exit status 0 when nothing failed.",
    )
    kinds = p.add_subparsers(dest="kind", required=True, metavar="{server,client}")
    server = kinds.add_parser(
        "server",
        help="check a running server, from outside",
        description="Checks a running server over its own connections. The checks post "
        "about a thousand broadcasts and dozens of joins and leaves, so a server that "
        "others are using is left alone: one probe participant reads the LIST first, and "
        "if anyone else is in the chat the checker says so and exits 1 (unless --force).",
    )
    server.add_argument("address", nargs="?", metavar="HOST:PORT", help="the server to check")
    server.add_argument(
        "--register-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="the server's registration timeout, for the slow check of it (default: 30)",
    )
    server.add_argument(
        "--force",
        action="store_true",
        help="run the checks even when other participants are in the chat: they see every "
        "test broadcast, join and leave",
    )
    client = kinds.add_parser(
        "client",
        help="check a client: the checker plays the server and a second participant",
        description="The checker plays the server on 127.0.0.1 and a participant named carol. "
        "Follow the instructions it prints with your client and answer its questions; or give "
        "--cmd to have it run a client that speaks the --json line interface unattended.",
    )
    client.add_argument(
        "--cmd",
        metavar="COMMAND",
        help="a client to run, with {server}, {host}, {port} and {nick} filled in, e.g. "
        "'p2pchat --server {server} --nick {nick} --json'",
    )
    client.add_argument(
        "--nick", default="alice", help="the nickname the client registers (default: alice)"
    )
    client.add_argument(
        "--port",
        type=int,
        default=0,
        help="the port the checker listens on (default: any free port)",
    )
    for sub in (server, client):
        sub.add_argument("--list", action="store_true", help="list the checks and exit")
        sub.add_argument(
            "--slow", action="store_true", help="also run the slow checks (marked 'slow' in --list)"
        )
        sub.add_argument(
            "--patience",
            type=float,
            default=5.0,
            metavar="SECONDS",
            help="how long to wait for an answer before calling it missing (default: 5)",
        )
        sub.add_argument(
            "--only",
            nargs="+",
            metavar="ID",
            default=[],
            help="run these checks (an id, or a prefix such as 'broadcast')",
        )
        sub.add_argument(
            "--junit", metavar="FILE", type=Path, help="also write the results as JUnit XML"
        )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.kind == "client":
        return _check_client(parser, args)
    return _check_server(parser, args)


def _chosen(
    parser: argparse.ArgumentParser, args: argparse.Namespace, registry: Registry[C]
) -> list[Check[C]] | None:
    """The checks to run, after the arguments both kinds share; None when --list printed them."""
    if args.list:
        list_checks(registry.checks, sys.stdout)
        return None
    try:
        chosen = registry.select(args.only, args.slow)
    except KeyError as unknown:
        parser.error(f"no check named {unknown.args[0]} (see --list)")
    if args.patience <= 0:
        parser.error("--patience must be more than 0 seconds")
    return chosen


def _check_server(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    chosen = _chosen(parser, args, server_checks)
    if chosen is None:
        return 0
    if args.register_timeout <= 0:
        parser.error("--register-timeout must be more than 0 seconds")
    if args.address is None:
        parser.error("the server's HOST:PORT is required")
    try:
        host, port = _net.parse_host_port(args.address, DEFAULT_PORT)
    except ValueError as error:
        parser.error(str(error))
    results = _net.run(
        lambda: run_server_checks(
            host or "127.0.0.1", port, chosen, args.register_timeout, args.patience, args.force
        )
    )
    return finish(results, args.junit, "p2pchat check server")


def _check_client(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    chosen = _chosen(parser, args, client_checks)
    if chosen is None:
        return 0
    if args.cmd is not None:
        try:
            if not shlex.split(args.cmd):
                parser.error("--cmd is empty")
        except ValueError as error:
            parser.error(f"--cmd: {error}")
    driver = CommandDriver(args.cmd, args.patience) if args.cmd else PersonDriver()
    session = ClientSession(driver, args.nick, args.port, args.patience)
    results = _net.run(lambda: run_client_checks(session, chosen))
    return finish(results, args.junit, "p2pchat check client")


def finish(results: list[Result[C]] | None, junit: Path | None, suite: str) -> int:
    if results is None:
        return 1
    print(summary(results))
    if junit is not None:
        write_junit(junit, suite, results)
    return 1 if any(r.verdict is Verdict.FAIL for r in results) else 0


async def run_client_checks(
    session: ClientSession, chosen: list[Check[ClientSession]]
) -> list[Result[ClientSession]] | None:
    try:
        await session.start()
    except OSError as error:
        await session.close()
        print(
            f"p2pchat check: cannot listen on 127.0.0.1:{session.requested_port}: {error}",
            file=sys.stderr,
        )
        return None
    print(
        f"p2pchat check client: the checker is the server on 127.0.0.1:{session.server_port}, "
        "and carol is another participant\n",
        flush=True,
    )
    try:
        await session.driver.start(f"127.0.0.1:{session.server_port}", session.nick)
    except OSError as error:
        await session.close()
        print(f"p2pchat check: cannot start the client: {error}", file=sys.stderr)
        return None
    width = max(len(c.id) for c in chosen)
    results = []
    try:
        for check in chosen:
            if isinstance(session.driver, PersonDriver):  # people read, type and answer
                check = dataclasses.replace(check, timeout=check.timeout * PERSON_PATIENCE)
            else:  # a check waits for a few answers in turn
                check = dataclasses.replace(check, timeout=max(check.timeout, 5 * session.patience))
            result = await run_check(check, session.use)
            results.append(result)
            print(line(result, width), flush=True)
    finally:
        await session.close()
    print()
    return results


async def run_server_checks(
    host: str,
    port: int,
    chosen: list[Check[ServerContext]],
    register_timeout: float = 30.0,
    patience: float = 5.0,
    force: bool = False,
) -> list[Result[ServerContext]] | None:
    """Runs the checks, unless people other than the checker are in the chat (or ``force``);
    None, after a line on stderr, when nothing was checked."""
    try:
        async with asyncio.timeout(5):
            _, writer = await asyncio.open_connection(host, port)
        writer.close()
    except (OSError, TimeoutError) as error:
        print(
            f"p2pchat check: cannot connect to {host}:{port}: {error or 'timed out'}",
            file=sys.stderr,
        )
        return None
    address = _net.format_host_port(host, port)
    if not force:
        others = await others_in_chat(host, port, patience)
        if others:
            print(f"p2pchat check: {_in_use(others, address)}", file=sys.stderr)
            return None
    print(f"p2pchat check server {address}\n", flush=True)
    width = max(len(c.id) for c in chosen)
    results = []
    for check in chosen:
        if check.timeout == 0:  # as long as the server's registration timeout allows
            check = dataclasses.replace(check, timeout=register_timeout + 10)
        result = await run_check(
            check, lambda record: ServerContext(host, port, record, register_timeout, patience)
        )
        results.append(result)
        print(line(result, width), flush=True)
    print()
    return results


def _in_use(others: list[str], address: str) -> str:
    """One line: who would see the checks' traffic, and how to go on anyway."""
    names = ", ".join(printable(nick) for nick in others[:5])
    if len(others) > 5:
        names += f" and {len(others) - 5} more"
    who = "1 other participant is" if len(others) == 1 else f"{len(others)} other participants are"
    return (
        f"{who} in the chat on {address} ({names}); the checks would send them about a "
        "thousand test broadcasts and dozens of joins and leaves. Check a server of your own, "
        "or add --force to run them anyway."
    )
