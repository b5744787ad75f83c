"""Desktop notifications: on a mention or a direct message while the page is hidden."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.integration._programs import Program

from .conftest import Host, People, terminal

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Playwright cannot hide a page, nor look at the desktop: the page is told it is hidden
# when the test says so, and each Notification made is recorded instead of shown.
SPY = """
(() => {
  let hidden = false;
  Object.defineProperty(Document.prototype, "hidden", { get: () => hidden, configurable: true });
  window.hidePage = (value) => { hidden = value; };
  window.notes = [];
  class Recorded extends EventTarget {
    constructor(title, options) {
      super();
      window.notes.push([title, (options || {}).body]);
    }
    close() {}
    static get permission() { return window.Notification_permission; }
    static requestPermission() { window.Notification_permission = "granted"; return Promise.resolve("granted"); }
  }
  window.Notification_permission = "default";
  window.Notification = Recorded;
})();
"""


async def test_mentions_and_direct_messages_notify_while_the_page_is_hidden(
    host: Host, people: People, programs: list[Program]
) -> None:
    alice = await people.open(host)
    await alice.context.add_init_script(SPY)
    await alice.page.reload()
    await alice.join("alice")
    bob = await terminal(programs, host, "bob")

    # Not yet allowed: nothing, even hidden.
    await alice.page.evaluate("hidePage(true)")
    await bob.type("alice: before allowing")
    await expect(alice.log).to_contain_text("before allowing")
    assert await alice.page.evaluate("notes") == []

    await alice.page.evaluate("hidePage(false)")
    await alice.page.get_by_role("button", name="Notify me").click()
    await expect(alice.page.get_by_role("button", name="Notify me")).to_be_hidden()

    await bob.type("alice: shown, so no notification")
    await expect(alice.log).to_contain_text("shown, so no notification")
    await alice.page.evaluate("hidePage(true)")
    await bob.type("nobody named", "hey alice, hidden", "/msg alice direct and hidden")
    await expect(alice.log).to_contain_text("hey alice, hidden")
    await expect(alice.badge("bob")).to_have_text("1 @")
    # The broadcast and the direct message come by different ways: in either order.
    assert sorted(await alice.page.evaluate("notes")) == [
        ["bob", "direct and hidden"],
        ["bob in Group", "hey alice, hidden"],
    ]
