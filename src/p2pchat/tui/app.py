"""The full-screen client: a tab per conversation, a participant sidebar, an input line.

It uses only the client library: events from ``ChatClient.events()`` update
the screen, and typed lines go through ``frontend.execute`` like in the
line modes. The app is itself the ``Output`` that ``execute`` reports to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import Footer, TabbedContent, TabPane

from .. import commands
from ..client import ChatClient
from ..events import (
    BroadcastReceived,
    ChatClosed,
    ChatFailed,
    ChatOpened,
    ChatReceived,
    ClientEvent,
    Disconnected,
    Notice,
    ParticipantsListed,
    PeerJoined,
    PeerLeft,
    Registered,
    ServerError,
)
from ..frontend import Output, closed_text, execute
from ..protocol import Participant, nick_key
from ..textsafe import printable
from .widgets import CommandInput, Conversation, ParticipantList, StatusBar
from .widgets.conversation import mentions

GROUP = "group"
KEYS_HELP = """\
Keys:
  Enter          send the line to the current tab (group: broadcast; direct tab: to that peer)
  Tab            complete a nickname or command
  Up / Down      input history
  Ctrl+N/Ctrl+P  next / previous tab
  F2             go to the participant list (Enter or a click opens a direct chat)
  Escape         back to the input line
  F4             close the current direct chat and its tab
  F1             show this help
  Ctrl+Q         quit"""


def _key(peer: str) -> str:
    """The key of a conversation: GROUP, or the peer's nickname casefolded."""
    return GROUP if peer == GROUP else nick_key(peer)


def _pane_id(key: str) -> str:
    """A widget id for a conversation: ids allow few characters, nicknames many."""
    return "group" if key == GROUP else "direct-" + key.encode().hex()


def clock_now() -> str:
    return time.strftime("%H:%M:%S")


