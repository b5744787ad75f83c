"""The participant sidebar: nick and address, yourself marked, direct-chat state shown."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ...present import nick_label
from ...protocol import Participant, nick_key
from ...state import ChatState
from .conversation import nick_colour

_STATE_MARKS = {
    ChatState.OPEN: ("⇄", "bold green"),
    ChatState.INVITING: ("…", "yellow"),
    ChatState.ACKED: ("…", "yellow"),
    ChatState.CONNECTING: ("…", "yellow"),
}
_NO_MARK = (" ", "")


class ParticipantList(OptionList):
    """Enter or a click on a participant opens (or focuses) a direct chat with them."""

    def show(
        self, participants: tuple[Participant, ...], me: str, chat_states: dict[str, ChatState]
    ) -> None:
        highlighted = self.highlighted_option.id if self.highlighted_option is not None else None
        self.clear_options()
        options = []
        for p in participants:
            label = Text()
            state = chat_states.get(p.key)
            mark, style = _NO_MARK if state is None else _STATE_MARKS.get(state, _NO_MARK)
            label.append(f"{mark} ", style=style)
            label.append(nick_label(p.nick), style=f"bold {nick_colour(p.nick)}")
            if p.key == nick_key(me):
                label.append(" (you)", style="dim")
            label.append(
                f"\n  {p.endpoint}",
                style="dim",
            )
            options.append(Option(label, id=p.key))
        self.add_options(options)
        if highlighted is not None:
            for index, option in enumerate(options):
                if option.id == highlighted:
                    self.highlighted = index
