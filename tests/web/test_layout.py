"""The page on a phone (390x844): nothing is wider than the screen, whatever people write."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.integration._programs import Program

from .conftest import Host, People, terminal

pytestmark = pytest.mark.asyncio(loop_scope="module")

PHONE = {"width": 390, "height": 844}


async def _no_sideways_scroll(page: Page) -> None:
    """Neither the page nor the conversation on show scrolls sideways (a log scrolls
    by itself, so a word too long for it would hide there rather than widen the page)."""
    widths = await page.evaluate(
        """[document.documentElement, ...document.querySelectorAll('[role="log"]:not([hidden])')]
           .map((e) => [e.scrollWidth, e.clientWidth])"""
    )
    assert len(widths) == 2
    for scroll_width, client_width in widths:
        assert scroll_width <= client_width, widths


async def test_the_phone_layout_never_scrolls_sideways(
    host: Host, people: People, programs: list[Program]
) -> None:
    long_nick = "W" * 32  # the longest a nickname may be, and among the widest letters
    phone = await people.open(host, "M" * 32, **PHONE)
    await _no_sideways_scroll(phone.page)
    other = await terminal(programs, host, long_nick)
    word = "W" * 3000
    await other.type(word, "many short words " * 150, f"/msg {'M' * 32} {word}")
    await expect(phone.log).to_contain_text(word)
    await expect(phone.tab(long_nick)).to_be_visible()
    await _no_sideways_scroll(phone.page)
    await phone.say("M" * 2000)
    await expect(phone.log.locator(".line.own")).to_contain_text("M" * 2000)
    await _no_sideways_scroll(phone.page)

    # The participants fold away behind a button, and open over the chat.
    await expect(phone.participants).to_be_hidden()
    await phone.page.get_by_role("button", name="People").click()
    await expect(phone.participants.get_by_role("button", name=long_nick)).to_be_visible()
    await _no_sideways_scroll(phone.page)
    await phone.participants.get_by_role("button", name=long_nick).click()
    await expect(phone.tab(long_nick)).to_have_attribute("aria-selected", "true")
    await expect(phone.log).to_contain_text(word)
    await expect(phone.participants).to_be_hidden()
    await _no_sideways_scroll(phone.page)
