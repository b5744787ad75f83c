"""Fixtures of the LAN tests: network namespaces of their own, joined by veth pairs.

Each test makes its namespaces with ``ip netns add`` (names unique to this process
and test), links them with veth pairs (multicast on, addresses on a /24 of their
own) and deletes them at the end; its programs run inside with ``ip netns exec``.
Nothing is sent on the machine's own interfaces. Where namespaces cannot be made
(not root, no iproute2, no permission) the tests skip, saying why; in CI they fail.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from p2pchat.discovery import OFF_VARIABLE

PYTHON = sys.executable
HERE = Path(__file__).resolve().parent
LINE_TIMEOUT = 15.0
_serial = itertools.count(1)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _why_no_namespaces() -> str | None:
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed (.ci/run installs it)"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"p2pprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as error:
        return f"ip netns add failed: {error.stderr.decode().strip()}"
    _ip("netns", "del", probe)
    return None


class Proc:
    """A program running in a namespace; its stdout and stderr read line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.started = time.monotonic()
        self.popen = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.lines: dict[str, queue.Queue[tuple[float, str]]] = {}
        self.stderr_text: list[str] = []
        for name in ("stdout", "stderr"):
            self.lines[name] = queue.Queue()
            threading.Thread(target=self._read, args=(name,), daemon=True).start()

    def _read(self, name: str) -> None:
        stream = getattr(self.popen, name)
        for raw in stream:
            text = raw.decode(errors="replace")
            if name == "stderr":
                self.stderr_text.append(text)
            self.lines[name].put((time.monotonic(), text))
        self.lines[name].put((time.monotonic(), ""))

    def line(self, stream: str = "stdout", timeout: float = LINE_TIMEOUT) -> tuple[float, str]:
        """The next line and when it was read; AssertionError at its end or after ``timeout``."""
        try:
            at, text = self.lines[stream].get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line on {stream} within {timeout} s: {self.args}") from None
        assert text, f"{stream} of {self.args} ended; stderr: {''.join(self.stderr_text)}"
        return at, text

    def wait_line(
        self, pattern: str, stream: str = "stderr", timeout: float = LINE_TIMEOUT
    ) -> float:
        deadline = time.monotonic() + timeout
        while True:
            at, text = self.line(stream, max(0.01, deadline - time.monotonic()))
            if pattern in text:
                return at

    def event(self, kind: str, timeout: float = LINE_TIMEOUT) -> tuple[float, dict[str, Any]]:
        """The next JSON object on stdout whose "event" is ``kind``."""
        deadline = time.monotonic() + timeout
        while True:
            at, text = self.line("stdout", max(0.01, deadline - time.monotonic()))
            obj = json.loads(text)
            if obj.get("event") == kind:
                return at, obj

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def wait(self, timeout: float = LINE_TIMEOUT) -> int:
        return self.popen.wait(timeout)

    def stop(self) -> None:
        """Ends the program (our own child, by its PID) if it still runs."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()


class Lan:
    """Namespaces and links made for one test."""

    def __init__(self) -> None:
        self.tag = f"{os.getpid() % 100000}x{next(_serial)}"
        self.namespaces: list[str] = []
        self.procs: list[Proc] = []
        self._links = 0
        self.env = {k: v for k, v in os.environ.items() if k != OFF_VARIABLE}

    def namespace(self) -> str:
        name = f"p2p{self.tag}n{len(self.namespaces)}"
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def link(self, a: str, ip_a: str, b: str, ip_b: str) -> str:
        """A veth pair between namespaces ``a`` and ``b`` with these /24 addresses; the
        name of ``a``'s end."""
        self._links += 1
        end_a, end_b = f"v{self.tag}a{self._links}", f"v{self.tag}b{self._links}"
        _ip("link", "add", end_a, "netns", a, "type", "veth", "peer", "name", end_b, "netns", b)
        for ns, end, ip in ((a, end_a, ip_a), (b, end_b, ip_b)):
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", end)
            _ip("-n", ns, "link", "set", end, "up", "multicast", "on")
        return end_a

    def start(self, ns: str, *args: str) -> Proc:
        """``python -m ARGS`` (or a script path) in namespace ``ns``."""
        cmd = [PYTHON, *args] if args[0].endswith(".py") else [PYTHON, "-m", *args]
        proc = Proc(["ip", "netns", "exec", ns, *cmd], self.env)
        self.procs.append(proc)
        return proc

    def run(self, ns: str, *args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, PYTHON, "-m", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )

    def discover(self, ns: str) -> list[dict[str, Any]]:
        done = self.run(ns, "p2pchat", "--discover", "--json")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    def discover_until(
        self, ns: str, wanted: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> tuple[float, list[dict[str, Any]]]:
        """Runs ``--discover --json`` in ``ns`` until ``wanted`` holds for its chats;
        returns when (monotonic) and the chats."""
        deadline = time.monotonic() + timeout
        chats: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            chats = self.discover(ns)
            if wanted(chats):
                return time.monotonic(), chats
        raise AssertionError(f"--discover in {ns} never showed what was wanted: {chats}")

    def watch(self, ns: str) -> Proc:
        """A browser that stays on in ``ns`` and prints what it sees (tests/discovery/_watch.py)."""
        watcher = self.start(ns, str(HERE / "_watch.py"))
        watcher.wait_line("browsing", "stdout")
        return watcher

    def close(self) -> None:
        for proc in self.procs:
            proc.stop()
        for ns in self.namespaces:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", ns)


@pytest.fixture
def lan() -> Iterator[Lan]:
    reason = _why_no_namespaces()
    if reason is not None:
        message = f"no network namespaces for the LAN tests: {reason}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    made = Lan()
    try:
        yield made
    finally:
        made.close()


def server_port(proc: Proc) -> int:
    """The port a p2pchat-server in the namespace listens on (from its log)."""
    text = ""
    while "listening on" not in text:
        _, text = proc.line("stderr")
    return int(text.rsplit(":", 1)[1])


__all__ = ["Lan", "Proc", "server_port", "signal"]
