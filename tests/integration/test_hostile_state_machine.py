"""A stateful property test of the server under hostile clients, over real TCP sockets.

A hypothesis state machine drives several connections to a real ``ChatServer``
(127.0.0.1, port 0, on an event loop in a thread of its own) with random
sequences of valid and invalid messages, each sent in randomly split pieces,
and with clean closes, half-closes, resets and reconnects. A model of the
protocol (docs/PROTOCOL.md) says which bytes every connection must
receive next, and each step checks them exactly. After every step:

- the server still accepts a connection and answers it;
- the model's participant list equals the server's registry, and so does every
  registered connection's own view of it, built only from the LIST and
  UPDATE:JOIN/LEAVE messages it received, in join order (decisions 9, 10, 15);
- every accepted broadcast reached every other participant registered when it
  was forwarded exactly once, what each one heard is a subsequence of one
  global order, and nobody heard its own broadcast (decisions 13, 14).

A step ends at a barrier: each open connection sends LIST and reads up to the
reply. The server handles one connection's messages in order and queues
replies and fan-out in the same per-connection outbox, so whatever a step made
the server send a connection is in front of that reply. The connection that
acted goes first, so that the server has handled its messages before the
others ask. A connection that ends is noticed by the server in its own time,
so after a close or reset the others first wait for its UPDATE:LEAVE.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import unicodedata
from collections import deque
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from p2pchat.protocol import (
    LENGTH_HARD_LIMIT,
    NEED_DATA,
    Action,
    Broadcast,
    Decoder,
    Participant,
    ParticipantList,
    RemoteProtocolError,
    Role,
    Update,
)
from p2pchat.server import ChatServer, ServerConfig

T = TypeVar("T")

TIMEOUT = 5.0  # for any one expected message: far above what loopback needs
READ_CHUNK = 1 << 16
MAX_CONNECTIONS = 6
MAX_MESSAGE = 65536  # the server's default message size limit

# Seven spellings, four nicknames: "Ann"/"ann" differ by case, "Straße"/"STRASSE"
# only by casefold (str.lower keeps the 'ß'), and "Zoë"/"ZOE" + U+0308 by case and
# Unicode form (one 'ë', or 'E' and a combining diaeresis): each refuses the others.
NICKS = ("Ann", "ann", "bob", "Zo\u00eb", "ZOE\u0308", "Straße", "STRASSE")
# (as sent in REGISTER, as the LIST must show it): unspecified addresses mean the
# connection's source, IPv6 comes back bracketed and normalised (decisions 6, 12).
ADDRESSES = (
    ("127.0.0.1", "127.0.0.1"),
    ("0.0.0.0", "127.0.0.1"),
    ("[::]", "127.0.0.1"),
    ("192.0.2.7", "192.0.2.7"),
    ("[2001:db8::1]", "[2001:db8::1]"),
    ("2001:DB8:0::7", "[2001:db8::7]"),
)
REGISTER_FIRST = "register first: REGISTER:Nickname:IP-Address:UDP-Port"
NICK_RULE = "no ':', spaces or control characters allowed"
OVERSIZED = b"BROADCAST:ann:70000:" + b"x" * 70000


def key(nick: str) -> str:
    """Same nickname: canonical caseless match (decision 5)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", nick).casefold())


def listed_address(reg: Reg) -> str:
    """Where a REGISTER puts its sender, as the LIST shows it (decisions 6, 12)."""
    return f"{dict(ADDRESSES)[reg.ip]}:{int(reg.port)}"


def shorten(wire: bytes) -> str:
    """Bytes for a failure report: the kilobytes of an oversized message are left out."""
    return (
        repr(wire) if len(wire) <= 60 else f"{wire[:40]!r} ... {wire[-12:]!r} ({len(wire)} bytes)"
    )


# -- what a connection sends, and what the model makes of it --------------------------


@dataclass(frozen=True)
class Reg:
    """REGISTER with these fields, as sent."""

    nick: str
    ip: str
    port: str
    error: str | None = None  # the field error it must get; None when the fields are valid
    command: str = "REGISTER"
    eol: bytes = b"\r\n"


