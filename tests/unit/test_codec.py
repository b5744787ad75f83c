"""Table-driven tests of the pure protocol codec (p2pchat.protocol).

Encoding must give exactly the canonical bytes (docs/PROTOCOL.md decisions 1-8 and 10);
decoding must accept every reasonable variant, whether the bytes arrive whole,
one at a time, or followed by the start of the next message (the style of
h11's tests/test_io.py); errors carry the exact sentence sent back in an ERROR
and say whether the stream is lost (decision 16).
"""

from __future__ import annotations

import sys
import unicodedata

import pytest

from p2pchat.protocol import (
    DEFAULT_MAX_LINE_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    LENGTH_HARD_LIMIT,
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
    decode_datagram,
    encode_list,
    nick_key,
)

# -- helpers -----------------------------------------------------------------

ALICE = Participant("alice", "192.0.2.1", 5000)
BOB6 = Participant("bob", "2001:db8::2", 6000)

# A message each role accepts, used as "the next message" after the one tested.
NEXT = {
    Role.SERVER: (b"BROADCAST:carol:4:next\r\n", Broadcast("carol", "next")),
    Role.CLIENT: (b"ERROR:4:next\r\n", Error("next")),
    Role.PEER: (b"CHAT:4:next\r\n", Chat("next")),
}


def drain(decoder: Decoder) -> list[object]:
    """Every outcome ``next_event`` gives until NEED_DATA or a fatal error.

    An error is recorded as ("error", sentence, fatal). The loop is bounded:
    each outcome other than NEED_DATA must consume input.
    """
    out: list[object] = []
    for _ in range(10_000):
        try:
            event = decoder.next_event()
        except RemoteProtocolError as error:
            out.append(("error", str(error), error.fatal))
            if error.fatal:
                return out
            continue
        if event is NEED_DATA:
            return out
        out.append(event)
    raise AssertionError("decoder did not stop producing outcomes")


