"""Whatever others send is shown as text: markup in messages and nicknames runs nothing."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from playwright.async_api import expect

from p2pchat.protocol import check_nick
from tests.integration._programs import Program

from .conftest import Host, People, terminal

pytestmark = pytest.mark.asyncio(loop_scope="module")

MESSAGE = "<img src=x onerror=alert(1)>"
# Nicknames hold no whitespace and no ':', so these are the markup they can carry.
PAGE_NICK = "<img/src=x/onerror=alert(2)>"
TERMINAL_NICK = "<script>alert(3)</script>"


async def test_markup_in_messages_and_nicknames_shows_as_text(
    host: Host, people: People, programs: list[Program]
) -> None:
    assert check_nick(PAGE_NICK) == PAGE_NICK and check_nick(TERMINAL_NICK) == TERMINAL_NICK
    alice = await people.open(host, "alice")
    mallory = await people.open(host, PAGE_NICK)
    trudy = await terminal(programs, host, TERMINAL_NICK)

    await mallory.say(MESSAGE)
    await expect(alice.log.locator(".line.message")).to_contain_text([f"{PAGE_NICK} {MESSAGE}"])
    await trudy.type(MESSAGE)
    await expect(alice.log.locator(".line.message")).to_contain_text(
        [f"{PAGE_NICK} {MESSAGE}", f"{TERMINAL_NICK} {MESSAGE}"]
    )
    await trudy.type(f"/msg alice {MESSAGE}")
    await mallory.say(f"/msg alice {MESSAGE}")
    await expect(alice.participants.get_by_role("button", name=PAGE_NICK)).to_be_visible()
    await expect(alice.participants.get_by_role("button", name=TERMINAL_NICK)).to_be_visible()
    for nick in (PAGE_NICK, TERMINAL_NICK):
        await alice.tab(nick).click()
        await expect(alice.log.locator(".line.message .nick")).to_have_text(nick)
        await expect(alice.log.locator(".line.message .body")).to_have_text(MESSAGE)

    # One more round trip, so that an image's error handler would have had its turn.
    await trudy.type("/msg alice done")
    await expect(alice.log).to_contain_text("done")
    for person in (alice, mallory):
        await expect(person.page.locator("img, script:not([src]), b")).to_have_count(0)
    # The people fixture checks that no page saw a dialog (alert) or an error.


async def test_a_websocket_from_another_origin_is_refused(host: Host) -> None:
    url = host.url + "ws"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, origin="http://evil.example")
        assert refused.value.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)  # no Origin at all: no page of ours
        assert refused.value.status == 403
        # The page's own origin is let in, and can join.
        async with session.ws_connect(url, origin=host.url.rstrip("/")) as ws:
            await ws.send_json({"type": "join", "nick": "origin-ok"})
            async with asyncio.timeout(5):
                welcome = await ws.receive_json()
            assert welcome["type"] == "welcome" and welcome["nick"] == "origin-ok"