@dataclass(frozen=True)
class Say:
    """BROADCAST under the sender's own nickname (in some case), or another one."""

    text: str
    case: str = "same"  # same, upper, lower or swapcase of the sender's nickname
    spoof: str | None = None  # a nickname to send instead of the sender's own
    command: str = "BROADCAST"
    eol: bytes = b"\r\n"


@dataclass(frozen=True)
class Ask:
    """A LIST request, in one of its accepted spellings."""

    wire: bytes = b"LIST\r\n"


@dataclass(frozen=True, repr=False)
class Junk:
    """Garbage the server recovers from: ERROR (or nothing, for a blank line), connection kept."""

    wire: bytes
    error: str | None

    def __repr__(self) -> str:
        return f"Junk({shorten(self.wire)})"


@dataclass(frozen=True, repr=False)
class Fatal:
    """Garbage that loses the byte stream: ERROR, then the server closes (decision 16)."""

    wire: bytes
    errors: tuple[str, ...]
    # The byte that makes it fatal. Nothing is split off after it: bytes that
    # reach the server after it closed would make it reset the connection,
    # and a reset can destroy the ERROR before the client reads it.
    decided_at: int

    def __repr__(self) -> str:
        return f"Fatal({shorten(self.wire)})"


Item = Reg | Say | Ask | Junk | Fatal


def framed(prefix: str, text: str) -> bytes:
    payload = text.encode("utf-8")
    return b"%s%d:%s\r\n" % (prefix.encode("utf-8"), len(payload), payload)


def error(text: str) -> bytes:
    return framed("ERROR:", text)


INVALID_REGISTERS = (
    Reg("a b", "127.0.0.1", "5000", f"nickname 'a b' contains ' ': {NICK_RULE}"),
    Reg("tab\tnick", "127.0.0.1", "5000", f"nickname 'tab\\tnick' contains '\\t': {NICK_RULE}"),
    # A ':' in the nickname shifts the fields: the address is what breaks.
    Reg("x:y", "127.0.0.1", "5000", "'y:127.0.0.1' is not an IPv4 or IPv6 address"),
    Reg("", "127.0.0.1", "5000", "nickname is empty"),
    Reg("n" * 33, "127.0.0.1", "5000", "nickname is too long: 33 characters, limit 32"),
    Reg(
        "eve\u202e",
        "127.0.0.1",
        "5000",
        "nickname 'eve\\u202e' contains U+202E: no invisible or formatting characters allowed",
    ),
    Reg(
        "bob",
        "[fe80::1%" + "z" * 16 + "]",
        "5000",
        "IPv6 zone id (after '%') is too long: 16 characters, limit 15",
    ),
    Reg("bob", "999.0.0.1", "5000", "'999.0.0.1' is not an IPv4 or IPv6 address"),
    Reg("bob", "127.0.0.1", "0", "port 0 is out of range 1-65535"),
    Reg("bob", "127.0.0.1", "65536", "port 65536 is out of range 1-65535"),
    Reg("bob", "127.0.0.1", "http", "port 'http' is not a number from 1 to 65535"),
)
JUNK = (
    Junk(b"HELLO:there\r\n", "unknown command 'HELLO'"),
    Junk(b"hello\n", "unknown command 'HELLO'"),
    Junk(b"\r\n", None),  # blank lines are ignored (decision 1)
    Junk(b"\n", None),
    Junk(b"UPDATE:JOIN:x:127.0.0.1:1\r\n", "UPDATE is not expected here"),
    Junk(b"ERROR:2:hi\r\n", "ERROR is not expected here"),
    Junk(b"CHAT:2:hi\r\n", "CHAT is not expected here"),
    Junk(b"INIT:abc:5\r\n", "INIT is not expected here"),
    Junk(b"BROADCAST:ann\r\n", "malformed BROADCAST: expected BROADCAST:Nickname:Length:Message"),
    Junk(b"BROADCAST:a b:2:hi\r\n", f"nickname 'a b' contains ' ': {NICK_RULE}"),
    Junk(b"BROADCAST:ann:2:\xff\xfe\r\n", "BROADCAST is not valid UTF-8"),
    Junk(b"REGISTER:\xc3\x28:127.0.0.1:5009\r\n", "REGISTER is not valid UTF-8"),
    Junk(
        b"REGISTER:bob:127.0.0.1\r\n",
        "malformed REGISTER: expected REGISTER:Nickname:IP-Address:UDP-Port",
    ),
    Junk(OVERSIZED + b"\r\n", f"message too long: 70000 bytes, limit {MAX_MESSAGE}"),
)