def feed_all(decoder: Decoder, pieces: list[bytes]) -> list[object]:
    """Feeds the pieces one after the other, draining after each; stops at a fatal error."""
    out: list[object] = []
    for piece in pieces:
        decoder.feed(piece)
        got = drain(decoder)
        out += got
        if got and isinstance(got[-1], tuple) and got[-1][2]:
            break
    return out


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def check_decodes(role: Role, data: bytes, expected: list[object], **limits: int) -> None:
    """``data`` gives ``expected`` fed whole, byte by byte, and followed by part of
    the next message (which then decodes once it is complete)."""
    for pieces in ([data], bytewise(data), chunked(data, 3)):
        decoder = Decoder(role, **limits)
        assert feed_all(decoder, pieces) == expected, pieces
        assert decoder.buffered == 0
        assert decoder.next_event() is NEED_DATA

    next_bytes, next_event = NEXT[role]
    for cut in (1, len(next_bytes) // 2, len(next_bytes) - 1):
        for pieces in ([data + next_bytes[:cut]], bytewise(data + next_bytes[:cut])):
            decoder = Decoder(role, **limits)
            assert feed_all(decoder, pieces) == expected
            assert decoder.buffered == cut
            assert feed_all(decoder, [next_bytes[cut:]]) == [next_event]
            assert decoder.buffered == 0


# -- encoding ----------------------------------------------------------------

ENCODINGS = [
    (Register(ALICE), b"REGISTER:alice:192.0.2.1:5000\r\n"),
    (Register(BOB6), b"REGISTER:bob:[2001:db8::2]:6000\r\n"),
    # IPv6 is stored normalised and sent bracketed, however it was given.
    (Register(Participant("bob", "[2001:DB8:0::2]", 6000)), b"REGISTER:bob:[2001:db8::2]:6000\r\n"),
    (Register(Participant("bob", "::ffff:192.0.2.9", 1)), b"REGISTER:bob:192.0.2.9:1\r\n"),
    (Register(Participant("Zoë", "0.0.0.0", 65535)), "REGISTER:Zoë:0.0.0.0:65535\r\n".encode()),
    (Register(Participant("x" * 32, "::", 1)), b"REGISTER:" + b"x" * 32 + b":[::]:1\r\n"),
    (Broadcast("bob", "hello"), b"BROADCAST:bob:5:hello\r\n"),
    (Broadcast("bob", ""), b"BROADCAST:bob:0:\r\n"),
    # Length counts UTF-8 bytes: é is 2, the emoji 4.
    (Broadcast("bob", "héllo 👋"), "BROADCAST:bob:11:héllo 👋\r\n".encode()),
    (Broadcast("bob", "a:b\r\nc\nd\re"), b"BROADCAST:bob:10:a:b\r\nc\nd\re\r\n"),
    (Broadcast("日本", "語"), "BROADCAST:日本:3:語\r\n".encode()),
    (ListRequest(), b"LIST\r\n"),
    (ParticipantList(()), b"LIST:\r\n"),
    (ParticipantList((ALICE,)), b"LIST:alice:192.0.2.1:5000\r\n"),
    # No count in front (decision 10), IPv6 bracketed.
    (
        ParticipantList((ALICE, BOB6)),
        b"LIST:alice:192.0.2.1:5000:bob:[2001:db8::2]:6000\r\n",
    ),
    (Update(Action.JOIN, ALICE), b"UPDATE:JOIN:alice:192.0.2.1:5000\r\n"),
    (Update(Action.LEAVE, BOB6), b"UPDATE:LEAVE:bob:[2001:db8::2]:6000\r\n"),
    (
        Error("nickname 'bob' is already in use"),
        b"ERROR:32:nickname 'bob' is already in use\r\n",
    ),
    (Error("é"), "ERROR:2:é\r\n".encode()),
    (Init("s3cr3t", 40000), b"INIT:s3cr3t:40000\r\n"),
    (Init("s" * 128, 1), b"INIT:" + b"s" * 128 + b":1\r\n"),
    (Init("sé cret", 65535), "INIT:sé cret:65535\r\n".encode()),
    (Ack("s3cr3t"), b"ACK:INIT:s3cr3t\r\n"),
    (Chat(""), b"CHAT:0:\r\n"),
    (Chat("hi"), b"CHAT:2:hi\r\n"),
    (Chat("a:b\r\nc"), b"CHAT:6:a:b\r\nc\r\n"),
    (Chat("🎉🎉"), "CHAT:8:🎉🎉\r\n".encode()),
]


@pytest.mark.parametrize(("message", "wire"), ENCODINGS, ids=lambda v: repr(v)[:40])
def test_encode_is_canonical(message: object, wire: bytes) -> None:
    """Decisions 1, 2, 3, 6, 10: senders send exactly the canonical form."""
    assert message.encode() == wire


def test_list_from_entries_made_beforehand_is_the_same_bytes() -> None:
    """The server builds LIST from entries encoded once at registration."""
    carol = Participant("cärol", "::ffff:10.0.0.7", 7000)
    entries = [p.encode_entry() for p in (ALICE, BOB6, carol)]
    assert entries[1] == b"bob:[2001:db8::2]:6000"
    assert encode_list(entries) == ParticipantList((ALICE, BOB6, carol)).encode()
    assert (
        encode_list(entries)
        == "LIST:alice:192.0.2.1:5000:bob:[2001:db8::2]:6000:cärol:10.0.0.7:7000\r\n".encode()
    )
    assert encode_list([]) == b"LIST:\r\n"


BAD_NICKS = [
    ("", "nickname is empty"),
    ("x" * 33, "nickname is too long: 33 characters, limit 32"),
    ("a:b", "nickname 'a:b' contains ':': no ':', spaces or control characters allowed"),
    ("a b", "nickname 'a b' contains ' ': no ':', spaces or control characters allowed"),
    ("a\tb", "nickname 'a\\tb' contains '\\t': no ':', spaces or control characters allowed"),
    ("a\r", "nickname 'a\\r' contains '\\r': no ':', spaces or control characters allowed"),
    ("a\n", "nickname 'a\\n' contains '\\n': no ':', spaces or control characters allowed"),
    ("a\x00", "nickname 'a\\x00' contains '\\x00': no ':', spaces or control characters allowed"),
    ("a\x7f", "nickname 'a\\x7f' contains '\\x7f': no ':', spaces or control characters allowed"),
    ("a\x85", "nickname 'a\\x85' contains '\\x85': no ':', spaces or control characters allowed"),
    ("a\xa0", "nickname 'a\\xa0' contains '\\xa0': no ':', spaces or control characters allowed"),
    (
        "a\u2028",
        "nickname 'a\\u2028' contains '\\u2028': no ':', spaces or control characters allowed",
    ),
]


INVISIBLE = "no invisible or formatting characters allowed"

# Decision 5: characters drawn as nothing (format characters, Unicode's
# Default_Ignorable_Code_Point) or drawn differently on each machine.
BAD_NICKS += [
    (nick, f"nickname {nick!r} contains U+{cp:04X}: {why}")
    for nick, cp, why in [
        ("eve\u202e", 0x202E, INVISIBLE),  # right-to-left override
        ("\u202dbob", 0x202D, INVISIBLE),  # left-to-right override
        ("a\u2066b", 0x2066, INVISIBLE),  # left-to-right isolate
        ("a\u061cb", 0x061C, INVISIBLE),  # Arabic letter mark
        ("x\u200b", 0x200B, INVISIBLE),  # zero-width space
        ("x\u200c", 0x200C, INVISIBLE),  # zero-width non-joiner
        ("x\u200d", 0x200D, INVISIBLE),  # zero-width joiner
        ("x\u200e", 0x200E, INVISIBLE),  # left-to-right mark
        ("x\u2060", 0x2060, INVISIBLE),  # word joiner
        ("x\u2063", 0x2063, INVISIBLE),  # invisible separator
        ("x\u2065", 0x2065, INVISIBLE),  # reserved, default-ignorable
        ("amy\ufeff", 0xFEFF, INVISIBLE),  # zero-width no-break space (BOM)
        ("bo\u00adb", 0x00AD, INVISIBLE),  # soft hyphen
        ("bo\u034fb", 0x034F, INVISIBLE),  # combining grapheme joiner
        ("\u115f", 0x115F, INVISIBLE),  # Hangul choseong filler
        ("a\u1160", 0x1160, INVISIBLE),  # Hangul jungseong filler
        ("\u3164", 0x3164, INVISIBLE),  # Hangul filler
        ("\uffa0", 0xFFA0, INVISIBLE),  # halfwidth Hangul filler
        ("a\u17b4", 0x17B4, INVISIBLE),  # Khmer inherent vowel
        ("a\u180b", 0x180B, INVISIBLE),  # Mongolian variation selector
        ("a\u180e", 0x180E, INVISIBLE),  # Mongolian vowel separator
        ("a\ufe00", 0xFE00, INVISIBLE),  # variation selector 1
        ("bob\ufe0f", 0xFE0F, INVISIBLE),  # variation selector 16
        ("a\U000e0100", 0xE0100, INVISIBLE),  # variation selector 17
        ("a\U000e01ef", 0xE01EF, INVISIBLE),  # variation selector 256
        ("a\U000e0001", 0xE0001, INVISIBLE),  # language tag
        ("a\U000e0041", 0xE0041, INVISIBLE),  # tag latin capital letter A
        ("a\U000e0fff", 0xE0FFF, INVISIBLE),  # reserved, default-ignorable
        ("a\U0001d173", 0x1D173, INVISIBLE),  # musical symbol begin beam
        ("a\u0600", 0x0600, INVISIBLE),  # Arabic number sign: a format character
        ("\u2800", 0x2800, INVISIBLE),  # braille pattern blank
        ("a\ue000", 0xE000, "no private-use characters allowed"),
        ("a\uf8ff", 0xF8FF, "no private-use characters allowed"),
        ("a\U000f0000", 0xF0000, "no private-use characters allowed"),
    ]
]


@pytest.mark.parametrize(("nick", "sentence"), BAD_NICKS)
@pytest.mark.parametrize(
    "build",
    [
        lambda nick: Participant(nick, "192.0.2.1", 5000),
        lambda nick: Broadcast(nick, "hello"),
    ],
    ids=["Participant", "Broadcast"],
)
def test_bad_nickname_is_refused(build: object, nick: str, sentence: str) -> None:
    """Decision 5: 1-32 characters, no ':', whitespace or control characters."""
    with pytest.raises(LocalProtocolError) as info:
        build(nick)
    assert str(info.value) == sentence


@pytest.mark.parametrize(
    "nick",
    [
        "Zoë",
        "José",
        "Jose\u0301",  # NFD: a combining accent is visible, and compared by NFC
        "李小龍",
        "علي",
        "नमस्ते",  # combining vowel signs and a virama
        "한국",
        "Ωμέγα",
        "😀",
        "👍🏽",  # a skin-tone modifier is a visible symbol
        "a\u0301\u0323",
        "x" * 32,
        "\U0001d54f" * 32,  # 32 four-byte characters
    ],
)
def test_visible_nicknames_are_accepted(nick: str) -> None:
    assert Participant(nick, "192.0.2.1", 5000).nick == nick


def test_every_format_and_private_use_character_is_refused() -> None:
    """The rule follows the Unicode database: each Cf and Co code point, not a list of examples."""
    for cp in range(sys.maxunicode + 1):
        ch = chr(cp)
        if unicodedata.category(ch) in ("Cf", "Co") and not ch.isspace():
            with pytest.raises(LocalProtocolError, match=f"U\\+{cp:04X}"):
                Participant(f"a{ch}", "192.0.2.1", 5000)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("bob", "BOB"),
        ("Straße", "STRASSE"),  # case folding, not lower()
        ("José", "Jose\u0301"),  # NFC and NFD
        ("JOSÉ", "jose\u0301"),
        ("\u212bngström", "Ångström"),  # the angstrom sign is canonically Å
        ("\u1fb3\u0323", "\u03b1\u0323\u03b9"),  # U+0345 folds to an iota after the dot below
        ("한", "\u1112\u1161\u11ab"),  # Hangul syllable and its jamo
    ],
)
def test_nick_key_makes_canonically_equal_names_one(one: str, other: str) -> None:
    """Decision 5: nick_key is the one definition of 'same nickname'."""
    assert nick_key(one) == nick_key(other)
    # Each spelling is kept as sent.
    assert Participant(other, "192.0.2.1", 5000).nick == other


