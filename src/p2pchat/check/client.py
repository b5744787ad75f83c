"""Checks of a client: ``p2pchat check client``.

The checker plays the server on a local port, and a second participant,
carol, with UDP and TCP sockets of her own. A person drives the client under
test by following the instructions printed, and answers what it shows; with
``--cmd`` the checker starts a client that speaks the ``--json`` line
interface and drives it unattended.

The checks are one scenario: each asks for what it needs (a registered
client, an open direct chat) and the first that needs it makes it happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import shlex
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..protocol import (
    Ack,
    Chat,
    Init,
    Participant,
    ParticipantList,
    Register,
    RemoteProtocolError,
    Role,
    canonical_ip,
    decode_datagram,
    encode_broadcast,
    is_unspecified,
)
from ._core import Failed, Recorder, Registry
from ._judge import judge
from ._wire import Received, Wire, show

checks: Registry[ClientSession] = Registry()


# -- who drives the client ------------------------------------------------------------------


class Driver(Protocol):
    async def start(self, server: str, nick: str) -> None: ...
    async def type(self, instruction: str, line: str) -> None: ...
    async def shows(self, question: str, event: str, **keys: Any) -> bool: ...
    async def saw(self, question: str, event: str, **keys: Any) -> bool: ...
    async def close(self) -> None: ...


class PersonDriver:
    """A person at the client: instructions out, yes/no answers in.

    One daemon thread reads stdin for the whole run, so that a question whose
    check ran out of time leaves no reader behind to take the next answer, and
    the run can end without waiting for Enter.
    """

    def __init__(self) -> None:
        self._answers: asyncio.Queue[str | None] | None = None

    def _start_reading(self) -> asyncio.Queue[str | None]:
        if self._answers is None:
            answers: asyncio.Queue[str | None] = asyncio.Queue()
            loop = asyncio.get_running_loop()

            def read() -> None:
                for line in sys.stdin:
                    loop.call_soon_threadsafe(answers.put_nowait, line)
                loop.call_soon_threadsafe(answers.put_nowait, None)  # end of input

            threading.Thread(target=read, daemon=True).start()
            self._answers = answers
        return self._answers

    async def start(self, server: str, nick: str) -> None:
        print(f">>> Connect your client to {server} with the nickname '{nick}'.", flush=True)

    async def type(self, instruction: str, line: str) -> None:
        print(f">>> {instruction}", flush=True)

    async def shows(self, question: str, event: str, **keys: Any) -> bool:
        answers = self._start_reading()
        while not answers.empty():  # typed ahead, or meant for a question that timed out
            answers.get_nowait()
        print(f"??? {question} [y/n] ", end="", flush=True)
        answer = await answers.get()
        if answer is None:
            raise Failed(f"an answer to: {question}", "the end of input")
        return answer.strip().lower().startswith("y")

    async def saw(self, question: str, event: str, **keys: Any) -> bool:
        return await self.shows(question, event, **keys)

    async def close(self) -> None:
        print(">>> That was all: you may quit your client.", flush=True)


class CommandDriver:
    """A client program that speaks the ``--json`` line interface, run by the checker."""

    def __init__(self, command: str, patience: float = 5.0) -> None:
        self._template = command
        self.patience = patience  # seconds the client has to act on what it was sent
        self._proc: asyncio.subprocess.Process | None = None
        self._events: list[dict[str, Any]] = []  # not yet matched by shows()
        self._history: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def start(self, server: str, nick: str) -> None:
        host, _, port = server.rpartition(":")
        fill = {"{server}": server, "{host}": host, "{port}": port, "{nick}": nick}
        words = []
        for word in shlex.split(self._template):
            for placeholder, value in fill.items():
                word = word.replace(placeholder, value)
            words.append(word)
        self._proc = await asyncio.create_subprocess_exec(
            *words,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=1 << 20,  # a LIST of many participants is one long line
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while True:
            try:
                raw = await self._proc.stdout.readline()
            except ValueError:  # a line over the limit: skip it, keep reading
                continue
            if not raw:
                self._arrived.set()  # the client has gone: nobody waits for more
                return
            with contextlib.suppress(ValueError):
                event = json.loads(raw)
                if isinstance(event, dict):
                    self._events.append(event)
                    self._history.append(event)
                    self._arrived.set()

    async def type(self, instruction: str, line: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        if self._proc.returncode is not None:
            raise Failed(f"the client running, to {instruction}", "it has exited")
        self._proc.stdin.write(line.encode() + b"\n")
        with contextlib.suppress(ConnectionError):
            await self._proc.stdin.drain()

    async def shows(self, question: str, event: str, **keys: Any) -> bool:
        """True once an event named ``event`` with these keys arrives; False after patience."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.patience
        while True:
            for i, e in enumerate(self._events):
                if e.get("event") == event and all(_has(e, k, v) for k, v in keys.items()):
                    del self._events[: i + 1]
                    return True
            if self._reader is not None and self._reader.done():
                return False  # the client's output has ended
            self._arrived.clear()
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0)):
                    await self._arrived.wait()
            except TimeoutError:
                return False

    async def saw(self, question: str, event: str, **keys: Any) -> bool:
        """Whether such an event came at any time so far."""
        return any(
            e.get("event") == event and all(_has(e, k, v) for k, v in keys.items())
            for e in self._history
        )

    async def close(self) -> None:
        if self._proc is None:
            return
        if self._proc.returncode is None:
            self._proc.kill()
        await self._proc.wait()
        if self._reader is not None:
            self._reader.cancel()


