"""Grading what arrived against the canonical bytes: pass, an accepted variant, or a failure."""

from __future__ import annotations

import re

from ..protocol import (
    LENGTH_HARD_LIMIT,
    MAX_LIST_LINE_BYTES,
    NEED_DATA,
    Decoder,
    Error,
    Message,
    RemoteProtocolError,
    Role,
)
from ._core import Failed, Recorder
from ._wire import Received, show

_FRAMED = re.compile(rb"(?i)(?:BROADCAST:[^:]*|ERROR|CHAT):(\d+):")


def decode_one(data: bytes, role: Role = Role.CLIENT) -> Message:
    # As lenient as the checker's connections: a LIST of many participants is long.
    decoder = Decoder(role, max_message_bytes=LENGTH_HARD_LIMIT, max_line_bytes=MAX_LIST_LINE_BYTES)
    decoder.feed(data)
    message = decoder.next_event()
    assert message is not NEED_DATA
    return message


def length_in_bytes(got: Received, what: str) -> None:
    """Decision 3: a Length counts the bytes of the UTF-8 message, not its characters."""
    m = _FRAMED.match(got.raw)
    if m is None or got.message is None:
        return
    text = getattr(got.message, "text", "")
    size = len(text.encode())
    if int(m.group(1)) != size:
        raise Failed(
            f"{what} with Length {size}, the message's bytes (decision 3)",
            f"Length {int(m.group(1))}"
            + (" (characters)" if int(m.group(1)) == len(text) else "")
            + f": {show(got.raw)}",
        )


def judge(
    record: Recorder, got: Received, canonical: bytes, what: str, role: Role = Role.CLIENT
) -> None:
    """Passes the canonical bytes; records an accepted variant of the same message;
    fails anything else. ``role`` is the side that receives the message."""
    if got.raw == canonical:
        return
    try:
        expected = decode_one(canonical, role)
    except RemoteProtocolError:  # a canonical message always decodes
        raise AssertionError(f"not canonical: {canonical!r}") from None
    if got.message != expected:
        raise Failed(f"{what}: {show(canonical)}", str(got))
    length_in_bytes(got, what)
    raw = got.raw
    body = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    if not raw.endswith(b"\r\n"):
        record.variant("lines ended by CRLF (decision 1)", f"a bare LF: {show(raw)}")
    command, _, rest = body.partition(b":")
    want_command, _, want_rest = canonical[:-2].partition(b":")
    if command != want_command:
        record.variant(
            f"the command in upper case, {want_command.decode()} (decision 2)", show(raw)
        )
    if rest != want_rest and rest.upper() != want_rest.upper():
        record.variant(f"the canonical form {show(canonical)}", show(raw))
    elif rest != want_rest:
        record.variant(f"the canonical form {show(canonical)} (decision 2)", show(raw))


def sentence(got: Received, what: str) -> str:
    """An ERROR fit for a person (decision 18): Length in bytes, a non-empty printable text."""
    if not isinstance(got.message, Error):
        raise Failed(what, str(got))
    length_in_bytes(got, what)
    text = got.message.text
    if not text.strip() or not text.isprintable():
        raise Failed(f"{what}: a sentence a person can act on (decision 18)", show(got.raw))
    return text
