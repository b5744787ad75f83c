"""The status line: where we are, who we are, whether the server connection is up."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from ...present import count, nick_label


class StatusBar(Static):
    """Server address, nickname, connection state (with a reconnect countdown), and the
    head count while connected."""

    def __init__(self, server: str, nick: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.server = server
        self.nick = nick
        self.count = 0
        self.join: str | None = None  # the command others type to join, when we host
        self._state = "connected"
        self._retry_at: float | None = None

    def on_mount(self) -> None:
        self.set_interval(1.0, self.refresh_status)
        self.refresh_status()

    def connected(self) -> None:
        self._state, self._retry_at = "connected", None
        self.refresh_status()

    def reconnecting(self, retry_in: float | None) -> None:
        if retry_in is None:
            self._state, self._retry_at = "offline", None
        else:
            self._state, self._retry_at = "reconnecting", time.monotonic() + retry_in
        self.refresh_status()

    @property
    def state_text(self) -> str:
        if self._state == "reconnecting" and self._retry_at is not None:
            left = max(0, round(self._retry_at - time.monotonic()))
            return f"reconnecting in {left} s"
        return self._state

    def refresh_status(self) -> None:
        colour = {"connected": "green", "offline": "red"}.get(self._state, "yellow")
        line = Text()
        line.append(f" {nick_label(self.nick)}", style="bold")
        line.append(f" @ {self.server} │ ")
        line.append(f"● {self.state_text}", style=f"bold {colour}")
        if self._state == "connected":  # while away the count is stale: none is shown
            line.append(f" │ {count(self.count, 'participant')}")
        if self.join:
            line.append(f" │ others join with: {self.join}", style="italic")
        self.update(line)
