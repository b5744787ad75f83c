"""Validation and canonical text of the protocol's fields (decisions 5-8)."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from bisect import bisect_right

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

# Default_Ignorable_Code_Point of Unicode's DerivedCoreProperties.txt (as of
# Unicode 14.0), as inclusive (first, last) ranges: characters drawn as
# nothing, so 'bob' and 'bob' plus one of them look alike. unicodedata has
# no such property. The reserved (unassigned) ranges are included, as Unicode
# asks, so characters assigned there later are refused already.
_DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark
    (0x115F, 0x1160),  # Hangul choseong and jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian variation selectors and vowel separator
    (0x200B, 0x200F),  # zero-width space, (non-)joiner, LRM, RLM
    (0x202A, 0x202E),  # bidi embeddings and overrides
    (0x2060, 0x206F),  # word joiner, invisible operators, bidi isolates
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors 1-16
    (0xFEFF, 0xFEFF),  # zero-width no-break space (BOM)
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFF8),  # reserved
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical beam and phrase controls
    (0xE0000, 0xE0FFF),  # tags, variation selectors 17-256, reserved
)
_IGNORABLE_FIRSTS = tuple(first for first, _ in _DEFAULT_IGNORABLE)
# Not default-ignorable, but drawn as blank space all the same.
_BLANK = frozenset({"\u2800"})  # braille pattern blank


def _is_default_ignorable(ch: str) -> bool:
    i = bisect_right(_IGNORABLE_FIRSTS, ord(ch)) - 1
    return i >= 0 and ord(ch) <= _DEFAULT_IGNORABLE[i][1]


def _unseen(ch: str) -> str | None:
    """Why a character (not whitespace or a control) cannot be in a nickname, if it cannot."""
    category = unicodedata.category(ch)
    # Cf: format characters (bidi controls, zero-width joiners, tags...).
    if category == "Cf" or ch in _BLANK or _is_default_ignorable(ch):
        return "no invisible or formatting characters allowed"
    # Private use: each font draws its own glyph or none, so nobody can tell
    # what the name looks like on another screen, or type it.
    if category == "Co":
        return "no private-use characters allowed"
    # Other unassigned code points pass: a client whose Python knows an older
    # Unicode would otherwise refuse a whole LIST naming a character new to it.
    return None


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
    if not nick.isascii():
        for ch in nick:
            why = _unseen(ch)
            if why is not None:
                # By number: repr() would show some of them as they are, unseen.
                raise LocalProtocolError(f"nickname {nick!r} contains U+{ord(ch):04X}: {why}")
    return nick


def nick_key(nick: str) -> str:
    """The form under which nicknames are compared (decision 5): the one
    definition of 'same nickname'.

    Unicode's canonical caseless match: 'José' typed as one code point or
    as 'e' plus a combining accent is one name, and so are 'Bob' and 'BOB'.
    Decomposing before folding matters: U+0345 folds to a separate iota, which
    must come after the other accents, not before them. The key is composed
    again (NFC) only to keep it short.
    """
    if nick.isascii():  # the usual case; normalising changes nothing there
        return nick.casefold()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", nick).casefold())


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
