"""change_nick, the NICK_ fallback and /ignore under hostile timing and hostile servers:
real servers on loopback, real clients, real sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator

import pytest

from p2pchat import ChatError, ClientConfig
from p2pchat.client import ChatClient, DirectChatError, NotConnectedError, RegistrationError
from p2pchat.events import (
    BroadcastReceived,
    ChatClosed,
    ChatFailed,
    ChatOpened,
    ChatReceived,
    Disconnected,
    NickChanged,
    Notice,
    PeerJoined,
    PeerLeft,
    Registered,
)
from p2pchat.server import ChatServer

from ._programs import Program, client
from ._programs import start_server as start_server_program
from ._support import FakeServer, RawClient, RawPeer, joined, register_with, wait_event


@pytest.fixture
async def closing() -> AsyncIterator[list[ChatClient]]:
    clients: list[ChatClient] = []
    yield clients
    for each in clients:
        await each.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def until(condition: object, timeout: float = 5.0) -> None:
    """Waits, a loop turn at a time, until ``condition()`` holds."""
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_close_during_change_nick_leaves_nothing_registered(server: ChatServer) -> None:
    """close() while change_nick leaves and registers again: the client ends closed,
    not registered behind the user's back, and change_nick says why."""
    for step in range(2):
        alice = await joined(server.port, "alice")
        renaming = asyncio.ensure_future(alice.change_nick("alicia"))
        for _ in range(step * 3):
            await asyncio.sleep(0)
        await alice.close()
        outcome = (await asyncio.gather(renaming, return_exceptions=True))[0]
        assert outcome is None or isinstance(outcome, ChatError), outcome
        assert not alice.connected
        await until(lambda: len(server.registry) == 0)
        await asyncio.sleep(0.2)  # a registration racing close() would have arrived
        assert len(server.registry) == 0, [p.nick for p in server.registry.participants()]
        assert not alice.connected


async def test_two_change_nicks_at_once_both_happen_in_order(
    server: ChatServer, closing: list[ChatClient]
) -> None:
    """Two /nick in a burst (a program calling change_nick twice without waiting):
    the second waits for the first instead of failing with 'not connected'."""
    alice = await joined(server.port, "alice")
    closing.append(alice)
    first = asyncio.ensure_future(alice.change_nick("alicia"))
    second = asyncio.ensure_future(alice.change_nick("ally"))
    await asyncio.gather(first, second)
    assert alice.nick == "ally" and alice.wanted_nick == "ally"
    assert [p.nick for p in server.registry.participants()] == ["ally"]


async def test_change_nick_to_another_case_of_ours(
    server: ChatServer, closing: list[ChatClient]
) -> None:
    alice = await joined(server.port, "Alice")
    closing.append(alice)
    await alice.change_nick("alice")
    changed = await wait_event(alice, NickChanged)
    assert (changed.old, changed.new) == ("Alice", "alice")
    assert alice.nick == "alice" and [p.nick for p in server.registry.participants()] == ["alice"]
    await alice.change_nick("alice")  # the same: nothing happens
    assert alice.nick == "alice"


async def test_change_nick_while_a_chat_is_pending_and_another_has_unsent_texts(
    server: ChatServer, closing: list[ChatClient]
) -> None:
    """A request carl never answers still fails once, as 'did not answer'; texts waiting
    for bob's chat go out once it opens after the rename."""
    alice = await joined(server.port, "alice")
    closing.append(alice)
    carl = RawPeer("carl")
    await carl.register(server.port)
    try:
        bob = await joined(server.port, "bob")
        closing.append(bob)
        await wait_event(alice, PeerJoined, lambda e: e.participant.nick == "bob")
        alice.start_chat("carl")
        await carl.datagram()  # the INIT came; carl stays silent
        await alice.send_chat("bob", "one")
        await alice.send_chat("bob", "two")
        await alice.change_nick("alicia")
        got = [(await wait_event(bob, ChatReceived)).text for _ in range(2)]
        assert got == ["one", "two"]
        failed = await wait_event(alice, ChatFailed, timeout=8)
        assert (failed.peer, failed.reason) == ("carl", "carl did not answer")
    finally:
        carl.close()


