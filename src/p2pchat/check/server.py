"""Black-box checks of a server, over raw sockets: ``p2pchat check server HOST:PORT``.

Each check opens its own connections under nicknames no other check uses (a
random tag per check), so that the checks can share one server, and one that
someone else is using too: lists are judged on our own participants only.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import socket
from dataclasses import dataclass

from ..protocol import (
    Action,
    Broadcast,
    Participant,
    ParticipantList,
    Role,
    Update,
    canonical_ip,
    encode_broadcast,
    nick_key,
    wire_ip,
)
from ._core import Failed, Recorder, Registry
from ._judge import judge, sentence
from ._wire import Received, Wire, connect, is_error, is_list, listing, show

checks: Registry[ServerContext] = Registry()


@dataclass(slots=True)
class Member:
    """One of our registered connections."""

    wire: Wire
    participant: Participant
    first_list: Received

    @property
    def nick(self) -> str:
        return self.participant.nick

    @property
    def entry(self) -> bytes:
        return self.participant.wire().encode()

    def update(self, action: Action) -> bytes:
        return b"UPDATE:%s:%s\r\n" % (action.value.encode(), self.entry)

    async def broadcast(self, text: str) -> bytes:
        """Sends a BROADCAST; returns the bytes every other participant must get."""
        data = encode_broadcast(self.nick, text)
        await self.wire.send(data)
        return data


class ServerContext:
    """What a server check works with: connections to the server and the run's nicknames."""

    def __init__(
        self,
        host: str,
        port: int,
        record: Recorder,
        register_timeout: float = 30.0,
        patience: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.patience = patience
        self.register_timeout = register_timeout  # what the server is said to allow
        self.record = record
        self.tag = secrets.token_hex(2)
        self._wires: list[Wire] = []
        self._udp_ports = itertools.count(20000 + secrets.randbelow(20000))

    def nick(self, base: str) -> str:
        return f"{base}{self.tag}"

    def variant(self, expected: str, got: str) -> None:
        self.record.variant(expected, got)

    async def connect(self, label: str = "client") -> Wire:
        wire = await connect(self.host, self.port, label, Role.CLIENT, patience=self.patience)
        self._wires.append(wire)
        return wire

    def register_line(self, wire: Wire, base: str, *, ip: str | None = None) -> bytes:
        ip = wire_ip(canonical_ip(ip or wire.local_address[0]))
        return b"REGISTER:%s:%s:%d\r\n" % (self.nick(base).encode(), ip.encode(), self.udp_port())

    def udp_port(self) -> int:
        return next(self._udp_ports)

    async def register(
        self, base: str, wire: Wire | None = None, line: bytes | None = None
    ) -> Member:
        """A registered participant; fails unless the server answers with a LIST first.
        ``line`` is the REGISTER to send, the canonical one if not given."""
        wire = wire or await self.connect(base)
        line = line or self.register_line(wire, base)
        await wire.send(line)
        got, _ = await wire.expect(f"a LIST in answer to {show(line)} (decision 9)", lambda r: True)
        if not is_list(got):
            raise Failed(f"a LIST in answer to {show(line)} (decision 9)", str(got))
        fields = line.rstrip(b"\r\n").decode().split(":")
        nick, ip, port = fields[1], ":".join(fields[2:-1]), fields[-1]
        return Member(wire, Participant(nick, ip.strip("[]"), int(port)), got)

    async def members(self, *bases: str) -> list[Member]:
        """Registers each in turn; every earlier one has seen the later ones join."""
        joined: list[Member] = []
        for base in bases:
            member = await self.register(base)
            for earlier in joined:
                await expect_update(earlier, member, Action.JOIN)
            joined.append(member)
        return joined

    async def aclose(self) -> None:
        for wire in self._wires:
            await wire.close()


async def others_in_chat(host: str, port: int, patience: float = 5.0) -> list[str] | None:
    """The nicknames already in the chat, read from the LIST one probe participant gets
    (the least a server allows: LIST needs a registration); None when no LIST came.

    The people there see the probe join and leave, and nothing more.
    """
    ctx = ServerContext(host, port, Recorder(), patience=patience)
    try:
        probe = await ctx.register("probe")
    except (Failed, OSError, TimeoutError):
        return None
    finally:
        await ctx.aclose()
    assert isinstance(probe.first_list.message, ParticipantList)  # register() saw to it
    mine = nick_key(probe.nick)
    return [p.nick for p in probe.first_list.message.participants if nick_key(p.nick) != mine]


def ours(got: Received, members: list[Member]) -> list[Participant]:
    """The entries of a LIST that are our members, in the order given."""
    assert isinstance(got.message, ParticipantList)
    keys = {nick_key(m.nick) for m in members}
    return [p for p in got.message.participants if nick_key(p.nick) in keys]


def about(member: Member, action: Action):  # type: ignore[no-untyped-def]
    def match(got: Received) -> bool:
        m = got.message
        return (
            isinstance(m, Update)
            and m.action is action
            and m.participant.key == nick_key(member.nick)
        )

    return match


async def expect_update(receiver: Member, subject: Member, action: Action) -> None:
    got, _ = await receiver.wire.expect(
        f"{show(subject.update(action))} at {receiver.nick}", about(subject, action)
    )
    if got.message != Update(action, subject.participant):
        raise Failed(show(subject.update(action)), str(got))


def from_(member: Member):  # type: ignore[no-untyped-def]
    def match(got: Received) -> bool:
        return isinstance(got.message, Broadcast) and got.message.nick == member.nick

    return match


async def expect_error(
    wire: Wire, why: str, *, stays_open: bool, timeout: float | None = None
) -> str:
    """The ERROR for ``why``, then the connection open (a LIST request answered) or closed."""
    timeout = wire.patience if timeout is None else timeout
    got, _ = await wire.expect(f"an ERROR: {why}", is_error, timeout)
    text = sentence(got, f"an ERROR: {why}")
    if stays_open:
        try:  # decision 16 promises an ERROR for an unknown command: proof of an open line
            await wire.send(b"CHECKPROBE\r\n")
            await wire.expect("an ERROR for the unknown command CHECKPROBE", is_error)
        except Failed as failure:
            raise Failed(
                f"the connection open after the ERROR for {why} (decision 16)", failure.got
            ) from None
    else:
        closed, after = await wire.closed(timeout)
        if not closed:
            raise Failed(
                f"the connection closed after the ERROR for {why} (decision 16)",
                f"still open after {timeout:g} s; then {listing(after)}",
            )
    return text


async def arrives(
    ctx: ServerContext, receiver: Member, sender: Member, canonical: bytes, what: str
) -> None:
    """``sender``'s broadcast reaches ``receiver`` as ``canonical`` (or an accepted variant)."""
    got, _ = await receiver.wire.expect(f"{show(canonical)} at {receiver.nick}", from_(sender))
    judge(ctx.record, got, canonical, what)


async def nothing_from(receiver: Member, sender: Member, what: str) -> None:
    """Fails if ``receiver`` got a broadcast from ``sender`` before a LIST request's answer."""
    stray = [r for r in await receiver.wire.barrier() if from_(sender)(r)]
    if stray:
        raise Failed(what, listing(stray))


# -- registration and the participant list ----------------------------------------------


@checks("register-list", "REGISTER is answered with a LIST that includes the newcomer", "9, 10")
async def _register_list(ctx: ServerContext) -> None:
    (alice,) = await ctx.members("alice")
    got = alice.first_list
    assert isinstance(got.message, ParticipantList)
    if alice.participant not in got.message.participants:
        raise Failed(f"{alice.nick} in its own LIST (decision 10)", str(got))
    entries = got.message.participants
    canonical = ParticipantList(entries).encode()
    raw = got.raw
    count, _, rest = raw[len(b"LIST:") :].rstrip(b"\r\n").partition(b":")
    counted = count.isdigit() and int(count) == len(entries)
    if raw != canonical and counted and rest.count(b":") == 3 * len(entries) - 1:
        ctx.variant("a LIST without a count in front (decision 10)", show(raw))
        raw = b"LIST:" + raw[len(b"LIST:") + len(count) + 1 :]
    judge(ctx.record, Received(raw, got.message), canonical, "the LIST")


@checks("register-list-order", "LIST has every participant in join order", "10")
async def _list_order(ctx: ServerContext) -> None:
    members = await ctx.members("alice", "bob", "carol")
    order = ours(members[-1].first_list, members)
    if order != [m.participant for m in members]:
        expected = ", ".join(m.nick for m in members)
        raise Failed(f"{expected} in this order", ", ".join(p.nick for p in order) or "none")


@checks(
    "register-join-update", "the others get UPDATE:JOIN; the newcomer nothing before LIST", "9, 10"
)
async def _join_update(ctx: ServerContext) -> None:
    alice = await ctx.register("alice")
    bob = await ctx.register("bob")  # its LIST first, nothing about itself before
    got, _ = await alice.wire.expect(f"UPDATE:JOIN for {bob.nick}", about(bob, Action.JOIN))
    judge(ctx.record, got, bob.update(Action.JOIN), "the UPDATE:JOIN")
    to_self = [r for r in await bob.wire.barrier() if about(bob, Action.JOIN)(r)]
    if to_self:
        ctx.variant("no UPDATE about the newcomer to itself (decision 10)", listing(to_self))


@checks(
    "register-list-request", "LIST from a registered client is answered with a fresh LIST", "10"
)
async def _list_request(ctx: ServerContext) -> None:
    alice, bob = await ctx.members("alice", "bob")
    await alice.wire.send(b"LIST\r\n")
    got, _ = await alice.wire.expect("a LIST in answer to LIST", is_list)
    if ours(got, [alice, bob]) != [alice.participant, bob.participant]:
        raise Failed(f"{alice.nick} and {bob.nick} in the fresh LIST", str(got))


@checks("register-nick-taken", "a nickname in use is refused with ERROR; retry works", "5, 11")
async def _nick_taken(ctx: ServerContext) -> None:
    await ctx.register("alice")
    wire = await ctx.connect("again")
    await wire.send(ctx.register_line(wire, "alice"))
    await expect_error(wire, f"nickname {ctx.nick('alice')} already in use", stays_open=True)
    await ctx.register("alice2", wire)


@checks("register-nick-case", "nicknames differing only in case are the same nickname", "5")
async def _nick_case(ctx: ServerContext) -> None:
    await ctx.register("alice")
    wire = await ctx.connect("ALICE")
    line = ctx.register_line(wire, "alice").replace(b"alice", b"ALICE", 1)
    await wire.send(line)
    await expect_error(
        wire, f"{show(line)} while {ctx.nick('alice')} is registered", stays_open=True
    )


@checks(
    "register-nick-invalid",
    "invalid nicknames are refused with ERROR; the connection stays",
    "5, 11",
)
async def _nick_invalid(ctx: ServerContext) -> None:
    wire = await ctx.connect()
    port = ctx.udp_port()
    ip = wire_ip(canonical_ip(wire.local_address[0])).encode()
    for nick in (b"has space", b"ctl\x07", b"n" * 33, b""):
        line = b"REGISTER:%s:%s:%d\r\n" % (nick, ip, port)
        await wire.send(line)
        await expect_error(wire, f"the nickname in {show(line)}", stays_open=True)
    await ctx.register("valid", wire)


@checks("register-bad-ip", "an invalid IP address is refused with ERROR", "6, 11")
async def _bad_ip(ctx: ServerContext) -> None:
    wire = await ctx.connect()
    for ip in (b"999.1.1.1", b"example.org", b"[::zz]"):
        line = b"REGISTER:%s:%s:%d\r\n" % (ctx.nick("ip").encode(), ip, ctx.udp_port())
        await wire.send(line)
        await expect_error(wire, f"the IP address in {show(line)}", stays_open=True)


@checks("register-bad-port", "a port outside 1-65535 is refused with ERROR", "7, 11")
async def _bad_port(ctx: ServerContext) -> None:
    wire = await ctx.connect()
    ip = wire_ip(canonical_ip(wire.local_address[0])).encode()
    for port in (b"0", b"65536", b"abc"):
        line = b"REGISTER:%s:%s:%s\r\n" % (ctx.nick("port").encode(), ip, port)
        await wire.send(line)
        await expect_error(wire, f"the port in {show(line)}", stays_open=True)


@checks("register-twice", "a second REGISTER on one connection is an ERROR; the first stands", "11")
async def _register_twice(ctx: ServerContext) -> None:
    alice, bob = await ctx.members("alice", "bob")
    line = ctx.register_line(alice.wire, "other")
    await alice.wire.send(line)
    await expect_error(alice.wire, f"a second REGISTER, {show(line)}", stays_open=True)
    sent = await alice.broadcast("still alice")
    await arrives(ctx, bob, alice, sent, "the BROADCAST")


@checks("register-ipv6", "an IPv6 address is accepted and sent on in brackets", "6")
async def _ipv6(ctx: ServerContext) -> None:
    (alice,) = await ctx.members("alice")
    wire = await ctx.connect("v6")
    line = b"REGISTER:%s:[2001:db8::1]:%d\r\n" % (ctx.nick("v6").encode(), ctx.udp_port())
    v6 = await ctx.register("v6", wire, line)
    got, _ = await alice.wire.expect(f"UPDATE:JOIN for {v6.nick}", about(v6, Action.JOIN))
    judge(ctx.record, got, v6.update(Action.JOIN), "the UPDATE:JOIN with a bracketed IPv6 address")


@checks(
    "register-unspecified-ip", "0.0.0.0 in REGISTER means the connection's source address", "12"
)
async def _unspecified(ctx: ServerContext) -> None:
    wire = await ctx.connect()
    line = b"REGISTER:%s:0.0.0.0:%d\r\n" % (ctx.nick("any").encode(), ctx.udp_port())
    got = (await ctx.register("any", wire, line)).first_list
    assert isinstance(got.message, ParticipantList)
    source = canonical_ip(wire.local_address[0])
    mine = [p for p in got.message.participants if p.key == nick_key(ctx.nick("any"))]
    if not mine or mine[0].ip != source:
        raise Failed(f"{ctx.nick('any')} listed with {source}", str(got))


# -- leaving ----------------------------------------------------------------------------


@checks("leave-close", "closing the connection sends UPDATE:LEAVE to the others", "15")
async def _leave_close(ctx: ServerContext) -> None:
    alice, bob = await ctx.members("alice", "bob")
    await bob.wire.close()
    got, _ = await alice.wire.expect(f"UPDATE:LEAVE for {bob.nick}", about(bob, Action.LEAVE))
    judge(ctx.record, got, bob.update(Action.LEAVE), "the UPDATE:LEAVE")


@checks("leave-reset", "a reset connection sends UPDATE:LEAVE to the others", "15")
async def _leave_reset(ctx: ServerContext) -> None:
    alice, bob = await ctx.members("alice", "bob")
    bob.wire.reset()
    got, _ = await alice.wire.expect(f"UPDATE:LEAVE for {bob.nick}", about(bob, Action.LEAVE))
    judge(ctx.record, got, bob.update(Action.LEAVE), "the UPDATE:LEAVE")


# -- broadcasts -------------------------------------------------------------------------


@checks("broadcast-forward", "a BROADCAST reaches every other participant, canonical", "13")
async def _forward(ctx: ServerContext) -> None:
    alice, bob, carol = await ctx.members("alice", "bob", "carol")
    sent = await alice.broadcast("hello world")
    for other in (bob, carol):
        await arrives(ctx, other, alice, sent, "the forwarded BROADCAST")


@checks("broadcast-no-echo", "the sender does not get its own BROADCAST back", "13")
async def _no_echo(ctx: ServerContext) -> None:
    alice, bob = await ctx.members("alice", "bob")
    sent = await alice.broadcast("no echo please")
    await bob.wire.expect(f"{show(sent)} at {bob.nick}", from_(alice))
    await nothing_from(alice, alice, f"no BROADCAST back to its sender {alice.nick}")


@checks("broadcast-length-bytes", "a forwarded Length counts bytes, not characters", "3")
async def _length_bytes(ctx: ServerContext) -> None:
    alice, bob = await ctx.members("alice", "bob")
    sent = await alice.broadcast("héllo wörld 🎉")
    got, _ = await bob.wire.expect(f"{show(sent)} at {bob.nick}", from_(alice))
    judge(ctx.record, got, sent, "the forwarded BROADCAST")  # fails a Length in characters


@checks("broadcast-payload-intact", "a message with ':', CRLF and emoji arrives whole", "3")
async def _payload_intact(ctx: ServerContext) -> None:
    alice, bob = await ctx.members("alice", "bob")
    sent = await alice.broadcast("a:b\r\nBROADCAST:x:1:y\r\nc: 🎉")
    await arrives(ctx, bob, alice, sent, "the forwarded BROADCAST")
    await nothing_from(bob, alice, "nothing more from the one BROADCAST")


@checks("broadcast-char-count", "a Length counted in characters is read and re-sent in bytes", "3")
async def _char_count(ctx: ServerContext) -> None:
    alice, bob = await ctx.members("alice", "bob")
    text = "héllo 🎉"
    await alice.wire.send(
        b"BROADCAST:%s:%d:%s\r\n" % (alice.nick.encode(), len(text), text.encode())
    )
    canonical = encode_broadcast(alice.nick, text)
    await arrives(ctx, bob, alice, canonical, "the re-encoded BROADCAST")


@checks("broadcast-any-case", "commands are accepted in any case and sent on in upper case", "2")
async def _any_case(ctx: ServerContext) -> None:
    alice, bob = await ctx.members("alice", "bob")
    await alice.wire.send(b"broadcast:%s:2:hi\r\n" % alice.nick.encode())
    canonical = encode_broadcast(alice.nick, "hi")
    await arrives(ctx, bob, alice, canonical, "the forwarded BROADCAST")


@checks("broadcast-bare-lf", "lines ended by a bare LF are accepted", "1")
async def _bare_lf(ctx: ServerContext) -> None:
    (bob,) = await ctx.members("bob")
    wire = await ctx.connect("alice")
    await ctx.register("alice", wire, ctx.register_line(wire, "alice")[:-2] + b"\n")
    await wire.send(b"BROADCAST:%s:2:hi\n" % ctx.nick("alice").encode())
    canonical = encode_broadcast(ctx.nick("alice"), "hi")
    got, _ = await bob.wire.expect(
        f"{show(canonical)} at {bob.nick}",
        lambda r: isinstance(r.message, Broadcast) and r.message.nick == ctx.nick("alice"),
    )
    judge(ctx.record, got, canonical, "the forwarded BROADCAST")


@checks("broadcast-before-register", "BROADCAST before REGISTER is refused, not forwarded", "13")
async def _before_register(ctx: ServerContext) -> None:
    (bob,) = await ctx.members("bob")
    wire = await ctx.connect("stranger")
    nick = ctx.nick("stranger")
    await wire.send(encode_broadcast(nick, "sneaky"))
    got, _ = await wire.expect("an ERROR: a BROADCAST before REGISTER", is_error)
    sentence(got, "an ERROR: a BROADCAST before REGISTER")
    stray = [
        r
        for r in await bob.wire.barrier()
        if isinstance(r.message, Broadcast) and r.message.nick == nick
    ]
    if stray:
        raise Failed("the unregistered BROADCAST not forwarded (decision 13)", listing(stray))


@checks("broadcast-spoofed", "BROADCAST under another's nickname is refused, not forwarded", "13")
async def _spoofed(ctx: ServerContext) -> None:
    alice, bob, carol = await ctx.members("alice", "bob", "carol")
    await alice.wire.send(encode_broadcast(bob.nick, "I am bob"))
    await expect_error(alice.wire, f"a BROADCAST from {alice.nick} as {bob.nick}", stays_open=True)
    stray = [
        r
        for r in await carol.wire.barrier()
        if isinstance(r.message, Broadcast) and r.message.text == "I am bob"
    ]
    if stray:
        raise Failed(
            "the spoofed BROADCAST not forwarded, under any name (decision 13)", listing(stray)
        )


@checks(
    "broadcast-order", "concurrent senders: every message once, one global order", "14", timeout=30
)
async def _order(ctx: ServerContext) -> None:
    members = await ctx.members("s1", "s2", "s3", "r1", "r2")
    senders, receivers = members[:3], members[3:]
    count = 200
    for s in senders:  # each sender's burst in one write, all at once
        s.wire.send_nowait(
            b"".join(encode_broadcast(s.nick, f"{s.nick} {i}") for i in range(count))
        )
    seen: dict[str, list[tuple[str, int]]] = {}
    for m in members:
        expected = count * (len(senders) - (m in senders))
        order: list[tuple[str, int]] = []
        while len(order) < expected:
            got, _ = await m.wire.expect(
                f"{expected} broadcasts at {m.nick}, {len(order)} so far",
                lambda r: any(from_(s)(r) for s in senders),  # others may share the server
                timeout=2 * ctx.patience,
            )
            assert isinstance(got.message, Broadcast)
            nick, _, i = got.message.text.rpartition(" ")
            if nick != got.message.nick or not i.isdigit():
                raise Failed(f"'{got.message.nick} N' as sent", str(got))
            order.append((nick, int(i)))
        seen[m.nick] = order
    for nick, order in seen.items():
        if any(n == nick for n, _ in order):
            raise Failed(
                f"no broadcast back to its sender {nick} (decision 13)", "its own came back"
            )
        if len(set(order)) != len(order):
            raise Failed(f"each broadcast once at {nick} (decision 14)", "duplicates")
        for s in senders:
            mine = [i for n, i in order if n == s.nick]
            if mine and mine != list(range(count)):
                raise Failed(f"{s.nick}'s messages in the order sent at {nick}", f"{mine[:10]}...")
    reference = seen[receivers[0].nick]
    for nick, order in seen.items():
        common = [x for x in reference if x in set(order)]
        if common != order:
            raise Failed(
                f"one global order: {nick} sees the others' messages as {receivers[0].nick} does",
                "a different order",
            )


# -- errors -----------------------------------------------------------------------------


@checks(
    "error-unknown-command",
    "an unknown command is answered with ERROR; the connection stays",
    "16, 18",
)
async def _unknown(ctx: ServerContext) -> None:
    (alice,) = await ctx.members("alice")
    await alice.wire.send(b"HELLO:there\r\n")
    await expect_error(alice.wire, "the unknown command HELLO", stays_open=True)


@checks(
    "error-invalid-utf8",
    "invalid UTF-8 is an ERROR; the connection stays; nothing forwarded",
    "4, 16",
)
async def _invalid_utf8(ctx: ServerContext) -> None:
    alice, bob = await ctx.members("alice", "bob")
    await alice.wire.send(b"BROADCAST:%s:2:\xff\xfe\r\n" % alice.nick.encode())
    await expect_error(alice.wire, "a BROADCAST that is not UTF-8", stays_open=True)
    await nothing_from(bob, alice, "the invalid BROADCAST not forwarded")


@checks(
    "error-message-too-long",
    "a message over 64 KiB is skipped with ERROR; the connection stays",
    "16, 17",
)
async def _too_long(ctx: ServerContext) -> None:
    alice, bob = await ctx.members("alice", "bob")
    big = 70000
    await alice.wire.send(b"BROADCAST:%s:%d:%s\r\n" % (alice.nick.encode(), big, b"x" * big))
    await expect_error(alice.wire, f"a {big}-byte message", stays_open=True)
    sent = await alice.broadcast("after the long one")
    await arrives(ctx, bob, alice, sent, "the next BROADCAST")


async def fatal(ctx: ServerContext, data: bytes, why: str) -> None:
    alice, bob = await ctx.members("alice", "bob")
    await alice.wire.send(data)
    await expect_error(alice.wire, why, stays_open=False)
    got, _ = await bob.wire.expect(f"UPDATE:LEAVE for {alice.nick}", about(alice, Action.LEAVE))
    judge(ctx.record, got, alice.update(Action.LEAVE), "the UPDATE:LEAVE")


@checks("error-length-not-a-number", "a Length that is not a number: ERROR, close, LEAVE", "16")
async def _nan(ctx: ServerContext) -> None:
    await fatal(ctx, b"BROADCAST:%s:zz:hi\r\n" % ctx.nick("alice").encode(), "Length 'zz'")


@checks("error-length-absurd", "a Length over 1 MiB: ERROR, close, LEAVE", "16")
async def _absurd(ctx: ServerContext) -> None:
    await fatal(ctx, b"BROADCAST:%s:2000000:hi\r\n" % ctx.nick("alice").encode(), "Length 2000000")


@checks("error-no-line-end", "no line end after the payload: ERROR, close, LEAVE", "16")
async def _no_line_end(ctx: ServerContext) -> None:
    await fatal(
        ctx,
        b"BROADCAST:%s:2:hiXX\r\n" % ctx.nick("alice").encode(),
        "no line end after the Length bytes",
    )


@checks("error-line-too-long", "a line over 4096 bytes: ERROR, close, LEAVE", "16, 17")
async def _line_too_long(ctx: ServerContext) -> None:
    await fatal(ctx, b"X" * 5000, "a 5000-byte line with no end")


# -- limits -----------------------------------------------------------------------------


@checks(
    "limit-register-timeout",
    "a connection that never registers is closed with ERROR (30 s by default)",
    "17",
    timeout=0,  # the server's registration timeout, and some
    slow=True,
)
async def _register_timeout(ctx: ServerContext) -> None:
    wire = await ctx.connect("silent")
    wait = ctx.register_timeout + 5
    got, _ = await wire.expect(
        f"an ERROR for a connection that has not registered in {ctx.register_timeout:g} s",
        is_error,
        wait,
    )
    sentence(got, "an ERROR for a connection that never registers")
    closed, after = await wire.closed(5)
    if not closed:
        raise Failed("the connection closed after the ERROR", f"still open; {listing(after)}")


@checks(
    "limit-slow-consumer",
    "a client that stops reading is dropped; the others are not slowed",
    "17",
    timeout=60,
)
async def _slow_consumer(ctx: ServerContext) -> None:
    alice, bob = await ctx.members("alice", "bob")
    sock = socket.socket(socket.AF_INET6 if ":" in ctx.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (ctx.host, ctx.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    slow_wire = Wire(reader, writer, "slow", Role.CLIENT, ctx.patience)
    ctx._wires.append(slow_wire)
    slow = await ctx.register("slow", slow_wire)
    await expect_update(alice, slow, Action.JOIN)
    text = "x" * 60000
    for i in range(300):  # 18 MB at most: far past a 1 MiB send queue and the socket buffers
        sent = await alice.broadcast(f"{i:04d}{text}")
        got, before = await bob.wire.expect(
            f"broadcast {i} at {bob.nick} while {slow.nick} reads nothing", from_(alice)
        )
        judge(ctx.record, got, sent, f"broadcast {i}")
        if any(about(slow, Action.LEAVE)(r) for r in before):
            return
    raise Failed(
        f"{slow.nick}, which reads nothing, dropped with UPDATE:LEAVE (decision 17)",
        "still a participant after 18 MB of broadcasts",
    )


@checks(
    "limit-flood",
    "a flooder is slowed by back-pressure: nothing lost, others not slowed",
    "17",
    timeout=40,
)
async def _flood(ctx: ServerContext) -> None:
    alice, bob, carol = await ctx.members("alice", "bob", "carol")
    count = 400
    loop = asyncio.get_running_loop()
    alice.wire.send_nowait(
        b"".join(encode_broadcast(alice.nick, f"flood {i}") for i in range(count))
    )
    await bob.wire.expect(f"the flood's first message at {bob.nick}", from_(alice))
    sent = await carol.broadcast("not slowed")
    flood_seen = 1
    carol_at = None
    burst_ended_at = None  # when message 200 came: after it, flood control sets the pace
    while flood_seen < count or carol_at is None:
        got, _ = await bob.wire.expect(
            f"all {count} messages of the flood and {carol.nick}'s at {bob.nick}; {flood_seen} so far",
            lambda r: from_(alice)(r) or from_(carol)(r),
            timeout=3 * ctx.patience,
        )
        assert isinstance(got.message, Broadcast)
        if got.message.nick == carol.nick:
            judge(ctx.record, got, sent, "the BROADCAST")
            carol_at = flood_seen
            continue
        if got.message.text != f"flood {flood_seen}":
            raise Failed(f"'flood {flood_seen}' (nothing lost, in order)", str(got))
        flood_seen += 1
        if flood_seen == count // 2:
            burst_ended_at = loop.time()
    assert burst_ended_at is not None
    after_burst = loop.time() - burst_ended_at
    await alice.wire.barrier()  # the flooder is still connected
    # 50 a second would take 4 s for the last 200; twice that rate is not flood control.
    if after_burst < count / 2 / 100:
        ctx.variant(
            "flood control: past a burst, a flooder slowed to the server's rate (decision 17)",
            f"the last {count // 2} of {count} messages sent at once came in {after_burst:.2f} s",
        )
    elif carol_at == count:
        raise Failed(
            f"{carol.nick}'s message not held behind the flood (decision 17)",
            f"it came after all {count} flood messages",
        )


__all__ = ["ServerContext", "checks"]
