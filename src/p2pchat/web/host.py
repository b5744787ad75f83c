"""``--web HOST:PORT``: the web client, served by the chat's host.

The page (``static/``) talks to the host over a WebSocket (``/ws``); the host
runs one ``ChatClient`` per browser session, so a browser user is a
participant like any other: on every LIST, in every broadcast, in direct
chats. What the page is sent is the presenter's reports (``present.py``), as
every front end shows them, turned into the page's messages by ``WebView``;
what the user types is carried out by ``frontend.run_line``, as in the
terminal. The messages both ways are described in docs/WEB.md.

A session outlives its page by ``WebConfig.grace`` (two minutes): a reload,
or a page whose connection dropped, takes it back with its token and gets
every conversation's last lines again. Only the page's own origin may open
the WebSocket, and every response forbids inline script (CSP).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from .. import _net, commands
from .._http import HttpEndpoint
from ..client import ChatClient
from ..conversations import GROUP, Conversation, Direct
from ..errors import ConnectError, InvalidInputError, RegistrationError
from ..events import (
    ClientEvent,
    Disconnected,
    NickChanged,
    ParticipantsListed,
    PeerJoined,
    PeerLeft,
    Registered,
)
from ..frontend import run_line
from ..present import Presenter, Report
from .view import GROUP_TAB, HISTORY_LINES, WebView, participants_message

log = logging.getLogger("p2pchat.web")

STATIC = Path(__file__).with_name("static")
DEFAULT_MAX_SESSIONS = 200
GRACE = 120.0
JOIN_WAIT = 30.0  # seconds a socket may stay open without a session
MAX_TRIES = 20  # joins and resumes one socket may try
LIST_INTERVAL = 0.5  # seconds between two participant lists sent to one page, at least

# No inline script or style, nothing from elsewhere: a message that got into the page
# as markup still could not run.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

# Events after which the page is sent the whole participant list again.
_LIST_CHANGES = (Registered, ParticipantsListed, PeerJoined, PeerLeft, NickChanged, Disconnected)


@dataclass(frozen=True, slots=True)
class WebConfig:
    max_sessions: int = DEFAULT_MAX_SESSIONS  # kept ones, waiting for their page, count
    grace: float = GRACE  # seconds a session outlives its page
    history: int = HISTORY_LINES  # lines kept of each conversation
    max_frame_bytes: int = 256 * 1024  # a larger frame from a page closes its socket
    # Bytes waiting for a page that does not read; past it the page is cut off, and
    # gets the history again when it comes back.
    max_buffered_bytes: int = 4 << 20
    # WebSockets open at once, joined or not (each a file descriptor).
    max_sockets: int = 1000

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ValueError("--web-max-sessions must be at least 1")


class WebSession:
    """One browser's participant: its ChatClient, what its page shows, and the page's
    socket while one is open. A ``commands.Session`` for the commands it types."""

    def __init__(self, host: WebHost, client: ChatClient, token: str) -> None:
        self._host = host
        self._client = client
        self.token = token
        self._presenter = Presenter(client.nick)
        self.view = WebView(host.config.history)
        self._current: Conversation = GROUP
        self._ws: web.WebSocketResponse | None = None
        self._transport: asyncio.Transport | None = None  # the open page's connection
        self._expiry: asyncio.TimerHandle | None = None
        self._list_timer: asyncio.TimerHandle | None = None
        self._list_sent = 0.0  # time.monotonic() when the page was last sent the list
        self._allowance = 0  # bytes of the last welcome, waiting beyond the limit
        self.ended = False

    # -- commands.Session ------------------------------------------------------------

    @property
    def client(self) -> ChatClient:
        return self._client

    @property
    def presenter(self) -> Presenter:
        return self._presenter

    @property
    def current(self) -> Conversation:
        return self._current

    def show(self, report: Report) -> None:
        for message in self.view.report(report, self._current, time.time()):
            self._send(message)

    def focus(self, chat: Direct) -> None:
        self._send(self.view.focus(chat))

    async def quit(self) -> None:
        await self.end("you left the chat")

    def help_text(self) -> str:
        return commands.HELP

    # -- the page --------------------------------------------------------------------

    def start(self) -> None:
        # Each event is shown as it happens, in the client's own reading of it: no
        # queue and no task of its own per page.
        self._client.on_event(self._on_event)

    def _on_event(self, event: ClientEvent) -> None:
        self.show(self._presenter.event(event))
        self._after(event)

    def attach(self, ws: web.WebSocketResponse, transport: asyncio.Transport) -> None:
        """``ws`` is this session's page from now on: a page it had is told it was
        replaced; the new one gets everything again (``welcome``), then what follows."""
        old = self._ws
        if old is not None:
            self._host.spawn(_replaced(old))
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._ws, self._transport = ws, transport
        client = self._client
        self._send(
            self.view.welcome(self.token, client.nick, self._host.server, client.participants)
        )

    def detach(self, ws: web.WebSocketResponse) -> None:
        """``ws`` closed: the session waits ``grace`` seconds for its page to come back."""
        if self._ws is not ws or self.ended:
            return
        self._ws = self._transport = None
        self._expiry = asyncio.get_running_loop().call_later(self._host.config.grace, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        log.info("web session of %s ended: its page did not come back", self._client.nick)
        self._host.forget(self)  # at once: a page resuming now finds it gone
        self._host.spawn(self.end("your page did not come back in time"))

    def page_is(self, ws: web.WebSocketResponse) -> bool:
        """Whether ``ws`` is this session's page (not one it was taken from)."""
        return self._ws is ws

    def _send(self, message: dict[str, Any]) -> None:
        """To the page at once, if one is open (the history keeps the lines for one
        that comes back)."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        # One text frame, written here: aiohttp's own send is a coroutine, and awaiting
        # one per message and per page cost the host more than the chat (web_load.py).
        frame = text_frame(json.dumps(message, ensure_ascii=False).encode())
        if message["type"] == "welcome":
            self._allowance = len(frame)  # a long history is no sign of a page not reading
        transport.write(frame)
        limit = self._host.config.max_buffered_bytes + self._allowance
        if transport.get_write_buffer_size() > limit:
            # It does not read: cut it off, and let it come back for the history.
            log.warning("web page of %s is not reading: closing it", self._client.nick)
            ws = self._ws
            assert ws is not None
            self.detach(ws)
            transport.abort()

    def _after(self, event: ClientEvent) -> None:
        if isinstance(event, NickChanged):
            self._send({"type": "nick", "nick": event.new})
        if isinstance(event, _LIST_CHANGES):
            self._list_changed()

    def _list_changed(self) -> None:
        """The page gets the whole list at most every LIST_INTERVAL: in a storm of joins
        each page would otherwise be sent the list once per join, n times n entries."""
        if self._list_timer is not None:
            return  # it goes out when the timer fires, as it is then
        wait = self._list_sent + LIST_INTERVAL - time.monotonic()
        if wait <= 0:
            self._send_list()
        else:
            self._list_timer = asyncio.get_running_loop().call_later(wait, self._send_list)

    def _send_list(self) -> None:
        self._list_timer = None
        self._list_sent = time.monotonic()
        self._send(participants_message(self._client.participants, self._client.nick))

    async def run(self, tab: str, text: str) -> None:
        """One line typed in ``tab``, carried out as the terminal clients carry it out."""
        chat = self.view.conversation(tab)
        if chat is None:
            self._send_error(f"no conversation {tab!r}")
            return
        self._current = chat
        await run_line(self, text)

    def _send_error(self, text: str) -> None:
        self.show(self._presenter.error(text))

    async def end(self, reason: str) -> None:
        """Leaves the chat; the page, if one is open, is told why."""
        if self.ended:
            return
        self.ended = True
        self._host.forget(self)
        if self._expiry is not None:
            self._expiry.cancel()
        if self._list_timer is not None:
            self._list_timer.cancel()
        ws = self._ws
        self._ws = self._transport = None
        await self._client.close()  # first: the others see the leave without waiting for a page
        if ws is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps({"type": "ended", "reason": reason}))
                await ws.close()


async def _replaced(ws: web.WebSocketResponse) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await ws.send_str(json.dumps({"type": "replaced"}))
        await ws.close()


class WebHost:
    """The web client's HTTP server: the page, and a WebSocket per open page, each with
    a ``WebSession`` joined to the chat at ``chat_host:chat_port`` (registering ``ip``,
    when given, for direct chats)."""

    def __init__(
        self,
        chat_host: str,
        chat_port: int,
        *,
        ip: str | None = None,
        server: str | None = None,
        config: WebConfig | None = None,
    ) -> None:
        self.chat_host = chat_host
        self.chat_port = chat_port
        self.ip = ip
        # The chat's address as the page names it.
        self.server = server or _net.format_host_port(chat_host, chat_port)
        self.config = config or WebConfig()
        self.sessions: dict[str, WebSession] = {}
        self._joining = 0
        self._sockets = 0  # WebSockets open, joined or not
        self._closing = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._http = HttpEndpoint()

    async def start(self, host: str, port: int) -> None:
        """Listens on (host, port); an OSError with the OS's reason, and the address as
        its ``filename``, when it cannot."""
        app = web.Application(client_max_size=self.config.max_frame_bytes)
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._socket)
        app.router.add_static("/static/", STATIC, show_index=False)
        app.on_response_prepare.append(_secure)
        await self._http.start(app, host, port, "--web")

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens, with the real port."""
        return self._http.address

    async def close(self, reason: str = "the chat's host is shutting down") -> None:
        self._closing = True  # a join finishing now leaves at once
        ending = [session.end(reason) for session in list(self.sessions.values())]
        if ending:
            # A page that does not answer the close must not hold the others up.
            await asyncio.wait([asyncio.ensure_future(e) for e in ending], timeout=5.0)
        await self._http.close()
        for task in list(self._tasks):
            task.cancel()

    def spawn(self, work: Any) -> None:
        """Runs ``work`` (a coroutine) on its own, keeping it until it is done."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, session: WebSession) -> None:
        self.sessions.pop(session.token, None)

    # -- HTTP ------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        # A page elsewhere must not chat in the name of whoever visits it.
        origin = request.headers.get("Origin")
        if origin != f"{request.scheme}://{request.host}":
            log.warning("web socket refused: origin %r is not %s", origin, request.host)
            raise web.HTTPForbidden(text="only this page may open the chat's socket\n")
        # No compression: chat messages are short, and deflating each one for hundreds of
        # pages cost the host more than anything else it does for them.
        ws = web.WebSocketResponse(
            max_msg_size=self.config.max_frame_bytes, heartbeat=30.0, compress=False
        )
        if self._closing or self._sockets >= self.config.max_sockets:
            # Sockets cost a file descriptor each, and share them with the chat.
            raise web.HTTPServiceUnavailable(text="the chat's web page is full; try later\n")
        self._sockets += 1  # before the handshake: counted from the first await on
        session: WebSession | None = None
        tries = 0
        try:
            await ws.prepare(request)
            while True:
                # A socket that has not joined within JOIN_WAIT, or keeps being refused,
                # is closed: it holds a descriptor and costs the chat a try each time.
                wait = None if session is not None and not session.ended else JOIN_WAIT
                try:
                    frame = await ws.receive(timeout=wait)
                except TimeoutError:
                    await ws.close(code=1008, message=b"join first")
                    break
                if frame.type != WSMsgType.TEXT:
                    break  # closed, an error, or a binary frame the page never sends
                message = _parse(frame.data)
                if message is None:
                    await ws.send_str(json.dumps({"type": "refused", "reason": "bad message"}))
                    continue
                if session is None or session.ended:
                    tries += 1
                    transport = request.transport
                    if transport is None or tries > MAX_TRIES:
                        await ws.close(code=1008, message=b"too many tries")
                        break
                    session = await self._greet(ws, message, transport)
                elif message.get("type") == "input" and session.page_is(ws):
                    tab, text = message.get("tab"), message.get("text")
                    if isinstance(tab, str) and isinstance(text, str):
                        await session.run(tab, text)
        finally:
            self._sockets -= 1
            if session is not None:
                session.detach(ws)
        return ws

    async def _greet(
        self, ws: web.WebSocketResponse, message: dict[str, Any], transport: asyncio.Transport
    ) -> WebSession | None:
        kind = message.get("type")
        if kind == "resume":
            session = self.sessions.get(str(message.get("token")))
            if session is None or session.ended:
                await ws.send_str(json.dumps({"type": "expired"}))
                return None
            session.attach(ws, transport)
            return session
        if kind == "join":
            return await self._join(ws, message.get("nick"), transport)
        await ws.send_str(json.dumps({"type": "refused", "reason": "join first"}))
        return None

    async def _join(
        self, ws: web.WebSocketResponse, nick: object, transport: asyncio.Transport
    ) -> WebSession | None:
        async def refuse(reason: str) -> None:
            await ws.send_str(json.dumps({"type": "refused", "reason": reason}))

        if not isinstance(nick, str) or not nick.strip():
            await refuse("pick a nickname")
            return None
        if len(self.sessions) + self._joining >= self.config.max_sessions:
            await refuse(
                f"the chat's web page is full ({self.config.max_sessions} people); try again later"
            )
            return None
        try:
            client = ChatClient(nick.strip(), self.chat_host, self.chat_port, ip=self.ip)
        except InvalidInputError as error:
            await refuse(str(error))
            return None
        self._joining += 1
        try:
            await client.connect()
        except (RegistrationError, ConnectError) as error:
            await client.close()
            await refuse(str(error))
            return None
        finally:
            self._joining -= 1
        if self._closing:
            await client.close()
            await refuse("the chat's host is shutting down")
            return None
        token = secrets.token_urlsafe(24)
        session = WebSession(self, client, token)
        self.sessions[token] = session
        log.info("web session joined as %s", client.nick)
        session.attach(ws, transport)
        session.start()
        return session


async def serve_web(
    address: str,
    chat_host: str,
    chat_port: int,
    ip: str | None,
    server: str | None,
    config: WebConfig | None = None,
) -> tuple[WebHost, str]:
    """Starts the web client at ``address`` (``HOST:PORT``, an empty host for every
    address) for the chat at ``chat_host:chat_port``; the host and the URL to open it
    at, with this machine's LAN address when it listens on every address. An OSError
    when it cannot listen (its ``filename`` says where)."""
    host, port = _net.parse_host_port(address, 8080)
    web_host = WebHost(chat_host, chat_port, ip=ip, server=server, config=config)
    await web_host.start(host or "0.0.0.0", port)
    port = web_host.address[1]
    shown = (_net.lan_ipv4() or "127.0.0.1") if _net.is_wildcard(host) else host
    return web_host, f"http://{_net.format_host_port(shown, port)}/"


def text_frame(payload: bytes) -> bytes:
    """A WebSocket text frame from the server (RFC 6455 5.2: final, unmasked)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def _parse(data: str) -> dict[str, Any] | None:
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." a frame deep
        return None
    return message if isinstance(message, dict) else None


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(SECURITY_HEADERS)


__all__ = [
    "DEFAULT_MAX_SESSIONS",
    "GROUP_TAB",
    "WebConfig",
    "WebHost",
    "WebSession",
    "serve_web",
]
