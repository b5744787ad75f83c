"""The full-screen client: a tab per conversation, a participant sidebar, an input line.

It uses only the client library: events from ``ChatClient.events()`` go
through the presenter and its lines are drawn in their tabs; typed lines are
parsed and carried out by ``frontend.execute``, as in the line modes. The app
is itself the ``Output`` of the presenter's reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.widgets import Footer, TabbedContent, TabPane

from .. import commands
from ..client import ChatClient
from ..conversations import GROUP, Conversation, Direct
from ..core import CLOSED_BY_YOU
from ..events import (
    ChatClosed,
    ChatFailed,
    ChatOpened,
    ClientEvent,
    Disconnected,
    NickChanged,
    ParticipantsListed,
    PeerJoined,
    PeerLeft,
    Registered,
)
from ..frontend import Output, execute, others_hosted, run_line
from ..present import Kind, Presenter, Report, join_text, quit_question, title
from ..protocol import nick_key
from .widgets import CommandInput, ParticipantList, StatusBar
from .widgets import Conversation as ConversationLog

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
  Ctrl+Q         quit (Ctrl+C too)"""

HELP = commands.HELP + "\n" + KEYS_HELP

# Narrower than this, the participant list hides until F2 shows it: at 60 columns
# a 30-column list would leave the messages less than half.
NARROW = 80

_PEOPLE_EVENTS = (ParticipantsListed, PeerJoined, PeerLeft, ChatOpened, ChatClosed, ChatFailed)


def _pane_id(chat: Conversation) -> str:
    """A widget id for a conversation: ids allow few characters, nicknames many."""
    return "direct-" + chat.key.encode().hex() if isinstance(chat, Direct) else "group"


def _ends_chat(event: ClientEvent | None) -> bool:
    """Whether ``event`` ends a direct chat the user may have closed the tab of (F4):
    one that was open, or one still opening that the user closed. A tab closed
    stays closed; a chat failing for any other reason opens one, to say so."""
    return isinstance(event, ChatClosed) or (
        isinstance(event, ChatFailed) and event.reason == CLOSED_BY_YOU
    )


def clock_now() -> str:
    return time.strftime("%H:%M:%S")


class _Session:
    """A command's view of the app: the conversation it was typed in stays its own,
    even if the user moves on before it runs."""

    def __init__(self, app: ChatApp, current: Conversation) -> None:
        self._app = app
        self.current = current

    @property
    def client(self) -> ChatClient:
        return self._app.client

    @property
    def presenter(self) -> Presenter:
        return self._app.presenter

    def show(self, report: Report) -> None:
        self._app.out.show(report)

    def focus(self, chat: Direct) -> None:
        self._app.focus_conversation(chat)

    async def quit(self) -> None:
        self._app.action_quit()

    def help_text(self) -> str:
        return HELP


