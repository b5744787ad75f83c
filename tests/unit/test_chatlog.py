"""Conversation logs: one file per conversation, appended, timestamped, escaped."""

from __future__ import annotations

import time
from pathlib import Path

from p2pchat.chatlog import ChatLog, file_name
from p2pchat.conversations import GROUP, Direct
from p2pchat.events import (
    BroadcastReceived,
    ChatClosed,
    ChatOpened,
    ChatReceived,
    ClientEvent,
    Notice,
    PeerJoined,
    PeerLeft,
    Registered,
)
from p2pchat.present import Presenter
from p2pchat.protocol import Participant

ME = Participant("alice", "127.0.0.1", 5000)
BOB = Participant("Bob", "127.0.0.1", 5001)
FIXED = time.strptime("2026-11-24 12:34:56", "%Y-%m-%d %H:%M:%S")


class Logged:
    """A ChatLog fed through the presenter, as every front end feeds it."""

    def __init__(self, log: ChatLog) -> None:
        self.log = log
        self.presenter = Presenter("alice")

    def event(self, event: ClientEvent) -> None:
        self.log.show(self.presenter.event(event))

    def sent(self, text: str, peer: str | None) -> None:
        self.log.show(self.presenter.sent(text, GROUP if peer is None else Direct(peer)))

    def close(self) -> None:
        self.log.close()


def make_log(tmp_path: Path) -> Logged:
    return Logged(ChatLog(tmp_path, "127.0.0.1:7777", clock=lambda: FIXED))


def test_each_conversation_has_its_own_file(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    for event in (
        Registered(ME),
        PeerJoined(BOB),
        BroadcastReceived("Bob", "hi all"),
        ChatOpened("Bob", initiator=False),
        ChatReceived("Bob", "psst"),
    ):
        log.event(event)
    log.sent("hey", "BOB")  # nicknames compare case-insensitively: the same file
    log.event(ChatClosed("Bob", "Bob closed the chat"))
    log.event(PeerLeft(BOB))
    log.sent("hello", None)
    log.close()
    root = tmp_path / "127.0.0.1%3A7777"
    assert (root / "group.log").read_text().splitlines() == [
        "--- log opened Tue Nov 24 12:34:56 2026",
        "2026-11-24 12:34:56 *** registered as alice (127.0.0.1:5000)",
        "2026-11-24 12:34:56 --> Bob joined (127.0.0.1:5001)",
        "2026-11-24 12:34:56 <Bob> hi all",
        "2026-11-24 12:34:56 <-- Bob left",
        "2026-11-24 12:34:56 <alice> hello",
    ]
    assert (root / "direct" / "bob.log").read_text().splitlines()[1:] == [
        "2026-11-24 12:34:56 *** direct chat with Bob open (Bob asked)",
        "2026-11-24 12:34:56 <Bob> psst",
        "2026-11-24 12:34:56 <alice> hey",
        "2026-11-24 12:34:56 *** direct chat with Bob closed (Bob closed it)",
    ]


def test_logs_are_appended_and_escaped(tmp_path: Path) -> None:
    for text in ("first \x1b[2J", "second\nline"):
        log = make_log(tmp_path)
        log.event(BroadcastReceived("eve", text))
        log.close()
    lines = (tmp_path / "127.0.0.1%3A7777" / "group.log").read_text().splitlines()
    assert lines == [
        "--- log opened Tue Nov 24 12:34:56 2026",
        "2026-11-24 12:34:56 <eve> first \\e[2J",
        "--- log opened Tue Nov 24 12:34:56 2026",
        "2026-11-24 12:34:56 <eve> second\\nline",
    ]


def test_file_names_cannot_escape_the_directory() -> None:
    assert file_name("../etc/passwd") == "%2E.%2Fetc%2Fpasswd"
    assert file_name("bob") == "bob"
    assert file_name("zoë") == "zoë"
    assert "/" not in file_name("a/b") and not file_name(".hidden").startswith(".")


def test_an_unwritable_directory_disables_logging_without_failing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    log = Logged(ChatLog(blocker, "server"))
    log.event(BroadcastReceived("bob", "hi"))  # must not raise
    log.sent("still fine", None)
    log.close()


def test_long_nicknames_and_many_peers_stay_within_limits(tmp_path: Path) -> None:
    """A 32-character nickname of non-word characters escapes to a name too long for most
    file systems: it is cut, with a digest. Fifty peers do not keep fifty files open."""
    log = make_log(tmp_path)
    long_a, long_b = "☃" * 32, "☃" * 31 + "★"
    log.event(ChatReceived(long_a, "snow"))
    log.event(ChatReceived(long_b, "star"))
    for i in range(50):
        log.event(ChatReceived(f"peer{i}", "hi"))
    log.event(ChatReceived("peer0", "again"))
    assert len(log.log._files) <= 16
    log.close()
    direct = tmp_path / "127.0.0.1%3A7777" / "direct"
    names = [p.name for p in direct.iterdir()]
    assert all(len(n.encode()) <= 124 for n in names)
    assert len({n for n in names if n.startswith("%E2")}) == 2  # still two different files
    assert (direct / "peer0.log").read_text().count("--- log opened") == 1
    assert (direct / "peer0.log").read_text().splitlines()[-1].endswith("<peer0> again")


def test_a_notice_from_the_client_goes_to_the_group_log(tmp_path: Path) -> None:
    log = make_log(tmp_path)
    log.event(Notice("10000 participants held, the limit: later joins are not shown"))
    log.close()
    lines = (tmp_path / "127.0.0.1%3A7777" / "group.log").read_text().splitlines()
    assert lines[1:] == [
        "2026-11-24 12:34:56 !!! 10000 participants held, the limit: later joins are not shown"
    ]
