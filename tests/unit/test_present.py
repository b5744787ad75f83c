"""The presenter: the one place where events and command outcomes become lines and JSON."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from p2pchat.conversations import GROUP, Direct
from p2pchat.events import (
    BroadcastReceived,
    ChatClosed,
    ChatFailed,
    ChatOpened,
    ChatReceived,
    Disconnected,
    NickChanged,
    Notice,
    ParticipantsListed,
    PeerJoined,
    PeerLeft,
    Registered,
    ServerError,
)
from p2pchat.present import Kind, Presenter, closed_text, record
from p2pchat.protocol import Participant

BOB = Participant("bob", "127.0.0.1", 5001)


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        ("closed", "direct chat with bob closed (you closed it)"),
        ("bob closed the chat", "direct chat with bob closed (bob closed it)"),
        (
            "connection to bob lost: reset",
            "direct chat with bob closed (connection to bob lost: reset)",
        ),
        ("bob sent \x1b[2J", "direct chat with bob closed (bob sent \\e[2J)"),
    ],
)
def test_closed_chats_say_why_once(reason: str, text: str) -> None:
    assert closed_text(ChatClosed("bob", reason)) == text


def test_json_records_are_the_documented_ones() -> None:
    assert record(Registered(BOB)) == {
        "event": "registered",
        "nick": "bob",
        "ip": "127.0.0.1",
        "udp_port": 5001,
    }
    assert record(ParticipantsListed((BOB,))) == {
        "event": "participants",
        "participants": [{"nick": "bob", "ip": "127.0.0.1", "udp_port": 5001}],
    }
    assert record(PeerJoined(BOB))["event"] == "join"
    assert record(PeerLeft(BOB))["event"] == "leave"
    assert record(BroadcastReceived("bob", "hi")) == {
        "event": "broadcast",
        "from": "bob",
        "text": "hi",
    }
    assert record(ChatOpened("bob", True)) == {
        "event": "chat_opened",
        "peer": "bob",
        "initiator": True,
    }
    assert record(ChatReceived("bob", "x")) == {"event": "chat", "from": "bob", "text": "x"}
    assert record(ChatClosed("bob", "closed")) == {
        "event": "chat_closed",
        "peer": "bob",
        "reason": "closed",
    }
    assert record(ChatFailed("bob", "no", ("a",))) == {
        "event": "chat_failed",
        "peer": "bob",
        "reason": "no",
        "unsent": ["a"],
    }
    assert record(ServerError("bad")) == {"event": "error", "message": "bad", "source": "server"}
    assert record(Disconnected("gone", 1.5)) == {
        "event": "disconnected",
        "reason": "gone",
        "retry_in": 1.5,
    }
    assert record(Notice("n")) == {"event": "notice", "message": "n"}
    assert record(NickChanged("alice", "alice_", "taken")) == {
        "event": "nick_changed",
        "old": "alice",
        "new": "alice_",
        "reason": "taken",
    }


def texts(presenter: Presenter, *reports: object) -> list[tuple[object, str]]:
    return [(line.conversation, line.text) for r in reports for line in r.lines]  # type: ignore[attr-defined]


def test_a_direct_text_shows_after_its_chat_opens() -> None:
    p = Presenter("alice")
    early = p.sent("psst", Direct("Bob"))
    assert early.lines == ()
    opened = p.event(ChatOpened("bob", initiator=True))
    assert texts(p, opened) == [
        (Direct("bob"), "*** direct chat with bob open (you asked)"),
        (Direct("bob"), "<alice> psst"),
    ]
    assert [line.text for line in p.sent("again", Direct("bob")).lines] == ["<alice> again"]


def test_a_direct_text_whose_chat_fails_shows_as_not_sent() -> None:
    p = Presenter("alice")
    p.sent("psst \x1b[2J", Direct("bob"))
    failed = p.event(ChatFailed("bob", "no answer", ("psst \x1b[2J",)))
    assert [(line.kind, line.text) for line in failed.lines] == [
        (Kind.ERROR, "!!! direct chat with bob failed: no answer (1 message not sent)"),
        (Kind.ERROR, "!!! not sent: psst \\e[2J"),
    ]


def test_a_participant_called_group_is_a_direct_conversation() -> None:
    p = Presenter("bob")
    (line,) = p.event(ChatReceived("Group", "secret")).lines
    assert line.conversation == Direct("group") and line.conversation != GROUP
    p.event(ChatOpened("group", initiator=True))
    (own,) = p.sent("secret", Direct("group")).lines
    assert own.conversation != GROUP


def test_nothing_from_an_ignored_person_is_shown() -> None:
    p = Presenter("alice")
    p.ignore("BOB")
    for event in (BroadcastReceived("bob", "hi"), ChatReceived("bob", "psst")):
        report = p.event(event)
        assert report.lines == () and report.record is None
    closed = p.event(ChatClosed("bob", "you ignored bob"))  # as ChatClient.ignore closes it
    assert closed.lines[0].text == "*** direct chat with bob closed (you ignored bob)"
    p.unignore("bob")
    assert p.event(BroadcastReceived("bob", "back")).lines[0].text == "<bob> back"


def test_mentions_and_a_new_nickname() -> None:
    p = Presenter("alice")
    assert p.event(BroadcastReceived("bob", "ALICE, look")).lines[0].mention
    assert not p.event(BroadcastReceived("bob", "malice")).lines[0].mention
    (line,) = p.event(NickChanged("alice", "zed", "you asked")).lines
    assert line.text == "*** alice is now zed (you asked)"
    assert p.event(BroadcastReceived("bob", "zed?")).lines[0].mention


def test_leaving_a_hosted_chat_warns_in_lines_and_json() -> None:
    report = Presenter("alice").leaving_hosted(4)
    assert report.lines[0].text == "!!! you are hosting: 4 participants will be disconnected"
    assert report.record == {
        "event": "notice",
        "message": "you are hosting: 4 participants will be disconnected",
    }


def test_a_chat_failing_shows_the_texts_the_library_did_not_send() -> None:
    """The presenter may have shown a text as sent to a chat it still thought open (its
    ChatClosed not shown yet) while the library kept it for a new chat; when that one
    fails, the text is listed as not sent, from the event, and only once."""
    p = Presenter("alice")
    p.event(ChatOpened("bob", initiator=True))
    p.sent("late", Direct("bob"))
    p.event(ChatClosed("bob", "bob closed the chat"))
    p.sent("more", Direct("bob"))  # typed after the close showed: waits here too
    failed = p.event(ChatFailed("bob", "bob did not answer", ("late", "more")))
    assert [line.text for line in failed.lines] == [
        "!!! direct chat with bob failed: bob did not answer (2 messages not sent)",
        "!!! not sent: late",
        "!!! not sent: more",
    ]


def test_a_chat_closed_says_the_reason_it_closed_for() -> None:
    """Ignoring someone after their chat closed (the event not shown yet) does not
    rewrite why it closed; the library's own reason says when /ignore closed it."""
    p = Presenter("alice")
    p.event(ChatOpened("bob", initiator=True))
    p.ignore("bob")
    closed = p.event(ChatClosed("bob", "bob closed the chat"))
    assert closed.lines[0].text == "*** direct chat with bob closed (bob closed it)"
    closed = p.event(ChatClosed("bob", "you ignored bob"))
    assert closed.lines[0].text == "*** direct chat with bob closed (you ignored bob)"


