"""Tests of p2pchat.commands.parse: the input commands of README's table, and their usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.commands import (
    COMMAND_NAMES,
    HELP,
    NEW,
    NICK,
    TEXT,
    CloseChat,
    Help,
    Ignore,
    InputError,
    Msg,
    Nick,
    OpenChat,
    Quit,
    Say,
    Unignore,
    Who,
    argument_at,
    markdown_table,
    parse,
)

# -- broadcasts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        "hello",
        "hello world",
        "a: b: c",
        "  leading spaces are kept",
        "trailing spaces are kept  ",
        " /who",  # does not start with '/'
        "ünïcödé ✓ 你好 🎉",
        "x",
        "BROADCAST:bob:3:hey",
    ],
)
def test_plain_text_is_said_verbatim(line: str) -> None:
    assert parse(line) == Say(line)


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("//text", "/text"),
        ("//", "/"),
        ("//msg bob hi", "/msg bob hi"),
        ("///", "//"),
        ("// spaced ", "/ spaced "),
    ],
)
def test_double_slash_says_a_leading_slash(line: str, text: str) -> None:
    assert parse(line) == Say(text)


@pytest.mark.parametrize("line", ["", " ", "   ", "\t", " \t  "])
def test_empty_or_blank_line_is_nothing(line: str) -> None:
    assert parse(line) is None


@given(st.text(min_size=1).filter(lambda s: not s.startswith("/") and s.strip()))
def test_any_line_without_a_slash_is_a_broadcast(line: str) -> None:
    assert parse(line) == Say(line)


# -- /msg -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "nick", "text"),
    [
        ("/msg bob hi", "bob", "hi"),
        ("/msg bob hello there", "bob", "hello there"),
        ("/msg bob a  b   c", "bob", "a  b   c"),
        ("/msg bob time: 12:30", "bob", "time: 12:30"),
        ("/msg bob :", "bob", ":"),
        ("/msg bob /quit", "bob", "/quit"),
        ("/msg bob //x", "bob", "//x"),
        ("/msg Straße grüß dich 👋", "Straße", "grüß dich 👋"),
    ],
)
def test_msg_keeps_the_rest_of_the_line(line: str, nick: str, text: str) -> None:
    assert parse(line) == Msg(nick, text)


def test_msg_keeps_the_nick_as_typed() -> None:
    # Nicknames are matched case-insensitively later, not here.
    assert parse("/msg BoB hi") == Msg("BoB", "hi")


def test_msg_extra_spaces_before_the_nick() -> None:
    assert parse("/msg   bob hi") == Msg("bob", "hi")


@given(
    nick=st.text(st.characters(categories=("Lu", "Ll", "Nd")), min_size=1, max_size=32),
    text=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1).filter(
        lambda s: s == s.strip() and s != ""
    ),
)
def test_msg_round_trip(nick: str, text: str) -> None:
    assert parse(f"/msg {nick} {text}") == Msg(nick, text)


# -- one-nick commands ----------------------------------------------------------------

_ONE_NICK = [
    ("/chat", OpenChat),
    ("/close", CloseChat),
    ("/ignore", Ignore),
    ("/unignore", Unignore),
]


@pytest.mark.parametrize(("name", "cls"), _ONE_NICK)
def test_one_nick_commands(name: str, cls: type) -> None:
    assert parse(f"{name} bob") == cls("bob")
    assert parse(f"{name}  bob  ") == cls("bob")  # surrounding spaces do not count
    assert parse(f"{name} Straße") == cls("Straße")


# -- no-argument commands ----------------------------------------------------------------

_NO_ARG = [("/who", Who), ("/help", Help), ("/quit", Quit)]


@pytest.mark.parametrize(("name", "cls"), _NO_ARG)
def test_no_argument_commands(name: str, cls: type) -> None:
    assert parse(name) == cls()
    assert parse(f"{name} ") == cls()
    assert parse(f"{name}   ") == cls()


# -- command names are case-insensitive -------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("/MSG bob hi", Msg("bob", "hi")),
        ("/Msg bob Hi There", Msg("bob", "Hi There")),
        ("/CHAT bob", OpenChat("bob")),
        ("/Close bob", CloseChat("bob")),
        ("/IGNORE Bob", Ignore("Bob")),
        ("/UnIgnore bob", Unignore("bob")),
        ("/WHO", Who()),
        ("/Help", Help()),
        ("/QUIT", Quit()),
        ("/Nick zed", Nick("zed")),
    ],
)
def test_command_names_are_case_insensitive(line: str, command: object) -> None:
    assert parse(line) == command


def test_every_documented_command_is_known() -> None:
    assert set(COMMAND_NAMES) == {
        "/msg",
        "/chat",
        "/close",
        "/who",
        "/ignore",
        "/unignore",
        "/nick",
        "/help",
        "/quit",
    }
    for name in COMMAND_NAMES:
        assert name in HELP


# -- usage errors --------------------------------------------------------------------------


def _error(line: str) -> str:
    with pytest.raises(InputError) as excinfo:
        parse(line)
    return str(excinfo.value)


@pytest.mark.parametrize(
    "line",
    ["/msg", "/msg ", "/msg bob", "/msg bob ", "/msg bob    ", "/MSG", "/msg    "],
)
def test_msg_usage(line: str) -> None:
    assert _error(line) == "usage: /msg NICK TEXT"


@pytest.mark.parametrize(("name", "cls"), _ONE_NICK)
@pytest.mark.parametrize("args", ["", " ", "   ", " bob alice", " bob  hi there"])
def test_one_nick_usage(name: str, cls: type, args: str) -> None:
    assert _error(f"{name}{args}") == f"usage: {name} NICK"
    # The usage names the command in lower case, however it was typed.
    assert _error(f"{name.upper()}{args}") == f"usage: {name} NICK"


@pytest.mark.parametrize(("name", "cls"), _NO_ARG)
@pytest.mark.parametrize("args", [" x", " bob", " a b", "  extra  "])
def test_no_argument_usage(name: str, cls: type, args: str) -> None:
    assert _error(f"{name}{args}") == f"usage: {name}"
    assert _error(f"{name.upper()}{args}") == f"usage: {name}"


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("/foo", "/foo"),
        ("/foo bar baz", "/foo"),
        ("/FOO", "/foo"),
        ("/", "/"),
        ("/ hello", "/"),
        ("/msgbob hi", "/msgbob"),
        ("/whoami", "/whoami"),
        ("/q", "/q"),
    ],
)
def test_unknown_command(line: str, shown: str) -> None:
    assert _error(line) == f"unknown command {shown}; /help lists the commands"


def test_input_error_is_a_value_error() -> None:
    assert issubclass(InputError, ValueError)


def test_msg_keeps_the_text_exactly_as_typed() -> None:
    """Like a broadcast, a direct message keeps its spacing after the one separator."""
    assert parse("/msg bob  hi there  ") == Msg("bob", " hi there  ")


def test_nick_takes_one_new_nickname() -> None:
    assert parse("/nick  zed ") == Nick("zed")
    assert _error("/nick") == "usage: /nick NEW"
    assert _error("/nick a b") == "usage: /nick NEW"


@pytest.mark.parametrize(
    ("before", "argument"),
    [
        ("/msg ", NICK),
        ("/MSG ", NICK),
        ("/msg bob ", TEXT),
        ("/msg bob hello ", TEXT),
        ("/chat ", NICK),
        ("/close ", NICK),
        ("/ignore ", NICK),
        ("/unignore ", NICK),
        ("/nick ", NEW),
        ("/chat bob ", None),
        ("/who ", None),
        ("hello ", None),
        ("", None),
    ],
)
def test_argument_at_names_what_is_being_typed(before: str, argument: str | None) -> None:
    assert argument_at(before) == argument


def test_readme_lists_the_commands_of_the_table() -> None:
    """README's table of what you type is the one the command table generates."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert markdown_table() in readme