def _has(event: Mapping[str, object], key: str, value: object) -> bool:
    if key == "participants":  # a nickname that must be among them
        listed = event.get("participants")
        return isinstance(listed, list) and any(
            isinstance(p, dict) and p.get("nick") == value for p in listed
        )
    return event.get(key) == value


# -- the checker's side: server, carol and a stranger ------------------------------------


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((data, addr[:2]))


class Udp:
    def __init__(self, transport: asyncio.DatagramTransport, inbox: Datagrams) -> None:
        self.transport = transport
        self.inbox = inbox

    @property
    def port(self) -> int:
        port: int = self.transport.get_extra_info("sockname")[1]  # get_extra_info is typed Any
        return port

    async def receive(self, timeout: float) -> tuple[bytes, tuple[str, int]] | None:
        try:
            async with asyncio.timeout(timeout):
                return await self.inbox.queue.get()
        except TimeoutError:
            return None


async def open_udp() -> Udp:
    loop = asyncio.get_running_loop()
    transport, inbox = await loop.create_datagram_endpoint(Datagrams, local_addr=("127.0.0.1", 0))
    return Udp(transport, inbox)


class ClientSession:
    """The scenario's state, shared by the checks in turn."""

    def __init__(self, driver: Driver, nick: str, port: int = 0, patience: float = 5.0) -> None:
        self.driver = driver
        self.nick = nick
        self.patience = patience  # seconds the client has to act on what it was sent
        # How long to wait for what a person does by hand; a program gets the patience.
        self.wait = 60.0 if isinstance(driver, PersonDriver) else 2 * patience
        self.record = Recorder()
        self.requested_port = port
        self._listener: asyncio.Server | None = None
        self._accepted: asyncio.Queue[Wire] = asyncio.Queue()
        self.server_port = 0
        self.conn: Wire | None = None
        self.me: Participant | None = None
        self.register_raw: Received | None = None
        self.carol: Participant | None = None
        self.carol_udp: Udp | None = None
        self.chat: Wire | None = None  # the open direct chat with carol, carol's end
        self.first_init: tuple[Init, bytes, tuple[str, int]] | None = None
        self._failed: dict[str, str] = {}
        self._sockets: list[Udp] = []

    def use(self, record: Recorder) -> ClientSession:
        self.record = record
        return self

    async def start(self) -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._accepted.put(Wire(reader, writer, "client", Role.SERVER, self.patience))

        self._listener = await asyncio.start_server(accepted, "127.0.0.1", self.requested_port)
        self.server_port = self._listener.sockets[0].getsockname()[1]
        self.carol_udp = await open_udp()
        self._sockets.append(self.carol_udp)
        self.carol = Participant("carol", "127.0.0.1", self.carol_udp.port)

    async def close(self) -> None:
        await self.driver.close()
        for wire in (self.chat, self.conn):
            if wire is not None:
                await wire.close()
        for udp in self._sockets:
            udp.transport.close()
        if self._listener is not None:
            self._listener.close()

    # -- steps the checks need -------------------------------------------------------

    async def step(self, name: str, make: Callable[[], Any]) -> None:
        """Runs a step once; a later check that needs a failed step fails saying so."""
        if name in self._failed:
            raise Failed(f"{name} first", f"not reached: {self._failed[name]}")
        try:
            await make()
        except Failed as failure:
            self._failed[name] = f"{failure.expected}; got {failure.got}"
            raise
        except (TimeoutError, asyncio.CancelledError):
            self._failed[name] = "it ran out of time"
            raise

    async def registered(self) -> tuple[Wire, Participant]:
        if self.me is None:
            await self.step("client-register", self._register)
        assert self.conn is not None and self.me is not None
        return self.conn, self.me

    async def _register(self) -> None:
        try:
            async with asyncio.timeout(self.wait):
                self.conn = await self._accepted.get()
        except TimeoutError:
            raise Failed("a connection from the client", f"none within {self.wait:g} s") from None
        try:
            got = await self.conn.receive(self.wait)
        except TimeoutError:
            raise Failed("REGISTER:Nickname:IP-Address:UDP-Port", "nothing") from None
        if got is None or not isinstance(got.message, Register):
            raise Failed(
                "REGISTER:Nickname:IP-Address:UDP-Port",
                "the connection closed" if got is None else str(got),
            )
        me = got.message.participant
        if is_unspecified(me.ip):
            me = Participant(me.nick, canonical_ip(self.conn.peer_address[0]), me.udp_port)
        if me.nick != self.nick:
            raise Failed(f"the nickname {self.nick}", show(got.raw))
        assert self.carol is not None
        await self.conn.send(ParticipantList((self.carol, me)).encode())
        self.register_raw, self.me = got, me

    async def open_chat(self) -> Wire:
        """A direct chat the client opened with carol, from carol's end."""
        if self.chat is None:
            await self.step("client-direct-connect", self._connect)
        assert self.chat is not None
        return self.chat

    async def initiated(self) -> tuple[Init, bytes, tuple[str, int]]:
        if self.first_init is None:
            await self.step("client-init", self._ask_for_chat)
        assert self.first_init is not None
        return self.first_init

    async def _ask_for_chat(self) -> None:
        await self.registered()
        assert self.carol_udp is not None
        await self.driver.type("Open a direct chat with carol.", "/chat carol")
        got = await self.carol_udp.receive(self.wait)
        if got is None:
            raise Failed(
                "an INIT at carol's UDP port (decision 19)", f"nothing within {self.wait:g} s"
            )
        data, source = got
        try:
            init = decode_datagram(data)
        except RemoteProtocolError as error:
            raise Failed("INIT:Secret:TCP-Port", f"{show(data)} ({error})") from None
        if not isinstance(init, Init):
            raise Failed("INIT:Secret:TCP-Port", show(data))
        self.first_init = (init, data, source)

    async def _connect(self) -> None:
        init, _, source = await self.initiated()
        assert self.carol_udp is not None
        self.carol_udp.transport.sendto(Ack(init.secret).encode(), source)
        try:
            async with asyncio.timeout(self.patience):
                reader, writer = await asyncio.open_connection(source[0], init.tcp_port)
        except (OSError, TimeoutError) as error:
            raise Failed(
                f"the client listening on {source[0]}:{init.tcp_port} (decision 19)",
                str(error) or "no answer",
            ) from None
        self.chat = Wire(reader, writer, "chat", Role.PEER, self.patience)
        if not await self.driver.shows(
            "Does your client show a direct chat with carol open?", "chat_opened", peer="carol"
        ):
            raise Failed("the client to show the direct chat with carol open", "it did not")

    async def stranger(self) -> Udp:
        udp = await open_udp()
        self._sockets.append(udp)
        return udp