def _fatal_at_length_end(wire: bytes, length: bytes, errors: tuple[str, ...]) -> Fatal:
    """A Length that cannot be: it is fatal as soon as the ':' after it arrives."""
    return Fatal(wire, errors, wire.index(b":", wire.index(length)))


FATAL = (
    _fatal_at_length_end(b"BROADCAST:ann:abc:hi\r\n", b"abc", ("Length 'abc' is not a number",)),
    _fatal_at_length_end(b"broadcast:ann:-1:hi\r\n", b"-1", ("Length '-1' is not a number",)),
    _fatal_at_length_end(
        b"BROADCAST:ann:1048577:x\r\n",
        b"1048577",
        ("Length 1048577 is over the hard limit of 1048576 bytes",),
    ),
    _fatal_at_length_end(b"ERROR:zz:\r\n", b"zz", ("Length 'zz' is not a number",)),
    # Neither 3 bytes nor 3 characters end at a line end: decided at the 'd'.
    Fatal(
        b"BROADCAST:ann:3:abcdef\r\n",
        ("no line end after the 3-byte message of BROADCAST",),
        len(b"BROADCAST:ann:3:abc"),
    ),
    Fatal(b"R" * 4098, ("line too long: limit 4096 bytes",), 4097),
    Fatal(
        OVERSIZED + b"YZ",
        (
            f"message too long: 70000 bytes, limit {MAX_MESSAGE}",
            "no line end after the skipped message",
        ),
        len(OVERSIZED),
    ),
)

# Message texts, pieced together so that CRLF and multi-code-point emoji come whole too.
TEXTS = st.lists(
    st.sampled_from([":", "\r", "\n", "\r\n", " ", "é", "ß", "😀", "👍🏽", "\x00"])
    | st.characters(codec="utf-8"),
    max_size=30,
).map("".join)
CASES = st.sampled_from(["same", "upper", "lower", "swapcase"])
EOLS = st.sampled_from([b"\r\n", b"\n"])
SAYS = st.builds(
    Say,
    text=TEXTS,
    case=CASES,
    command=st.sampled_from(["BROADCAST", "broadcast", "Broadcast"]),
    eol=EOLS,
)
ASKS = st.builds(Ask, st.sampled_from([b"LIST\r\n", b"list\n", b"List:junk\r\n"]))


def registers(nicks: st.SearchStrategy[str]) -> st.SearchStrategy[Reg]:
    """REGISTERs with valid fields."""
    return st.builds(
        Reg,
        nick=nicks,
        ip=st.sampled_from([sent for sent, _ in ADDRESSES]),
        port=st.integers(1, 65535).map(str),
        command=st.sampled_from(["REGISTER", "register"]),
        eol=EOLS,
    )


MIXED = st.one_of(
    SAYS,
    SAYS,
    ASKS,
    registers(st.sampled_from(NICKS)),
    st.sampled_from(INVALID_REGISTERS),
    st.sampled_from(JUNK),
    st.builds(Say, text=TEXTS, spoof=st.sampled_from(NICKS)),
)


def apply_case(nick: str, case: str) -> str:
    return {
        "same": nick,
        "upper": nick.upper(),
        "lower": nick.lower(),
        "swapcase": nick.swapcase(),
    }[case]


def is_subsequence(part: Sequence[object], whole: Sequence[object]) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


# -- the server's event loop, in a thread of its own --------------------------------------


