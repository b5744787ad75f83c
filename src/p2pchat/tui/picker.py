"""The full-screen picker shown when several chats are found on the LAN."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Label, OptionList
from textual.widgets.option_list import Option

from ..discovery import Chat, describe


class ChatPicker(App["Chat | None"]):
    """Lists the chats; Enter joins the one highlighted, Escape quits."""

    TITLE = "p2pchat"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [  # noqa: RUF012 (Textual reads this class attribute)
        Binding("escape", "quit_picker", "Quit"),
        Binding("ctrl+q", "quit_picker", "Quit", priority=True),
        Binding("ctrl+c", "quit_picker", "Quit", show=False, priority=True),
    ]

    def __init__(self, chats: Sequence[Chat]) -> None:
        super().__init__()
        self.chats = list(chats)

    def compose(self) -> ComposeResult:
        yield Label("Several chats were found on the LAN. Pick one to join:")
        yield OptionList(*(Option(describe(c), id=str(i)) for i, c in enumerate(self.chats)))
        yield Footer()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.exit(self.chats[event.option_index])

    def action_quit_picker(self) -> None:
        self.exit(None)