async def refused(udp: Udp, what: str, patience: float) -> None:
    """Nothing may come back to ``udp`` (an ACK, for example) within half the patience."""
    got = await udp.receive(patience / 2)
    if got is not None:
        raise Failed(what, show(got[0]))


# -- the checks ---------------------------------------------------------------------


@checks("client-register", "the client registers with a canonical REGISTER", "5, 6, 7, spec")
async def _register(s: ClientSession) -> None:
    await s.registered()
    got = s.register_raw
    assert got is not None and isinstance(got.message, Register)
    judge(s.record, got, got.message.encode(), "the REGISTER", Role.SERVER)


@checks("client-udp-bound", "the UDP port the client registers is really bound", "19")
async def _udp_bound(s: ClientSession) -> None:
    _, me = await s.registered()
    family = socket.AF_INET6 if ":" in me.ip else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.bind((me.ip, me.udp_port))
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return  # the client holds it
        if error.errno == errno.EADDRNOTAVAIL:
            s.record.variant(
                "a registered IP of this machine", f"{me.ip}, which is not; not checked"
            )
            return
        raise
    finally:
        probe.close()
    raise Failed(f"UDP port {me.udp_port} bound by the client", "nobody holds it")


@checks("client-list-shown", "the client takes the LIST and knows carol", "10, spec")
async def _list(s: ClientSession) -> None:
    await s.registered()
    if not await s.driver.shows(
        "Does your client list carol as a participant?", "participants", participants="carol"
    ):
        raise Failed("carol among the participants shown", "she is not")


