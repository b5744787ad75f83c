"""The input line: history on up/down, Tab completion of nicknames and commands."""

from __future__ import annotations

from collections.abc import Callable

from textual import events
from textual.widgets import Input

from ...commands import COMMAND_NAMES


class CommandInput(Input):
    """An Input that remembers what was sent and completes names with Tab."""

    def __init__(self, nicknames: Callable[[], list[str]], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._nicknames = nicknames
        self._history: list[str] = []
        self._position = 0
        # While Tab is pressed again and again: where the word starts, its
        # candidates, which one is shown, and the text after the word.
        self._cycle: tuple[int, list[str], int, str] | None = None
        self._completed_value: str | None = None

    async def _on_key(self, event: events.Key) -> None:
        # Handled here, not as bindings: a binding runs when the key has bubbled up
        # to the app, after the keys typed behind it (a fast typist, a paste) were
        # already inserted, and would complete the wrong word.
        actions: dict[str, Callable[[], None]] = {
            "tab": self.action_complete,
            "up": lambda: self.action_history(-1),
            "down": lambda: self.action_history(1),
        }
        action = actions.get(event.key)
        if action is not None:
            event.stop()
            event.prevent_default()  # not Input's handler, nor focus moving on Tab
            action()

    def remember(self, line: str) -> None:
        if line and (not self._history or self._history[-1] != line):
            self._history.append(line)
        self._position = len(self._history)

    def action_history(self, step: int) -> None:
        if not self._history:
            return
        self._position = max(0, min(len(self._history), self._position + step))
        self.value = self._history[self._position] if self._position < len(self._history) else ""
        self.cursor_position = len(self.value)

    def candidates(self, word: str, at_start: bool) -> list[str]:
        if at_start and word.startswith("/"):
            return [c for c in COMMAND_NAMES if c.startswith(word.lower())]
        folded = word.casefold()
        return sorted(
            (n for n in self._nicknames() if n.casefold().startswith(folded)), key=str.casefold
        )

    def action_complete(self) -> None:
        value, cursor = self.value, self.cursor_position
        if self._cycle is not None and value == self._completed_value:
            start, names, index, tail = self._cycle
            index = (index + 1) % len(names)
        else:
            start = value.rfind(" ", 0, cursor) + 1
            word, tail = value[start:cursor], value[cursor:]
            names = self.candidates(word, at_start=start == 0)
            if not word or not names:
                self.app.bell()
                self._cycle = None
                return
            index = 0
        name = names[index]
        # After a nick at the start of a line, IRC clients add ": "; otherwise a space.
        suffix = ": " if start == 0 and not name.startswith("/") else " "
        self._cycle = (start, names, index, tail)
        self.value = self._completed_value = value[:start] + name + suffix + tail
        self.cursor_position = start + len(name) + len(suffix)