class ChatApp(App[int]):
    """The chat, full screen."""

    CSS_PATH = "app.tcss"
    TITLE = "p2pchat"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [  # noqa: RUF012 (Textual reads this class attribute)
        Binding("ctrl+n", "switch_tab(1)", "Next tab"),
        Binding("ctrl+p", "switch_tab(-1)", "Prev tab"),
        Binding("f2", "focus_people", "People"),
        Binding("escape", "focus_input", "Input", show=False),
        Binding("f4", "close_tab", "Close chat"),
        Binding("f1", "help", "Help"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        client: ChatClient,
        *,
        server: str,
        hosting: str | None = None,
        output: Callable[[Output], Output] = lambda out: out,
        clock: Callable[[], str] = clock_now,
    ) -> None:
        super().__init__()
        self.client = client
        self._server = server
        self._hosting = hosting
        self._clock = clock
        # Everything shown also goes through ``output`` (e.g. to conversation logs).
        self.out: Output = output(self)
        # Conversation key (GROUP or a casefolded nick) -> its log. Kept here, not
        # queried from the screen: a new tab mounts later than events arrive.
        self._logs: dict[str, Conversation] = {GROUP: Conversation(GROUP, clock, id="log-group")}
        self._unread: dict[str, int] = {}
        self._commands: asyncio.Queue[commands.Command] = asyncio.Queue()

    # -- layout ---------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with TabbedContent(id="tabs"), TabPane(GROUP, id=_pane_id(GROUP)):
                yield self._logs[GROUP]
            yield ParticipantList(id="people")
        yield StatusBar(self._server, self.client.nick, id="status")
        yield CommandInput(self._nicknames, id="input", placeholder="Type a message, or /help")
        yield Footer()

    def on_mount(self) -> None:
        self._log_handler = _ConversationLogHandler(self)
        logging.getLogger().addHandler(self._log_handler)
        status = self.query_one(StatusBar)
        status.hosting = self._hosting
        if self._hosting:
            self.hosting(self._hosting)
        self.query_one(CommandInput).focus()
        self._pump_events()
        self._run_commands()

    def on_unmount(self) -> None:
        logging.getLogger().removeHandler(self._log_handler)

    # -- the client's events --------------------------------------------------------

    @work(exclusive=True, group="events")
    async def _pump_events(self) -> None:
        async for event in self.client.events():
            self.out.event(event)

    @work(exclusive=True, group="commands")
    async def _run_commands(self) -> None:
        # One at a time, in the order typed, without holding up the screen.
        while True:
            command = await self._commands.get()
            await execute(self.client, command, self.out)

    def event(self, event: ClientEvent) -> None:
        """Shows one client event (the Output protocol)."""
        status = self.query_one(StatusBar)
        match event:
            case Registered():
                status.connected()
                self.conversation(GROUP).notice(
                    f"*** registered as {printable(event.participant.nick)} on {self._server}"
                )
            case ParticipantsListed():
                self._refresh_people()
            case PeerJoined(participant=p):
                self.conversation(GROUP).notice(
                    f"--> {printable(p.nick)} joined ({p.endpoint})", "green"
                )
                self._refresh_people()
            case PeerLeft(participant=p):
                self.conversation(GROUP).notice(f"<-- {printable(p.nick)} left", "dim red")
                self._refresh_people()
            case BroadcastReceived(nick=nick, text=text):
                mention = mentions(text, self.client.nick)
                self.conversation(GROUP).message(nick, text, highlight=mention)
                self._mark_unread(GROUP, mention)
            case ChatOpened(peer=peer, initiator=initiator):
                how = "you asked" if initiator else f"{printable(peer)} asked"
                self.conversation(peer).notice(
                    f"*** direct chat with {printable(peer)} open ({how})", "green"
                )
                self._refresh_people()
            case ChatReceived(peer=peer, text=text):
                self.conversation(peer).message(peer, text)
                self._mark_unread(peer, True)  # a direct message is always for you
            case ChatClosed(peer=peer):
                if nick_key(peer) in self._logs:  # no tab to reopen if the user closed it
                    self.conversation(peer).notice(f"*** {closed_text(event)}", "yellow")
                self._refresh_people()
            case ChatFailed(peer=peer, reason=reason, unsent=unsent):
                lost = f" ({len(unsent)} message(s) not sent)" if unsent else ""
                self.conversation(peer).error(f"direct chat failed: {reason}{lost}")
                self._refresh_people()
            case ServerError(text=text):
                self.conversation(GROUP).error(f"server: {text}")
            case Disconnected(reason=reason, retry_in=retry_in):
                status.reconnecting(retry_in)
                again = f"; reconnecting in {retry_in:.1f} s" if retry_in is not None else ""
                self.conversation(GROUP).error(f"disconnected: {reason}{again}")
            case Notice(text=text):
                self.conversation(GROUP).error(text)

    # -- the rest of the Output protocol ---------------------------------------------

    def sent(self, text: str, peer: str | None) -> None:
        self.conversation(GROUP if peer is None else peer).message(self.client.nick, text, own=True)

    def participants(self, participants: tuple[Participant, ...]) -> None:
        names = ", ".join(printable(p.nick) for p in participants)
        self._current_conversation().notice(f"*** {len(participants)} participant(s): {names}")

    def info(self, text: str) -> None:
        target = self._current_conversation()
        for line in text.splitlines():
            target.notice(printable(line), "")

    def error(self, text: str, peer: str | None = None) -> None:
        has_tab = peer is not None and nick_key(peer) in self._logs
        (self.conversation(peer) if has_tab else self._current_conversation()).error(text)  # type: ignore[arg-type]

    def hosting(self, address: str) -> None:
        self.conversation(GROUP).notice(
            f"*** hosting this chat; others join with: p2pchat --server {address}", "bold"
        )

    # -- conversations (tabs) ----------------------------------------------------------

    def conversation(self, peer: str) -> Conversation:
        """The conversation with ``peer`` (or the group), opening its tab if needed."""
        key = _key(peer)
        log = self._logs.get(key)
        if log is None:
            pane_id = _pane_id(key)
            log = self._logs[key] = Conversation(peer, self._clock, id=f"log-{pane_id}")
            self.query_one(TabbedContent).add_pane(TabPane(Content(peer), log, id=pane_id))
        return log

    def _current_key(self) -> str:
        active = self.query_one(TabbedContent).active
        for key in self._logs:
            if _pane_id(key) == active:
                return key
        return GROUP

    def _current_conversation(self) -> Conversation:
        return self._logs[self._current_key()]

    def _mark_unread(self, key_or_peer: str, mention: bool) -> None:
        key = _key(key_or_peer)
        if key == self._current_key():
            return
        self._unread[key] = self._unread.get(key, 0) + 1
        tab = self.query_one(TabbedContent).get_tab(_pane_id(key))
        tab.label = Content(f"{self._logs[key].title} ({self._unread[key]})")
        if mention:
            tab.add_class("-mention")

    @on(TabbedContent.TabActivated)
    def _tab_read(self, event: TabbedContent.TabActivated) -> None:
        key = self._current_key()
        self._unread.pop(key, None)
        event.tab.label = Content(self._logs[key].title)
        event.tab.remove_class("-mention")
        self.query_one(CommandInput).focus()

    def focus_conversation(self, peer: str) -> None:
        self.conversation(peer)
        key = _key(peer)
        self.query_one(TabbedContent).active = _pane_id(key)

    # -- people --------------------------------------------------------------------------

    def _is_peer(self, nick: str) -> bool:
        key = nick_key(nick)
        return key != nick_key(self.client.nick) and any(
            p.key == key for p in self.client.participants
        )

    def _nicknames(self) -> list[str]:
        return [p.nick for p in self.client.participants]

    def _refresh_people(self) -> None:
        participants = self.client.participants
        states = {p.key: s for p in participants if (s := self.client.chat_state(p.nick))}
        self.query_one(ParticipantList).show(participants, self.client.nick, states)
        self.query_one(StatusBar).count = len(participants)
        self.query_one(StatusBar).refresh_status()

    @on(ParticipantList.OptionSelected)
    def _open_direct(self, event: ParticipantList.OptionSelected) -> None:
        if event.option_id == nick_key(self.client.nick):
            self._current_conversation().error("that is you: choose someone else for a direct chat")
            return
        peer = next((p.nick for p in self.client.participants if p.key == event.option_id), None)
        if peer is not None:
            self._commands.put_nowait(commands.OpenChat(peer))
            self.focus_conversation(peer)

    # -- input ---------------------------------------------------------------------------

    @on(CommandInput.Submitted)
    def _submitted(self, event: CommandInput.Submitted) -> None:
        line = event.value
        box = self.query_one(CommandInput)
        box.remember(line)
        box.value = ""
        try:
            command = commands.parse(line)
        except commands.InputError as error:
            self._current_conversation().error(str(error))
            return
        match command:
            case None:
                return
            case commands.Quit():
                self.exit(0)
                return
            case commands.Help():
                self.action_help()
                return
            case commands.Say(text=text) if self._current_key() != GROUP:
                command = commands.Msg(self._logs[self._current_key()].title, text)
            case commands.OpenChat(nick=nick) if self._is_peer(nick):
                self.focus_conversation(nick)
            case commands.Msg(nick=nick) if any(
                p.key == nick_key(nick) for p in self.client.participants
            ):
                self.conversation(nick)
            case _:
                pass
        self._commands.put_nowait(command)

    # -- key actions ------------------------------------------------------------------

    def action_switch_tab(self, step: int) -> None:
        keys = list(self._logs)
        index = (keys.index(self._current_key()) + step) % len(keys)
        self.query_one(TabbedContent).active = _pane_id(keys[index])

    def action_focus_people(self) -> None:
        people = self.query_one(ParticipantList)
        if people.highlighted is None:  # start on the first one who is not us
            me = nick_key(self.client.nick)
            others = [
                i for i in range(people.option_count) if people.get_option_at_index(i).id != me
            ]
            people.highlighted = others[0] if others else 0
        people.focus()

    def action_focus_input(self) -> None:
        self.query_one(CommandInput).focus()

    def action_help(self) -> None:
        self.info(commands.HELP + "\n" + KEYS_HELP)

    async def action_close_tab(self) -> None:
        key = self._current_key()
        if key == GROUP:
            return
        peer = self._logs.pop(key).title
        self._unread.pop(key, None)
        self.client.close_chat(peer)
        await self.query_one(TabbedContent).remove_pane(_pane_id(key))
        self._refresh_people()


class _ConversationLogHandler(logging.Handler):
    """Shows the library's log records in the group tab instead of on stderr."""

    def __init__(self, app: ChatApp) -> None:
        super().__init__()
        self._app = app

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # logging must never break the UI
            self._app.conversation(GROUP).notice(
                printable(f"[{record.levelname.lower()}] {record.getMessage()}")
            )