@checks("client-join-leave-shown", "UPDATE:JOIN and UPDATE:LEAVE are shown", "9, 15, spec")
async def _join_leave(s: ClientSession) -> None:
    conn, _ = await s.registered()
    dave = Participant("dave", "127.0.0.1", 4999)
    await conn.send(b"UPDATE:JOIN:%s\r\n" % dave.wire().encode())
    if not await s.driver.shows("Does your client show that dave joined?", "join", nick="dave"):
        raise Failed("the client to show dave joining", "it did not")
    await conn.send(b"UPDATE:LEAVE:%s\r\n" % dave.wire().encode())
    if not await s.driver.shows("Does your client show that dave left?", "leave", nick="dave"):
        raise Failed("the client to show dave leaving", "it did not")


@checks("client-broadcast-shown", "a BROADCAST with ':', CRLF and emoji is shown whole", "3, spec")
async def _broadcast_shown(s: ClientSession) -> None:
    conn, _ = await s.registered()
    text = "hi: there\r\nsecond line 🎉"
    await conn.send(encode_broadcast("carol", text))
    if not await s.driver.shows(
        "Does your client show carol's message 'hi: there', 'second line 🎉' as ONE message?",
        "broadcast",
        **{"from": "carol", "text": text},
    ):
        raise Failed(f"carol's message {text!r} shown whole", "it was not")


