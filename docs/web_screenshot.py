"""Takes docs/web-screenshot.png: the web client in a real conversation.

Run from the repository root: ``python docs/web_screenshot.py``. It starts
``p2pchat-server --web`` on free loopback ports, two people at the page in
Debian's chromium (driven by Playwright; no browser is downloaded), and one
terminal client, lets them chat a little, and saves alice's page.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from playwright.async_api import Page, async_playwright, expect

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
OUT = Path(__file__).with_name("web-screenshot.png")


async def start_host() -> tuple[asyncio.subprocess.Process, int, str]:
    """The real server program with the web client; its chat port and the page's URL."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "p2pchat.server", "--host", "127.0.0.1", "--port", "0"),
        *("--web", "127.0.0.1:0"),
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    port = url = None
    async with asyncio.timeout(10):
        while port is None or url is None:
            line = (await proc.stderr.readline()).decode()
            if not line:
                raise SystemExit("the server did not start")
            if match := re.search(r"listening on 127\.0\.0\.1:(\d+)", line):
                port = int(match.group(1))
            elif match := re.search(r"(http://127\.0\.0\.1:\d+/)", line):
                url = match.group(1)
    return proc, port, url


async def say(page: Page, text: str) -> None:
    field = page.get_by_label("Message")
    await field.fill(text)
    await field.press("Enter")
    await expect(field).to_have_value("")


async def main() -> None:
    server, port, url = await start_host()
    carol = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "p2pchat", "--server", f"127.0.0.1:{port}", "--nick", "carol"),
        "--plain",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert carol.stdin is not None

    async def carol_types(line: str) -> None:
        assert carol.stdin is not None
        carol.stdin.write(line.encode() + b"\n")
        await carol.stdin.drain()

    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            pages = []
            for nick in ("alice", "bob"):
                context = await browser.new_context(viewport={"width": 1100, "height": 640})
                page = await context.new_page()
                await page.goto(url)
                await page.get_by_label("Nickname").fill(nick)
                await page.get_by_role("button", name="Join").click()
                await expect(page.get_by_role("tab", name="Group")).to_be_visible()
                pages.append(page)
            alice, bob = pages
            participants = alice.get_by_role("list", name="Participants")
            await expect(participants).to_contain_text("carol")

            await say(bob, "morning all! standup in 5 minutes")
            await carol_types("alice: could you share yesterday's notes?")
            await expect(alice.get_by_role("log")).to_contain_text("yesterday's notes")
            await say(alice, "sure, posting them in a sec")
            await participants.get_by_role("button", name="carol", exact=True).click()
            await expect(alice.get_by_role("tab", name="carol")).to_be_visible()
            await say(alice, "here they are: notes-0412.txt on the share")
            await carol_types("/msg alice thanks!")
            await expect(alice.get_by_role("log")).to_contain_text("thanks!")
            await alice.get_by_role("tab", name="Group").click()
            await say(bob, "ok, starting without the projector")
            await (
                bob.get_by_role("list", name="Participants")
                .get_by_role("button", name="alice", exact=True)
                .click()
            )
            await say(bob, "did the build pass for you?")
            await expect(alice.get_by_role("tab", name="bob")).to_contain_text("1 @")
            await carol_types("on my way")
            await expect(alice.get_by_role("log")).to_contain_text("on my way")
            await alice.get_by_label("Message").fill("see you there")
            await alice.screenshot(path=str(OUT))
            await browser.close()
    finally:
        for proc in (carol, server):
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    asyncio.run(main())