async def test_fifty_renames_while_a_peer_talks(server: ChatServer) -> None:
    """50 renames while bob chats directly the whole time: every direct message arrives
    once, in order; no socket or task is left behind."""
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    alice = await joined(server.port, "alice")
    bob = await joined(server.port, "bob")
    await wait_event(alice, PeerJoined)
    await bob.send_chat("alice", "m0")
    await wait_event(alice, ChatOpened)
    sent = 1
    for i in range(50):
        await alice.change_nick(f"alice{i}")
        await bob.send_chat("alice", f"m{sent}")
        sent += 1
        await alice.send_chat("bob", f"a{i}")
    got: list[str] = []
    async with asyncio.timeout(10):
        while len(got) < sent:
            event = await alice.next_event()
            if isinstance(event, ChatReceived):
                got.append(event.text)
            assert not isinstance(event, ChatClosed | ChatFailed), event
    assert got == [f"m{i}" for i in range(sent)]
    back: list[str] = []
    async with asyncio.timeout(10):
        while len(back) < 50:
            event = await bob.next_event()
            if isinstance(event, ChatReceived):
                back.append(event.text)
            assert not isinstance(event, ChatClosed | ChatFailed), event
    assert back == [f"a{i}" for i in range(50)]
    await alice.close()
    await bob.close()
    await until(lambda: len(server.registry) == 0)
    await until(lambda: len(asyncio.all_tasks()) <= tasks)
    await until(lambda: open_fds() <= fds + 2)  # the server's own sockets may linger a turn
    assert open_fds() <= fds + 2


async def test_a_rename_is_not_refused_for_the_address_when_the_server_lags(
    server: ChatServer, closing: list[ChatClient]
) -> None:
    """Broadcasts keep flowing to us between renames."""
    alice = await joined(server.port, "alice")
    bob = await joined(server.port, "bob")
    closing += [alice, bob]
    for i in range(10):
        await alice.change_nick(f"a{i}")
        await bob.broadcast(f"b{i}")
        assert (await wait_event(alice, BroadcastReceived)).text == f"b{i}"


def listing(register: bytes) -> bytes:
    """A LIST of the registrant alone, from its REGISTER line."""
    return b"LIST:" + register[len(b"REGISTER:") :]


async def renamed_on_fake(fake: FakeServer) -> tuple[ChatClient, RawClient]:
    """alice registered on ``fake``, having asked to become alicia: the fake holds the
    new connection, the REGISTER for alicia read and not yet answered."""
    alice = ChatClient("alice", "127.0.0.1", fake.port, reconnect=False)
    first = await register_with(fake, alice, listing)
    renaming = asyncio.ensure_future(alice.change_nick("alicia"))
    assert await first.reader.read() == b""  # alice half-closed: the server's turn
    await first.close()
    second = await fake.accept()
    async with asyncio.timeout(5):
        assert (await second.reader.readline()).startswith(b"REGISTER:alicia:")
    alice._test_renaming = renaming  # type: ignore[attr-defined]
    return alice, second


async def test_close_while_registering_again_does_not_stay_registered() -> None:
    """close() while the server has not answered the new REGISTER: when the answer
    comes, the client does not take the connection (nobody would close it)."""
    fake = FakeServer()
    await fake.start()
    try:
        alice, second = await renamed_on_fake(fake)
        renaming: asyncio.Future[None] = alice._test_renaming  # type: ignore[attr-defined]
        closing = asyncio.ensure_future(alice.close())
        await asyncio.sleep(0)
        second.send(b"LIST:alicia:127.0.0.1:5000\r\n")
        await second.drain()
        await closing
        with pytest.raises(NotConnectedError, match="closing"):
            await renaming
        assert not alice.connected
        await second.expect_closed()
    finally:
        await fake.close()


