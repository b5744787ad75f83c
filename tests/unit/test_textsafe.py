"""Tests of p2pchat.textsafe.printable: other people's text shown literally, never steering the terminal."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.textsafe import printable

C0 = [chr(c) for c in range(0x00, 0x20)]
DEL = ["\x7f"]
C1 = [chr(c) for c in range(0x80, 0xA0)]
BIDI = [
    *(chr(c) for c in range(0x202A, 0x202F)),  # LRE RLE PDF LRO RLO
    *(chr(c) for c in range(0x2066, 0x206A)),  # LRI RLI FSI PDI
    "\u200e",  # LRM
    "\u200f",  # RLM
    "\u061c",  # ALM
]
SEPARATORS = ["\u2028", "\u2029"]  # line and paragraph separators
UNSAFE = frozenset(C0 + DEL + C1 + BIDI + SEPARATORS)


# -- named escapes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [("\x1b", "\\e"), ("\r", "\\r"), ("\n", "\\n"), ("\t", "\\t")],
)
def test_named_escapes(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert printable(f"a{raw}b") == f"a{shown}b"


def test_ansi_sequence_is_defused() -> None:
    assert printable("\x1b[31mred\x1b[0m") == "\\e[31mred\\e[0m"
    assert printable("\x1b]0;pwned\x07") == "\\e]0;pwned\\x07"  # OSC window title
    assert printable("\x9b2J") == "\\x9b2J"  # 8-bit CSI


def test_crlf_and_multiline_text_stay_on_one_line() -> None:
    assert printable("one\r\ntwo\nthree") == "one\\r\\ntwo\\nthree"


# -- \xNN escapes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ch", [c for c in C0 if c not in "\x1b\r\n\t"] + DEL + C1, ids=lambda c: f"U+{ord(c):04X}"
)
def test_other_c0_del_and_c1_as_hex(ch: str) -> None:
    assert printable(ch) == f"\\x{ord(ch):02x}"


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x00", "\\x00"),
        ("\x07", "\\x07"),
        ("\x08", "\\x08"),
        ("\x0b", "\\x0b"),
        ("\x0c", "\\x0c"),
        ("\x1f", "\\x1f"),
        ("\x7f", "\\x7f"),
        ("\x80", "\\x80"),
        ("\x85", "\\x85"),  # NEL
        ("\x9f", "\\x9f"),
    ],
)
def test_hex_escapes_are_two_lowercase_digits(raw: str, shown: str) -> None:
    assert printable(raw) == shown


# -- \uNNNN escapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("ch", BIDI + SEPARATORS, ids=lambda c: f"U+{ord(c):04X}")
def test_bidi_controls_and_separators_as_unicode_escapes(ch: str) -> None:
    assert printable(ch) == f"\\u{ord(ch):04x}"


def test_trojan_source_style_reordering_is_visible() -> None:
    text = "access\u202e\u2066 granted\u2069\u2066"
    assert printable(text) == "access\\u202e\\u2066 granted\\u2069\\u2066"


# -- text left alone ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello, world",
        "a: b: c",
        "back\\slash \\e \\n \\x1b",  # already looks escaped: left as typed
        "Grüße, Straße",
        "😀🎉👍🏽👨‍👩‍👧",  # includes a ZWJ sequence and a skin tone modifier
        "你好世界",
        "こんにちは",
        "한국어",
        "e\u0301 a\u0308 n\u0303",  # combining marks
        "\u00a0non-breaking\u00a0space",
        "שלום עולם",  # right-to-left text itself is fine
        "مرحبا",
        "~!@#$%^&*()_+`-={}[]|;'\",./<>?",
        "\u00a0\u00ff",  # Latin-1 after C1
    ],
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert printable(text) == text


def test_characters_just_outside_the_unsafe_ranges_are_kept() -> None:
    for ch in ("\x20", "\x7e", "\xa0", "\u202f", "\u2065", "\u206a", "\u200d"):
        assert printable(ch) == ch, f"U+{ord(ch):04X}"


# -- properties -----------------------------------------------------------------------------

_ANY_TEXT = st.text(
    st.one_of(
        st.characters(blacklist_categories=("Cs",)),
        st.sampled_from(sorted(UNSAFE)),
    ),
    max_size=200,
)
_SAFE_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",)).filter(lambda c: c not in UNSAFE),
    max_size=200,
)


@given(_ANY_TEXT)
def test_output_contains_no_unsafe_character(text: str) -> None:
    shown = printable(text)
    assert not (set(shown) & UNSAFE)
    if text.isascii():
        assert shown.isascii()
        assert shown.isprintable()


@given(_ANY_TEXT)
def test_output_is_already_safe(text: str) -> None:
    shown = printable(text)
    assert printable(shown) == shown


@given(_SAFE_TEXT)
def test_safe_text_is_unchanged(text: str) -> None:
    assert printable(text) == text


@given(_ANY_TEXT)
def test_safe_characters_survive_in_order(text: str) -> None:
    # Dropping the escapes' place-holders leaves exactly the safe characters.
    shown = printable(text)
    kept = "".join(c for c in text if c not in UNSAFE)
    assert len(shown) >= len(text)
    assert len(shown) - len(kept) == sum(
        2 if c in "\x1b\r\n\t" else 4 if ord(c) < 0x100 else 6 for c in text if c in UNSAFE
    )
