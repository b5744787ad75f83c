"""What a browser session's page is sent, from the presenter's reports (pure)."""

from __future__ import annotations

from p2pchat.conversations import GROUP, Direct
from p2pchat.events import BroadcastReceived, ChatReceived, PeerJoined
from p2pchat.present import Presenter
from p2pchat.protocol import Participant
from p2pchat.web.view import WebView

NOW = 1_700_000_000.25


def test_a_broadcast_is_a_line_of_the_group_tab_with_its_sender_and_text() -> None:
    view, presenter = WebView(), Presenter("alice")
    report = presenter.event(BroadcastReceived("bob", "hi <b>alice</b>"))
    assert view.report(report, GROUP, NOW) == [
        {
            "type": "line",
            "tab": "group",
            "title": "Group",
            "line": {
                "time": 1_700_000_000_250,
                "kind": "message",
                "text": "<bob> hi <b>alice</b>",
                "nick": "bob",
                "body": "hi <b>alice</b>",
                "mention": True,
            },
        }
    ]


def test_a_direct_message_opens_a_tab_keyed_by_the_nickname_not_by_its_case() -> None:
    view, presenter = WebView(), Presenter("alice")
    view.report(presenter.event(ChatReceived("Group", "not the group")), GROUP, NOW)
    view.report(presenter.event(ChatReceived("GROUP", "again")), GROUP, NOW)
    tabs = view.tabs()
    assert [t["tab"] for t in tabs] == ["group", "d:group"]
    assert tabs[1]["title"] == "GROUP"  # as last written
    assert [line["body"] for line in tabs[1]["lines"]] == ["not the group", "again"]
    assert tabs[0]["lines"] == []
    assert view.conversation("d:group") == Direct("group")
    assert view.conversation("group") == GROUP
    assert view.conversation("d:nobody") is None


def test_a_line_for_wherever_the_user_is_goes_to_the_tab_it_was_typed_in() -> None:
    view, presenter = WebView(), Presenter("alice")
    view.report(presenter.event(ChatReceived("bob", "x")), GROUP, NOW)
    [message] = view.report(presenter.error("no such thing"), Direct("bob"), NOW)
    assert message["tab"] == "d:bob" and message["line"]["kind"] == "error"


def test_each_conversation_keeps_its_last_lines_only() -> None:
    view, presenter = WebView(history=3), Presenter("alice")
    for i in range(5):
        view.report(presenter.event(BroadcastReceived("bob", str(i))), GROUP, NOW + i)
    lines = view.tabs()[0]["lines"]
    assert [line["body"] for line in lines] == ["2", "3", "4"]
    assert lines[0]["time"] == int((NOW + 2) * 1000)


def test_welcome_holds_the_list_and_every_tab() -> None:
    view, presenter = WebView(), Presenter("alice")
    carol = Participant("carol", "192.0.2.3", 5003)
    view.report(presenter.event(PeerJoined(carol)), GROUP, NOW)
    welcome = view.welcome("t0ken", "alice", "192.0.2.1:7777", [carol])
    assert welcome["type"] == "welcome" and welcome["token"] == "t0ken"
    assert welcome["participants"] == [{"nick": "carol", "ip": "192.0.2.3", "udp_port": 5003}]
    assert welcome["tabs"][0]["lines"][0]["kind"] == "joined"


def test_a_conversation_keeps_at_most_its_characters_and_always_the_newest_line() -> None:
    view, presenter = WebView(history_chars=1000), Presenter("alice")
    for i in range(10):
        view.report(presenter.event(BroadcastReceived("bob", f"{i}" * 200)), GROUP, NOW)
    lines = view.tabs()[0]["lines"]
    assert sum(len(x["text"]) + len(x["body"]) for x in lines) <= 1000
    assert lines[-1]["body"] == "9" * 200
    view.report(presenter.event(BroadcastReceived("bob", "x" * 5000)), GROUP, NOW)
    assert [x["body"] for x in view.tabs()[0]["lines"]] == ["x" * 5000]


def test_past_its_direct_chats_the_one_quiet_the_longest_is_forgotten() -> None:
    view, presenter = WebView(direct_tabs=3), Presenter("alice")
    for nick in ("p1", "p2", "p3"):
        view.report(presenter.event(ChatReceived(nick, "hi")), GROUP, NOW)
    view.report(presenter.event(ChatReceived("p1", "again")), GROUP, NOW)  # p2 now quietest
    view.report(presenter.event(ChatReceived("p4", "hi")), GROUP, NOW)
    assert [t["tab"] for t in view.tabs()] == ["group", "d:p3", "d:p1", "d:p4"]
