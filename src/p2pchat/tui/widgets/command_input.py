"""The input line: history on up/down, Tab completion, pastes of many lines, questions."""

from __future__ import annotations

from collections.abc import Callable

from textual import events
from textual.message import Message
from textual.widgets import Input

from ... import commands
from ...protocol import nick_key

# Pasting more lines than this asks first, as WeeChat does: a paste sent by mistake
# cannot be taken back.
PASTE_ASK_LINES = 5


class CommandInput(Input):
    """An Input that sends each line it is given once, in order, however fast the keys come.

    Enter is handled here, in the order the keys arrive, not as a binding: a
    binding runs when the key has bubbled up to the app, after the keys typed
    behind it (a fast typist, a paste) were already inserted, and would send
    them all together. The same goes for Tab (completing the wrong word).
    """

    class Line(Message):
        """A line to carry out, as typed or pasted."""

        def __init__(self, value: str) -> None:
            super().__init__()
            self.value = value

    def __init__(
        self, nicknames: Callable[[], list[str]], me: Callable[[], str], **kwargs: object
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._nicknames = nicknames
        self._me = me
        self._history: list[str] = []
        self._position = 0
        # While Tab is pressed again and again: where the word starts, its
        # candidates, which one is shown, and the text after the word.
        self._cycle: tuple[int, list[str], int, str] | None = None
        self._completed_value: str | None = None
        # A question shown in place of the input: what Enter does, and Escape.
        self._question: tuple[Callable[[], None], Callable[[], None]] | None = None
        self._placeholder = ""
        self._kept = ("", 0)

    def on_mount(self) -> None:
        self._placeholder = self.placeholder

    @property
    def asking(self) -> bool:
        return self._question is not None

    def ask(
        self, question: str, yes: Callable[[], None], no: Callable[[], None] = lambda: None
    ) -> None:
        """Shows ``question`` in the input line; Enter calls ``yes``, Escape ``no``.
        What was typed is kept for after the answer."""
        if self._question is None:
            self._kept = (self.value, self.cursor_position)
        self._question = (yes, no)
        self.value = ""
        self.placeholder = question
        self.add_class("-asking")

    def _answer(self, yes: bool) -> None:
        assert self._question is not None
        on_yes, on_no = self._question
        self._question = None
        self.placeholder = self._placeholder
        self.remove_class("-asking")
        self.value, self.cursor_position = self._kept
        (on_yes if yes else on_no)()

    async def _on_key(self, event: events.Key) -> None:
        if self._question is not None:
            event.stop()
            event.prevent_default()  # nothing is typed into a question
            if event.key in ("enter", "escape"):
                self._answer(event.key == "enter")
            return
        actions: dict[str, Callable[[], None]] = {
            "enter": self.action_send,
            "tab": self.action_complete,
            "up": lambda: self.action_history(-1),
            "down": lambda: self.action_history(1),
        }
        action = actions.get(event.key)
        if action is not None:
            event.stop()
            event.prevent_default()  # not Input's handler, nor focus moving on Tab
            action()

    def _on_paste(self, event: events.Paste) -> None:
        event.stop()
        event.prevent_default()  # Input would keep the first line and drop the others
        if self._question is not None:
            return
        value, cursor = self.value, self.cursor_position
        lines = (value[:cursor] + event.text + value[cursor:]).splitlines()
        if len((event.text + ".").splitlines()) == 1:  # no line break: typed in place
            self.value = "".join(lines)
            self.cursor_position = cursor + len(event.text)
            return
        self.value = ""

        def send() -> None:
            for line in lines:
                self._send(line)

        if len(lines) > PASTE_ASK_LINES:
            self.ask(f"Paste {len(lines)} lines? Enter sends them, Escape cancels", send)
            self._kept = ("", 0)
        else:
            send()

    def _send(self, line: str) -> None:
        self.remember(line)
        self.post_message(self.Line(line))

    def action_send(self) -> None:
        line = self.value
        self.value = ""
        self._send(line)

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

    def candidates(self, word: str, before: str) -> list[str]:
        """What ``word`` may complete to, ``before`` being the line up to it."""
        if not before and word.startswith("/"):
            return [c for c in commands.COMMAND_NAMES if c.startswith(word.lower())]
        argument = commands.argument_at(before)
        if argument == commands.NEW or (argument != commands.NICK and not word):
            return []  # a new nickname is the user's to type; an empty word, nobody's
        names = self._nicknames()
        if argument == commands.NICK:  # nobody chats with, closes or ignores themselves
            me = nick_key(self._me())
            names = [n for n in names if nick_key(n) != me]
        folded = word.casefold()
        return sorted((n for n in names if n.casefold().startswith(folded)), key=str.casefold)

    def action_complete(self) -> None:
        value, cursor = self.value, self.cursor_position
        if self._cycle is not None and value == self._completed_value:
            start, names, index, tail = self._cycle
            index = (index + 1) % len(names)
        else:
            start = value.rfind(" ", 0, cursor) + 1
            word, tail = value[start:cursor], value[cursor:]
            names = self.candidates(word, value[:start])
            if not names:
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