@checks(
    "client-ignores-self",
    "an echo of its own BROADCAST and an UPDATE about itself are not shown",
    "10",
)
async def _ignores_self(s: ClientSession) -> None:
    conn, me = await s.registered()
    await conn.send(b"UPDATE:JOIN:%s\r\n" % me.wire().encode())
    await conn.send(encode_broadcast(me.nick, "an echo"))
    await conn.send(encode_broadcast("carol", "after the echo"))
    if not await s.driver.shows(
        "Does your client show carol's message 'after the echo'?",
        "broadcast",
        **{"from": "carol", "text": "after the echo"},
    ):
        raise Failed("carol's message 'after the echo' shown", "it was not")
    if await s.driver.saw(
        f"Did your client show the message 'an echo' from {me.nick}, yourself?",
        "broadcast",
        **{"from": me.nick},
    ):
        raise Failed("its own broadcast echoed by a server not shown (decision 10)", "it was shown")
    if await s.driver.saw(
        f"Did your client show {me.nick} (yourself) joining?", "join", nick=me.nick
    ):
        raise Failed("an UPDATE about itself not shown (decision 10)", "it was shown")


@checks("client-sends-broadcast", "a typed message goes out as one canonical BROADCAST", "3, 13")
async def _sends(s: ClientSession) -> None:
    conn, me = await s.registered()
    text = "hello:world 🎉"
    await s.driver.type(f"Send the broadcast: {text}", text)
    canonical = encode_broadcast(me.nick, text)
    got, _ = await conn.expect(
        f"{show(canonical)}", lambda r: r.raw.upper().startswith(b"BROADCAST"), 60
    )
    judge(s.record, got, canonical, "the BROADCAST", Role.SERVER)


@checks("client-init", "a direct chat starts with an INIT from the registered UDP port", "8, 19")
async def _init(s: ClientSession) -> None:
    init, raw, source = await s.initiated()
    _, me = await s.registered()
    if source[1] != me.udp_port:
        raise Failed(
            f"the INIT from the registered UDP port {me.udp_port} (decision 19)",
            f"from port {source[1]}",
        )
    if len(init.secret) < 22:
        s.record.variant(
            "a secret of 128 random bits or more: 22 URL-safe characters (decision 8)",
            f"{len(init.secret)} characters",
        )
    judge_datagram(s.record, raw, init.encode(), "the INIT")


@checks("client-init-resent", "an unanswered INIT is sent again with the same secret", "20")
async def _resent(s: ClientSession) -> None:
    init, _, source = await s.initiated()
    assert s.carol_udp is not None
    got = await s.carol_udp.receive(3)
    if got is None:
        raise Failed("the INIT again within 3 s while unanswered (decision 20)", "nothing")
    data, again_from = got
    with contextlib.suppress(RemoteProtocolError):
        if decode_datagram(data) == init and again_from == source:
            return
    raise Failed(
        f"the same INIT again from {source[0]}:{source[1]}", f"{show(data)} from {again_from}"
    )


@checks("client-direct-connect", "after the ACK the client takes carol's TCP connection", "19, 22")
async def _connect(s: ClientSession) -> None:
    await s.open_chat()


@checks("client-chat-sends", "a direct message goes out as a canonical CHAT frame", "3, 23")
async def _chat_sends(s: ClientSession) -> None:
    chat = await s.open_chat()
    text = "hi carol: 🎉"
    await s.driver.type(f"Send carol the direct message: {text}", f"/msg carol {text}")
    got, _ = await chat.expect(
        "a CHAT frame", lambda r: isinstance(r.message, Chat) or r.problem is not None, s.wait
    )
    judge(s.record, got, Chat(text).encode(), "the CHAT", Role.PEER)


@checks("client-chat-shown", "a CHAT frame from carol with ':' and CRLF is shown whole", "3, 23")
async def _chat_shown(s: ClientSession) -> None:
    chat = await s.open_chat()
    text = "from carol: line one\r\nline two"
    await chat.send(Chat(text).encode())
    if not await s.driver.shows(
        "Does your client show carol's direct message 'from carol: line one', 'line two' as ONE message?",
        "chat",
        **{"from": "carol", "text": text},
    ):
        raise Failed(f"carol's direct message {text!r} shown whole", "it was not")


