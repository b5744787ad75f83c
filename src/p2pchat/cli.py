"""The ``p2pchat`` command: arguments, hosting with ``--serve``, and picking the UI."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import _net, linemode
from .chatlog import ChatLog, check_directory
from .client import ChatClient, ConnectError, RegistrationError
from .frontend import Output, Tee
from .present import Presenter
from .protocol import LocalProtocolError, canonical_ip, check_nick
from .server import DEFAULT_PORT, ChatServer, ServerConfig

if TYPE_CHECKING:
    from .discovery import Announcer, Chat
    from .web import WebHost


def _mdns_off() -> bool:
    from .discovery import mdns_off

    return mdns_off()


def _default_nick() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        return "guest"
    try:
        return check_nick(name)
    except LocalProtocolError:
        return "guest"


def join_command(
    address: str,
    *,
    program: str | None = None,
    search_path: str | None = None,
    interpreter: str | None = None,
) -> str:
    """The command someone types to join a chat at ``address``, for showing when hosting.

    ``p2pchat`` when the ``p2pchat`` found on PATH is this program; otherwise the path
    that was run (``.venv/bin/p2pchat``), or ``PYTHON -m p2pchat`` for ``python -m``.
    ``program``, ``search_path`` and ``interpreter`` default to this process's
    ``sys.argv[0]``, ``$PATH`` and ``sys.executable``.
    """
    program = sys.argv[0] if program is None else program
    tail = f"--server {shlex.quote(address)}"
    if Path(program).name == "__main__.py":
        return f"{shlex.quote(interpreter or sys.executable)} -m p2pchat {tail}"
    on_path = shutil.which("p2pchat", path=search_path)
    with contextlib.suppress(OSError):
        if on_path is not None and os.path.samefile(on_path, program):
            return f"p2pchat {tail}"
    return f"{shlex.quote(program)} {tail}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="p2pchat",
        description="Group chat with direct peer-to-peer conversations. "
        "Type a line to broadcast it; /help lists the commands.",
        epilog="p2pchat check {server,client} ... runs conformance checks of any "
        "implementation of the protocol (p2pchat check --help).",
    )
    p.add_argument(
        "--nick", metavar="NICK", default=None, help="your nickname (default: your login name)"
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=None,
        help="the server to join (default: the one chat announced on the LAN, else "
        f"127.0.0.1:{DEFAULT_PORT})",
    )
    where.add_argument(
        "--serve",
        metavar="HOST:PORT",
        nargs="?",
        const=f"0.0.0.0:{DEFAULT_PORT}",
        default=None,
        help=f"host a chat in this process and join it (default address 0.0.0.0:{DEFAULT_PORT})",
    )
    where.add_argument(
        "--discover",
        action="store_true",
        help="list the chats announced on the LAN (name, address, participants) and exit; "
        "with --json one JSON object per chat",
    )
    p.add_argument(
        "--name",
        metavar="TEXT",
        default=None,
        help="with --serve: the chat's name announced on the LAN (default: this host's name)",
    )
    p.add_argument(
        "--no-announce",
        action="store_true",
        help="with --serve: do not announce the chat on the LAN",
    )
    p.add_argument(
        "--web",
        metavar="HOST:PORT",
        default=None,
        help="with --serve: also serve the web client at http://HOST:PORT/",
    )
    p.add_argument(
        "--web-max-sessions",
        metavar="N",
        type=int,
        default=200,
        help="with --web: browser sessions at most (default: 200)",
    )
    p.add_argument(
        "--ip",
        default=None,
        help="the IP address to register (default: the local address of the connection)",
    )
    p.add_argument(
        "--udp-port",
        metavar="PORT",
        type=int,
        default=0,
        help="UDP port for direct-chat requests (default: 0, any free port)",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--plain",
        action="store_true",
        help="line mode for people and scripts (the default when stdin or stdout is not a terminal; on a terminal the full-screen client opens)",
    )
    mode.add_argument("--json", action="store_true", help="line mode with one JSON event per line")
    p.add_argument(
        "--log-dir",
        metavar="DIR",
        default=None,
        help="append each conversation to its own text file under DIR",
    )
    p.add_argument("--no-direct", action="store_true", help="refuse every incoming direct chat")
    p.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="what to log (default: warning): on stderr, or in the group tab of the "
        "full-screen client",
    )
    return p


async def _discover(as_json: bool) -> int:
    from . import discovery

    chats = await discovery.browse()
    for chat in chats:
        if as_json:
            print(json.dumps(discovery.as_json(chat), ensure_ascii=False), flush=True)
        else:
            print(discovery.describe(chat), flush=True)
    if not chats and not as_json:
        print("no chat found on the LAN")
    return 0


async def _find_chat(ui: str) -> tuple[Chat | None, int | None]:
    """The chat to join when no --server is given, or the exit status when none is picked
    among several; (None, None) when none was found: the default stays."""
    from . import discovery

    chats = await discovery.browse()
    live = [c for c in chats if c.reachable]
    choice = discovery.choose(chats)
    if choice == "none":
        return None, None
    if choice == "one":
        return live[0], None
    if ui == "tui":
        from .tui.picker import ChatPicker  # Textual loads only for the full-screen UI

        picked = await ChatPicker(live).run_async()
        return picked, None if picked is not None else 1
    for chat in live:
        print(discovery.describe(chat), file=sys.stderr)
    print(
        f"p2pchat: several chats found: pick one with --server HOST:PORT "
        f"(e.g. --server {live[0].where})",
        file=sys.stderr,
    )
    return None, 1


async def _main(args: argparse.Namespace, nick: str, ui: str) -> int:
    if args.discover:
        return await _discover(args.json)
    server: ChatServer | None = None
    announcer: Announcer | None = None
    found_none = False
    found_name: str | None = None  # the chat's name when found on the LAN
    hosting: str | None = None
    web: WebHost | None = None
    web_url: str | None = None
    ip = args.ip
    if args.serve is not None:
        host, port = _net.parse_host_port(args.serve, DEFAULT_PORT)
        server = ChatServer(ServerConfig())
        try:
            await server.start(host or "0.0.0.0", port)
        except OSError as error:
            print(
                f"p2pchat: cannot host on {args.serve}: {error.strerror or error}", file=sys.stderr
            )
            return 1
        port = server.port
        listen_host = host or "0.0.0.0"
        wildcard = _net.is_wildcard(host)
        lan_ip = _net.lan_ipv4() if wildcard else None
        hosting = _net.format_host_port(lan_ip or ("127.0.0.1" if wildcard else host), port)
        host = _net.local_address(host)
        ip = ip or lan_ip
        if not args.no_announce:
            from . import discovery

            announcer = await discovery.announce(
                args.name or discovery.default_name(),
                listen_host,
                port,
                lambda: len(server.registry) if server is not None else 0,
            )
        if args.web is not None:
            from .web import WebConfig, serve_web  # aiohttp loads only when asked for

            config = WebConfig(max_sessions=args.web_max_sessions)
            try:
                web, web_url = await serve_web(args.web, host, port, ip, hosting, config)
            except OSError as error:
                print(
                    f"p2pchat: cannot serve the web client on {error.filename}: "
                    f"{error.strerror or error}",
                    file=sys.stderr,
                )
                await server.close()
                return 1
    else:
        target = args.server
        if target is None and not _mdns_off():
            found, status = await _find_chat(ui)
            if status is not None:
                return status
            if found is not None:
                target, found_name = found.where, found.name
                print(
                    f"p2pchat: joining {found.name} at {target} (found on the LAN)", file=sys.stderr
                )
            found_none = found is None
        host, port = _net.parse_host_port(target or f"127.0.0.1:{DEFAULT_PORT}", DEFAULT_PORT)
    where = _net.format_host_port(host, port)
    client = ChatClient(
        nick, host, port, ip=ip, udp_port=args.udp_port, accept_direct=not args.no_direct
    )
    chatlog = ChatLog(Path(args.log_dir), hosting or where) if args.log_dir else None

    def with_log(out: Output) -> Output:
        return Tee(chatlog, out) if chatlog is not None else out

    presenter = Presenter(nick, hints=ui == "plain")
    try:
        if ui != "tui" and hosting is not None:
            _line_output(ui).show(presenter.hosting(hosting, join_command(hosting), web_url))
        try:
            await client.connect()
        except (ConnectError, RegistrationError) as error:
            print(f"p2pchat: {error}", file=sys.stderr)
            if found_none and isinstance(error, ConnectError):
                print("p2pchat: no chat found on the LAN; start one with --serve", file=sys.stderr)
            return 1
        if ui == "tui":
            from .tui import ChatApp  # Textual loads only for the full-screen UI

            app = ChatApp(
                client,
                server=hosting or (f"{found_name} at {where}" if found_name else where),
                hosting=hosting,
                join=join_command(hosting) if hosting is not None else None,
                web=web_url,
                output=with_log,
                presenter=presenter,
            )
            await app.run_async()
            return app.return_code or 0
        return await linemode.run(client, with_log(_line_output(ui)), presenter, hosting=hosting)
    finally:
        await client.close()
        if chatlog is not None:
            chatlog.close()
        if announcer is not None:
            await announcer.close()  # goodbye packets before the chat closes
        if web is not None:
            await web.close()
        if server is not None:
            await server.close()


def _line_output(ui: str) -> Output:
    return linemode.JsonOutput() if ui == "json" else linemode.PlainOutput()


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["check"]:
        from .check.cli import main as check_main  # the checker is not part of chatting

        return check_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    nick = args.nick if args.nick is not None else _default_nick()
    try:
        check_nick(nick)
        if args.ip is not None:
            canonical_ip(args.ip)
        for value in (args.server, args.serve, args.web):
            if value is not None:
                _net.parse_host_port(value, DEFAULT_PORT)
        if args.web is not None and args.serve is None:
            raise ValueError("--web serves the chat this process hosts: give --serve too")
        if args.name is not None:
            from .discovery import check_name

            check_name(args.name)
        if (args.name is not None or args.no_announce) and args.serve is None:
            raise ValueError(
                "--name and --no-announce are about the chat this process hosts: give --serve too"
            )
        if args.web_max_sessions < 1:
            raise ValueError(f"--web-max-sessions {args.web_max_sessions}: must be at least 1")
        # --serve takes an empty host as "every address"; a server to join needs one.
        if args.server is not None and not _net.parse_host_port(args.server, DEFAULT_PORT)[0]:
            raise ValueError(
                f"--server {args.server!r}: no host; give HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT}"
            )
    except (LocalProtocolError, ValueError) as error:
        parser.error(str(error))
    if not 0 <= args.udp_port <= 65535:
        parser.error(f"--udp-port {args.udp_port} is out of range 0-65535")
    if args.log_dir:
        try:
            check_directory(Path(args.log_dir))
        except OSError as error:
            print(
                f"p2pchat: cannot write logs in {args.log_dir}: {error.strerror or error}",
                file=sys.stderr,
            )
            return 2
    with contextlib.suppress(AttributeError):
        sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    if args.json:
        ui = "json"
    elif args.plain or not (sys.stdin.isatty() and sys.stdout.isatty()):
        ui = "plain"
    else:
        ui = "tui"
    if ui == "tui":  # stderr would draw over the screen: the app shows warnings itself
        logging.getLogger().setLevel(args.log_level.upper())
    else:
        logging.basicConfig(
            level=args.log_level.upper(),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    try:
        return _net.run(lambda: _main(args, nick, ui))
    except KeyboardInterrupt:
        return 130
