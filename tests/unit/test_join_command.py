"""The command someone types to join a chat this program hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchat import cli


def _program(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    program = where / "p2pchat"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    return program


@pytest.fixture
def clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_short_name_when_p2pchat_on_path_is_this_program(clone: Path) -> None:
    ran = _program(clone / ".venv" / "bin")
    assert (
        cli.join_command("192.168.1.5:7777", program=str(ran), search_path=str(ran.parent))
        == "p2pchat --server 192.168.1.5:7777"
    )


def test_the_path_the_user_ran_when_p2pchat_is_not_on_path(clone: Path) -> None:
    _program(clone / ".venv" / "bin")
    assert (
        cli.join_command("192.168.1.5:7777", program=".venv/bin/p2pchat", search_path="/nowhere")
        == ".venv/bin/p2pchat --server 192.168.1.5:7777"
    )


def test_the_path_the_user_ran_when_another_p2pchat_is_on_path(clone: Path) -> None:
    _program(clone / ".venv" / "bin")
    other = _program(clone / "elsewhere")
    assert (
        cli.join_command(
            "10.0.0.7:7777", program=".venv/bin/p2pchat", search_path=str(other.parent)
        )
        == ".venv/bin/p2pchat --server 10.0.0.7:7777"
    )


def test_python_m_p2pchat_names_the_interpreter(clone: Path) -> None:
    main = str(Path(cli.__file__).with_name("__main__.py"))
    assert (
        cli.join_command(
            "10.0.0.7:7777", program=main, search_path="/nowhere", interpreter="/opt/py/bin/python3"
        )
        == "/opt/py/bin/python3 -m p2pchat --server 10.0.0.7:7777"
    )


def test_an_ipv6_address_and_a_path_with_spaces_are_quoted_for_the_shell(clone: Path) -> None:
    _program(clone / "my chats" / "bin")
    assert (
        cli.join_command("[fe80::1%eth0]:7777", program="my chats/bin/p2pchat", search_path="")
        == "'my chats/bin/p2pchat' --server '[fe80::1%eth0]:7777'"
    )


def test_the_defaults_are_this_process_and_path(
    clone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = _program(clone / ".venv" / "bin")
    monkeypatch.setattr("sys.argv", [".venv/bin/p2pchat", "--serve"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert cli.join_command("10.0.0.7:7777") == ".venv/bin/p2pchat --server 10.0.0.7:7777"
    monkeypatch.setenv("PATH", f"/usr/bin:{ran.parent}")
    assert cli.join_command("10.0.0.7:7777") == "p2pchat --server 10.0.0.7:7777"