@pytest.mark.parametrize(
    ("one", "other"),
    [("bob", "bób"), ("bob", "b\u043eb"), ("x²", "x2"), ("Ⅻ", "XII")],  # U+043E is Cyrillic
)
def test_nick_key_keeps_different_names_apart(one: str, other: str) -> None:
    # Look-alikes and compatibility forms stay different names (SECURITY.md).
    assert nick_key(one) != nick_key(other)


BAD_SECRETS = [
    ("", "secret is empty"),
    ("s" * 129, "secret is too long: 129 characters, limit 128"),
    ("a:b", "secret contains ':', CR or LF"),
    ("a\rb", "secret contains ':', CR or LF"),
    ("a\nb", "secret contains ':', CR or LF"),
    ("a\r\n", "secret contains ':', CR or LF"),
]


@pytest.mark.parametrize(("secret", "sentence"), BAD_SECRETS)
@pytest.mark.parametrize("build", [lambda s: Init(s, 5000), lambda s: Ack(s)], ids=["Init", "Ack"])
def test_bad_secret_is_refused(build: object, secret: str, sentence: str) -> None:
    """Decision 8: 1-128 characters, no ':', CR or LF."""
    with pytest.raises(LocalProtocolError) as info:
        build(secret)
    assert str(info.value) == sentence


@pytest.mark.parametrize("port", [0, 65536, -1, 100000])
@pytest.mark.parametrize(
    "build",
    [lambda p: Participant("alice", "192.0.2.1", p), lambda p: Init("s3cr3t", p)],
    ids=["Participant", "Init"],
)
def test_port_out_of_range_is_refused(build: object, port: int) -> None:
    """Decision 7: ports are 1-65535."""
    with pytest.raises(LocalProtocolError) as info:
        build(port)
    assert str(info.value) == f"port {port} is out of range 1-65535"


@pytest.mark.parametrize(
    "ip",
    [
        "",
        "localhost",
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        " 192.0.2.1",
        "192.0.2.1 ",
        "192.0.2.1\r\n",
        "[192.0.2.1",
        "2001:db8::g",
        "2001:db8:::1",
        "[2001:db8::1",
        "[[2001:db8::1]]",
        "192.0.2.1:5000",
    ],
)
def test_bad_ip_is_refused(ip: str) -> None:
    """Decision 6: IPv4 dotted quad or IPv6."""
    with pytest.raises(LocalProtocolError) as info:
        Participant("alice", ip, 5000)
    assert str(info.value) == f"{ip!r} is not an IPv4 or IPv6 address"


@pytest.mark.parametrize(
    "build",
    [
        lambda: Chat("a\ud800b"),
        lambda: Error("\udfff"),
        lambda: Broadcast("bob", "x\udc80"),
        lambda: Register(Participant("\ud800", "192.0.2.1", 5000)),
        lambda: Update(Action.JOIN, Participant("a\udbff", "192.0.2.1", 5000)),
        lambda: ParticipantList((Participant("\ud800", "192.0.2.1", 5000),)),
        lambda: Init("\ud800", 5000),
        lambda: Ack("\ud800"),
    ],
    ids=["Chat", "Error", "Broadcast", "Register", "Update", "List", "Init", "Ack"],
)
def test_lone_surrogate_is_refused(build: object) -> None:
    """Decision 4: everything on the wire is valid UTF-8."""
    with pytest.raises(LocalProtocolError) as info:
        build().encode()
    assert str(info.value) == "text contains a lone surrogate, not encodable as UTF-8"


@pytest.mark.parametrize("ip", ["fe80::1%\r\nx", "fe80::1%\nx", "fe80::1%\rx"])
def test_ipv6_zone_id_with_line_break_is_refused(ip: str) -> None:
    with pytest.raises(LocalProtocolError):
        Register(Participant("bob", ip, 5000)).encode()


@pytest.mark.parametrize("ip", ["fe80::1%eth0", "fe80::1%" + "z" * 15, "[fe80::1%12]"])
def test_ipv6_zone_id_up_to_15_characters_is_accepted(ip: str) -> None:
    assert Participant("bob", ip, 5000).ip == ip.strip("[]")


@pytest.mark.parametrize(("zone", "ip"), [(16, "fe80::1%"), (4000, "[fe80::1%")])
def test_ipv6_zone_id_over_15_characters_is_refused(zone: int, ip: str) -> None:
    """A zone id is an interface name (at most IFNAMSIZ-1 = 15) or number; the
    bound keeps every LIST entry short (see test_list_limit.py)."""
    ip += "z" * zone + ("]" if ip.startswith("[") else "")
    with pytest.raises(LocalProtocolError) as info:
        Participant("bob", ip, 5000)
    assert str(info.value) == (f"IPv6 zone id (after '%') is too long: {zone} characters, limit 15")


# -- decoding: valid input ---------------------------------------------------

