"""A reload takes the session back: same nickname, same conversations, no leave and join."""

from __future__ import annotations

import json

import pytest
from playwright.async_api import expect

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
    events = []
    while not events or events[-1] != {
        "event": "broadcast",
        "from": "alice",
        "text": "still in the group",
    }:
        events.append(json.loads(await bob.line()))
    assert {"event": "chat", "from": "alice", "text": "still here"} in events
    assert not [e for e in events if e["event"] in ("join", "leave")], events