class ChatApp(App[int]):
    """The chat, full screen."""

    CSS_PATH = "app.tcss"
    TITLE = "p2pchat"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [  # noqa: RUF012 (Textual reads this class attribute)
        Binding("ctrl+n", "switch_tab(1)", "Next tab"),
        Binding("ctrl+p", "switch_tab(-1)", "Prev tab"),
        # Priority: handled as it arrives, so the keys typed after it (Up, Enter)
        # already go to the list, not to the input line.
        Binding("f2", "focus_people", "People", priority=True),
        Binding("escape", "focus_input", "Input", show=False),
        Binding("f4", "close_tab", "Close chat"),
        Binding("f1", "help", "Help"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        client: ChatClient,
        *,
        server: str,
        hosting: str | None = None,
        join: str | None = None,
        web: str | None = None,
        output: Callable[[Output], Output] = lambda out: out,
        clock: Callable[[], str] = clock_now,
        presenter: Presenter | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.presenter = presenter or Presenter(client.nick)
        self._server = server
        self._hosting = hosting
        # What others type to join, as the status line and the group tab show it.
        self._join = join_text(hosting, join) if hosting else None
        self._web = web  # the web client's address, when this process serves one
        self._clock = clock
        # Everything shown also goes through ``output`` (e.g. to conversation logs).
        self.out: Output = output(self)
        # Each conversation's log. Kept here, not queried from the screen: a new tab
        # mounts later than events arrive.
        self._logs: dict[Conversation, ConversationLog] = {
            GROUP: ConversationLog(GROUP, clock, id="log-group")
        }
        self._unread: dict[Conversation, int] = {}
        # Typed lines and chosen commands, with the tab each came from: carried out in order.
        self._commands: asyncio.Queue[tuple[str | commands.Command, Conversation]] = asyncio.Queue()
        self._people_shown = False  # on a narrow screen, after F2

    # -- layout ---------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with TabbedContent(id="tabs"), TabPane(GROUP.title, id=_pane_id(GROUP)):
                yield self._logs[GROUP]
            yield ParticipantList(id="people")
        yield StatusBar(self._server, self.client.nick, id="status")
        yield CommandInput(
            self._nicknames,
            lambda: self.client.nick,
            id="input",
            placeholder="Type a message, or /help",
        )
        yield Footer()

    def on_mount(self) -> None:
        self._log_handler = _ConversationLogHandler(self)
        logging.getLogger().addHandler(self._log_handler)
        status = self.query_one(StatusBar)
        status.join = f"{self._join} or {self._web}" if self._join and self._web else self._join
        if self._hosting:
            self.show(self.presenter.hosting(self._hosting, self._join, self._web))
        self._fit_people(self.size.width)
        self.query_one(CommandInput).focus()
        self._pump_events()
        self._run_commands()

    def on_unmount(self) -> None:
        logging.getLogger().removeHandler(self._log_handler)

    def on_resize(self, event: events.Resize) -> None:
        self._fit_people(event.size.width)

    def _fit_people(self, width: int) -> None:
        self.query_one(ParticipantList).display = width >= NARROW or self._people_shown

    # -- the client's events and the commands ------------------------------------------

    @work(exclusive=True, group="events")
    async def _pump_events(self) -> None:
        async for event in self.client.events():
            self.out.show(self.presenter.event(event))

    @work(exclusive=True, group="commands")
    async def _run_commands(self) -> None:
        # One at a time, in the order typed, without holding up the screen.
        while True:
            command, where = await self._commands.get()
            session = _Session(self, where)
            if isinstance(command, str):
                await run_line(session, command)
            else:
                await execute(session, command)

    def show(self, report: Report) -> None:
        """Shows one report (the Output protocol)."""
        event = report.event
        status = self.query_one(StatusBar)
        match event:
            case Registered():
                status.connected()
            case Disconnected(retry_in=retry_in):
                status.reconnecting(retry_in)
            case NickChanged(new=new):
                status.nick = new
                status.refresh_status()
            case _:
                pass
        for line in report.lines:
            chat = line.conversation
            if chat is None or (
                isinstance(chat, Direct)
                and chat not in self._logs
                and event is None
                and line.kind is Kind.ERROR
            ):
                chat = self._current()  # an answer to a command: where it was typed
            elif isinstance(chat, Direct) and chat not in self._logs and _ends_chat(event):
                continue  # no tab to reopen: the user closed it
            self.conversation(chat).show(line)
            if line.kind is Kind.MESSAGE:
                self._mark_unread(chat, line.mention)
        if isinstance(event, _PEOPLE_EVENTS):
            self._refresh_people()

    # -- conversations (tabs) ----------------------------------------------------------

    def conversation(self, chat: Conversation) -> ConversationLog:
        """The log of ``chat``, opening its tab if needed."""
        log = self._logs.get(chat)
        if log is None:
            pane_id = _pane_id(chat)
            log = self._logs[chat] = ConversationLog(chat, self._clock, id=f"log-{pane_id}")
            self.query_one(TabbedContent).add_pane(TabPane(Content(title(chat)), log, id=pane_id))
        return log

    def _chat_in(self, pane_id: str | None) -> Conversation | None:
        """The conversation whose tab is ``pane_id``; None once that tab is closed."""
        return next((chat for chat in self._logs if _pane_id(chat) == pane_id), None)

    def _current(self) -> Conversation:
        return self._chat_in(self.query_one(TabbedContent).active) or GROUP

    def _mark_unread(self, chat: Conversation, mention: bool) -> None:
        if chat == self._current():
            return
        self._unread[chat] = self._unread.get(chat, 0) + 1
        tab = self.query_one(TabbedContent).get_tab(_pane_id(chat))
        tab.label = Content(f"{title(chat)} ({self._unread[chat]})")
        if mention:
            tab.add_class("-mention")

    @on(TabbedContent.TabActivated)
    def _tab_read(self, event: TabbedContent.TabActivated) -> None:
        # The tab of this event, not the active one: keys in a burst may have moved on.
        chat = self._chat_in(event.pane.id)
        if chat is None:  # its tab was closed meanwhile
            return
        self._unread.pop(chat, None)
        event.tab.label = Content(title(chat))
        event.tab.remove_class("-mention")
        self.query_one(CommandInput).focus()

    def focus_conversation(self, chat: Conversation) -> None:
        self.conversation(chat)
        self.query_one(TabbedContent).active = _pane_id(chat)

    # -- people --------------------------------------------------------------------------

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
            self.show(self.presenter.error("that is you: choose someone else for a direct chat"))
            return
        peer = next((p.nick for p in self.client.participants if p.key == event.option_id), None)
        if peer is not None:
            self._commands.put_nowait((commands.OpenChat(peer), self._current()))

    # -- input ---------------------------------------------------------------------------

    @on(CommandInput.Line)
    def _typed(self, event: CommandInput.Line) -> None:
        # Parsed in its turn too: an error must not overtake the answers to earlier lines.
        self._commands.put_nowait((event.value, self._current()))

    # -- key actions ------------------------------------------------------------------

    def action_quit(self) -> None:  # type: ignore[override]
        """/quit, Ctrl+Q and Ctrl+C: when others would be disconnected, ask first."""
        others = others_hosted(self.client, self._hosting)
        if not others:
            self.exit(0)
            return
        box = self.query_one(CommandInput)
        box.ask(quit_question(others), lambda: self.exit(0))
        self.screen.set_focus(box)

    def action_switch_tab(self, step: int) -> None:
        chats = list(self._logs)
        index = (chats.index(self._current()) + step) % len(chats)
        self.query_one(TabbedContent).active = _pane_id(chats[index])

    def action_focus_people(self) -> None:
        people = self.query_one(ParticipantList)
        self._people_shown = True
        people.display = True
        if people.highlighted is None:  # start on the first one who is not us
            me = nick_key(self.client.nick)
            others = [
                i for i in range(people.option_count) if people.get_option_at_index(i).id != me
            ]
            people.highlighted = others[0] if others else 0
        # At once, not later: the keys typed after F2 must reach the list.
        self.screen.set_focus(people)

    def action_focus_input(self) -> None:
        self.query_one(CommandInput).focus()

    @on(events.DescendantBlur, "ParticipantList")
    def _people_left(self) -> None:
        # F2 shows the list on a narrow screen until the user is done with it: Escape,
        # someone chosen, or a click elsewhere.
        self._people_shown = False
        self._fit_people(self.size.width)

    def action_help(self) -> None:
        self.show(self.presenter.info(HELP))

    async def action_close_tab(self) -> None:
        chat = self._current()
        if not isinstance(chat, Direct):
            self.show(self.presenter.info("the group tab stays; F4 closes a direct chat"))
            return
        self._unread.pop(chat, None)
        self.client.close_chat(self._logs[chat].title)
        # The log goes once its pane has: a line shown meanwhile (an event already
        # queued) lands in it, rather than in a new pane under the same id.
        await self.query_one(TabbedContent).remove_pane(_pane_id(chat))
        self._logs.pop(chat, None)
        self._refresh_people()


class _ConversationLogHandler(logging.Handler):
    """Shows the library's log records in the group tab instead of on stderr."""

    def __init__(self, app: ChatApp) -> None:
        super().__init__()
        self._app = app

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # logging must never break the UI
            self._app.show(
                self._app.presenter.log_record(record.levelname.lower(), record.getMessage())
            )
