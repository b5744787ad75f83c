"""The installed commands and ``python -m`` lead to the command line in p2pchat.cli."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_console_scripts_point_at_the_command_line_modules() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"p2pchat": "p2pchat.cli:main", "p2pchat-server": "p2pchat.server:main"}
    for target in scripts.values():
        module, _, name = target.partition(":")
        assert callable(getattr(importlib.import_module(module), name))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_python_m_p2pchat_is_the_p2pchat_command() -> None:
    done = _run("-m", "p2pchat", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: p2pchat [-h] [--nick NICK]")


def test_python_m_p2pchat_check_runs_the_checker() -> None:
    done = _run("-m", "p2pchat", "check", "server", "--list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("register-list ")


def test_python_m_p2pchat_server_still_works() -> None:
    done = _run("-m", "p2pchat.server", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: p2pchat-server")