class ServerLoop:
    """An event loop in a background thread: servers run there, rules stay synchronous."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="server-loop")
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, T], failure: str = "did not answer") -> T:
        assert self.thread.is_alive(), "the server's event loop thread has died"
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise AssertionError(f"server: {failure} within {TIMEOUT} s") from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture(scope="module")
def server_loop() -> Iterator[ServerLoop]:
    loop = ServerLoop()
    yield loop
    loop.stop()


# -- one client connection ------------------------------------------------------------


class Conn:
    """A client connection on a blocking socket.

    ``view`` and ``heard`` are the client's own knowledge, built only from
    what it received; ``nick``, ``due`` and ``owed`` are the model's.
    """

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        # Each piece goes out as sent, not held back to be merged with the next.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Only used to find where each message ends; no limit gets in the way.
        self._decoder = Decoder(
            Role.CLIENT, max_message_bytes=LENGTH_HARD_LIMIT, max_line_bytes=LENGTH_HARD_LIMIT
        )
        self._raw = bytearray()
        self.view: list[Participant] | None = None  # from its LIST, then UPDATEs
        self.heard: list[tuple[str, str]] = []  # broadcasts received: (nickname, text)
        self.nick: str | None = None  # registered as, per the model
        self.due: deque[bytes] = deque()  # what the server must send it next, in order
        self.owed: list[tuple[str, str]] = []  # every broadcast it must have heard, in order
        self.doomed = False  # sent fatal garbage: the server must close it

    def __repr__(self) -> str:
        return self.name

    def send(self, pieces: list[bytes]) -> None:
        try:
            for piece in pieces:
                self.sock.sendall(piece)
        except OSError as lost:
            raise AssertionError(
                f"{self.name}: {lost!r} while sending; the server had sent {self._rest()!r}"
            ) from None

    def _rest(self) -> bytes:
        """Whatever is left to read, to show why the server hung up."""
        try:
            return bytes(self._raw) + self.sock.recv(READ_CHUNK)
        except OSError:
            return bytes(self._raw)

    def recv(self, waiting_for: bytes) -> bytes:
        """The next whole message, exactly as the server sent it."""
        while True:
            try:
                decoded = self._decoder.next_event()
            except RemoteProtocolError as bad:
                raise AssertionError(
                    f"{self.name}: the server sent something undecodable ({bad}): "
                    f"{bytes(self._raw)[:200]!r}"
                ) from None
            if decoded is not NEED_DATA:
                n = len(self._raw) - self._decoder.buffered
                message = bytes(self._raw[:n])
                del self._raw[:n]
                self._learn(decoded)
                return message
            try:
                data = self.sock.recv(READ_CHUNK)
            except TimeoutError:
                raise AssertionError(
                    f"{self.name}: nothing within {TIMEOUT} s while waiting for "
                    f"{waiting_for[:120]!r}; partial: {bytes(self._raw)[:200]!r}"
                ) from None
            except ConnectionError as lost:
                raise AssertionError(
                    f"{self.name}: {lost!r} while waiting for {waiting_for[:120]!r}"
                ) from None
            if not data:
                raise AssertionError(
                    f"{self.name}: closed by the server while waiting for "
                    f"{waiting_for[:120]!r}; partial: {bytes(self._raw)[:200]!r}"
                )
            self._raw += data
            self._decoder.feed(data)

    def _learn(self, message: object) -> None:
        """What a client makes of a message: its list of participants and what it heard."""
        match message:
            case ParticipantList(participants=participants) if self.view is None:
                self.view = list(participants)
            case Update(action=Action.JOIN, participant=p) if self.view is not None:
                self.view.append(p)
            case Update(action=Action.LEAVE, participant=p) if self.view is not None:
                self.view = [q for q in self.view if q.key != p.key]
            case Broadcast(nick=nick, text=text):
                self.heard.append((nick, text))

    def expect_due(self) -> None:
        while self.due:
            want = self.due.popleft()
            got = self.recv(want)
            assert got == want, f"{self.name}: expected {want[:200]!r}, got {got[:200]!r}"

    def expect_closed(self) -> None:
        """The server ends the connection, with no bytes left before the end."""
        assert not self._raw, f"{self.name}: unread bytes before the end {bytes(self._raw)!r}"
        try:
            data = self.sock.recv(READ_CHUNK)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: still open {TIMEOUT} s after it should have ended"
            ) from None
        except ConnectionResetError:
            return
        assert data == b"", f"{self.name}: expected the end, got {data[:200]!r}"

    def reset(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def pieces(wire: bytes, cuts: Sequence[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(wire)]
    return [wire[a:b] for a, b in pairwise(bounds) if b > a]


# -- the state machine ------------------------------------------------------------------


class HostileClients(RuleBasedStateMachine):
    """Up to six connections to one fresh server per run, and the model of what they must see."""

    def __init__(self, server_loop: ServerLoop) -> None:
        super().__init__()
        self.server_loop = server_loop
        self.server = server_loop.call(self._start())
        self.port = self.server.port
        self.conns: list[Conn] = []
        self.opened = 0
        # The model: the registered participants in join order, each with its LIST entry.
        self.members: list[tuple[Conn, Participant, str]] = []
        self.log: list[tuple[str, str]] = []  # every accepted broadcast, in the global order
        self.gone: list[str] = []  # nicknames of participants that left
        self.leaving: list[Participant] = []  # left since the last step, per the model

    @staticmethod
    async def _start() -> ChatServer:
        server = ChatServer(ServerConfig())  # the default limits, as the texts above expect
        await server.start("127.0.0.1", 0)
        return server

    def teardown(self) -> None:
        for conn in self.conns:
            conn.sock.close()
        self.server_loop.call(self.server.close(timeout=1.0))

    # -- model helpers ---------------------------------------------------------------

    def _open(self) -> Conn:
        self.opened += 1
        conn = Conn(f"c{self.opened}", self.port)
        self.conns.append(conn)
        return conn

    def _registered(self) -> list[Conn]:
        return [conn for conn, _, _ in self.members]

    def _unregistered(self) -> list[Conn]:
        return [conn for conn in self.conns if conn.nick is None]

    def _taken(self) -> set[str]:
        return {p.key for _, p, _ in self.members}

    def _free_nicks(self) -> list[str]:
        taken = self._taken()
        return [nick for nick in NICKS if key(nick) not in taken]

    def _holder(self, address: str) -> Participant | None:
        """Who is registered at this address (``ip:port``, as listed), if anyone."""
        return next((p for _, p, _ in self.members if p.endpoint == address), None)

    def _free_gone(self) -> list[str]:
        taken = self._taken()
        return sorted({nick for nick in self.gone if key(nick) not in taken})

    def _list_bytes(self) -> bytes:
        return ("LIST:" + ":".join(entry for _, _, entry in self.members) + "\r\n").encode()

    def _tell_others(self, conn: Conn, message: bytes) -> None:
        for other in self._registered():
            if other is not conn:
                other.due.append(message)

    def _leave(self, conn: Conn) -> None:
        """The model's side of a registered connection ending: LEAVE to all who remain."""
        for i, (member, _, entry) in enumerate(self.members):
            if member is conn:
                self.leaving.append(self.members.pop(i)[1])
                self.gone.append(conn.nick or "")
                self._tell_others(conn, f"UPDATE:LEAVE:{entry}\r\n".encode())
                return

    def _expect(self, conn: Conn, item: Item) -> bytes:
        """Updates the model for ``item`` sent on ``conn``; returns its bytes."""
        match item:
            case Reg(nick, ip, port, field_error, command, eol):
                wire = f"{command}:{nick}:{ip}:{port}".encode() + eol
                if field_error is not None:
                    event("REGISTER: bad field")
                    conn.due.append(error(field_error))
                elif conn.nick is not None:
                    event("REGISTER: already registered")
                    conn.due.append(
                        error(f"already registered as '{conn.nick}' on this connection")
                    )
                elif key(nick) in self._taken():
                    same = nick in {p.nick for _, p, _ in self.members}
                    event(f"REGISTER: taken{'' if same else ' by casefold'}")
                    conn.due.append(error(f"nickname '{nick}' is already in use"))
                elif (holder := self._holder(listed_address(item))) is not None:
                    event("REGISTER: address taken")
                    conn.due.append(
                        error(
                            f"address {listed_address(item)} is already registered by "
                            f"'{holder.nick}'; use another UDP port"
                        )
                    )
                else:
                    event("REGISTER: joined")
                    listed = dict(ADDRESSES)[ip]
                    entry = f"{nick}:{listed}:{int(port)}"
                    participant = Participant(nick, listed.strip("[]"), int(port))
                    conn.nick = nick
                    self.members.append((conn, participant, entry))
                    conn.due.append(self._list_bytes())  # LIST first, nothing about itself before
                    self._tell_others(conn, f"UPDATE:JOIN:{entry}\r\n".encode())
                return wire
            case Say(text, case, spoof, command, eol):
                own = conn.nick
                nick = spoof or (apply_case(own, case) if own is not None else "ann")
                payload = text.encode("utf-8")
                wire = b"%s:%s:%d:%s%s" % (
                    command.encode(),
                    nick.encode("utf-8"),
                    len(payload),
                    payload,
                    eol,
                )
                if own is None:
                    event("BROADCAST: before REGISTER")
                    conn.due.append(error(REGISTER_FIRST))
                elif key(nick) != key(own):
                    event("BROADCAST: spoofed")
                    conn.due.append(error(f"you are registered as '{own}', not '{nick}'"))
                else:  # forwarded canonically under the registered nickname, not echoed
                    event(f"BROADCAST: forwarded to {len(self.members) - 1}")
                    self.log.append((own, text))
                    self._tell_others(conn, framed(f"BROADCAST:{own}:", text))
                    for other in self._registered():
                        if other is not conn:
                            other.owed.append((own, text))
                return wire
            case Ask(wire):
                conn.due.append(self._list_bytes() if conn.nick else error(REGISTER_FIRST))
                return wire
            case Junk(wire, junk_error):
                if junk_error is not None:
                    conn.due.append(error(junk_error))
                return wire
            case Fatal(wire, errors):
                event(f"fatal garbage from {'a participant' if conn.nick else 'a stranger'}")
                conn.due.extend(error(text) for text in errors)
                conn.doomed = True
                self._leave(conn)
                return wire
        raise AssertionError(f"unknown item {item!r}")

    # -- sending and settling -------------------------------------------------------------

    def _send(self, data: st.DataObject, conn: Conn, items: Sequence[Item]) -> None:
        """Sends ``items`` as one byte stream in random pieces, then settles."""
        wire = b""
        last_cut = None
        for item in items:
            if isinstance(item, Fatal):
                last_cut = len(wire) + item.decided_at
            wire += self._expect(conn, item)
        limit = len(wire) - 1 if last_cut is None else min(last_cut, len(wire) - 1)
        cuts: Sequence[int] = []
        if limit >= 1:
            if limit <= 300 and data.draw(st.booleans(), label="byte by byte"):
                cuts = range(1, limit + 1)
            else:
                cuts = data.draw(st.lists(st.integers(1, limit), max_size=8), label="cuts")
        conn.send(pieces(wire, cuts))
        self._settle(conn)

    def _settle(self, actor: Conn | None) -> None:
        """Reads everything the model says is due on every connection, up to a LIST barrier."""
        if actor is not None and actor.doomed:
            actor.expect_due()
            actor.expect_closed()
            actor.sock.close()
            self.conns.remove(actor)
            actor = None  # its LEAVE, if any, was queued before its ERROR went out
        elif actor is not None:
            self._barrier([actor])
        others = [conn for conn in self.conns if conn is not actor]
        if actor is None:
            # A close or reset is seen by the server in its own time: wait for the
            # LEAVEs before asking, or a LIST could overtake them.
            self._wait_unregistered()
            for conn in others:
                conn.expect_due()
        self._barrier(others)

    def _wait_unregistered(self) -> None:
        """Waits until the server has removed everyone who left: when nobody else is
        registered, nobody hears the LEAVE and the registry is the only witness."""
        keys = {p.key for p in self.leaving}
        self.leaving.clear()
        registry = self.server.registry

        async def removed() -> None:
            while keys & {p.key for p in registry.participants()}:
                await asyncio.sleep(0.001)

        if keys:
            self.server_loop.call(removed(), f"{sorted(keys)} still registered after leaving")

    def _barrier(self, conns: list[Conn]) -> None:
        for conn in conns:
            conn.send([b"LIST\r\n"])
            conn.due.append(self._list_bytes() if conn.nick else error(REGISTER_FIRST))
        for conn in conns:
            conn.expect_due()

    def _pick(self, data: st.DataObject, conns: list[Conn], label: str = "conn") -> Conn:
        return data.draw(st.sampled_from(conns), label=label)

    # -- rules ----------------------------------------------------------------------------

    @initialize(data=st.data(), n=st.integers(2, 4))
    def open_some(self, data: st.DataObject, n: int) -> None:
        """A few connections, some registered, so that most steps have someone to reach."""
        for _ in range(n):
            self._open()
        self._settle(None)
        for conn in self.conns[: data.draw(st.integers(0, n), label="registered")]:
            self._join(data, conn)

    def _join(self, data: st.DataObject, conn: Conn) -> None:
        nick = data.draw(st.sampled_from(self._free_nicks()), label="nick")
        free = registers(st.just(nick)).filter(lambda r: not self._holder(listed_address(r)))
        self._send(data, conn, [data.draw(free, label="register")])
        assert conn.nick == nick

    @precondition(lambda self: len(self.conns) < MAX_CONNECTIONS)
    @rule()
    def connect(self) -> None:
        self._settle(self._open())

    @precondition(lambda self: self._unregistered() and self._free_nicks())
    @rule(data=st.data())
    def join(self, data: st.DataObject) -> None:
        """LIST to the newcomer, UPDATE:JOIN to the others (decision 9)."""
        self._join(data, self._pick(data, self._unregistered()))

    @precondition(lambda self: self.conns)
    @rule(data=st.data(), item=registers(st.sampled_from(NICKS)))
    def register(self, data: st.DataObject, item: Reg) -> None:
        """Valid fields: joins, or is refused as taken or already registered (decision 11)."""
        self._send(data, self._pick(data, self.conns), [item])

    @precondition(lambda self: self.conns and self.members)
    @rule(data=st.data(), case=CASES, ip=st.sampled_from([sent for sent, _ in ADDRESSES]))
    def register_taken(self, data: st.DataObject, case: str, ip: str) -> None:
        """A nickname in use, in any case: refused by casefold (decision 5)."""
        _, taken, _ = self._pick(data, self.members, label="taken")
        nick = apply_case(taken.nick, case)
        self._send(data, self._pick(data, self.conns), [Reg(nick, ip, "4000")])

    @precondition(lambda self: self._unregistered() and self.members and self._free_nicks())
    @rule(data=st.data())
    def register_address_taken(self, data: st.DataObject) -> None:
        """A free nickname at an address in use, in any spelling of it: refused (decision 21)."""
        taken = data.draw(st.sampled_from([p for _, p, _ in self.members]), label="taken")
        ip = data.draw(
            st.sampled_from([sent for sent, listed in ADDRESSES if listed.strip("[]") == taken.ip]),
            label="ip",
        )
        nick = data.draw(st.sampled_from(self._free_nicks()), label="nick")
        conn = self._pick(data, self._unregistered())
        self._send(data, conn, [Reg(nick, ip, str(taken.udp_port))])
        assert conn.nick is None

    @precondition(lambda self: self.conns)
    @rule(data=st.data(), item=st.sampled_from(INVALID_REGISTERS))
    def register_invalid(self, data: st.DataObject, item: Reg) -> None:
        self._send(data, self._pick(data, self.conns), [item])

    @precondition(lambda self: self.members)
    @rule(data=st.data(), items=st.lists(SAYS, min_size=1, max_size=3))
    def broadcast(self, data: st.DataObject, items: list[Say]) -> None:
        """Forwarded to every other participant, never echoed (decisions 13, 14)."""
        self._send(data, self._pick(data, self._registered()), items)

    @precondition(lambda self: self._unregistered())
    @rule(data=st.data(), item=SAYS)
    def broadcast_before_register(self, data: st.DataObject, item: Say) -> None:
        self._send(data, self._pick(data, self._unregistered()), [item])

    @precondition(lambda self: self.members)
    @rule(data=st.data(), text=TEXTS)
    def broadcast_spoofed(self, data: st.DataObject, text: str) -> None:
        conn = self._pick(data, self._registered())
        assert conn.nick is not None
        others = [nick for nick in NICKS if key(nick) != key(conn.nick)]
        spoof = data.draw(st.sampled_from(others), label="spoof")
        self._send(data, conn, [Say(text, spoof=spoof)])

    @precondition(lambda self: self.conns)
    @rule(data=st.data(), item=st.sampled_from(JUNK))
    def garbage(self, data: st.DataObject, item: Junk) -> None:
        self._send(data, self._pick(data, self.conns), [item])

    @precondition(lambda self: self.conns)
    @rule(data=st.data(), item=st.sampled_from(FATAL))
    def fatal_garbage(self, data: st.DataObject, item: Fatal) -> None:
        self._send(data, self._pick(data, self.conns), [item])

    @precondition(lambda self: self.conns)
    @rule(
        data=st.data(),
        items=st.lists(MIXED, min_size=2, max_size=6),
        end=st.none() | st.sampled_from(FATAL),
    )
    def mixed_stream(self, data: st.DataObject, items: list[Item], end: Fatal | None) -> None:
        """Several messages of every kind in one stream, cut anywhere, maybe ending fatally."""
        self._send(data, self._pick(data, self.conns), [*items, *([end] if end else [])])

    @precondition(lambda self: self.conns)
    @rule(data=st.data(), how=st.sampled_from(["close", "half-close", "reset"]))
    def disconnect(self, data: st.DataObject, how: str) -> None:
        """Every way out of a registered participant ends in UPDATE:LEAVE (decision 15)."""
        conn = self._pick(data, self.conns)
        if how == "close":
            conn.sock.close()
        elif how == "half-close":
            conn.sock.shutdown(socket.SHUT_WR)
            conn.expect_closed()  # the server closes its side too
            conn.sock.close()
        else:
            conn.reset()
        event(f"{how} by {'a participant' if conn.nick else 'a stranger'}")
        self.conns.remove(conn)
        self._leave(conn)
        self._settle(None)

    @precondition(lambda self: len(self.conns) < MAX_CONNECTIONS and self._free_gone())
    @rule(data=st.data(), case=CASES, port=st.integers(1, 65535))
    def reconnect(self, data: st.DataObject, case: str, port: int) -> None:
        """A participant that left comes back under its nickname, in any case."""
        nick = apply_case(data.draw(st.sampled_from(self._free_gone()), label="nick"), case)
        event("REGISTER: back after leaving")
        conn = self._open()
        while self._holder(f"127.0.0.1:{port}"):
            port = port % 65535 + 1
        self._send(data, conn, [Reg(nick, "127.0.0.1", str(port))])
        assert conn.nick == nick

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def server_answers(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as probe:
            probe.sendall(b"LIST\r\n")
            want = error(REGISTER_FIRST)
            got = b""
            while len(got) < len(want):
                try:
                    data = probe.recv(READ_CHUNK)
                except TimeoutError:
                    raise AssertionError(f"probe: no answer within {TIMEOUT} s") from None
                assert data, f"probe: closed by the server after {got!r}"
                got += data
            assert got == want, f"probe: expected {want!r}, got {got!r}"

    @invariant()
    def every_view_is_the_servers_list(self) -> None:
        async def registry() -> list[Participant]:
            return list(self.server.registry.participants())

        truth = self.server_loop.call(registry())
        model = [p for _, p, _ in self.members]
        assert model == truth, f"the model has {model}, the server {truth}"
        for conn in self.conns:
            if conn.nick is None:
                assert conn.view is None, f"{conn}: unregistered, yet got a list: {conn.view}"
            else:
                assert conn.view == truth, f"{conn}: sees {conn.view}, the server has {truth}"

    @invariant()
    def broadcasts_exactly_once_in_one_order(self) -> None:
        for conn in self.conns:
            assert conn.heard == conn.owed, (
                f"{conn}: heard {conn.heard}, but these were forwarded while it was "
                f"registered: {conn.owed}"
            )
            assert is_subsequence(conn.heard, self.log), (
                f"{conn}: heard {conn.heard}, not in the global order {self.log}"
            )
            if conn.nick is not None:
                own = [m for m in conn.heard if key(m[0]) == key(conn.nick)]
                assert not own, f"{conn}: got its own broadcasts back: {own}"


def test_hostile_clients_against_a_real_server(server_loop: ServerLoop) -> None:
    run_state_machine_as_test(
        lambda: HostileClients(server_loop),
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            database=None,  # nothing written into the work tree
            # No shrinking: every example costs a server and real sockets, and
            # shrinking one takes minutes. A failure is reported as found, with
            # its steps (at most 30) and the exact bytes that were wrong.
            phases=[Phase.generate],
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


# Marked as hypothesis marks a state machine's TestCase, so that
# --hypothesis-show-statistics reports the event() counts of the runs.
test_hostile_clients_against_a_real_server.is_hypothesis_test = True  # type: ignore[attr-defined]