DECODINGS = [
    # Role.SERVER: REGISTER, BROADCAST, LIST request.
    (Role.SERVER, b"REGISTER:alice:192.0.2.1:5000\r\n", Register(ALICE)),
    (Role.SERVER, b"REGISTER:alice:192.0.2.1:5000\n", Register(ALICE)),
    (Role.SERVER, b"register:alice:192.0.2.1:5000\r\n", Register(ALICE)),
    (Role.SERVER, b"Register:alice:192.0.2.1:5000\r\n", Register(ALICE)),
    (Role.SERVER, b"REGISTER:bob:[2001:db8::2]:6000\r\n", Register(BOB6)),
    (Role.SERVER, b"REGISTER:bob:2001:db8::2:6000\r\n", Register(BOB6)),  # unbracketed
    (Role.SERVER, b"REGISTER:bob:2001:DB8:0:0::2:6000\n", Register(BOB6)),
    (Role.SERVER, b"REGISTER:bob::::6000\r\n", Register(Participant("bob", "::", 6000))),
    (
        Role.SERVER,
        "REGISTER:Zoë:0.0.0.0:1\r\n".encode(),
        Register(Participant("Zoë", "0.0.0.0", 1)),
    ),
    (
        Role.SERVER,
        b"REGISTER:alice:192.0.2.1:65535\r\n",
        Register(Participant("alice", "192.0.2.1", 65535)),
    ),
    (Role.SERVER, b"\r\n\n\r\nREGISTER:alice:192.0.2.1:5000\r\n", Register(ALICE)),
    (Role.SERVER, b"BROADCAST:bob:5:hello\r\n", Broadcast("bob", "hello")),
    (Role.SERVER, b"BROADCAST:bob:5:hello\n", Broadcast("bob", "hello")),
    (Role.SERVER, b"broadcast:bob:5:hello\r\n", Broadcast("bob", "hello")),
    (Role.SERVER, b"BROADCAST:bob:0:\r\n", Broadcast("bob", "")),
    (Role.SERVER, b"BROADCAST:bob:3:a:b\r\n", Broadcast("bob", "a:b")),
    (Role.SERVER, b"BROADCAST:bob:3:a\rb\r\n", Broadcast("bob", "a\rb")),
    (Role.SERVER, b"BROADCAST:bob:3:a\nb\r\n", Broadcast("bob", "a\nb")),
    (Role.SERVER, b"BROADCAST:bob:4:a\r\nb\n", Broadcast("bob", "a\r\nb")),
    (Role.SERVER, b"BROADCAST:bob:2:\r\n\r\n", Broadcast("bob", "\r\n")),
    (Role.SERVER, "BROADCAST:bob:4:👋\r\n".encode(), Broadcast("bob", "👋")),
    # Length counted in characters by some implementations: accepted (decision 3).
    (Role.SERVER, "BROADCAST:bob:1:👋\r\n".encode(), Broadcast("bob", "👋")),
    (Role.SERVER, "BROADCAST:bob:5:héllo\r\n".encode(), Broadcast("bob", "héllo")),
    (Role.SERVER, "BROADCAST:日本:3:a:語\r\n".encode(), Broadcast("日本", "a:語")),
    (Role.SERVER, b"\r\nBROADCAST:bob:1:x\r\n", Broadcast("bob", "x")),
    (Role.SERVER, b"LIST\r\n", ListRequest()),
    (Role.SERVER, b"LIST\n", ListRequest()),
    (Role.SERVER, b"list\r\n", ListRequest()),
    (Role.SERVER, b"\n\r\nLiSt\r\n", ListRequest()),
    # Role.CLIENT: LIST, UPDATE, BROADCAST, ERROR.
    (Role.CLIENT, b"LIST:alice:192.0.2.1:5000\r\n", ParticipantList((ALICE,))),
    (
        Role.CLIENT,
        b"LIST:alice:192.0.2.1:5000:bob:[2001:db8::2]:6000\r\n",
        ParticipantList((ALICE, BOB6)),
    ),
    (
        Role.CLIENT,
        b"LIST:2:alice:192.0.2.1:5000:bob:[2001:db8::2]:6000\r\n",
        ParticipantList((ALICE, BOB6)),
    ),
    (Role.CLIENT, b"LIST:1:alice:192.0.2.1:5000\n", ParticipantList((ALICE,))),
    (Role.CLIENT, b"list:bob:[2001:db8::2]:6000\r\n", ParticipantList((BOB6,))),
    # A nickname made of digits is told apart from a count by the field count.
    (
        Role.CLIENT,
        b"LIST:123:192.0.2.1:5000\r\n",
        ParticipantList((Participant("123", "192.0.2.1", 5000),)),
    ),
    (
        Role.CLIENT,
        b"LIST:1:123:192.0.2.1:5000\r\n",
        ParticipantList((Participant("123", "192.0.2.1", 5000),)),
    ),
    (Role.CLIENT, b"LIST:\r\n", ParticipantList(())),
    (Role.CLIENT, b"LIST\r\n", ParticipantList(())),
    (Role.CLIENT, b"LIST:0\r\n", ParticipantList(())),
    (Role.CLIENT, b"UPDATE:JOIN:alice:192.0.2.1:5000\r\n", Update(Action.JOIN, ALICE)),
    (Role.CLIENT, b"UPDATE:LEAVE:bob:[2001:db8::2]:6000\n", Update(Action.LEAVE, BOB6)),
    (Role.CLIENT, b"UPDATE:leave:bob:2001:db8::2:6000\r\n", Update(Action.LEAVE, BOB6)),
    (Role.CLIENT, b"update:Join:alice:192.0.2.1:5000\r\n", Update(Action.JOIN, ALICE)),
    (Role.CLIENT, b"BROADCAST:bob:2:hi\r\n", Broadcast("bob", "hi")),
    (Role.CLIENT, b"ERROR:4:oops\r\n", Error("oops")),
    (Role.CLIENT, b"error:4:oops\n", Error("oops")),
    (Role.CLIENT, b"ERROR:0:\r\n", Error("")),
    (
        Role.CLIENT,
        b"ERROR:32:nickname 'bob' is already in use\r\n",
        Error("nickname 'bob' is already in use"),
    ),
    (Role.CLIENT, "ERROR:3:é:\r\n".encode(), Error("é:")),
    (Role.CLIENT, "ERROR:2:é:\r\n".encode(), Error("é:")),  # characters
    # Role.PEER: CHAT.
    (Role.PEER, b"CHAT:2:hi\r\n", Chat("hi")),
    (Role.PEER, b"CHAT:2:hi\n", Chat("hi")),
    (Role.PEER, b"chat:2:hi\r\n", Chat("hi")),
    (Role.PEER, b"Chat:0:\n", Chat("")),
    (Role.PEER, b"CHAT:6:a:b\r\nc\r\n", Chat("a:b\r\nc")),
    (Role.PEER, b"CHAT:1:\n\r\n", Chat("\n")),
    (Role.PEER, b"CHAT:1:\r\r\n", Chat("\r")),
    (Role.PEER, b"CHAT:2:\r\n\n", Chat("\r\n")),
    (Role.PEER, "CHAT:8:🎉🎉\r\n".encode(), Chat("🎉🎉")),
    (Role.PEER, "CHAT:2:🎉🎉\r\n".encode(), Chat("🎉🎉")),  # characters
    (Role.PEER, "CHAT:3:日本語\n".encode(), Chat("日本語")),  # characters, bare LF
    (Role.PEER, "CHAT:4:a\r\né\r\n".encode(), Chat("a\r\né")),  # characters
    (Role.PEER, b"\r\n\r\nCHAT:2:hi\r\n", Chat("hi")),
]


@pytest.mark.parametrize(("role", "data", "message"), DECODINGS, ids=lambda v: repr(v)[:50])
def test_decode(role: Role, data: bytes, message: object) -> None:
    """Decisions 1-3, 6, 10: bare LF, any case, Length in bytes or characters, IPv6, both LIST forms."""
    check_decodes(role, data, [message])


def test_decode_several_messages_in_one_stream() -> None:
    data = (
        b"LIST:alice:192.0.2.1:5000\r\n"
        b"UPDATE:JOIN:bob:[2001:db8::2]:6000\r\n"
        b"\r\n"
        b"BROADCAST:bob:6:hi\r\nyo\r\n"
        b"ERROR:4:oops\n"
        b"UPDATE:LEAVE:bob:2001:db8::2:6000\n"
    )
    check_decodes(
        Role.CLIENT,
        data,
        [
            ParticipantList((ALICE,)),
            Update(Action.JOIN, BOB6),
            Broadcast("bob", "hi\r\nyo"),
            Error("oops"),
            Update(Action.LEAVE, BOB6),
        ],
    )


def _role_of(message: object) -> Role | None:
    if isinstance(message, Register | Broadcast | ListRequest):
        return Role.SERVER
    if isinstance(message, ParticipantList | Update | Error):
        return Role.CLIENT
    if isinstance(message, Chat):
        return Role.PEER
    return None  # a datagram


@pytest.mark.parametrize(("message", "wire"), ENCODINGS, ids=lambda v: repr(v)[:40])
def test_canonical_bytes_decode_back(message: object, wire: bytes) -> None:
    """decode(encode(m)) == m and encode(decode(x)) == x for canonical x."""
    role = _role_of(message)
    if role is None:
        decoded = decode_datagram(wire)
    else:
        decoder = Decoder(role)
        decoder.feed(wire)
        decoded = decoder.next_event()
        assert decoder.buffered == 0
    assert decoded == message
    assert decoded.encode() == wire


def test_line_of_exactly_max_line_bytes_is_accepted() -> None:
    participant = Participant("n" * 32, "2001:db8::1:2:3", 5000)
    line = Register(participant).encode()
    assert len(line) == 64 + 2
    check_decodes(Role.SERVER, line, [Register(participant)], max_line_bytes=64)
    for pieces in ([b"X" + line], bytewise(b"X" + line)):
        decoder = Decoder(Role.SERVER, max_line_bytes=64)
        assert feed_all(decoder, pieces) == [("error", "line too long: limit 64 bytes", True)]


