"""Property tests of the protocol codec: round trips through random chunking,
canonical re-encoding, and robustness against arbitrary bytes."""

from __future__ import annotations

import re
import unicodedata
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from p2pchat.protocol import (
    NEED_DATA,
    Ack,
    Action,
    Broadcast,
    Chat,
    Decoder,
    Error,
    Init,
    ListRequest,
    LocalProtocolError,
    Participant,
    ParticipantList,
    Register,
    RemoteProtocolError,
    Role,
    Update,
    _decoder,
    check_nick,
    decode_datagram,
    nick_key,
)

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,  # write nothing into the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# -- strategies --------------------------------------------------------------


def _valid_nick(nick: str) -> bool:
    try:
        check_nick(nick)
    except LocalProtocolError:
        return False
    return True


# Decision 5: 1-32 characters, no ':', whitespace or control character; any
# other Unicode (but not lone surrogates, which UTF-8 cannot carry).
nicks = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.\-]{1,32}", fullmatch=True),
    st.text(
        st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), exclude_characters=":"),
        min_size=1,
        max_size=32,
    ),
).filter(_valid_nick)

# Known codec bug (see test_codec.py::test_list_with_open_bracket_in_nickname):
# a '[' in a nickname breaks LIST decoding, so LIST round trips leave it out;
# test_list_round_trip_with_open_bracket below covers it as an expected failure.
list_nicks = nicks.filter(lambda nick: "[" not in nick)

# Any Unicode but lone surrogates, with the characters that matter to framing
# (':', CR, LF) and multi-byte ones made frequent.
texts = st.text(
    st.one_of(
        st.sampled_from([":", "\r", "\n", "é", "語", "🎉", "\x00", "\u2028"]),
        st.characters(exclude_categories=("Cs",)),
    ),
    max_size=60,
)

ips = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.sampled_from(["0.0.0.0", "::", "::1", "2001:db8::1", "127.0.0.1"]),
)
ports = st.integers(1, 65535)
secrets = st.one_of(
    st.from_regex(r"[A-Za-z0-9_\-]{22}", fullmatch=True),  # secrets.token_urlsafe(16)
    st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters=":\r\n"),
        min_size=1,
        max_size=128,
    ),
)


def participants(nick_strategy: st.SearchStrategy[str] = nicks) -> st.SearchStrategy:
    return st.builds(Participant, nick_strategy, ips, ports)


broadcasts = st.builds(Broadcast, nicks, texts)
MESSAGES = {
    Role.SERVER: st.one_of(st.builds(Register, participants()), broadcasts, st.just(ListRequest())),
    Role.CLIENT: st.one_of(
        st.builds(ParticipantList, st.lists(participants(list_nicks), max_size=6).map(tuple)),
        st.builds(Update, st.sampled_from(Action), participants()),
        broadcasts,
        st.builds(Error, texts),
    ),
    Role.PEER: st.builds(Chat, texts),
}
datagrams = st.one_of(st.builds(Init, secrets, ports), st.builds(Ack, secrets))
roles = st.sampled_from(Role)


# -- helpers -----------------------------------------------------------------


