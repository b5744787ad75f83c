"""The protocol's messages: one frozen class each, validated when built, encoded canonically."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from ._errors import LocalProtocolError
from ._fields import (
    canonical_ip,
    check_nick,
    check_port,
    check_secret,
    nick_key,
    wire_ip,
)

CRLF = b"\r\n"


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("text contains a lone surrogate, not encodable as UTF-8") from None


def _framed(prefix: bytes, text: str) -> bytes:
    payload = _utf8(text)
    return b"%s%d:%s\r\n" % (prefix, len(payload), payload)


def encode_broadcast(nick: str, text: str) -> bytes:
    """BROADCAST bytes for a nickname already known to be valid: the server forwards
    under a registered nickname, so it need not build (and check) a message again."""
    return _framed(b"BROADCAST:" + _utf8(nick) + b":", text)


class Action(Enum):
    """What an UPDATE announces."""

    JOIN = "JOIN"
    LEAVE = "LEAVE"


@dataclass(frozen=True, slots=True)
class Participant:
    """A registered client: its nickname and the UDP address others reach it on."""

    nick: str
    ip: str
    udp_port: int

    def __post_init__(self) -> None:
        check_nick(self.nick)
        # Stored normalised and unbracketed, so that addresses compare equal.
        object.__setattr__(self, "ip", canonical_ip(self.ip))
        check_port(self.udp_port)

    @property
    def key(self) -> str:
        return nick_key(self.nick)

    @property
    def udp_address(self) -> tuple[str, int]:
        return (self.ip, self.udp_port)

    @property
    def endpoint(self) -> str:
        """``ip:port`` as people write it, IPv6 in brackets."""
        return f"{wire_ip(self.ip)}:{self.udp_port}"

    def wire(self) -> str:
        return f"{self.nick}:{self.endpoint}"

    def encode_entry(self) -> bytes:
        """Its entry in a LIST: ``Nickname:IP-Address:UDP-Port``, for ``encode_list``."""
        return _utf8(self.wire())


@dataclass(frozen=True, slots=True)
class Register:
    """Client to server: register this participant."""

    participant: Participant

    def encode(self) -> bytes:
        return _utf8(f"REGISTER:{self.participant.wire()}") + CRLF


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Client to server, and server to the other clients: a message for everyone."""

    nick: str
    text: str

    def __post_init__(self) -> None:
        check_nick(self.nick)

    def encode(self) -> bytes:
        return encode_broadcast(self.nick, self.text)


@dataclass(frozen=True, slots=True)
class ListRequest:
    """Client to server: ``LIST`` alone asks for a fresh participant list."""

    def encode(self) -> bytes:
        return b"LIST\r\n"


@dataclass(frozen=True, slots=True)
class ParticipantList:
    """Server to client: every registered participant, in join order."""

    participants: tuple[Participant, ...]

    def encode(self) -> bytes:
        return encode_list([p.encode_entry() for p in self.participants])


def encode_list(entries: Sequence[bytes]) -> bytes:
    """LIST bytes from entries made beforehand by ``Participant.encode_entry``: a server
    keeps one per participant, so a LIST costs one join, not an encoding of everyone."""
    return b"LIST:" + b":".join(entries) + CRLF


@dataclass(frozen=True, slots=True)
class Update:
    """Server to clients: a participant joined or left."""

    action: Action
    participant: Participant

    def encode(self) -> bytes:
        return _utf8(f"UPDATE:{self.action.value}:{self.participant.wire()}") + CRLF


@dataclass(frozen=True, slots=True)
class Error:
    """Server to client: a sentence about what went wrong."""

    text: str

    def encode(self) -> bytes:
        return _framed(b"ERROR:", self.text)


@dataclass(frozen=True, slots=True)
class Init:
    """UDP, client to client: "connect to my TCP port, and quote this secret"."""

    secret: str
    tcp_port: int

    def __post_init__(self) -> None:
        check_secret(self.secret)
        check_port(self.tcp_port)

    def encode(self) -> bytes:
        return _utf8(f"INIT:{self.secret}:{self.tcp_port}") + CRLF


@dataclass(frozen=True, slots=True)
class Ack:
    """UDP, client to client: the INIT with this secret arrived."""

    secret: str

    def __post_init__(self) -> None:
        check_secret(self.secret)

    def encode(self) -> bytes:
        return _utf8(f"ACK:INIT:{self.secret}") + CRLF


@dataclass(frozen=True, slots=True)
class Chat:
    """TCP, client to client: a message in a direct chat."""

    text: str

    def encode(self) -> bytes:
        return _framed(b"CHAT:", self.text)


Message = Register | Broadcast | ListRequest | ParticipantList | Update | Error | Init | Ack | Chat