def test_message_of_exactly_max_message_bytes_is_accepted() -> None:
    check_decodes(
        Role.PEER, b"CHAT:16:" + b"x" * 16 + b"\r\n", [Chat("x" * 16)], max_message_bytes=16
    )


@pytest.mark.parametrize("nick", ["a[b", "[", "x[[y", "a[b]c["])
def test_list_with_open_bracket_in_nickname(nick: str) -> None:
    message = ParticipantList((Participant(nick, "192.0.2.1", 5000), BOB6))
    decoder = Decoder(Role.CLIENT)
    decoder.feed(message.encode())
    assert decoder.next_event() == message


def test_bracket_in_nickname_survives_register_and_update() -> None:
    p = Participant("a[b", "192.0.2.1", 5000)
    check_decodes(Role.SERVER, Register(p).encode(), [Register(p)])
    check_decodes(Role.CLIENT, Update(Action.JOIN, p).encode(), [Update(Action.JOIN, p)])


# -- decoding: malformed input -----------------------------------------------

NICK_SENTENCE = "nickname {!r} contains {!r}: no ':', spaces or control characters allowed"
MALFORMED_REGISTER = "malformed REGISTER: expected REGISTER:Nickname:IP-Address:UDP-Port"
MALFORMED_UPDATE = "malformed UPDATE: expected UPDATE:JOIN|LEAVE:Nickname:IP-Address:UDP-Port"
SMALL = {"max_message_bytes": 16, "max_line_bytes": 64}

