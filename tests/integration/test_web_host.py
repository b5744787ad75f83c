"""The web client's host over real sockets: a real chat server, the real WebHost,
WebSockets opened by aiohttp's client as a page opens them, and raw protocol
clients beside them. What the page is sent and what it may send is the
protocol of docs/WEB.md; the page itself is tested in a real browser
(tests/web/)."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from p2pchat.server import ChatServer
from p2pchat.web import WebConfig, WebHost

from ._programs import Program, start_server
from ._support import RawClient
from .test_server import bcast, leave, register

TIMEOUT = 5.0


class Page:
    """One page's WebSocket: what it sends and the messages it gets, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, **message: Any) -> None:
        await self.ws.send_str(json.dumps(message))

    async def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        frame = await self.ws.receive(timeout)
        assert frame.type == aiohttp.WSMsgType.TEXT, frame
        message: dict[str, Any] = json.loads(frame.data)
        return message

    async def until(self, kind: str, timeout: float = TIMEOUT, **keys: Any) -> dict[str, Any]:
        """The next message of this type (and these keys); others before it are passed."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.next()
                if message["type"] == kind and all(message.get(k) == v for k, v in keys.items()):
                    return message

    async def line(self, text: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next ``line`` message whose line's text contains ``text``."""
        async with asyncio.timeout(timeout):
            while True:
                message = await self.until("line")
                if text in message["line"]["text"]:
                    return message

    async def closed(self, timeout: float = TIMEOUT) -> aiohttp.WSMessage:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.ws.receive()
                if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    return frame


OpenPage = Callable[..., Awaitable[Page]]


@pytest.fixture
async def web(server: ChatServer) -> AsyncIterator[Callable[..., Awaitable[WebHost]]]:
    hosts: list[WebHost] = []

    async def start(**config: Any) -> WebHost:
        host = WebHost("127.0.0.1", server.port, config=WebConfig(**config))
        await host.start("127.0.0.1", 0)
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        await host.close()


@pytest.fixture
async def pages() -> AsyncIterator[Callable[..., Awaitable[Page]]]:
    http = aiohttp.ClientSession()

    async def open_page(host: WebHost, origin: str | None = None) -> Page:
        port = host.address[1]
        ws = await http.ws_connect(
            f"http://127.0.0.1:{port}/ws", origin=origin or f"http://127.0.0.1:{port}"
        )
        return Page(ws)

    yield open_page
    await http.close()


async def joined(pages: OpenPage, host: WebHost, nick: str) -> tuple[Page, dict[str, Any]]:
    page = await pages(host)
    await page.send(type="join", nick=nick)
    welcome = await page.until("welcome")
    return page, welcome


