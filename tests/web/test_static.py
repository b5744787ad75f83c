"""The page's files as shipped: nothing that would read text as markup, nothing inline
(the host's CSP forbids inline script and style), nothing fetched from elsewhere."""

from __future__ import annotations

import re
from importlib.resources import files

STATIC = files("p2pchat.web") / "static"


def test_the_page_ships_as_package_data() -> None:
    names = {entry.name for entry in STATIC.iterdir()}
    assert {"index.html", "app.js", "style.css"} <= names


def test_the_script_never_reads_text_as_markup() -> None:
    script = (STATIC / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


def test_the_html_has_nothing_inline_and_nothing_from_elsewhere() -> None:
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"\sstyle\s*=", html, re.IGNORECASE)
    assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE)
    assert not re.search(r"<style", html, re.IGNORECASE)
    for script in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.IGNORECASE | re.DOTALL):
        assert script.strip() == ""
    for text in (html, (STATIC / "style.css").read_text(), (STATIC / "app.js").read_text()):
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.IGNORECASE)
