"""Coverage-guided fuzzing of the protocol decoder and of decode_datagram, with atheris.

    python fuzz/fuzz_decoder.py -max_total_time=60 /tmp/corpus fuzz/corpus/decoder

Arguments are libFuzzer's (``-help=1`` lists them). An input is four header
bytes, then the bytes of the stream:

    byte 0   bits 0-6: role, SERVER, CLIENT, PEER for 0, 1, 2 (mod 3); bit 7: small limits
    byte 1   with small limits, max_message_bytes = 1 + byte (1-256)
    byte 2   with small limits, max_line_bytes = 64 + byte (64-319)
    byte 3   chunking: 0 whole, 1 one byte at a time, else up to 8 cuts seeded by it

The stream is also given whole to ``decode_datagram``. Any exception other
than the ones the codec promises, and any broken invariant (an
``AssertionError``), is a crash.
"""

from __future__ import annotations

import random
import sys
from itertools import pairwise

import atheris

with atheris.instrument_imports(include=["p2pchat.protocol"]):
    from p2pchat.protocol import (
        LENGTH_HARD_LIMIT,
        MAX_LIST_LINE_BYTES,
        NEED_DATA,
        Ack,
        Broadcast,
        Chat,
        Decoder,
        Error,
        Init,
        ListRequest,
        ParticipantList,
        Register,
        RemoteProtocolError,
        Role,
        Update,
        decode_datagram,
    )

HEADER = 4
ROLES = (Role.SERVER, Role.CLIENT, Role.PEER)
EXPECTED: dict[Role, type | tuple[type, ...]] = {
    Role.SERVER: (Register, Broadcast, ListRequest),
    Role.CLIENT: (ParticipantList, Update, Broadcast, Error),
    Role.PEER: Chat,
}


def parse(data: bytes) -> tuple[Role, dict[str, int], list[bytes]]:
    """The role, the decoder limits and the chunks an input stands for."""
    head = data[:HEADER].ljust(HEADER, b"\0")
    stream = data[HEADER:]
    role = ROLES[(head[0] & 0x7F) % 3]
    limits: dict[str, int] = {}
    if head[0] & 0x80:
        limits = {"max_message_bytes": 1 + head[1], "max_line_bytes": 64 + head[2]}
    if head[3] == 0 or not stream:
        return role, limits, [stream]
    if head[3] == 1:
        return role, limits, [stream[i : i + 1] for i in range(len(stream))]
    rng = random.Random(head[3])  # the same input always splits the same way
    cuts = sorted(rng.randrange(len(stream) + 1) for _ in range(head[3] % 9))
    bounds = [0, *cuts, len(stream)]
    return role, limits, [stream[a:b] for a, b in pairwise(bounds)]


def held_bound(decoder_limits: dict[str, int]) -> int:
    """What a decoder may hold after NEED_DATA (the bound of test_codec_properties.py):
    a header up to the line limit, a payload read as up to 4 bytes per character, a CRLF."""
    max_message = decoder_limits.get("max_message_bytes", 65536)
    max_line = decoder_limits.get("max_line_bytes", 4096)
    return max_line + 2 + 4 * max_message + 2


def check_error(error: RemoteProtocolError) -> None:
    # The sentence is sent back to the peer in an ERROR, so it must make one.
    sentence = str(error)
    assert sentence, "a RemoteProtocolError without a sentence"
    assert isinstance(Error(sentence).encode(), bytes)


def check_round_trip(role: Role, message: object) -> None:
    """A decoded message re-encodes, and its canonical bytes decode back to it."""
    assert isinstance(message, EXPECTED[role]), f"{role}: unexpected {message!r}"
    wire = message.encode()  # type: ignore[attr-defined]
    assert isinstance(wire, bytes)
    # Generous limits: a Length counted in characters re-encodes counted in
    # bytes, up to four times longer, and an IPv6 address gains brackets.
    again = Decoder(role, max_message_bytes=LENGTH_HARD_LIMIT, max_line_bytes=MAX_LIST_LINE_BYTES)
    again.feed(wire)
    assert again.next_event() == message, f"{wire!r} does not decode to {message!r}"
    assert again.next_event() is NEED_DATA
    assert again.buffered == 0
    assert message.encode() == wire  # type: ignore[attr-defined]


def check_stream(role: Role, limits: dict[str, int], pieces: list[bytes]) -> None:
    decoder = Decoder(role, **limits)
    bound = held_bound(limits)
    # Every outcome but NEED_DATA consumes input, so outcomes are bounded by
    # the bytes fed: more means the decoder loops.
    budget = sum(map(len, pieces)) + len(pieces) + 1
    for piece in pieces:
        decoder.feed(piece)
        while True:
            budget -= 1
            assert budget >= 0, "outcomes without input: the decoder loops"
            try:
                event = decoder.next_event()
            except RemoteProtocolError as error:
                check_error(error)
                if error.fatal:
                    check_broken(decoder, error)
                    return
                continue
            if event is NEED_DATA:
                break
            check_round_trip(role, event)
        assert decoder.buffered <= bound, f"holds {decoder.buffered} bytes, bound {bound}"


def check_broken(decoder: Decoder, error: RemoteProtocolError) -> None:
    """After a fatal error the stream is lost: nothing is held, every call raises."""
    assert decoder.buffered == 0, f"holds {decoder.buffered} bytes after a fatal error"
    for more in (b"", b"CHAT:1:x\r\nLIST\r\n"):
        decoder.feed(more)
        assert decoder.buffered == 0
        try:
            decoder.next_event()
        except RemoteProtocolError as again:
            assert again.fatal and str(again) == str(error)
        else:
            raise AssertionError("a broken decoder returned an event")


def check_datagram(data: bytes) -> None:
    try:
        message = decode_datagram(data)
    except RemoteProtocolError as error:
        check_error(error)
        assert not error.fatal, "a datagram error is never fatal"
        return
    assert isinstance(message, Init | Ack), f"unexpected {message!r}"
    assert decode_datagram(message.encode()) == message


def test_one_input(data: bytes) -> None:
    role, limits, pieces = parse(data)
    check_stream(role, limits, pieces)
    check_datagram(data[HEADER:])


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
