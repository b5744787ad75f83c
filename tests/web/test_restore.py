"""A reload takes the session back: same nickname, same conversations, no leave and join."""

from __future__ import annotations

import json
import re

import pytest
from playwright.async_api import WebSocketRoute, expect

from tests.integration._programs import Program

from .conftest import Host, People, terminal

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_reload_restores_the_conversations(
    host: Host, people: People, programs: list[Program]
) -> None:
    alice = await people.open(host, "alice")
    bob = await terminal(programs, host, "bob")
    await alice.say("before the reload")
    await bob.type("/msg alice direct before")
    await alice.tab("bob").click()
    await expect(alice.log).to_contain_text("direct before")
    await alice.say("my answer before")
    assert (await bob.expect("chat", text="my answer before"))["from"] == "alice"

    await alice.page.reload()
    await expect(alice.tab("bob")).to_have_attribute("aria-selected", "true")
    await expect(alice.page.get_by_label("Nickname")).to_be_hidden()
    await expect(alice.log).to_contain_text("direct before")
    await expect(alice.log).to_contain_text("my answer before")
    await expect(alice.participants.get_by_role("listitem")).to_have_text(["alice (you)", "bob"])
    await alice.tab("Group").click()
    await expect(alice.log).to_contain_text("before the reload")

    # The session goes on: both ways, in both conversations.
    await bob.type("after the reload")
    await expect(alice.log).to_contain_text("after the reload")
    await alice.tab("bob").click()
    await alice.say("still here")
    await alice.tab("Group").click()
    await alice.say("still in the group")
    # Nobody saw alice leave or join again: bob only hears from her.
    events: list[dict[str, object]] = []
    while not events or events[-1] != {
        "event": "broadcast",
        "from": "alice",
        "text": "still in the group",
    }:
        events.append(json.loads(await bob.line()))
    assert {"event": "chat", "from": "alice", "text": "still here"} in events
    assert not [e for e in events if e["event"] in ("join", "leave")], events


async def test_a_dropped_connection_is_taken_back(
    host: Host, people: People, programs: list[Program]
) -> None:
    """The page's socket drops (the network, not the page): the page reconnects by itself,
    resumes, and what was said meanwhile is there."""
    routes: list[WebSocketRoute] = []

    def through(route: WebSocketRoute) -> None:
        route.connect_to_server()  # everything passes, in both directions
        routes.append(route)

    alice = await people.open(host)
    await alice.page.route_web_socket(re.compile(r"/ws$"), through)
    await alice.page.reload()
    await alice.join("alice")
    bob = await terminal(programs, host, "bob")
    await bob.type("before the drop")
    await expect(alice.log).to_contain_text("before the drop")

    await routes[0].close(code=1001, reason="dropped")  # the page sees its socket close
    await bob.type("during the drop")
    await expect(alice.log).to_contain_text("during the drop")
    assert len(routes) == 2  # a second socket: the page came back by itself
    await expect(alice.page.get_by_role("status")).to_be_hidden()
    await alice.say("after the drop")
    assert (await bob.expect("broadcast", text="after the drop"))["from"] == "alice"


async def test_a_session_taken_over_by_another_page_is_not_taken_back(
    host: Host, people: People
) -> None:
    first = await people.open(host, "alice")
    token = await first.page.evaluate("sessionStorage.getItem('p2pchat.token')")
    assert token
    second = await people.open(host)
    await second.page.evaluate("(token) => sessionStorage.setItem('p2pchat.token', token)", token)
    await second.page.reload()
    await expect(second.tab("Group")).to_have_attribute("aria-selected", "true")
    await expect(first.page.get_by_role("alert")).to_contain_text("another page")
    await expect(first.page.get_by_label("Nickname")).to_be_visible()
    await second.say("the second page has it")
    await expect(second.log).to_contain_text("the second page has it")
    # The first page left it there: the second is still in (one round trip later).
    await second.say("/who")
    await expect(second.log.locator(".line.info").last).to_contain_text("alice")
    await expect(second.page.get_by_label("Message")).to_be_visible()