# (role, bytes, sentence, fatal, decoder limits)
MALFORMED = [
    # unknown commands
    (Role.SERVER, b"HELLO\r\n", "unknown command 'HELLO'", False, {}),
    (Role.SERVER, b"FOO:bar:baz\r\n", "unknown command 'FOO'", False, {}),
    (Role.CLIENT, b"JOIN:alice\n", "unknown command 'JOIN'", False, {}),
    (Role.PEER, b"hi there\r\n", "unknown command 'HI THERE'", False, {}),
    (Role.SERVER, b"\xff\xfe:x\r\n", "unknown command '\ufffd\ufffd'", False, {}),
    # known commands not expected for the role
    (Role.SERVER, b"CHAT:2:hi\r\n", "CHAT is not expected here", False, {}),
    (Role.SERVER, b"ERROR:2:hi\r\n", "ERROR is not expected here", False, {}),
    (
        Role.SERVER,
        b"UPDATE:JOIN:alice:192.0.2.1:5000\r\n",
        "UPDATE is not expected here",
        False,
        {},
    ),
    (Role.SERVER, b"INIT:s3cr3t:5000\r\n", "INIT is not expected here", False, {}),
    (Role.SERVER, b"ACK:INIT:s3cr3t\r\n", "ACK is not expected here", False, {}),
    (Role.CLIENT, b"REGISTER:alice:192.0.2.1:5000\r\n", "REGISTER is not expected here", False, {}),
    (Role.CLIENT, b"CHAT:5:a\r\nb:\r\n", "CHAT is not expected here", False, {}),
    (Role.PEER, b"BROADCAST:bob:2:hi\r\n", "BROADCAST is not expected here", False, {}),
    (Role.PEER, b"ERROR:2:hi\r\n", "ERROR is not expected here", False, {}),
    (Role.PEER, b"LIST\r\n", "LIST is not expected here", False, {}),
    (Role.PEER, b"REGISTER:alice:192.0.2.1:5000\r\n", "REGISTER is not expected here", False, {}),
    # missing or extra fields
    (Role.SERVER, b"REGISTER\r\n", MALFORMED_REGISTER, False, {}),
    (Role.SERVER, b"REGISTER:alice\r\n", MALFORMED_REGISTER, False, {}),
    (Role.SERVER, b"REGISTER:alice:192.0.2.1\r\n", MALFORMED_REGISTER, False, {}),
    (
        Role.SERVER,
        b"REGISTER:alice:192.0.2.1:5000:7\r\n",
        "'192.0.2.1:5000' is not an IPv4 or IPv6 address",
        False,
        {},
    ),
    (
        Role.SERVER,
        b"BROADCAST\r\n",
        "malformed BROADCAST: expected BROADCAST:Nickname:Length:Message",
        False,
        {},
    ),
    (
        Role.SERVER,
        b"BROADCAST:bob:hello\r\n",
        "malformed BROADCAST: expected BROADCAST:Nickname:Length:Message",
        False,
        {},
    ),
    (Role.PEER, b"CHAT\r\n", "malformed CHAT: expected CHAT:Length:Message", False, {}),
    (Role.PEER, b"CHAT:hello\n", "malformed CHAT: expected CHAT:Length:Message", False, {}),
    (Role.CLIENT, b"ERROR:oops\r\n", "malformed ERROR: expected ERROR:Length:Message", False, {}),
    (Role.CLIENT, b"UPDATE\r\n", MALFORMED_UPDATE, False, {}),
    (Role.CLIENT, b"UPDATE:JOIN:alice:5000\r\n", MALFORMED_UPDATE, False, {}),
    # invalid nicknames
    (Role.SERVER, b"REGISTER::192.0.2.1:5000\r\n", "nickname is empty", False, {}),
    (
        Role.SERVER,
        b"REGISTER:" + b"x" * 33 + b":192.0.2.1:5000\r\n",
        "nickname is too long: 33 characters, limit 32",
        False,
        {},
    ),
    (
        Role.SERVER,
        b"REGISTER:al ice:192.0.2.1:5000\r\n",
        NICK_SENTENCE.format("al ice", " "),
        False,
        {},
    ),
    (
        Role.SERVER,
        b"REGISTER:a\tb:192.0.2.1:5000\r\n",
        NICK_SENTENCE.format("a\tb", "\t"),
        False,
        {},
    ),
    (
        Role.SERVER,
        b"REGISTER:a\rb:192.0.2.1:5000\r\n",
        NICK_SENTENCE.format("a\rb", "\r"),
        False,
        {},
    ),
    (
        Role.SERVER,
        "REGISTER:a\u00a0b:192.0.2.1:5000\r\n".encode(),
        NICK_SENTENCE.format("a\u00a0b", "\u00a0"),
        False,
        {},
    ),
    (Role.SERVER, b"BROADCAST::2:hi\r\n", "nickname is empty", False, {}),
    (Role.SERVER, b"BROADCAST:b d:2:hi\r\n", NICK_SENTENCE.format("b d", " "), False, {}),
    (Role.CLIENT, b"BROADCAST:b\x01:2:hi\r\n", NICK_SENTENCE.format("b\x01", "\x01"), False, {}),
    (
        Role.CLIENT,
        b"UPDATE:JOIN:a b:192.0.2.1:5000\r\n",
        NICK_SENTENCE.format("a b", " "),
        False,
        {},
    ),
    (
        Role.CLIENT,
        b"LIST:alice:192.0.2.1:5000:b\x7fb:192.0.2.2:5000\r\n",
        NICK_SENTENCE.format("b\x7fb", "\x7f"),
        False,
        {},
    ),
    (
        Role.SERVER,
        "REGISTER:eve\u202e:192.0.2.1:5000\r\n".encode(),
        f"nickname 'eve\\u202e' contains U+202E: {INVISIBLE}",
        False,
        {},
    ),
    (
        Role.CLIENT,
        "LIST:alice:192.0.2.1:5000:x\u200b:192.0.2.2:5000\r\n".encode(),
        f"nickname 'x\\u200b' contains U+200B: {INVISIBLE}",
        False,
        {},
    ),
    # invalid IP addresses
    (
        Role.SERVER,
        b"REGISTER:alice:[fe80::1%" + b"x" * 4000 + b"]:5000\r\n",
        "IPv6 zone id (after '%') is too long: 4000 characters, limit 15",
        False,
        {},
    ),
    (
        Role.SERVER,
        b"REGISTER:alice:999.0.2.1:5000\r\n",
        "'999.0.2.1' is not an IPv4 or IPv6 address",
        False,
        {},
    ),
    (
        Role.SERVER,
        b"REGISTER:alice:example.org:5000\r\n",
        "'example.org' is not an IPv4 or IPv6 address",
        False,
        {},
    ),
    (
        Role.SERVER,
        b"REGISTER:alice::5000\r\n",
        "'' is not an IPv4 or IPv6 address",
        False,
        {},
    ),
    (
        Role.CLIENT,
        b"UPDATE:LEAVE:bob:[2001:db8::g]:6000\r\n",
        "'[2001:db8::g]' is not an IPv4 or IPv6 address",
        False,
        {},
    ),
    (
        Role.CLIENT,
        b"LIST:bob:1.2.3:6000\r\n",
        "'1.2.3' is not an IPv4 or IPv6 address",
        False,
        {},
    ),
    # LIST does not accept unbracketed IPv6 (decision 6): its fields no longer line up.
    (
        Role.CLIENT,
        b"LIST:bob:2001:db8::2:6000\r\n",
        "port 'db8' is not a number from 1 to 65535",
        False,
        {},
    ),
    # ports
    (
        Role.SERVER,
        b"REGISTER:alice:192.0.2.1:0\r\n",
        "port 0 is out of range 1-65535",
        False,
        {},
    ),
    (
        Role.SERVER,
        b"REGISTER:alice:192.0.2.1:65536\r\n",
        "port 65536 is out of range 1-65535",
        False,
        {},
    ),
    (
        Role.SERVER,
        b"REGISTER:alice:192.0.2.1:123456\r\n",
        "port '123456' is not a number from 1 to 65535",
        False,
        {},
    ),
    (
        Role.SERVER,
        b"REGISTER:alice:192.0.2.1:http\r\n",
        "port 'http' is not a number from 1 to 65535",
        False,
        {},
    ),
    (
        Role.SERVER,
        b"REGISTER:alice:192.0.2.1:-1\r\n",
        "port '-1' is not a number from 1 to 65535",
        False,
        {},
    ),
    (
        Role.SERVER,
        b"REGISTER:alice:192.0.2.1:\r\n",
        "port '' is not a number from 1 to 65535",
        False,
        {},
    ),
    (
        Role.SERVER,
        b"REGISTER:alice:192.0.2.1:5000 \r\n",
        "port '5000 ' is not a number from 1 to 65535",
        False,
        {},
    ),
    (
        Role.CLIENT,
        b"UPDATE:JOIN:alice:192.0.2.1:0\r\n",
        "port 0 is out of range 1-65535",
        False,
        {},
    ),
    (
        Role.CLIENT,
        b"LIST:alice:192.0.2.1:99999\r\n",
        "port 99999 is out of range 1-65535",
        False,
        {},
    ),
    # invalid UTF-8 in a line and in a framed payload
    (
        Role.SERVER,
        b"REGISTER:b\xffb:192.0.2.1:5000\r\n",
        "REGISTER is not valid UTF-8",
        False,
        {},
    ),
    (Role.CLIENT, b"LIST:b\xc3:192.0.2.1:5000\r\n", "LIST is not valid UTF-8", False, {}),
    (
        Role.CLIENT,
        b"UPDATE:JOIN:\xed\xa0\x80:192.0.2.1:5000\r\n",
        "UPDATE is not valid UTF-8",
        False,
        {},
    ),
    (Role.SERVER, b"BROADCAST:bob:3:a\xffb\r\n", "BROADCAST is not valid UTF-8", False, {}),
    (Role.SERVER, b"BROADCAST:b\xffb:2:hi\r\n", "BROADCAST is not valid UTF-8", False, {}),
    (Role.CLIENT, b"ERROR:2:\xc3\x28\r\n", "ERROR is not valid UTF-8", False, {}),
    (Role.PEER, b"CHAT:1:\x80\r\n", "CHAT is not valid UTF-8", False, {}),
    (Role.PEER, b"CHAT:3:\xf0\x9f\x8e\r\n", "CHAT is not valid UTF-8", False, {}),
    # LIST count and field count
    (
        Role.CLIENT,
        b"LIST:3:alice:192.0.2.1:5000:bob:[2001:db8::2]:6000\r\n",
        "LIST says 3 participants but carries 2",
        False,
        {},
    ),
    (Role.CLIENT, b"LIST:1\r\n", "LIST says 1 participants but carries 0", False, {}),
    (
        Role.CLIENT,
        b"LIST:alice:192.0.2.1\r\n",
        "malformed LIST: expected Nickname:IP-Address:UDP-Port for each participant",
        False,
        {},
    ),
    (
        Role.CLIENT,
        b"LIST:x:alice:192.0.2.1:5000\r\n",
        "malformed LIST: expected Nickname:IP-Address:UDP-Port for each participant",
        False,
        {},
    ),
    # UPDATE action
    (
        Role.CLIENT,
        b"UPDATE:KICK:alice:192.0.2.1:5000\r\n",
        "UPDATE action 'KICK' is neither JOIN nor LEAVE",
        False,
        {},
    ),
    (
        Role.CLIENT,
        b"UPDATE::alice:192.0.2.1:5000\r\n",
        "UPDATE action '' is neither JOIN nor LEAVE",
        False,
        {},
    ),
    # a message over max_message_bytes but within 1 MiB: its payload is skipped.
    (
        Role.PEER,
        b"CHAT:17:" + b"a\r\nCHAT:2:hi\r\n:::" + b"\r\n",
        "message too long: 17 bytes, limit 16",
        False,
        SMALL,
    ),
    (
        Role.SERVER,
        b"BROADCAST:bob:20:" + b"x" * 20 + b"\n",
        "message too long: 20 bytes, limit 16",
        False,
        SMALL,
    ),
    (
        Role.SERVER,
        b"CHAT:17:" + b"y" * 17 + b"\r\n",  # too long is told before "not expected"
        "message too long: 17 bytes, limit 16",
        False,
        SMALL,
    ),
    # fatal: Length not a number
    (Role.PEER, b"CHAT:abc:hi\r\n", "Length 'abc' is not a number", True, {}),
    (Role.PEER, b"CHAT::hi\r\n", "Length '' is not a number", True, {}),
    (Role.PEER, b"CHAT:-1:hi\r\n", "Length '-1' is not a number", True, {}),
    (Role.PEER, b"CHAT: 2:hi\r\n", "Length ' 2' is not a number", True, {}),
    (Role.PEER, b"CHAT:0x10:hi\r\n", "Length '0x10' is not a number", True, {}),
    (Role.PEER, "CHAT:٣:abc\r\n".encode(), "Length '٣' is not a number", True, {}),
    (Role.SERVER, b"BROADCAST:bob:two:hi\r\n", "Length 'two' is not a number", True, {}),
    (Role.CLIENT, b"ERROR:1.5:hi\r\n", "Length '1.5' is not a number", True, {}),
    # fatal: Length over 1 MiB
    (
        Role.PEER,
        b"CHAT:1048577:",
        "Length 1048577 is over the hard limit of 1048576 bytes",
        True,
        {},
    ),
    (
        Role.SERVER,
        b"BROADCAST:bob:99999999999999999999:x\r\n",
        "Length 99999999999999999999 is over the hard limit of 1048576 bytes",
        True,
        {},
    ),
    # fatal: no line end after the payload, bytes nor characters
    (Role.PEER, b"CHAT:3:abcd\r\n", "no line end after the 3-byte message of CHAT", True, {}),
    (Role.PEER, b"CHAT:2:hi\r\rX", "no line end after the 2-byte message of CHAT", True, {}),
    (Role.PEER, b"CHAT:0:x\r\n", "no line end after the 0-byte message of CHAT", True, {}),
    (
        Role.SERVER,
        b"BROADCAST:bob:1:hi\r\n",
        "no line end after the 1-byte message of BROADCAST",
        True,
        {},
    ),
    (
        Role.CLIENT,
        "ERROR:1:éé\r\n".encode(),
        "no line end after the 1-byte message of ERROR",
        True,
        {},
    ),
    # (no line end after a skipped payload: test_oversized_message_then_missing_line_end)
    # fatal: a line over max_line_bytes
    (Role.SERVER, b"x" * 70 + b"\r\n", "line too long: limit 64 bytes", True, SMALL),
    (Role.SERVER, b"REGISTER:" + b"a" * 60 + b"\r\n", "line too long: limit 64 bytes", True, SMALL),
    (
        Role.CLIENT,
        b"LIST:" + b"a:1.2.3.4:5:" * 6 + b"\r\n",
        "line too long: limit 64 bytes",
        True,
        SMALL,
    ),
    (
        Role.SERVER,
        b"BROADCAST:" + b"n" * 60 + b":2:hi\r\n",
        "line too long: limit 64 bytes",
        True,
        SMALL,
    ),
    (Role.PEER, b"CHAT:" + b"1" * 70 + b":hi", "line too long: limit 64 bytes", True, SMALL),
    (
        Role.SERVER,
        b"REGISTER:" + b"a" * 4096 + b"\r\n",
        f"line too long: limit {DEFAULT_MAX_LINE_BYTES} bytes",
        True,
        {},
    ),
]


