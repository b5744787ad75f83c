"""Every command the README tells people to type works as written in a fresh shell.

A fresh shell has no virtual environment active: PATH=/usr/bin:/bin, the
repository as its directory. The programs the README's commands name must be
found there once the README's set-up has run (CI runs it in the repository, so
``.venv`` is there; elsewhere the virtual environment running these tests
stands in for it).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRESH_ENV = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")}
SETUP_MADE = ".venv/"  # what the README's set-up creates in the repository

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX shells")


def readme_commands(text: str) -> list[str]:
    """The command lines of the README: each line of an ``sh`` code block (after ``$ `` in
    a block that shows output too), and inline code that starts with a program path or
    ``python``."""
    commands: list[str] = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        lines = block.splitlines()
        if any(line.startswith("$ ") for line in lines):
            lines = [line[2:] for line in lines if line.startswith("$ ")]
        commands += [line for line in lines if line.strip()]
    commands += re.findall(r"(?<!`)`((?:python|\.venv/)[^`]* [^`]*)`(?!`)", text)
    return commands


def programs_named(command: str) -> list[str]:
    """The program of each simple command in ``command`` (split at &&, ||, |, ;)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    named: list[str] = []
    first = True
    for token in lexer:
        if token in ("&&", "||", "|", ";", "&"):
            first = True
        elif first and not re.fullmatch(r"[A-Za-z_]\w*=.*", token):
            named.append(token)
            first = False
    return named


def _venv() -> Path:
    """The set-up's virtual environment: the repository's own, else the one running us."""
    own = ROOT / ".venv"
    if own.is_dir():
        return own
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix)
    pytest.fail("no virtual environment: run the README's set-up in the repository first")


def _in_fresh_shell(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/sh", "-c", script, "sh", *args],
        cwd=ROOT,
        env=FRESH_ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_readme_commands_are_found() -> None:
    text = (ROOT / "README.md").read_text()
    commands = readme_commands(text)
    # The set-up, the test command, the server and clients, the checker, the echo bot.
    assert len(commands) >= 8, commands
    assert any("examples/echo_bot.py" in c for c in commands), commands
    venv = _venv()
    checked = set()
    for command in commands:
        for program in programs_named(command):
            if program in checked:
                continue
            checked.add(program)
            path = program
            if program.startswith(SETUP_MADE):
                path = str(venv / program.removeprefix(SETUP_MADE))
            found = _in_fresh_shell('command -v "$1"', path)
            assert found.returncode == 0, f"{program!r} in {command!r} is not found"
            if program.startswith(SETUP_MADE + "bin/p2pchat"):
                ran = _in_fresh_shell('"$1" --help', path)
                assert ran.returncode == 0, f"{program} --help: {ran.stderr}"
    assert {".venv/bin/p2pchat", ".venv/bin/p2pchat-server", ".venv/bin/python"} <= checked


def test_the_extraction_sees_commands_and_skips_output() -> None:
    text = (
        "Run `.venv/bin/p2pchat --serve` or `p2pchat check`.\n"
        "```sh\n"
        "$ printf 'a\\n' | .venv/bin/p2pchat --json\n"
        '{"event": "registered"}\n'
        "```\n"
        "```sh\n"
        "X=1 python3 -m venv .venv && .venv/bin/pip install .   # set up\n"
        "```\n"
        "```\n"
        "p2pchat [--nick NICK]\n"
        "```\n"
    )
    commands = readme_commands(text)
    assert commands == [
        "printf 'a\\n' | .venv/bin/p2pchat --json",
        "X=1 python3 -m venv .venv && .venv/bin/pip install .   # set up",
        ".venv/bin/p2pchat --serve",
    ]
    assert [programs_named(c) for c in commands] == [
        ["printf", ".venv/bin/p2pchat"],
        ["python3", ".venv/bin/pip"],
        [".venv/bin/p2pchat"],
    ]
