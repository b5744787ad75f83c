"""Finding chats on the LAN with multicast DNS (DNS-SD): announcing and discovering.

A chat is announced as a service of type ``_p2pchat._tcp.local.`` whose TXT record
holds the protocol version (``v``), the chat's name (``name``) and its number of
participants (``n``); docs/DISCOVERY.md describes it. The pure parts come first
(which addresses to advertise, TXT records, merging what a browse found, the
choice between none, one or several chats); the asyncio and python-zeroconf I/O
after them. python-zeroconf loads only when a chat is announced or looked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from . import _net

if TYPE_CHECKING:
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

log = logging.getLogger(__name__)

SERVICE_TYPE = "_p2pchat._tcp.local."
PROTOCOL_VERSION = 1
# Set (to anything but empty) it turns announcing and discovering off: for test suites
# and machines whose network must not see multicast.
OFF_VARIABLE = "P2PCHAT_NO_MDNS"
BROWSE_SECONDS = 2.0  # how long ``p2pchat`` and ``--discover`` listen at most
SETTLE_SECONDS = 0.5  # once something is found, quiet this long ends the browse early
REACH_TIMEOUT = 1.0  # a TCP connect that takes longer counts as unreachable
UPDATE_EVERY = 3.0  # the participants' count is republished at most this often
MAX_NAME_BYTES = 200  # a TXT string holds 255 bytes with its key
MAX_LABEL_BYTES = 63  # a DNS label


def mdns_off(environ: Mapping[str, str] | None = None) -> bool:
    return bool((os.environ if environ is None else environ).get(OFF_VARIABLE))


def useful_address(ip: str) -> bool:
    """Whether others on the LAN can reach ``ip``: not loopback, not link-local
    (169.254/16, fe80::/10), not unspecified nor multicast."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    return not (addr.is_loopback or addr.is_link_local or addr.is_unspecified or addr.is_multicast)


def advertised_addresses(listen_host: str, interface_addresses: Iterable[str]) -> list[str]:
    """The addresses to announce for a server listening on ``listen_host``.

    On a wildcard every useful interface address of its family (``::`` takes both,
    as it accepts IPv4 too); on one address that address, if useful. In the
    interfaces' order, each once.
    """
    if _net.is_wildcard(listen_host):
        families = (4, 6) if listen_host == "::" else (4,)
        chosen = [
            ip
            for ip in interface_addresses
            if useful_address(ip) and ipaddress.ip_address(ip.split("%", 1)[0]).version in families
        ]
    else:
        chosen = [listen_host] if useful_address(listen_host) else []
    return list(dict.fromkeys(chosen))


def default_name() -> str:
    return socket.gethostname() or "p2pchat"


def check_name(name: str) -> str:
    """The chat's name as given to ``--name``; ValueError if it cannot be announced."""
    if not name.strip():
        raise ValueError("--name: the chat's name is empty")
    if not name.isprintable():
        raise ValueError("--name: the chat's name has control characters")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ValueError(f"--name: the chat's name is longer than {MAX_NAME_BYTES} bytes")
    return name


def txt_properties(name: str, participants: int) -> dict[str, str]:
    return {"v": str(PROTOCOL_VERSION), "name": name, "n": str(participants)}


@dataclass(frozen=True)
class Announced:
    """What a TXT record says, read leniently: it comes from anyone on the LAN."""

    name: str
    participants: int | None
    version: int | None


def parse_txt(properties: Mapping[bytes, bytes | None], fallback_name: str) -> Announced:
    def text(key: bytes) -> str | None:
        value = properties.get(key)
        if value is None:
            return None
        return value.decode("utf-8", "replace")

    def number(key: bytes) -> int | None:
        value = text(key)
        if value is None or not value.isascii() or not value.isdigit() or len(value) > 9:
            return None
        return int(value)

    name = text(b"name")
    shown = "".join(c if c.isprintable() else "?" for c in (name or fallback_name))
    return Announced(shown[:MAX_NAME_BYTES], number(b"n"), number(b"v"))


def instance_label(name: str) -> str:
    """The service instance's label: the chat's name cut to a DNS label's 63 bytes."""
    data = name.encode()[:MAX_LABEL_BYTES]
    return data.decode("utf-8", "ignore").replace(".", " ") or "p2pchat"


@dataclass(frozen=True)
class Chat:
    """A chat found on the LAN. ``addresses`` in the order to try; ``address`` is the
    one that answered (or the first, until checked)."""

    name: str
    port: int
    addresses: tuple[str, ...]
    participants: int | None
    service: str
    reachable: bool | None = None
    address: str = ""

    @property
    def where(self) -> str:
        return _net.format_host_port(self.address or self.addresses[0], self.port)