@pytest.mark.parametrize(
    ("role", "data", "sentence", "fatal", "limits"), MALFORMED, ids=lambda v: repr(v)[:50]
)
def test_malformed(
    role: Role, data: bytes, sentence: str, fatal: bool, limits: dict[str, int]
) -> None:
    """Each bad input gives its sentence; after a non-fatal one the next message
    decodes, after a fatal one the decoder keeps raising."""
    stream = data + NEXT[role][0]
    error = ("error", sentence, fatal)
    expected = [error] if fatal else [error, NEXT[role][1]]
    for pieces in ([stream], bytewise(stream), chunked(stream, 5)):
        decoder = Decoder(role, **limits)
        assert feed_all(decoder, pieces) == expected
        if fatal:
            assert decoder.buffered == 0
            for more in (b"", NEXT[role][0]):
                decoder.feed(more)
                with pytest.raises(RemoteProtocolError) as info:
                    decoder.next_event()
                assert str(info.value) == sentence
                assert info.value.fatal
        else:
            assert decoder.buffered == 0
            assert decoder.next_event() is NEED_DATA


def test_oversized_message_then_missing_line_end_is_two_errors() -> None:
    """The skip is announced at once (non-fatal); the garbage after it is fatal."""
    data = b"CHAT:17:" + b"z" * 17 + b"XX"
    for pieces in ([data], bytewise(data)):
        decoder = Decoder(Role.PEER, **SMALL)
        assert feed_all(decoder, pieces) == [
            ("error", "message too long: 17 bytes, limit 16", False),
            ("error", "no line end after the skipped message", True),
        ]


def test_several_errors_in_a_row_then_a_message() -> None:
    data = (
        b"HELLO\r\n"
        b"CHAT:2:hi\r\n"
        b"REGISTER:a b:192.0.2.1:5000\r\n"
        b"BROADCAST:bob:40:" + b"x" * 40 + b"\r\n"
        b"BROADCAST:bob:2:\xff\xff\r\n"
        b"LIST\r\n"
    )
    check_decodes(
        Role.SERVER,
        data,
        [
            ("error", "unknown command 'HELLO'", False),
            ("error", "CHAT is not expected here", False),
            ("error", NICK_SENTENCE.format("a b", " "), False),
            ("error", "message too long: 40 bytes, limit 16", False),
            ("error", "BROADCAST is not valid UTF-8", False),
            ListRequest(),
        ],
        **SMALL,
    )


def test_decoder_rejects_bad_limits() -> None:
    with pytest.raises(ValueError):
        Decoder(Role.SERVER, max_message_bytes=0)
    with pytest.raises(ValueError):
        Decoder(Role.SERVER, max_message_bytes=LENGTH_HARD_LIMIT + 1)
    with pytest.raises(ValueError):
        Decoder(Role.SERVER, max_line_bytes=63)
    Decoder(Role.SERVER, max_message_bytes=LENGTH_HARD_LIMIT, max_line_bytes=64)


@pytest.mark.parametrize(
    ("role", "data", "sentence"),
    [
        (
            Role.PEER,
            b"CHAT:" + b"9" * 5000 + b":",
            "Length " + "9" * 5000 + " is over the hard limit of 1048576 bytes",
        ),
        (
            Role.CLIENT,
            b"LIST:" + b"9" * 5000 + b":alice:192.0.2.1:5000\r\n",
            "LIST says " + "9" * 5000 + " participants but carries 1",
        ),
    ],
    ids=["Length", "LIST count"],
)
def test_huge_number_fields_are_protocol_errors(role: Role, data: bytes, sentence: str) -> None:
    decoder = Decoder(role, max_line_bytes=65536)
    decoder.feed(data)
    with pytest.raises(RemoteProtocolError):
        decoder.next_event()


# -- memory bound ------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [b"", b"REGISTER:", b"BROADCAST:", b"BROADCAST:bob", b"CHAT:", b"LIST:", b"HELLO:"],
)
@pytest.mark.parametrize("chunk", [1, 100, 1000])
def test_long_line_without_line_end_is_bounded(prefix: bytes, chunk: int) -> None:
    decoder = Decoder(Role.SERVER)
    stream = prefix + b"a" * (3 * DEFAULT_MAX_LINE_BYTES)
    for piece in chunked(stream, chunk):
        decoder.feed(piece)
        # Less than max_line_bytes + CRLF was held before this chunk.
        assert decoder.buffered <= DEFAULT_MAX_LINE_BYTES + 1 + chunk
        try:
            assert decoder.next_event() is NEED_DATA
        except RemoteProtocolError as error:
            assert str(error) == f"line too long: limit {DEFAULT_MAX_LINE_BYTES} bytes"
            assert error.fatal
            break
    else:
        pytest.fail("a line over the limit was never refused")
    assert decoder.buffered == 0