@checks(
    "client-chat-closed", "carol closing the connection ends the chat, and the user is told", "23"
)
async def _chat_closed(s: ClientSession) -> None:
    chat = await s.open_chat()
    await chat.close()
    s.chat = None
    if not await s.driver.shows(
        "Does your client show that the chat with carol ended?", "chat_closed", peer="carol"
    ):
        raise Failed("the client to tell the chat with carol ended", "it did not")


@checks(
    "client-accepts-init",
    "an INIT from carol is ACKed from the registered port and connected",
    "21",
)
async def _accepts(s: ClientSession) -> None:
    _, me = await s.registered()
    assert s.carol_udp is not None
    listener_conns: asyncio.Queue[Wire] = asyncio.Queue()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await listener_conns.put(Wire(reader, writer, "carol-chat", Role.PEER, s.patience))

    listener = await asyncio.start_server(accepted, "127.0.0.1", 0)
    try:
        port = listener.sockets[0].getsockname()[1]
        init = Init("c4r0l-s3cret-" + "x" * 16, port)
        s.carol_udp.transport.sendto(init.encode(), (me.ip, me.udp_port))
        got = await s.carol_udp.receive(s.patience)
        if got is None:
            raise Failed(
                "ACK:INIT:Secret back to carol (decision 21)", f"nothing within {s.patience:g} s"
            )
        data, source = got
        if source[1] != me.udp_port:
            raise Failed(
                f"the ACK from the registered UDP port {me.udp_port}", f"from port {source[1]}"
            )
        judge_datagram(s.record, data, Ack(init.secret).encode(), "the ACK")
        try:
            async with asyncio.timeout(s.patience):
                wire = await listener_conns.get()
        except TimeoutError:
            raise Failed(f"a TCP connection to carol's port {port} (decision 21)", "none") from None
        s.chat = wire
        if not await s.driver.shows(
            "Does your client show a direct chat with carol open?", "chat_opened", peer="carol"
        ):
            raise Failed("the client to show the direct chat with carol open", "it did not")
        # A repeat of the same INIT is acknowledged again but opens nothing (decision 21).
        s.carol_udp.transport.sendto(init.encode(), (me.ip, me.udp_port))
        again = await s.carol_udp.receive(s.patience)
        if again is None:
            raise Failed("the repeated INIT ACKed again (decision 21)", "no ACK")
        judge_datagram(s.record, again[0], Ack(init.secret).encode(), "the repeated ACK")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(s.patience / 2):
                second = await listener_conns.get()
                await second.close()
                raise Failed(
                    "no second connection for a repeated INIT (decision 21)", "a second connection"
                )
    finally:
        listener.close()


@checks("client-ignores-stranger", "an INIT from an address not in the list is ignored", "21")
async def _stranger(s: ClientSession) -> None:
    _, me = await s.registered()
    udp = await s.stranger()
    connected = asyncio.Event()

    async def accepted(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        writer.close()

    listener = await asyncio.start_server(accepted, "127.0.0.1", 0)
    try:
        port = listener.sockets[0].getsockname()[1]
        udp.transport.sendto(
            Init("stranger-secret-xxxxxxxxxx", port).encode(), (me.ip, me.udp_port)
        )
        await refused(udp, "no answer to an INIT from a stranger (decision 21)", s.patience)
        if connected.is_set():
            raise Failed("no connection to a stranger's INIT (decision 21)", "the client connected")
    finally:
        listener.close()


def judge_datagram(record: Recorder, raw: bytes, canonical: bytes, what: str) -> None:
    if raw == canonical:
        return
    try:
        same = decode_datagram(raw) == decode_datagram(canonical)
    except RemoteProtocolError:
        same = False
    if not same:
        raise Failed(f"{what}: {show(canonical)}", show(raw))
    record.variant(f"{what} in the canonical form {show(canonical)}", show(raw))


__all__ = ["ClientSession", "CommandDriver", "PersonDriver", "checks"]