async def listing(page: Page, nicks: list[str]) -> dict[str, Any]:
    """The first ``participants`` message listing exactly ``nicks``, in that order."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            listed = await page.until("participants")
            if [p["nick"] for p in listed["participants"]] == nicks:
                return listed


@pytest.fixture
async def raw(server: ChatServer) -> AsyncIterator[Callable[[str], Awaitable[RawClient]]]:
    clients: list[RawClient] = []

    async def connect(entry: str) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        client = RawClient(reader, writer, entry)
        clients.append(client)
        client.send(register(entry))
        await client.recv()  # its LIST
        return client

    yield connect
    for client in clients:
        await client.close()


async def test_a_page_joins_as_a_participant_and_broadcasts_both_ways(web, pages, raw) -> None:
    host = await web()
    carol = await raw("carol:127.0.0.1:5003")
    page, welcome = await joined(pages, host, "alice")
    assert welcome["nick"] == "alice" and welcome["token"]
    assert [p["nick"] for p in welcome["participants"]] == ["alice", "carol"]
    assert welcome["tabs"][0]["tab"] == "group"
    raw_join = await carol.recv()
    assert raw_join.startswith(b"UPDATE:JOIN:alice:127.0.0.1:")
    await page.send(type="input", tab="group", text="hello <b>all</b>")
    await carol.expect(bcast("alice", "hello <b>all</b>"))
    own = await page.line("hello")
    assert own["line"]["kind"] == "own" and own["line"]["body"] == "hello <b>all</b>"
    carol.send(bcast("carol", "hi alice"))
    got = await page.line("hi alice")
    assert got["tab"] == "group"
    assert got["line"] | {"time": 0} == {
        "time": 0,
        "kind": "message",
        "text": "<carol> hi alice",
        "nick": "carol",
        "body": "hi alice",
        "mention": True,
    }


async def test_joins_and_leaves_send_the_whole_list(web, pages, raw) -> None:
    host = await web()
    page, _ = await joined(pages, host, "alice")
    carol = await raw("carol:127.0.0.1:5003")
    listed = await listing(page, ["alice", "carol"])
    assert listed["me"] == "alice"
    await carol.close()
    await listing(page, ["alice"])


async def test_a_refused_join_says_why_and_the_page_may_try_again(web, pages, raw) -> None:
    host = await web()
    await raw("alice:127.0.0.1:5001")
    page = await pages(host)
    await page.send(type="join", nick="ALICE")
    refused = await page.until("refused")
    assert "in use" in refused["reason"], refused
    await page.send(type="join", nick="bad:nick")
    refused = await page.until("refused")
    assert "nick" in refused["reason"].lower(), refused
    await page.send(type="join", nick="bob")
    assert (await page.until("welcome"))["nick"] == "bob"


async def test_past_its_sessions_the_web_page_refuses_more(web, pages) -> None:
    host = await web(max_sessions=1)
    await joined(pages, host, "alice")
    page = await pages(host)
    await page.send(type="join", nick="bob")
    refused = await page.until("refused")
    assert "full" in refused["reason"]


async def test_a_page_that_comes_back_gets_its_conversations(web, pages, raw) -> None:
    host = await web()
    carol = await raw("carol:127.0.0.1:5003")
    page, welcome = await joined(pages, host, "alice")
    await carol.recv()  # alice's join
    for i in range(3):
        carol.send(bcast("carol", f"line {i}"))
    await page.line("line 2")
    await page.ws.close()
    carol.send(bcast("carol", "while away"))
    again = await pages(host)
    await again.send(type="resume", token=welcome["token"])
    back = await again.until("welcome")
    texts = [line["text"] for line in back["tabs"][0]["lines"]]
    # The broadcast sent while no page was open waits in the history; it may arrive
    # just after the welcome, if the host had not read it yet.
    if "<carol> while away" not in texts:
        await again.line("while away")
    assert [t for t in texts if t.startswith("<carol>")][:3] == [
        "<carol> line 0",
        "<carol> line 1",
        "<carol> line 2",
    ]
    assert back["nick"] == "alice" and back["token"] == welcome["token"]


async def test_a_session_whose_page_never_comes_back_leaves(web, pages, raw) -> None:
    host = await web(grace=0.3)
    carol = await raw("carol:127.0.0.1:5003")
    page, welcome = await joined(pages, host, "alice")
    alice_join = await carol.recv()
    await page.ws.close()
    await carol.expect(leave(alice_join.decode().removeprefix("UPDATE:JOIN:").strip()))
    late = await pages(host)
    await late.send(type="resume", token=welcome["token"])
    await late.until("expired")


async def test_a_second_page_takes_the_session_over(web, pages) -> None:
    host = await web()
    first, welcome = await joined(pages, host, "alice")
    second = await pages(host)
    await second.send(type="resume", token=welcome["token"])
    await second.until("welcome")
    await first.until("replaced")
    await first.closed()


async def test_quit_ends_the_session_and_the_others_see_the_leave(web, pages, raw) -> None:
    host = await web()
    carol = await raw("carol:127.0.0.1:5003")
    page, _ = await joined(pages, host, "alice")
    await carol.recv()
    await page.send(type="input", tab="group", text="/quit")
    ended = await page.until("ended")
    assert ended["reason"]
    update = await carol.recv()
    assert update.startswith(b"UPDATE:LEAVE:alice:")
    assert host.sessions == {}


async def test_direct_chats_between_two_pages(web, pages) -> None:
    host = await web()
    alice, _ = await joined(pages, host, "alice")
    bob, _ = await joined(pages, host, "bob")
    await alice.send(type="input", tab="group", text="/msg bob psst")
    got = await bob.line("psst")
    assert got["tab"] == "d:alice" and got["title"] == "alice"
    assert got["line"]["mention"] is True
    await bob.send(type="input", tab="d:alice", text="hi back")
    back = await alice.line("hi back")
    assert back["tab"] == "d:bob" and back["line"]["nick"] == "bob"


async def test_chat_command_focuses_the_direct_tab(web, pages) -> None:
    host = await web()
    alice, _ = await joined(pages, host, "alice")
    await joined(pages, host, "bob")
    await alice.send(type="input", tab="group", text="/chat bob")
    focus = await alice.until("focus")
    assert focus == {"type": "focus", "tab": "d:bob", "title": "bob"}


async def test_a_command_error_goes_to_the_tab_it_was_typed_in(web, pages) -> None:
    host = await web()
    alice, _ = await joined(pages, host, "alice")
    await joined(pages, host, "bob")
    await alice.send(type="input", tab="group", text="/frobnicate")
    error = await alice.line("unknown command")
    assert error["tab"] == "group" and error["line"]["kind"] == "error"
    await alice.send(type="input", tab="group", text="/msg bob hi")
    await alice.line("<alice> hi")
    await alice.send(type="input", tab="d:bob", text="/frobnicate")
    error = await alice.line("unknown command")
    assert error["tab"] == "d:bob"
    await alice.send(type="input", tab="d:nobody", text="hello?")
    error = await alice.line("no conversation")
    assert error["tab"] == "d:bob"  # where the user last was


@pytest.mark.parametrize("origin", ["http://evil.example", "null"])
async def test_a_socket_from_another_origin_is_refused(web, pages, origin) -> None:
    host = await web()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await pages(host, origin=origin)
    assert refused.value.status == 403


async def test_a_frame_over_the_limit_closes_the_socket(web, pages) -> None:
    host = await web(max_frame_bytes=1024)
    page, _ = await joined(pages, host, "alice")
    await page.ws.send_str(json.dumps({"type": "input", "tab": "group", "text": "x" * 2000}))
    frame = await page.closed()
    assert page.ws.close_code == 1009, frame


async def test_every_response_forbids_inline_script(web) -> None:
    host = await web()
    url = f"http://127.0.0.1:{host.address[1]}/nothing-here"
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy


async def test_a_host_closing_ends_every_session(web, pages, raw) -> None:
    host = await web()
    carol = await raw("carol:127.0.0.1:5003")
    page, _ = await joined(pages, host, "alice")
    await carol.recv()
    await host.close()
    ended = await page.until("ended")
    assert "shutting down" in ended["reason"]
    assert (await carol.recv()).startswith(b"UPDATE:LEAVE:alice:")


async def test_p2pchat_serve_web_names_the_web_address_and_a_page_joins(programs) -> None:
    host = await Program.start(
        "p2pchat", "--serve", "127.0.0.1:0", "--web", "127.0.0.1:0", "--nick", "host", "--json"
    )
    programs.append(host)
    hosting = await host.expect("hosting")
    url = hosting["web"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/")
    await host.expect("registered")
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{url}ws", origin=url.rstrip("/"))
        page = Page(ws)
        await page.send(type="join", nick="browser")
        welcome = await page.until("welcome")
        assert [p["nick"] for p in welcome["participants"]] == ["browser", "host"]  # self first
        await host.expect("join", nick="browser")
        await host.type("hello browser")
        assert (await page.line("hello browser"))["line"]["nick"] == "host"
        await ws.close()


async def test_p2pchat_server_web_logs_its_address(programs) -> None:
    server, _ = await start_server(programs, "--web", "127.0.0.1:0")
    while "web client on" not in (line := await server.line("stderr")):
        pass
    assert re.search(r"web client on http://127\.0\.0\.1:\d+/", line), line


async def test_web_without_serve_is_a_usage_error() -> None:
    program = await Program.start("p2pchat", "--web", "127.0.0.1:0")
    status, err = await program.finish()
    assert status == 2
    assert "--web serves the chat this process hosts: give --serve too" in err


async def test_a_storm_of_joins_sends_each_page_the_list_a_few_times_not_once_a_join(
    web, pages, server
) -> None:
    host = await web()
    page, _ = await joined(pages, host, "alice")
    await listing(page, ["alice"])
    started = asyncio.get_running_loop().time()
    writers = []
    for i in range(40):
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(register(f"n{i}:127.0.0.1:{6000 + i}"))
        writers.append(writer)
    everyone = ["alice"] + [f"n{i}" for i in range(40)]
    lists = 0
    async with asyncio.timeout(TIMEOUT):
        while True:
            listed = await page.until("participants")
            lists += 1
            if sorted(p["nick"] for p in listed["participants"]) == sorted(everyone):
                break
    took = asyncio.get_running_loop().time() - started
    assert lists <= took / 0.5 + 2, (lists, took)
    for writer in writers:
        writer.close()


@pytest.mark.parametrize("length", [1, 100, 200, 65_000])
async def test_frames_of_every_length_reach_the_page_whole(web, pages, raw, length) -> None:
    # The host writes its frames itself: each length form of RFC 6455 (7-bit, 16-bit and
    # 64-bit lengths, with the JSON around the text), read by aiohttp's own reader.
    host = await web()
    carol = await raw("carol:127.0.0.1:5003")
    page, _ = await joined(pages, host, "alice")
    text = ("é" * (length // 2))[:length]
    carol.send(bcast("carol", text))
    got = await page.line("<carol>")
    assert got["line"]["body"] == text


async def test_a_page_that_never_reads_is_cut_off_and_may_come_back(start_server) -> None:
    """A raw WebSocket that joins, then reads nothing while the chat floods it: past
    what the host holds for a page it is closed, and its session waits for it."""
    server = await start_server(flood_rate=0, flood_rate_bytes=0)
    host = WebHost("127.0.0.1", server.port, config=WebConfig(max_buffered_bytes=64 * 1024))
    await host.start("127.0.0.1", 0)
    port = host.address[1]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it takes in little
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n\r\n"
            ).encode()
        )
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
        payload = json.dumps({"type": "join", "nick": "sleepy"}).encode()
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        writer.write(bytes((0x81, 0x80 | len(payload))) + mask + masked)
        writer.transport.pause_reading()  # from now on it reads nothing
        async with asyncio.timeout(TIMEOUT):
            while not host.sessions:
                await asyncio.sleep(0.01)
        [session] = host.sessions.values()
        _, flooder = await asyncio.open_connection("127.0.0.1", server.port)
        flooder.write(register("flood:127.0.0.1:5009"))
        chunk = bcast("flood", "x" * 4000) * 20
        async with asyncio.timeout(TIMEOUT):
            while session._ws is not None:
                flooder.write(chunk)
                await flooder.drain()
                await asyncio.sleep(0)
        assert not session.ended and host.sessions  # it waits for the page to come back
        flooder.close()
    finally:
        writer.close()
        await host.close()


async def test_nick_renames_the_session_and_the_others_see_it(web, pages, raw) -> None:
    host = await web()
    carol = await raw("carol:127.0.0.1:5003")
    page, _ = await joined(pages, host, "alice")
    assert (await carol.recv()).startswith(b"UPDATE:JOIN:alice:")
    await page.send(type="input", tab="group", text="/nick alicia")
    assert (await page.until("nick")) == {"type": "nick", "nick": "alicia"}
    assert (await carol.recv()).startswith(b"UPDATE:LEAVE:alice:")
    assert (await carol.recv()).startswith(b"UPDATE:JOIN:alicia:")
    await listing(page, ["alicia", "carol"])
    carol.send(bcast("carol", "hi alicia"))
    assert (await page.line("hi alicia"))["line"]["mention"] is True


async def test_a_socket_that_never_joins_is_closed(web, pages, monkeypatch) -> None:
    monkeypatch.setattr("p2pchat.web.host.JOIN_WAIT", 0.2)
    host = await web()
    page = await pages(host)
    await page.closed(timeout=3)
    assert page.ws.close_code == 1008


async def test_a_socket_refused_again_and_again_is_closed(web, pages, raw) -> None:
    host = await web()
    await raw("alice:127.0.0.1:5001")
    page = await pages(host)
    for _ in range(20):
        await page.send(type="join", nick="alice")
        await page.until("refused")
    await page.send(type="join", nick="alice")
    await page.closed()
    assert page.ws.close_code == 1008


async def test_past_its_sockets_the_host_answers_503(web, pages) -> None:
    host = await web(max_sockets=2)
    held = [await pages(host), await pages(host)]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await pages(host)
    assert refused.value.status == 503
    await held[0].ws.close()
    await held[1].send(type="join", nick="alice")  # a socket that closed makes room
    await held[1].until("welcome")
    third = await pages(host)
    await third.ws.close()


async def test_json_nested_too_deep_is_a_bad_message_not_a_crash(web, pages) -> None:
    host = await web()
    page = await pages(host)
    await page.ws.send_str("[" * 100_000)
    assert (await page.until("refused"))["reason"] == "bad message"
    await page.send(type="join", nick="alice")
    await page.until("welcome")