@pytest.mark.parametrize("chunk", [1000, 4096, 65536])
@pytest.mark.parametrize("length", [DEFAULT_MAX_MESSAGE_BYTES + 1, 70000, LENGTH_HARD_LIMIT])
def test_oversized_payload_is_skipped_not_buffered(chunk: int, length: int) -> None:
    """Decision 16: 'message too long: 70000 bytes, limit 65536', the payload
    skipped as it streams past, and the next message decoded."""
    decoder = Decoder(Role.SERVER)
    header = b"BROADCAST:bob:%d:" % length
    decoder.feed(header)
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_event()
    assert str(info.value) == f"message too long: {length} bytes, limit 65536"
    assert not info.value.fatal
    assert decoder.buffered == 0

    # The payload, with line ends and message-like bytes inside, then CRLF and
    # the next message, all cut in chunks that straddle the boundaries.
    filler = b"LIST\r\nBROADCAST:bob:2:hi\r\n:"
    payload = (filler * (length // len(filler) + 1))[:length]
    stream = payload + b"\r\n" + b"LIST\r\n"
    events = []
    skipped = 0
    for piece in chunked(stream, chunk):
        decoder.feed(piece)
        skipped += len(piece)
        if skipped <= length:
            assert decoder.buffered == 0  # never holds the skipped payload
        assert decoder.buffered <= chunk
        events += drain(decoder)
    assert events == [ListRequest()]
    assert decoder.buffered == 0


def test_oversized_payload_skipped_when_fed_byte_by_byte() -> None:
    decoder = Decoder(Role.PEER, max_message_bytes=64)
    stream = b"CHAT:300:" + b"\n" * 300 + b"\r\nCHAT:2:ok\r\n"
    events = []
    for piece in bytewise(stream):
        decoder.feed(piece)
        assert decoder.buffered <= 64
        events += drain(decoder)
    assert events == [("error", "message too long: 300 bytes, limit 64", False), Chat("ok")]


def test_valid_message_in_chunks_is_bounded_by_its_size() -> None:
    decoder = Decoder(Role.PEER)
    payload = b"x" * DEFAULT_MAX_MESSAGE_BYTES
    stream = b"CHAT:%d:" % len(payload) + payload + b"\r\n"
    events = []
    for piece in chunked(stream, 4096):
        decoder.feed(piece)
        assert decoder.buffered <= len(stream)
        events += drain(decoder)
    assert events == [Chat(payload.decode())]
    assert decoder.buffered == 0


# -- datagrams ---------------------------------------------------------------

DATAGRAMS = [
    (b"INIT:s3cr3t:40000\r\n", Init("s3cr3t", 40000)),
    (b"INIT:s3cr3t:40000\n", Init("s3cr3t", 40000)),
    (b"INIT:s3cr3t:40000", Init("s3cr3t", 40000)),
    (b"init:s3cr3t:40000\r\n", Init("s3cr3t", 40000)),
    (b"Init:s3cr3t:1", Init("s3cr3t", 1)),
    (b"INIT:s3cr3t:65535", Init("s3cr3t", 65535)),
    (b"INIT:" + b"k" * 128 + b":5000", Init("k" * 128, 5000)),
    ("INIT:sécret 🔑:5000\r\n".encode(), Init("sécret 🔑", 5000)),
    (b"INIT:Ab-_09xYz:5000", Init("Ab-_09xYz", 5000)),
    (b"ACK:INIT:s3cr3t\r\n", Ack("s3cr3t")),
    (b"ACK:INIT:s3cr3t\n", Ack("s3cr3t")),
    (b"ACK:INIT:s3cr3t", Ack("s3cr3t")),
    (b"ack:init:s3cr3t", Ack("s3cr3t")),
    (b"Ack:Init:S3CR3T\r\n", Ack("S3CR3T")),  # the secret keeps its case
    (b"ACK:INIT:" + b"k" * 128, Ack("k" * 128)),
]


@pytest.mark.parametrize(("data", "message"), DATAGRAMS, ids=lambda v: repr(v)[:40])
def test_decode_datagram(data: bytes, message: object) -> None:
    """Decisions 1, 2, 8: INIT and ACK, any case, line end optional."""
    assert decode_datagram(data) == message


@pytest.mark.parametrize("message", [Init("s3cr3t", 40000), Ack("tok_-en")])
def test_datagram_round_trip(message: object) -> None:
    assert decode_datagram(message.encode()) == message


MALFORMED_INIT = "malformed INIT: expected INIT:Secret:TCP-Port"
MALFORMED_ACK = "malformed ACK: expected ACK:INIT:Secret"

BAD_DATAGRAMS = [
    (b"", "unknown datagram ''"),
    (b"\r\n", "unknown datagram ''"),
    (b"HELLO", "unknown datagram 'HELLO'"),
    (b"CHAT:2:hi\r\n", "unknown datagram 'CHAT:2:hi'"),
    (b"INIT", MALFORMED_INIT),
    (b"INIT:s3cr3t", MALFORMED_INIT),
    (b"INIT:a:b:5000", MALFORMED_INIT),
    (b"INIT:s3cr3t:5000:", MALFORMED_INIT),
    (b"ACK", MALFORMED_ACK),
    (b"ACK:s3cr3t", MALFORMED_ACK),
    (b"ACK:FOO:s3cr3t", MALFORMED_ACK),
    (b"ACK:INIT:a:b", MALFORMED_ACK),
    (b"ACK:a\nb", MALFORMED_ACK),
    (b"INIT:s3cr3t:0", "port 0 is out of range 1-65535"),
    (b"INIT:s3cr3t:65536", "port 65536 is out of range 1-65535"),
    (b"INIT:s3cr3t:x", "port 'x' is not a number from 1 to 65535"),
    (b"INIT:s3cr3t:", "port '' is not a number from 1 to 65535"),
    (b"INIT:s3cr3t:5000\r", "port '5000\\r' is not a number from 1 to 65535"),
    (b"INIT:s3cr3t:5000\r\n\r\n", "port '5000\\r\\n' is not a number from 1 to 65535"),
    # wrong secret characters and sizes
    (b"INIT::5000", "secret is empty"),
    (b"INIT:a\rb:5000", "secret contains ':', CR or LF"),
    (b"INIT:a\nb:5000", "secret contains ':', CR or LF"),
    (b"INIT:\r\n:5000", "secret contains ':', CR or LF"),
    (b"ACK:INIT:a\rb", "secret contains ':', CR or LF"),
    (b"ACK:INIT:a\nb\r\n", "secret contains ':', CR or LF"),
    (b"ACK:INIT:", "secret is empty"),
    (b"ACK:INIT:\r\n", "secret is empty"),
    (b"INIT:" + b"k" * 129 + b":5000", "secret is too long: 129 characters, limit 128"),
    (b"ACK:INIT:" + b"k" * 129, "secret is too long: 129 characters, limit 128"),
    (b"INIT:\xff:5000", "datagram is not valid UTF-8"),
    (b"ACK:INIT:\xc3", "datagram is not valid UTF-8"),
]


@pytest.mark.parametrize(("data", "sentence"), BAD_DATAGRAMS, ids=lambda v: repr(v)[:40])
def test_decode_bad_datagram(data: bytes, sentence: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_datagram(data)
    assert str(info.value) == sentence
