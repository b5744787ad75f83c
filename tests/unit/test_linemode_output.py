"""How the line modes show the client's own notices (e.g. a limit reached)."""

from __future__ import annotations

import json

import pytest

from p2pchat.events import Notice
from p2pchat.linemode import JsonOutput, PlainOutput


def test_json_mode_shows_a_notice_as_its_own_event(capsys: pytest.CaptureFixture[str]) -> None:
    JsonOutput().event(Notice("10000 participants held, the limit"))
    line = capsys.readouterr().out
    assert json.loads(line) == {"event": "notice", "message": "10000 participants held, the limit"}


def test_plain_mode_shows_a_notice_as_a_warning_line(capsys: pytest.CaptureFixture[str]) -> None:
    PlainOutput("alice").event(Notice("limit\x1b[31m reached"))
    line = capsys.readouterr().out
    assert line.endswith("] !!! limit\\e[31m reached\n")