@pytest.mark.parametrize(
    "answer",
    [b"HELLO\r\nBROADCAST:x:abc:zz\r\n", b"", b"ERROR:6:in use\r\n" * 2],
    ids=["garbage", "closed", "refused-twice"],
)
async def test_a_server_that_fails_the_new_registration(answer: bytes) -> None:
    """Garbage, a closed connection, or both nicknames refused: change_nick raises a
    ChatError, and the client reconnects by itself (here: no reconnect, so Disconnected)."""
    fake = FakeServer()
    await fake.start()
    try:
        alice, second = await renamed_on_fake(fake)
        renaming: asyncio.Future[None] = alice._test_renaming  # type: ignore[attr-defined]
        if answer.startswith(b"ERROR"):
            second.send(answer[: len(answer) // 2])
            await second.drain()
            async with asyncio.timeout(5):
                assert (await second.reader.readline()).startswith(b"REGISTER:alice:")
            second.send(answer[len(answer) // 2 :])
        else:
            second.send(answer)
        await second.drain()
        if not answer:
            await second.close()
        with pytest.raises(ChatError):
            await renaming
        assert alice.nick == "alice" and not alice.connected
        await alice.close()
    finally:
        await fake.close()


async def test_a_line_the_client_cannot_use_before_the_list_is_skipped() -> None:
    """docs/PROTOCOL.md section 4: a client skips a server message it cannot use and goes
    on; an unknown command before the LIST does not fail the registration."""
    fake = FakeServer()
    await fake.start()
    alice = ChatClient("alice", "127.0.0.1", fake.port, reconnect=False)
    try:
        await register_with(fake, alice, lambda r: b"NOTICE:welcome\r\n" + listing(r))
        assert alice.connected and alice.nick == "alice"
    finally:
        await alice.close()
        await fake.close()


_unused = (RegistrationError, PeerLeft, Registered)


# -- /nick in the line modes: real processes against the server program -----------------


async def test_nick_in_json_mode(programs: list[Program]) -> None:
    """/nick: a nick_changed event, the others see a leave and a join, a refused /nick is
    an error and keeps the old nickname, /nick to the nickname we have says so."""
    _server, port = await start_server_program(programs)
    alice = await client(programs, port, "alice", "--json")
    await alice.expect("registered", nick="alice")
    bob = await client(programs, port, "bob", "--json")
    await bob.expect("registered", nick="bob")
    await alice.expect("join", nick="bob")
    await alice.type("/nick alicia")
    changed = await alice.expect("nick_changed")
    assert (changed["old"], changed["new"], changed["reason"]) == (
        "alice",
        "alicia",
        "you changed it",
    )
    await alice.expect("registered", nick="alicia")
    await bob.expect("leave", nick="alice")
    await bob.expect("join", nick="alicia")
    await alice.type("/nick BOB")
    error = await alice.expect("error")
    assert "'BOB' is already in use" in error["message"], error
    await alice.type("/nick alicia")
    info = await alice.expect("info")
    assert "alicia" in info["message"], info
    await alice.type("/who")
    listed = await alice.expect("participants")
    assert [p["nick"] for p in listed["participants"]] == ["alicia", "bob"]
    await alice.type("still here")
    assert (await bob.expect("broadcast"))["from"] == "alicia"
    assert (await alice.finish())[0] == 0


async def test_nick_in_plain_mode(programs: list[Program]) -> None:
    _server, port = await start_server_program(programs)
    alice = await client(programs, port, "alice", "--plain")
    assert "registered as alice" in await alice.line()
    assert "1 participant(s)" in await alice.line()
    await alice.type("/nick bad:nick", "/nick alicia")
    lines = [await alice.line() for _ in range(2)]
    assert "contains ':'" in lines[0], lines
    assert "alice is now alicia (you changed it)" in lines[1], lines
    await alice.type("/nick alicia")
    rest = [await alice.line() for _ in range(3)]  # registered, participants, the answer
    assert "you are already alicia" in rest[-1], rest
    assert (await alice.finish())[0] == 0


async def test_a_peer_that_renames_during_an_open_chat(
    server: ChatServer, closing: list[ChatClient]
) -> None:
    """bob becomes robert (same address) while his chat with alice is open: the chat goes
    on under the name it was opened with; alice asking robert for a chat replaces it (the
    same person, docs/PROTOCOL.md decision 24), and nothing is lost either way."""
    alice = await joined(server.port, "alice")
    bob = await joined(server.port, "bob")
    closing += [alice, bob]
    await wait_event(alice, PeerJoined)
    await alice.send_chat("bob", "hi bob")
    assert (await wait_event(bob, ChatReceived)).text == "hi bob"
    await bob.change_nick("robert")
    await wait_event(alice, PeerJoined, lambda e: e.participant.nick == "robert")
    await bob.send_chat("alice", "still me")
    assert await wait_event(alice, ChatReceived) == ChatReceived("bob", "still me")
    await alice.send_chat("robert", "hi robert")
    assert (await wait_event(bob, ChatReceived)).text == "hi robert"
    assert (await wait_event(alice, ChatClosed)).peer == "bob"
    await bob.send_chat("alice", "new chat")
    assert await wait_event(alice, ChatReceived) == ChatReceived("robert", "new chat")


# -- /ignore against renames and chats being opened ---------------------------------------


async def test_an_ignored_participant_who_renames_stays_ignored(
    server: ChatServer, closing: list[ChatClient]
) -> None:
    """bob, ignored, becomes robert: same address, so the same person; alice is told, and
    robert's broadcasts and chats are refused as bob's were, until she unignores robert."""
    alice = await joined(server.port, "alice")
    bob = await joined(server.port, "bob")
    carol = await joined(server.port, "carol")
    closing += [alice, bob, carol]
    await wait_event(alice, PeerJoined, lambda e: e.participant.nick == "carol")
    alice.ignore("bob")
    await bob.change_nick("robert")
    notice = await wait_event(alice, Notice)
    assert notice.text == "still ignoring bob: now robert, at the same address"
    assert alice.ignored == {"bob", "robert"}
    await bob.broadcast("can you hear me")
    await carol.broadcast("marker")
    assert (await wait_event(alice, BroadcastReceived)).nick == "carol"
    with pytest.raises(DirectChatError, match="you ignore robert"):
        await alice.open_chat("robert")
    await carol.change_nick("caroline")  # someone else renaming is not caught up in it
    await wait_event(alice, PeerJoined, lambda e: e.participant.nick == "caroline")
    assert alice.ignored == {"bob", "robert"}
    alice.unignore("robert")
    await bob.change_nick("bobby")  # unignored: no longer followed
    await wait_event(alice, PeerJoined, lambda e: e.participant.nick == "bobby")
    await bob.broadcast("back")
    assert await wait_event(alice, BroadcastReceived) == BroadcastReceived("bobby", "back")


async def test_ignore_while_a_chat_opens_then_unignore_and_chat(
    server: ChatServer, closing: list[ChatClient]
) -> None:
    alice = await joined(server.port, "alice")
    carl = RawPeer("carl")
    await carl.register(server.port)
    closing.append(alice)
    try:
        await wait_event(alice, PeerJoined)
        await alice.send_chat("carl", "waiting")
        await carl.datagram()  # the INIT; carl does not answer yet
        alice.ignore("carl")
        failed = await wait_event(alice, ChatFailed)
        assert (failed.reason, failed.unsent) == ("you ignored carl", ("waiting",))
        assert alice.chat_state("carl") is None
        alice.unignore("carl")
        bob = await joined(server.port, "bob")
        closing.append(bob)
        await wait_event(alice, PeerJoined, lambda e: e.participant.nick == "bob")
        alice.ignore("bob")
        alice.unignore("bob")
        await alice.send_chat("bob", "after all")
        assert (await wait_event(bob, ChatReceived)).text == "after all"
    finally:
        carl.close()


# -- the NICK_ fallback against servers that refuse every nickname -------------------------


async def test_every_fallback_taken_is_bounded_and_said_clearly() -> None:
    """A server that takes our first REGISTER, then, after a restart, answers every
    REGISTER with 'in use' forever: each attempt tries six nicknames and gives up, the
    attempts follow the reconnect schedule (no hot loop), and the user is told that
    the nickname and all its alternatives are taken."""
    registers: list[list[bytes]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mine: list[bytes] = []
        registers.append(mine)
        while line := await reader.readline():
            mine.append(line)
            if len(registers) == 1:
                writer.write(listing(line))
                await writer.drain()
                writer.close()  # the restart
                return
            nick = line.split(b":")[1]
            text = b"nickname '" + nick + b"' is already in use"
            writer.write(b"ERROR:%d:%s\r\n" % (len(text), text))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    config = ClientConfig("b" * 32, "127.0.0.1", server.sockets[0].getsockname()[1])
    config = dataclasses.replace(config, reconnect_caps=(0.2,))
    bob = ChatClient.from_config(config)
    try:
        await bob.connect()
        await wait_event(bob, Disconnected)  # the restart
        refused = await wait_event(bob, Disconnected)
        assert refused.reason == (
            f"'{'b' * 32}' and its alternatives {'b' * 31}_ to {'b' * 27}_____ are all taken"
        )
        started = asyncio.get_running_loop().time()
        for _ in range(3):
            await wait_event(bob, Disconnected)
        spent = asyncio.get_running_loop().time() - started
        # Three more attempts at most 0.2 s apart each; none hotter than the schedule.
        assert spent <= 3 * 0.2 + 1.0
        attempts = registers[1:]
        assert all(len(sent) <= 6 for sent in attempts), [len(s) for s in attempts]
        assert len(attempts) <= 6
        assert not bob.connected and bob.nick == "b" * 32
    finally:
        await bob.close()
        server.close()
