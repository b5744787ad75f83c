"""Incremental decoding of a byte stream into messages, and of single datagrams.

Sans-IO: ``feed`` buffers bytes, ``next_event`` returns one message or
``NEED_DATA``. Memory is bounded by the limits given: at most one message
(plus what was fed since) is held, and an oversized payload is skipped as it
streams past instead of being buffered.
"""

from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache
from typing import Final, Literal

from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    Ack,
    Action,
    Broadcast,
    Chat,
    Error,
    Init,
    ListRequest,
    Message,
    Participant,
    ParticipantList,
    Register,
    Update,
)
from ._fields import parse_port

LENGTH_HARD_LIMIT: Final = 1 << 20  # decision 16: past this, a Length is absurd
DEFAULT_MAX_MESSAGE_BYTES: Final = 65536
DEFAULT_MAX_LINE_BYTES: Final = 4096
# The longest LIST a client must accept (decision 10): 10,000 participants of
# the longest entry (32 four-byte characters, a bracketed IPv6 address with
# a zone id, a port), rounded up. A client trusts its server this far.
MAX_LIST_LINE_BYTES: Final = 4 << 20

_LF: Final = 0x0A
_CR: Final = 0x0D


class NeedData(Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


class Role(Enum):
    """Which side's incoming stream a decoder reads; it decides the messages expected."""

    SERVER = "server"  # what a server receives from a client
    CLIENT = "client"  # what a client receives from a server
    PEER = "peer"  # a direct chat between clients


# Commands whose last field is a Length-counted payload, and how many fields
# come before the Length.
_FRAMED: Final = {b"BROADCAST": 1, b"CHAT": 0, b"ERROR": 0}
_FORMATS: Final = {
    b"REGISTER": "REGISTER:Nickname:IP-Address:UDP-Port",
    b"BROADCAST": "BROADCAST:Nickname:Length:Message",
    b"UPDATE": "UPDATE:JOIN|LEAVE:Nickname:IP-Address:UDP-Port",
    b"ERROR": "ERROR:Length:Message",
    b"CHAT": "CHAT:Length:Message",
    b"INIT": "INIT:Secret:TCP-Port",
    b"ACK": "ACK:INIT:Secret",
}
_EXPECTED: Final = {
    Role.SERVER: frozenset({b"REGISTER", b"BROADCAST", b"LIST"}),
    Role.CLIENT: frozenset({b"LIST", b"UPDATE", b"BROADCAST", b"ERROR"}),
    Role.PEER: frozenset({b"CHAT"}),
}
_ALL_COMMANDS: Final = frozenset(_FORMATS) | {b"LIST"}
# The usual framed message, whole in the buffer: command, header, short Length.
# Anything else (odd Lengths, character counts, partial frames, errors) takes
# the general path, which gives the same answer for these.
_FAST_FRAMED: Final = re.compile(rb"(?i:(CHAT|ERROR)|(BROADCAST):([^:\n]*)):([0-9]{1,7}):")
# Every byte value but the UTF-8 continuation bytes 0x80-0xBF.
_NOT_CONTINUATION: Final = bytes(b for b in range(256) if not 0x80 <= b < 0xC0)


def _show(raw: bytes, limit: int = 40) -> str:
    """A peer's bytes quoted in an ERROR sentence: bounded and printable."""
    text = raw[:limit].decode("utf-8", "replace")
    return repr(text + ("..." if len(raw) > limit else ""))


class Decoder:
    """Turns the bytes one side of a TCP connection receives into messages."""

    __slots__ = (
        "_broken",
        "_buf",
        "_counted",
        "_eol_due",
        "_expected",
        "_max_line",
        "_max_message",
        "_role",
        "_skip",
    )

    def __init__(
        self,
        role: Role,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        if not 0 < max_message_bytes <= LENGTH_HARD_LIMIT:
            raise ValueError(f"max_message_bytes must be 1..{LENGTH_HARD_LIMIT}")
        if max_line_bytes < 64:
            raise ValueError("max_line_bytes must be at least 64")
        self._role = role
        self._expected = _EXPECTED[role]
        self._max_message = max_message_bytes
        self._max_line = max_line_bytes
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized payload still to discard
        self._eol_due = False  # a line end must follow the skipped payload
        self._broken: RemoteProtocolError | None = None
        # Progress of a character count over the message at the front: (scanned to, code points).
        self._counted: tuple[int, int] | None = None

    @property
    def buffered(self) -> int:
        """Bytes held and not yet decoded."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        if self._broken is not None:  # the stream is lost; hold nothing more
            return
        self._buf += data
        if self._skip:
            self._discard()

    def next_event(self) -> Message | Literal[NeedData.NEED_DATA]:
        """The next whole message, or ``NEED_DATA``.

        Raises ``RemoteProtocolError``; unless it is ``fatal``, the decoder
        has moved past the bad message and can be asked again.
        """
        if self._broken is not None:
            raise self._broken
        try:
            return self._next()
        except RemoteProtocolError as error:
            if error.fatal:
                self._broken = error
                self._buf.clear()
            raise

    # -- internals ---------------------------------------------------------

    def _fatal(self, message: str) -> RemoteProtocolError:
        return RemoteProtocolError(message, fatal=True)

    def _consume(self, n: int) -> None:
        """Drops the first ``n`` bytes, and the character count that was made over them."""
        del self._buf[:n]
        self._counted = None

    def _discard(self) -> None:
        n = min(self._skip, len(self._buf))
        self._consume(n)
        self._skip -= n

    def _next(self) -> Message | Literal[NeedData.NEED_DATA]:
        buf = self._buf
        if self._skip:
            self._discard()
            if self._skip:
                return NEED_DATA
        if self._eol_due:
            eol = self._line_end_at(0)
            if eol is None:
                return NEED_DATA
            if eol < 0:
                raise self._fatal("no line end after the skipped message")
            self._consume(eol)
            self._eol_due = False
        fast = _FAST_FRAMED.match(buf)
        if fast is not None:
            message = self._fast_framed(fast)
            if message is not None:
                return message
        limit = self._max_line + 2  # room for the CRLF
        while buf:
            lf = buf.find(b"\n", 0, limit)
            colon = buf.find(b":", 0, lf if lf >= 0 else limit)
            if colon >= 0:
                command = bytes(buf[:colon]).upper()
                before_length = _FRAMED.get(command)
                if before_length is not None:
                    return self._framed(command, colon, before_length, lf, limit)
            if lf < 0:
                if len(buf) >= limit:
                    raise self._fatal(f"line too long: limit {self._max_line} bytes")
                return NEED_DATA
            line = bytes(buf[:lf])
            self._consume(lf + 1)
            if line.endswith(b"\r"):
                line = line[:-1]
            if line:  # blank lines (an extra Enter in netcat) are ignored
                return self._line(line)
        return NEED_DATA

    def _fast_framed(self, fast: re.Match[bytes]) -> Message | None:
        """The framed message ``fast`` matched, if whole and plain; None leaves it to ``_next``."""
        buf = self._buf
        length = int(fast[4])
        start = fast.end()
        end = start + length
        if length > self._max_message or start > self._max_line + 2 or len(buf) < end + 2:
            return None
        after = self._line_end_at(end)
        if after is None or after < 0:
            return None
        command = (fast[1] or fast[2]).upper()
        if command not in self._expected:
            return None
        header = fast[3] or b""  # taken before the delete: a match reads the buffer lazily
        payload = bytes(buf[start:end])
        self._consume(after)
        return self._build(command, header, payload)

    def _line_end_at(self, i: int) -> int | None:
        """Index just past a line end starting at ``i``; -1 if there is none, None if unknown yet."""
        buf = self._buf
        if len(buf) <= i:
            return None
        if buf[i] == _LF:
            return i + 1
        if buf[i] == _CR:
            if len(buf) <= i + 1:
                return None
            return i + 2 if buf[i + 1] == _LF else -1
        return -1

    def _framed(
        self, command: bytes, colon: int, before_length: int, lf: int, limit: int
    ) -> Message | Literal[NeedData.NEED_DATA]:
        buf = self._buf
        # Find the colon that ends the Length field.
        fields_end = [colon]
        for _ in range(before_length + 1):
            at = buf.find(b":", fields_end[-1] + 1, limit)
            if at < 0 or 0 <= lf < at:
                if lf >= 0:  # the line ended before the Length: a short, well-framed line
                    self._consume(lf + 1)
                    raise RemoteProtocolError(
                        f"malformed {command.decode()}: expected {_FORMATS[command]}"
                    )
                if len(buf) >= limit:
                    raise self._fatal(f"line too long: limit {self._max_line} bytes")
                return NEED_DATA
            fields_end.append(at)
        length_at = fields_end[-2] + 1
        length_text = bytes(buf[length_at : fields_end[-1]])
        if not (length_text.isdigit() and length_text.isascii()):
            raise self._fatal(f"Length {_show(length_text)} is not a number")
        # Digits counted before int(): thousands of them are absurd, not a crash.
        if len(length_text.lstrip(b"0")) > 7 or int(length_text) > LENGTH_HARD_LIMIT:
            shown = _show(length_text)[1:-1]
            raise self._fatal(f"Length {shown} is over the hard limit of {LENGTH_HARD_LIMIT} bytes")
        length = int(length_text)
        start = fields_end[-1] + 1
        if length > self._max_message:
            self._consume(start)
            self._skip = length
            self._eol_due = True
            self._discard()
            raise RemoteProtocolError(
                f"message too long: {length} bytes, limit {self._max_message}"
            )
        end = start + length
        after = self._line_end_at(end)
        if after is None:
            return NEED_DATA
        if after < 0:
            # Several implementations count characters, not bytes: try that once.
            char_end = self._char_count_end(start, length)
            if char_end is None:
                return NEED_DATA
            end = char_end
            after = self._line_end_at(end) if end >= 0 else -1
            if after is None:
                return NEED_DATA
            if after < 0:
                raise self._fatal(
                    f"no line end after the {length}-byte message of {command.decode()}"
                )
        header = bytes(buf[colon + 1 : length_at - 1]) if before_length else b""
        payload = bytes(buf[start:end])
        self._consume(after)
        if command not in self._expected:
            raise RemoteProtocolError(f"{command.decode()} is not expected here")
        return self._build(command, header, payload)

    @staticmethod
    def _build(command: bytes, header: bytes, payload: bytes) -> Message:
        try:
            text = payload.decode("utf-8")
            if command == b"BROADCAST":
                return Broadcast(header.decode("utf-8"), text)
            if command == b"CHAT":
                return Chat(text)
            return Error(text)
        except UnicodeDecodeError:
            raise RemoteProtocolError(f"{command.decode()} is not valid UTF-8") from None
        except LocalProtocolError as error:
            raise RemoteProtocolError(str(error)) from None

    def _char_count_end(self, start: int, chars: int) -> int | None:
        """Where ``chars`` code points from ``start`` end: -1 if they cannot, None if unknown yet.

        A code point ends where the next lead (non-continuation) byte starts; the
        line end after the message is one. Counted incrementally, so a message fed
        in tiny pieces costs each byte one look, not one per piece.
        """
        buf = self._buf
        pos, seen = self._counted or (start, 0)
        limit = start + 4 * chars + 1  # a code point has at most 4 bytes
        stop = min(len(buf), limit)
        if pos < stop:
            chunk = bytes(buf[pos:stop])
            leads = len(chunk) - len(chunk.translate(None, _NOT_CONTINUATION))
            if seen + leads > chars:  # the lead byte after the last code point is here
                for i, byte in enumerate(chunk):
                    if not 0x80 <= byte < 0xC0:
                        if seen == chars:
                            return pos + i
                        seen += 1
            pos, seen = stop, seen + leads
            self._counted = (pos, seen)
        return -1 if pos >= limit else None

    def _line(self, line: bytes) -> Message:
        command, _, _ = line.partition(b":")
        command = command.upper()
        if command not in self._expected:
            if command in _ALL_COMMANDS:
                raise RemoteProtocolError(f"{command.decode()} is not expected here")
            raise RemoteProtocolError(f"unknown command {_show(command)}")
        if command in _FRAMED:
            raise RemoteProtocolError(f"malformed {command.decode()}: expected {_FORMATS[command]}")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError(f"{command.decode()} is not valid UTF-8") from None
        fields = text.split(":")[1:]
        try:
            if command == b"REGISTER":
                return Register(_participant(fields, b"REGISTER"))
            if command == b"UPDATE":
                if len(fields) < 4:
                    raise LocalProtocolError(f"malformed UPDATE: expected {_FORMATS[b'UPDATE']}")
                try:
                    action = Action(fields[0].upper())
                except ValueError:
                    raise LocalProtocolError(
                        f"UPDATE action {fields[0]!r} is neither JOIN nor LEAVE"
                    ) from None
                return Update(action, _participant(fields[1:], b"UPDATE"))
            if self._role is Role.SERVER:  # LIST from a client asks for the list
                return ListRequest()
            return ParticipantList(_list_entries(text[len("LIST:") :] if fields else ""))
        except LocalProtocolError as error:
            raise RemoteProtocolError(str(error)) from None


def _participant(fields: list[str], command: bytes) -> Participant:
    # The address may be unbracketed IPv6 here: the fixed positions of
    # nickname and port leave everything between them to the address.
    if len(fields) < 3:
        raise LocalProtocolError(f"malformed {command.decode()}: expected {_FORMATS[command]}")
    return _shared(fields[0], ":".join(fields[1:-1]), fields[-1])


# The same participant arrives again and again (every LIST names everyone), and a
# process may hold many clients (the web client's host): one checked, immutable
# Participant per entry text, shared, instead of one per message and per client.
# Bounded; an entry that does not check is raised each time, never kept.
@lru_cache(maxsize=8192)
def _shared(nick: str, ip: str, port: str) -> Participant:
    return Participant(nick, ip, parse_port(port))


# One LIST entry: a nickname (no ':'), an address (IPv6 only in brackets
# here), a port. Positional, so a '[' inside a nickname is just a character.
_LIST_ENTRY = re.compile(r"([^:]*):(\[[^\]]*\]|[^:\[\]]*):([^:]*)(:|$)")
_LIST_COUNT = re.compile(r"(\d{1,6}):")


def _entry_fields(body: str, pos: int) -> list[tuple[str, str, str]] | None:
    """The (nick, ip, port) texts of the entries from ``pos`` on, or None if they do not split."""
    entries: list[tuple[str, str, str]] = []
    while True:
        m = _LIST_ENTRY.match(body, pos)
        if m is None:
            return None
        entries.append((m.group(1), m.group(2), m.group(3)))
        if not m.group(4):
            return entries if m.end() == len(body) else None
        pos = m.end()


def _build_entries(entries: list[tuple[str, str, str]]) -> tuple[Participant, ...]:
    return tuple(_shared(nick, ip, port) for nick, ip, port in entries)


def _list_entries(body: str) -> tuple[Participant, ...]:
    # Decision 10: canonical "nick:ip:port..." or a count in front; only the
    # count form can carry a leading number that does not make a valid entry.
    if not body:
        return ()
    if body.isascii() and body.isdigit():  # a count and no entries
        if len(body) > 6 or int(body):
            raise LocalProtocolError(f"LIST says {body} participants but carries 0")
        return ()
    plain = _entry_fields(body, 0)
    plain_error: LocalProtocolError | None = None
    if plain is not None:
        try:
            return _build_entries(plain)
        except LocalProtocolError as error:
            plain_error = error
    count = _LIST_COUNT.match(body)
    counted = _entry_fields(body, count.end()) if count else None
    if count is not None and counted is not None:
        if int(count.group(1)) != len(counted):
            raise LocalProtocolError(
                f"LIST says {int(count.group(1))} participants but carries {len(counted)}"
            )
        return _build_entries(counted)
    if plain_error is not None:
        raise plain_error
    raise LocalProtocolError(
        "malformed LIST: expected Nickname:IP-Address:UDP-Port for each participant"
    )


def decode_datagram(data: bytes) -> Init | Ack:
    """Decodes one UDP datagram (INIT or ACK); the line end is optional there."""
    if data.endswith(b"\n"):
        data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("datagram is not valid UTF-8") from None
    command, _, rest = text.partition(":")
    command = command.upper()
    fields = rest.split(":")
    try:
        if command == "INIT" and len(fields) == 2:
            return Init(fields[0], parse_port(fields[1]))
        if command == "ACK" and len(fields) == 2 and fields[0].upper() == "INIT":
            return Ack(fields[1])
    except LocalProtocolError as error:
        raise RemoteProtocolError(str(error)) from None
    if command in ("INIT", "ACK"):
        raise RemoteProtocolError(f"malformed {command}: expected {_FORMATS[command.encode()]}")
    raise RemoteProtocolError(f"unknown datagram {_show(data)}")
