"""Socket and event-loop helpers shared by the server and the client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .protocol import NEED_DATA, Decoder, Message, RemoteProtocolError

T = TypeVar("T")

READ_CHUNK = 1 << 16  # bytes asked of a socket at a time
# Keepalive: first probe after 60 s idle, then every 10 s, give up after 6.
KEEPALIVE = (60, 10, 6)


async def read_messages(
    reader: asyncio.StreamReader,
    decoder: Decoder,
    before_read: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[Message | RemoteProtocolError]:
    """Every message the stream carries, in order, and each decoding error in its place;
    ends when the peer closes. Messages already in ``decoder`` come first.
    ``before_read`` may hold reading back (e.g. while the user is far behind)."""
    while True:
        try:
            event = decoder.next_event()
        except RemoteProtocolError as error:
            yield error
            if error.fatal:
                return
            continue
        if event is not NEED_DATA:
            yield event
            continue
        if before_read is not None:
            await before_read()
        data = await reader.read(READ_CHUNK)
        if not data:
            return
        decoder.feed(data)


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT``, ``HOST``, ``:PORT``, ``[v6]:PORT`` -> (host, port); ValueError if malformed."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: port must be a number from 0 to 65535")
    return host, int(port_text)


def bound_udp_socket(ip: str, port: int, family: socket.AddressFamily) -> socket.socket:
    """A non-blocking UDP socket bound to (ip, port); an OSError with the OS's errno if not.

    Bound here, not by the event loop: uvloop's create_datagram_endpoint raises
    an error without errno or strerror, and the user must see the reason.
    """
    family, kind, proto, _, addr = socket.getaddrinfo(
        ip, port, family, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST | socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.bind(addr)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def format_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_wildcard(host: str) -> bool:
    """Whether listening on ``host`` means every address (an empty host too)."""
    return host in ("", "0.0.0.0", "::")


def local_address(host: str) -> str:
    """Where this machine reaches a server listening on ``host``: loopback for a
    wildcard, else the address itself."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    return "::1" if host == "::" else host


def lan_ipv4() -> str | None:
    """An IPv4 address of this machine that others on the network can reach, if one is known.

    Reads the interfaces' addresses (Linux ioctl; no packet is sent), then
    falls back to what the host name resolves to.
    """
    candidates: list[str] = []
    with contextlib.suppress(ImportError, OSError, AttributeError):
        import fcntl
        import struct

        siocgifaddr = 0x8915
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _, name in socket.if_nameindex():
                with contextlib.suppress(OSError):
                    request = struct.pack("256s", name[:15].encode())
                    reply = fcntl.ioctl(s.fileno(), siocgifaddr, request)
                    candidates.append(socket.inet_ntoa(reply[20:24]))
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            candidates.append(str(info[4][0]))
    for ip in candidates:
        if not ip.startswith(("127.", "169.254.", "0.")):
            return ip
    return None


def set_keepalive(sock: socket.socket, idle: int, interval: int, count: int) -> None:
    """Turns on TCP keepalive so that a peer whose machine vanished is noticed.

    Keepalive probes only go out on an idle connection; TCP_USER_TIMEOUT gives
    up on one whose sent data stays unacknowledged as long, so a vanished
    peer is noticed in the same time while data is flowing too.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        if hasattr(socket, "TCP_KEEPINTVL"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        if hasattr(socket, "TCP_KEEPCNT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            timeout_ms = (idle + interval * count) * 1000
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout_ms)


def raise_open_files_limit(wanted: int) -> int:
    """Raises the soft RLIMIT_NOFILE towards ``wanted``; returns the limit now in force."""
    try:
        import resource
    except ImportError:  # not on this platform
        return wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def run(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs a coroutine on uvloop where it is installed, else on the standard loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    if sys.version_info >= (3, 12):
        return uvloop.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


async def listening_socket(host: str, port: int, what: str) -> socket.socket:
    """A listening TCP socket for an HTTP endpoint (``what``: the option that asked for
    it), bound here rather than by the event loop so that an error carries the OS's own
    words (uvloop's do not), with ``HOST:PORT (what)`` as its ``filename``."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise OSError(
            error.errno, error.strerror or str(error), f"{format_host_port(host, port)} ({what})"
        ) from error
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise OSError(
            error.errno, error.strerror or str(error), f"{format_host_port(host, port)} ({what})"
        ) from error
    return sock