def _readme_json_table() -> dict[str, str]:
    """README's table of --json events: each event name and the text of its keys."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### JSON events (`--json`)", 1)[1].split("\n#", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            for name in re.findall(r"`(\w+)`", cells[0]):
                rows[name] = cells[1]
    return rows


def test_readme_documents_every_json_object_and_its_keys() -> None:
    """Every object --json writes has its row in README, naming each of its keys."""
    p = Presenter("alice")
    objects = [record(event) for event in EVERY_EVENT]
    objects += [
        report.record
        for report in (
            p.info("help"),
            p.error("bad"),
            p.participants((BOB,)),
            p.hosting("192.0.2.1:7777", "p2pchat --server 192.0.2.1:7777"),
            p.leaving_hosted(2),
        )
        if report.record is not None
    ]
    rows = _readme_json_table()
    for obj in objects:
        name = obj["event"]
        assert name in rows, f"README has no row for {name!r}"
        for key in obj.keys() - {"event"}:
            assert f"`{key}`" in rows[name], f"README's row for {name!r} does not name {key!r}"


EVERY_EVENT = (
    Registered(BOB),
    ParticipantsListed((BOB,)),
    PeerJoined(BOB),
    PeerLeft(BOB),
    BroadcastReceived("bob", "hi"),
    ChatOpened("bob", True),
    ChatReceived("bob", "hi"),
    ChatClosed("bob", "closed"),
    ChatFailed("bob", "no", ("a",)),
    ServerError("bad"),
    Disconnected("gone", None),
    NickChanged("a", "b", "c"),
    Notice("n"),
)


def test_only_the_presenter_escapes_for_the_chat_front_ends() -> None:
    """Escaping is decided once: no other module of the chat client uses textsafe
    (the conformance checker, p2pchat.check, is a tool of its own)."""
    src = Path(__file__).resolve().parents[2] / "src" / "p2pchat"
    users = sorted(
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if "textsafe import" in path.read_text() and path.parts[-2] != "check"
    )
    assert users == ["present.py"]


def test_a_chat_the_user_closed_while_it_opened_says_so_in_words() -> None:
    (line,) = Presenter("alice").event(ChatFailed("bob", "closed")).lines
    assert line.text == "!!! direct chat with bob failed: you closed it"