@dataclass(frozen=True)
class Record:
    """One resolved service as a browse saw it."""

    service: str
    port: int
    addresses: tuple[str, ...]
    properties: Mapping[bytes, bytes | None]


def prefer_local(
    addresses: Iterable[str],
    local_networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> tuple[str, ...]:
    """The useful ``addresses``, those on one of this machine's networks first (the
    others are reached through a router, if at all)."""
    useful = [a for a in dict.fromkeys(addresses) if useful_address(a)]

    def on_local(a: str) -> bool:
        ip = ipaddress.ip_address(a.split("%", 1)[0])
        return any(ip.version == net.version and ip in net for net in local_networks)

    return tuple(sorted(useful, key=lambda a: not on_local(a)))


def chats_from(
    records: Iterable[Record],
    local_networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
) -> list[Chat]:
    """The chats the records describe: those with a port and a useful address, sorted
    by name; the service's first label names a chat whose TXT record has no name."""
    chats = []
    for record in records:
        addresses = prefer_local(record.addresses, local_networks)
        if not addresses or not 0 < record.port <= 65535:
            continue
        label = record.service.removesuffix("." + SERVICE_TYPE)
        told = parse_txt(record.properties, label)
        chats.append(Chat(told.name, record.port, addresses, told.participants, record.service))
    return sorted(chats, key=lambda c: (c.name.casefold(), c.service))


def choose(chats: Sequence[Chat]) -> Literal["none", "one", "several"]:
    """What ``p2pchat`` without ``--server`` does with the reachable chats found."""
    live = [c for c in chats if c.reachable]
    return "none" if not live else "one" if len(live) == 1 else "several"


def participants_due(
    count: int, published: int, last_published: float, now: float, every: float = UPDATE_EVERY
) -> bool:
    """Whether to republish the participants' count: only a change, at most every ``every`` s."""
    return count != published and now - last_published >= every


def describe(chat: Chat) -> str:
    n = "?" if chat.participants is None else str(chat.participants)
    state = "" if chat.reachable else "  (unreachable)"
    return f"{chat.name}  {chat.where}  {n} participant{'' if n == '1' else 's'}{state}"


def as_json(chat: Chat) -> dict[str, object]:
    return {
        "name": chat.name,
        "address": chat.where,
        "participants": chat.participants,
        "reachable": bool(chat.reachable),
    }


# I/O: interfaces, reachability, announcing, browsing.


def interface_addresses() -> list[str]:
    """Every address of this machine's interfaces (IPv6 without its zone)."""
    import ifaddr  # comes with python-zeroconf

    found = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            found.append(ip.ip if isinstance(ip.ip, str) else ip.ip[0])
    return found


def local_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    import ifaddr

    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            addr = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            with contextlib.suppress(ValueError):
                nets.append(ipaddress.ip_network(f"{addr}/{ip.network_prefix}", strict=False))
    return nets


async def reachable(host: str, port: int, timeout: float = REACH_TIMEOUT) -> bool:
    """Whether a TCP connection to the chat opens within ``timeout`` (closed at once)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def check_reachable(chat: Chat, timeout: float = REACH_TIMEOUT) -> Chat:
    """``chat`` with the first of its addresses that answers, or marked unreachable."""
    answers = await asyncio.gather(*(reachable(a, chat.port, timeout) for a in chat.addresses))
    for address, ok in zip(chat.addresses, answers, strict=True):
        if ok:
            return replace(chat, reachable=True, address=address)
    return replace(chat, reachable=False, address=chat.addresses[0])


def _mdns_interfaces(addresses: Sequence[str]) -> list[str]:
    # Multicast goes out on the IPv4 interfaces; IPv6 addresses ride in the records.
    return [a for a in addresses if ipaddress.ip_address(a.split("%", 1)[0]).version == 4]


class Announcer:
    """Announces one chat on the interfaces of ``addresses`` until closed; the count
    of participants follows ``count`` (polled, republished at most every ``every`` s
    and only when it changed). ``close`` sends the goodbye packets."""

    def __init__(
        self,
        name: str,
        port: int,
        addresses: Sequence[str],
        count: Callable[[], int],
        every: float = UPDATE_EVERY,
    ) -> None:
        self.name, self.port, self.addresses = name, port, list(addresses)
        self._count, self._every = count, every
        self._zc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._task: asyncio.Task[None] | None = None
        self._published = 0

    def _service_info(self, participants: int) -> AsyncServiceInfo:
        from zeroconf.asyncio import AsyncServiceInfo

        # A host name of its own: several chats, or namespaces of one machine, must
        # not claim the same name's addresses.
        host = f"p2pchat-{uuid.uuid4().hex[:12]}.local."
        name = self._info.name if self._info is not None else None
        return AsyncServiceInfo(
            SERVICE_TYPE,
            name or f"{instance_label(self.name)}.{SERVICE_TYPE}",
            port=self.port,
            properties=txt_properties(self.name, participants),
            server=self._info.server if self._info is not None else host,
            parsed_addresses=self.addresses,
        )

    async def start(self) -> None:
        from zeroconf import IPVersion
        from zeroconf.asyncio import AsyncZeroconf

        interfaces = _mdns_interfaces(self.addresses)
        if not interfaces:
            raise ValueError("no IPv4 address to announce on")
        self._zc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        self._published = self._count()
        self._info = self._service_info(self._published)
        try:
            # A name another chat holds becomes "NAME (2)"; the TXT record keeps NAME.
            await self._zc.async_register_service(self._info, allow_name_change=True)
        except BaseException:
            await self._zc.async_close()
            self._zc = None
            raise
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self._every)
            count, now = self._count(), loop.time()
            if self._zc is None or not participants_due(
                count, self._published, last, now, self._every
            ):
                continue
            self._info = self._service_info(count)
            try:
                await self._zc.async_update_service(self._info)
            except Exception as error:  # the chat goes on without a fresh count
                log.warning("cannot update the announcement: %s", error)
                continue
            self._published, last = count, now

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._zc is None:
            return
        zc, self._zc = self._zc, None
        try:
            if self._info is not None:
                await asyncio.wait_for(await zc.async_unregister_service(self._info), 3.0)
        except (Exception, TimeoutError) as error:
            log.warning("cannot withdraw the announcement: %s", error)
        finally:
            await zc.async_close()


async def announce(
    name: str, listen_host: str, port: int, count: Callable[[], int]
) -> Announcer | None:
    """Starts announcing a chat listening on ``listen_host``:``port``; None (and the
    reason logged) when there is no address others could reach or mDNS fails."""
    if mdns_off():
        return None
    addresses = advertised_addresses(listen_host, interface_addresses())
    if not _mdns_interfaces(addresses):
        log.info("not announced on the LAN: no address others can reach")
        return None
    announcer = Announcer(name, port, addresses, count)
    try:
        await announcer.start()
    except (OSError, ValueError, RuntimeError) as error:  # RuntimeError: no usable interface
        log.warning("cannot announce the chat on the LAN: %s", error)
        return None
    log.info("announced %r as %s on %s", name, SERVICE_TYPE, ", ".join(announcer.addresses))
    return announcer


async def browse(seconds: float = BROWSE_SECONDS, settle: float = SETTLE_SECONDS) -> list[Chat]:
    """The chats announced on the LAN, each checked for reachability: listens at most
    ``seconds``, and stops earlier once what it found has not changed for ``settle``."""
    from zeroconf import IPVersion, ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    loop = asyncio.get_running_loop()
    names: set[str] = set()
    changed = asyncio.Event()

    def on_change(
        zeroconf: object, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is ServiceStateChange.Removed:
            names.discard(name)
        else:
            names.add(name)
        changed.set()

    # Only where others can be: with no such interface (offline) there is nothing to find.
    interfaces = _mdns_interfaces(advertised_addresses("0.0.0.0", interface_addresses()))
    if not interfaces:
        log.info("not looking for chats: no network interface but loopback")
        return []
    try:
        zc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
    except (OSError, RuntimeError) as error:  # RuntimeError: no usable interface after all
        log.warning("cannot look for chats on the LAN: %s", error)
        return []
    records: dict[str, Record] = {}

    async def resolve(pending: list[str], timeout_ms: int) -> None:
        for name in pending:
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if await info.async_request(zc.zeroconf, timeout_ms):
                records[name] = Record(
                    name, info.port or 0, tuple(info.parsed_addresses()), info.properties
                )

    try:
        browser = AsyncServiceBrowser(zc.zeroconf, SERVICE_TYPE, handlers=[on_change])
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            changed.clear()
            wait = left if not names else min(left, settle)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)
                continue  # something changed: listen on
            pending = [n for n in names if n not in records]
            if names and not pending:
                break  # found, resolved and quiet
            await resolve(pending, 500)
        await resolve([n for n in names if n not in records], 300)
        await browser.async_cancel()
        found = [r for n, r in records.items() if n in names]
    finally:
        await zc.async_close()
    chats = chats_from(found, local_networks())
    return list(await asyncio.gather(*(check_reachable(c) for c in chats)))
