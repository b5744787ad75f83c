"""How the line modes show the presenter's reports (e.g. the client's own notices)."""

from __future__ import annotations

import json

import pytest

from p2pchat.events import ChatReceived, Notice
from p2pchat.linemode import JsonOutput, PlainOutput
from p2pchat.present import Presenter


def test_json_mode_shows_a_notice_as_its_own_event(capsys: pytest.CaptureFixture[str]) -> None:
    JsonOutput().show(Presenter("alice").event(Notice("10000 participants held, the limit")))
    line = capsys.readouterr().out
    assert json.loads(line) == {"event": "notice", "message": "10000 participants held, the limit"}


def test_plain_mode_shows_a_notice_as_a_warning_line(capsys: pytest.CaptureFixture[str]) -> None:
    PlainOutput().show(Presenter("alice").event(Notice("limit\x1b[31m reached")))
    line = capsys.readouterr().out
    assert line.endswith("] !!! limit\\e[31m reached\n")


def test_plain_mode_marks_direct_messages(capsys: pytest.CaptureFixture[str]) -> None:
    PlainOutput().show(Presenter("alice").event(ChatReceived("bob", "psst")))
    assert capsys.readouterr().out.endswith("] [direct] <bob> psst\n")


def test_plain_mode_leaves_out_what_we_typed(capsys: pytest.CaptureFixture[str]) -> None:
    from p2pchat.conversations import GROUP

    PlainOutput().show(Presenter("alice").sent("hello", GROUP))
    assert capsys.readouterr().out == ""
