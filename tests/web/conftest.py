"""Fixtures of the web page's tests: Debian's chromium driven by Playwright, a real host.

The host is the real program, ``p2pchat-server --web 127.0.0.1:0``, on loopback
ports of its own per test; one browser serves a whole test module, each page a
browser context of its own (its own sessionStorage, as separate people have).
No browser is ever downloaded: without /usr/bin/chromium the tests skip, and in
CI (where .ci/run installs it) they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    Dialog,
    Locator,
    Page,
    async_playwright,
    expect,
)

from tests.integration._programs import TIMEOUT, Program

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
EXPECT_TIMEOUT_MS = 5000


def _need_chromium() -> None:
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    _need_chromium()
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@dataclass
class Host:
    """A running ``p2pchat-server --web``: its chat port and the page's URL."""

    program: Program
    chat_port: int
    url: str
    stderr: list[str] = field(default_factory=list)
    drain: asyncio.Task[None] | None = None

    async def _drain(self) -> None:
        # Keeps the pipe empty (a full one would stall the server) and the log for failures.
        assert self.program.proc.stderr is not None
        while line := await self.program.proc.stderr.readline():
            self.stderr.append(line.decode(errors="replace"))


async def start_host(*extra: str) -> Host:
    program = await Program.start(
        "p2pchat.server", "--host", "127.0.0.1", "--port", "0", "--web", "127.0.0.1:0", *extra
    )
    chat_port: int | None = None
    url: str | None = None
    seen: list[str] = []
    try:
        while chat_port is None or url is None:
            line = await program.line("stderr")
            seen.append(line)
            if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                chat_port = int(match.group(1))
            elif match := re.search(r"(http://127\.0\.0\.1:\d+)/(?!metrics)", line):
                url = match.group(1) + "/"
    except BaseException:
        program.kill()
        raise AssertionError("the host did not start:\n" + "".join(seen)) from None
    host = Host(program, chat_port, url, seen)
    host.drain = asyncio.create_task(host._drain())
    return host


@pytest_asyncio.fixture(loop_scope="module")
async def host() -> AsyncIterator[Host]:
    started = await start_host()
    try:
        yield started
    finally:
        started.program.kill()
        with contextlib.suppress(TimeoutError, ProcessLookupError):
            async with asyncio.timeout(TIMEOUT):
                await started.program.proc.wait()
        if started.drain is not None:
            started.drain.cancel()


@dataclass
class Person:
    """One person at the page in a browser context of their own."""

    context: BrowserContext
    page: Page
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def tab(self, name: str) -> Locator:
        return self.page.get_by_role("tab", name=name, exact=True)

    def badge(self, name: str) -> Locator:
        return self.tab(name).locator(".badge")

    @property
    def log(self) -> Locator:
        """The conversation on show (the others are hidden)."""
        return self.page.get_by_role("log")

    @property
    def participants(self) -> Locator:
        return self.page.get_by_role("list", name="Participants")

    async def say(self, text: str) -> None:
        field_ = self.page.get_by_label("Message")
        await field_.fill(text)
        await field_.press("Enter")
        await expect(field_).to_have_value("")

    async def join(self, nick: str) -> None:
        await self.page.get_by_label("Nickname").fill(nick)
        await self.page.get_by_role("button", name="Join").click()
        await expect(self.tab("Group")).to_have_attribute("aria-selected", "true")


class People:
    """Opens pages on a host; checks at the end that none of them saw a dialog or an error."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.people: list[Person] = []

    async def open(
        self, host: Host, nick: str | None = None, *, width: int = 1100, height: int = 750
    ) -> Person:
        context = await self.browser.new_context(viewport={"width": width, "height": height})
        page = await context.new_page()
        person = Person(context, page)
        self.people.append(person)

        async def dismiss(dialog: Dialog) -> None:
            person.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

        page.on("dialog", dismiss)
        page.on("pageerror", lambda error: person.errors.append(f"page error: {error}"))
        # A CSP refusal is reported on the console: the page must never cause one.
        page.on(
            "console",
            lambda message: (
                person.errors.append(f"console: {message.text}")
                if "Content Security Policy" in message.text
                else None
            ),
        )
        await page.goto(host.url)
        if nick is not None:
            await person.join(nick)
        return person

    async def close(self) -> None:
        for person in self.people:
            with contextlib.suppress(Exception):
                await person.context.close()


@pytest_asyncio.fixture(loop_scope="module")
async def people(browser: Browser) -> AsyncIterator[People]:
    opened = People(browser)
    yield opened
    await opened.close()
    for person in opened.people:
        assert person.dialogs == [], person.dialogs
        assert person.errors == [], person.errors


@pytest_asyncio.fixture(loop_scope="module")
async def programs() -> AsyncIterator[list[Program]]:
    """Terminal clients (and other programs) started by a test; killed at its end."""
    started: list[Program] = []
    yield started
    for program in started:
        program.kill()
    for program in started:
        with contextlib.suppress(TimeoutError, ProcessLookupError):
            async with asyncio.timeout(TIMEOUT):
                await program.proc.wait()


async def terminal(programs: list[Program], host: Host, nick: str) -> Program:
    """A ``p2pchat --json`` client of the host's chat, registered."""
    program = await Program.start(
        "p2pchat", "--server", f"127.0.0.1:{host.chat_port}", "--nick", nick, "--json"
    )
    programs.append(program)
    await program.expect("registered", nick=nick)
    return program
