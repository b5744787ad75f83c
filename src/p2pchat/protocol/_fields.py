"""Validation and canonical text of the protocol's fields (decisions 5-8)."""

from __future__ import annotations

import ipaddress
import re

from ._errors import LocalProtocolError

NICK_MAX_CHARS = 32
SECRET_MAX_CHARS = 128
# Interface names are at most IFNAMSIZ-1 = 15 bytes on Linux (and zone ids are
# short numbers elsewhere); the cap bounds the longest LIST entry.
ZONE_MAX_CHARS = 15

# ':' separates fields; whitespace and control characters make names that
# cannot be typed, seen or told apart.
_NICK_FORBIDDEN = re.compile(r"[:\s\x00-\x1f\x7f-\x9f]")
_SECRET_FORBIDDEN = re.compile(r"[:\r\n]")
_IP_CHARS = re.compile(r"[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?")


def check_nick(nick: str) -> str:
    if not nick:
        raise LocalProtocolError("nickname is empty")
    if len(nick) > NICK_MAX_CHARS:
        raise LocalProtocolError(
            f"nickname is too long: {len(nick)} characters, limit {NICK_MAX_CHARS}"
        )
    bad = _NICK_FORBIDDEN.search(nick)
    if bad:
        raise LocalProtocolError(
            f"nickname {nick!r} contains {bad.group()!r}: "
            "no ':', spaces or control characters allowed"
        )
    return nick


def nick_key(nick: str) -> str:
    """The form under which nicknames are compared (decision 5)."""
    return nick.casefold()


def check_secret(secret: str) -> str:
    if not secret:
        raise LocalProtocolError("secret is empty")
    if len(secret) > SECRET_MAX_CHARS:
        raise LocalProtocolError(
            f"secret is too long: {len(secret)} characters, limit {SECRET_MAX_CHARS}"
        )
    if _SECRET_FORBIDDEN.search(secret):
        raise LocalProtocolError("secret contains ':', CR or LF")
    return secret


def check_port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise LocalProtocolError(f"port {port} is out of range 1-65535")
    return port


def parse_port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise LocalProtocolError(f"port {text!r} is not a number from 1 to 65535")
    return check_port(int(text))


def canonical_ip(text: str) -> str:
    """Validates an address, brackets or not, and returns it unbracketed and normalised.

    Normalising makes addresses comparable: the INIT source check (decision
    21) compares what a socket reports with what a participant registered.
    """
    raw = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if not _IP_CHARS.fullmatch(raw):  # ipaddress takes any text in an IPv6 zone id
        raise LocalProtocolError(f"{text!r} is not an IPv4 or IPv6 address")
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        raise LocalProtocolError(f"{text!r} is not an IPv4 or IPv6 address") from None
    if isinstance(address, ipaddress.IPv6Address):
        zone = address.scope_id
        if zone is not None and len(zone) > ZONE_MAX_CHARS:
            raise LocalProtocolError(
                f"IPv6 zone id (after '%') is too long: {len(zone)} characters, "
                f"limit {ZONE_MAX_CHARS}"
            )
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
    return str(address)


def wire_ip(ip: str) -> str:
    """The address as sent: IPv6 in brackets, because ':' separates fields."""
    return f"[{ip}]" if ":" in ip else ip


def is_unspecified(ip: str) -> bool:
    return ipaddress.ip_address(ip).is_unspecified