def split(data: bytes, draw: st.DrawFn) -> list[bytes]:
    """``data`` cut at random places (possibly into single bytes, possibly whole)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def decode_pieces(decoder: Decoder, pieces: list[bytes]) -> list[object]:
    """Feeds each piece and collects outcomes; an error becomes ("error", sentence, fatal).

    Every outcome other than NEED_DATA must consume input, so the number of
    calls is bounded by the bytes fed: a decoder that loops fails the test.
    """
    out: list[object] = []
    budget = sum(len(p) for p in pieces) + len(pieces) + 1
    for piece in pieces:
        decoder.feed(piece)
        while True:
            budget -= 1
            assert budget >= 0, "decoder keeps producing outcomes without input"
            try:
                event = decoder.next_event()
            except RemoteProtocolError as error:
                out.append(("error", str(error), error.fatal))
                if error.fatal:
                    return out
                continue
            if event is NEED_DATA:
                break
            out.append(event)
    return out


# -- round trips -------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_message_round_trips_through_random_chunks(data: st.DataObject) -> None:
    role = data.draw(roles)
    message = data.draw(MESSAGES[role])
    wire = message.encode()
    decoder = Decoder(role)
    assert decode_pieces(decoder, split(wire, data.draw)) == [message]
    assert decoder.buffered == 0


@SETTINGS
@given(st.data())
def test_stream_of_messages_round_trips(data: st.DataObject) -> None:
    role = data.draw(roles)
    messages = data.draw(st.lists(MESSAGES[role], min_size=2, max_size=4))
    # Blank lines between messages are ignored (decision 1 / netcat users).
    gaps = data.draw(st.lists(st.sampled_from([b"", b"\r\n", b"\n"]), min_size=len(messages)))
    stream = b"".join(gap + m.encode() for gap, m in zip(gaps, messages, strict=False))
    decoder = Decoder(role)
    assert decode_pieces(decoder, split(stream, data.draw)) == messages
    assert decoder.buffered == 0


@SETTINGS
@given(st.data())
def test_received_variants_decode_to_the_same_message(data: st.DataObject) -> None:
    """Lower/mixed-case command words and a bare LF decode like the canonical form."""
    role = data.draw(roles)
    message = data.draw(MESSAGES[role])
    wire = message.encode()

    def recase(word: bytes) -> bytes:  # command words and actions are ASCII letters
        return bytes(c ^ 0x20 if data.draw(st.booleans()) else c for c in word)

    word, sep, rest = wire.partition(b":") if b":" in wire else (wire[:-2], b"", b"\r\n")
    if isinstance(message, Update):
        action, _, tail = rest.partition(b":")
        rest = recase(action) + b":" + tail
    variant = recase(word) + sep + rest
    if data.draw(st.booleans()):
        variant = variant[:-2] + b"\n"
    decoder = Decoder(role)
    assert decode_pieces(decoder, split(variant, data.draw)) == [message]


@st.composite
def canonical_wire(draw: st.DrawFn) -> tuple[Role, bytes]:
    """Canonical bytes built by hand from the spec, independent of the encoder."""

    def ip() -> str:
        address = draw(st.ip_addresses())
        if address.version == 6:
            if address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            else:
                return f"[{address}]"
        return str(address)

    def entry(nick_strategy: st.SearchStrategy[str] = nicks) -> str:
        return f"{draw(nick_strategy)}:{ip()}:{draw(ports)}"

    def framed(prefix: str, text: str) -> bytes:
        payload = text.encode()
        return prefix.encode() + b"%d:" % len(payload) + payload + b"\r\n"

    kind = draw(
        st.sampled_from(["REGISTER", "BROADCAST", "LIST", "LIST:", "UPDATE", "ERROR", "CHAT"])
    )
    if kind == "REGISTER":
        return Role.SERVER, f"REGISTER:{entry()}\r\n".encode()
    if kind == "BROADCAST":
        role = draw(st.sampled_from([Role.SERVER, Role.CLIENT]))
        return role, framed(f"BROADCAST:{draw(nicks)}:", draw(texts))
    if kind == "LIST":
        return Role.SERVER, b"LIST\r\n"
    if kind == "LIST:":
        entries = [entry(list_nicks) for _ in range(draw(st.integers(1, 5)))]
        return Role.CLIENT, ("LIST:" + ":".join(entries) + "\r\n").encode()
    if kind == "UPDATE":
        action = draw(st.sampled_from(["JOIN", "LEAVE"]))
        return Role.CLIENT, f"UPDATE:{action}:{entry()}\r\n".encode()
    if kind == "ERROR":
        return Role.CLIENT, framed("ERROR:", draw(texts))
    return Role.PEER, framed("CHAT:", draw(texts))


@SETTINGS
@given(canonical_wire(), st.data())
def test_canonical_input_reencodes_identically(
    case: tuple[Role, bytes], data: st.DataObject
) -> None:
    """encode(decode(x)) == x for canonical x."""
    role, wire = case
    decoder = Decoder(role)
    events = decode_pieces(decoder, split(wire, data.draw))
    assert len(events) == 1
    assert not isinstance(events[0], tuple), events
    assert events[0].encode() == wire


@SETTINGS
@given(datagrams, st.sampled_from([b"\r\n", b"\n", b""]), st.booleans())
def test_datagram_round_trip(message: Init | Ack, ending: bytes, lower: bool) -> None:
    wire = message.encode()[:-2]
    if lower:
        wire = wire.replace(b"INIT:", b"init:", 1).replace(b"ACK:", b"ack:", 1)
    assert decode_datagram(wire + ending) == message


@settings(max_examples=5, deadline=None, database=None, phases=[Phase.generate])
@given(
    st.lists(
        st.builds(
            Participant,
            nicks.filter(lambda n: "]" not in n).map(lambda n: ("[" + n)[:32]),
            ips,
            ports,
        ),
        min_size=1,
        max_size=3,
    )
)
def test_list_round_trip_with_open_bracket(entries: list[Participant]) -> None:
    message = ParticipantList(tuple(entries))
    decoder = Decoder(Role.CLIENT)
    assert decode_pieces(decoder, [message.encode()]) == [message]


# -- robustness --------------------------------------------------------------

TOKENS = [
    b"REGISTER:",
    b"BROADCAST:",
    b"LIST",
    b"UPDATE:",
    b"JOIN:",
    b"LEAVE:",
    b"ERROR:",
    b"CHAT:",
    b"INIT:",
    b"ACK:",
    b"chat:",
    b":",
    b"::",
    b"\r\n",
    b"\n",
    b"\r",
    b"0",
    b"1",
    b"5",
    b"17",
    b"33",
    b"1048577",
    b"99999999999",
    b"bob",
    b"192.0.2.1",
    b"[2001:db8::1]",
    b"5000",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    "é".encode(),
    "🎉".encode(),
    b" ",
    b"[",
    b"]",
]
EXPECTED = {
    Role.SERVER: Register | Broadcast | ListRequest,
    Role.CLIENT: ParticipantList | Update | Broadcast | Error,
    Role.PEER: Chat,
}
LIMITS = {"max_message_bytes": 32, "max_line_bytes": 64}
# What a decoder may hold after answering NEED_DATA: a header up to the line
# limit, a payload read as up to 4 bytes per character, and a CRLF.
HELD_BOUND = LIMITS["max_line_bytes"] + 2 + 4 * LIMITS["max_message_bytes"] + 2

# Framed messages, right or nearly: headers past the line limit, Lengths off
# by some bytes or counted in characters, odd line ends.
framed = st.builds(
    lambda command, header, length, payload, end: (
        b"%s%s%s:%s%s" % (command, header, length(payload), payload, end)
    ),
    st.sampled_from([b"BROADCAST:", b"CHAT:", b"ERROR:", b"chat:", b"Broadcast:"]),
    st.sampled_from([b"", b"bob:", b"n" * 70 + b":", b"\xff:", b"b\nb:"]),
    st.sampled_from(
        [
            lambda p: b"%d" % len(p),
            lambda p: b"%d" % len(p.decode("utf-8", "replace")),
            lambda p: b"%d" % (len(p) + 1),
            lambda p: b"%d" % max(len(p) - 1, 0),
            lambda p: b"000%d" % len(p),
        ]
    ),
    st.one_of(st.binary(max_size=40), st.text(max_size=12).map(str.encode)),
    st.sampled_from([b"\r\n", b"\n", b"", b"\r", b"x\r\n"]),
)

noise = st.lists(
    st.one_of(
        framed,
        st.sampled_from(TOKENS),
        st.binary(max_size=24),
        st.sampled_from(list(MESSAGES)).flatmap(lambda r: MESSAGES[r]).map(lambda m: m.encode()),
    ),
    max_size=40,
).map(b"".join)


@SETTINGS
@given(roles, noise, st.data())
def test_arbitrary_bytes_give_messages_or_protocol_errors(
    role: Role, stream: bytes, data: st.DataObject
) -> None:
    decoder = Decoder(role, **LIMITS)
    pieces = split(stream, data.draw)
    budget = len(stream) + len(pieces) + 1
    for piece in pieces:
        decoder.feed(piece)
        while True:
            budget -= 1
            assert budget >= 0, "decoder keeps producing outcomes without input"
            try:
                event = decoder.next_event()
            except RemoteProtocolError as error:
                assert str(error)
                if error.fatal:
                    assert decoder.buffered == 0
                    with pytest.raises(RemoteProtocolError):
                        decoder.next_event()
                    return
                continue
            if event is NEED_DATA:
                break
            assert isinstance(event, EXPECTED[role])
            # Whatever was decoded can be sent on canonically.
            assert isinstance(event.encode(), bytes)
        assert decoder.buffered <= HELD_BOUND


@settings(SETTINGS, max_examples=600)
@given(roles, st.lists(st.one_of(framed, st.sampled_from(TOKENS)), max_size=8), st.data())
def test_fast_path_decodes_exactly_as_the_general_path(
    role: Role, items: list[bytes], data: st.DataObject
) -> None:
    pieces = split(b"".join(items), data.draw)
    fast = decode_pieces(Decoder(role, **LIMITS), pieces)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_decoder, "_FAST_FRAMED", re.compile(rb"(?!)"))  # matches nothing
        general = decode_pieces(Decoder(role, **LIMITS), pieces)
    assert fast == general


@SETTINGS
@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(st.sampled_from(TOKENS), max_size=12).map(b"".join),
        datagrams.map(lambda m: m.encode()),
    )
)
def test_arbitrary_datagrams_give_init_ack_or_protocol_error(data: bytes) -> None:
    try:
        message = decode_datagram(data)
    except RemoteProtocolError as error:
        assert str(error)
        assert not error.fatal
    else:
        assert isinstance(message, Init | Ack)
        assert decode_datagram(message.encode()) == message


# -- nickname comparison (decision 5) ------------------------------------------

# Letters with and without precomposed forms, combining marks in every order,
# and the characters whose case folding is more than a lower-case letter.
_NAME_PIECES = st.one_of(
    st.sampled_from(
        [
            *"eEéÉßẞİǰJẖHÅΩᾳᾼΣςﬁǄǅ가",
            "\u0131",  # dotless i
            "\u03b1",  # alpha
            "\u212b",  # angstrom sign
            "\u2126",  # ohm sign
            *"\u0301\u0300\u0323\u0327\u0345\u0307\u0331\u030c",  # combining marks
            *"\u1100\u1161\u11a8",  # Hangul jamo
        ]
    ),
    st.characters(categories=("Lu", "Ll", "Lt", "Lo", "Mn"), max_codepoint=0x2FFF),
)
names = st.lists(_NAME_PIECES, min_size=1, max_size=12).map("".join)


@SETTINGS
@given(names)
def test_nick_key_is_the_same_for_every_normalisation_form(name: str) -> None:
    """'José' as one code point or as 'e' plus an accent is one nickname."""
    key = nick_key(name)
    for form in ("NFC", "NFD"):
        assert nick_key(unicodedata.normalize(form, name)) == key
    assert nick_key(key) == key  # a key is its own key
    assert unicodedata.is_normalized("NFC", key)


@SETTINGS
@given(names)
def test_nick_key_is_unicode_canonical_caseless_matching(name: str) -> None:
    """Equal keys exactly when Unicode's canonical caseless match (D145) says
    two names are the same: the key is that match's form, composed."""
    standard = unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())
    assert unicodedata.normalize("NFD", nick_key(name)) == standard
