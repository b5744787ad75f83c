"""The server over real sockets, seen by an independent raw peer.

Each test writes bytes by hand and checks the exact bytes that come back.
Test names start with the decision they cover (``test_d13_...`` is decision
13 of docs/PROTOCOL.md). The expected bytes are built here by hand, not
with the codec's encoder; the codec's Decoder is only used to split what the
server sends into messages.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from p2pchat.server import ChatServer

from ._support import Connect, RawClient, split_messages

# -- the expected bytes, built by hand ------------------------------------------------


def framed(prefix: str, text: str) -> bytes:
    payload = text.encode("utf-8")
    return b"%s%d:%s\r\n" % (prefix.encode("utf-8"), len(payload), payload)


def error(text: str) -> bytes:
    return framed("ERROR:", text)


def bcast(nick: str, text: str) -> bytes:
    return framed(f"BROADCAST:{nick}:", text)


def plist(*entries: str) -> bytes:
    """LIST with entries ``nick:ip:port`` (IPv6 bracketed), in the order given."""
    return ("LIST:" + ":".join(entries) + "\r\n").encode("utf-8")


def join(entry: str) -> bytes:
    return f"UPDATE:JOIN:{entry}\r\n".encode()


def leave(entry: str) -> bytes:
    return f"UPDATE:LEAVE:{entry}\r\n".encode()


def register(entry: str) -> bytes:
    return f"REGISTER:{entry}\r\n".encode()


REGISTER_FIRST = "register first: REGISTER:Nickname:IP-Address:UDP-Port"

ALICE = "alice:127.0.0.1:5001"
BOB = "bob:127.0.0.1:5002"
CAROL = "carol:127.0.0.1:5003"


async def register_all(server: ChatServer, connect: Connect, *entries: str) -> list[RawClient]:
    """Registers one client per ``nick:ip:port`` entry, in order, checking LIST and JOIN."""
    clients: list[RawClient] = []
    for i, entry in enumerate(entries):
        client = await connect(server, entry.split(":")[0])
        client.send(register(entry))
        await client.expect(plist(*entries[: i + 1]))
        for other in clients:
            await other.expect(join(entry))
        clients.append(client)
    return clients


# -- decision 9: REGISTER -> LIST to the newcomer, UPDATE:JOIN to the others ------------


async def test_d9_register_sends_list_to_newcomer_and_join_to_every_other(server, connect):
    alice = await connect(server, "alice")
    alice.send(register(ALICE))
    await alice.expect(plist(ALICE))  # its first message: nothing about itself before

    bob = await connect(server, "bob")
    bob.send(register(BOB))
    await bob.expect(plist(ALICE, BOB))
    await alice.expect(join(BOB))

    carol = await connect(server, "carol")
    carol.send(register(CAROL))
    await carol.expect(plist(ALICE, BOB, CAROL))
    await alice.expect(join(CAROL))
    await bob.expect(join(CAROL))

    # No UPDATE:JOIN about itself to the newcomer, after its LIST either.
    await asyncio.gather(
        alice.expect_nothing(0.2), bob.expect_nothing(0.2), carol.expect_nothing(0.2)
    )


# -- decision 10: LIST ----------------------------------------------------------------


async def test_d10_list_has_every_participant_in_join_order_no_count(server, connect):
    """Decisions 10 and 6: all participants incl. the receiver, join order, IPv6 bracketed."""
    dave = "dave:[2001:db8::2]:5004"
    alice, _bob, _carol = await register_all(
        server, connect, ALICE, BOB, "carol:[2001:db8::1]:5003"
    )
    # An unbracketed IPv6 address in REGISTER is accepted and sent back bracketed.
    d = await connect(server, "dave")
    d.send(b"REGISTER:dave:2001:db8::2:5004\r\n")
    await d.expect(plist(ALICE, BOB, "carol:[2001:db8::1]:5003", dave))

    # After alice leaves and comes back, she is last in join order.
    await alice.close()
    await d.expect(leave(ALICE))
    alice2 = await connect(server, "alice2")
    alice2.send(register(ALICE))
    await alice2.expect(plist(BOB, "carol:[2001:db8::1]:5003", dave, ALICE))
    await d.expect(join(ALICE))

    # A registered client asks for a fresh LIST (any case, bare LF too: decisions 1, 2).
    fresh = plist(BOB, "carol:[2001:db8::1]:5003", dave, ALICE)
    d.send(b"LIST\r\n")
    await d.expect(fresh)
    d.send(b"list\n")
    await d.expect(fresh)


async def test_d10_list_stays_exact_through_leaves_refusals_drops_and_returns(server, connect):
    """The LIST is made from entries encoded at registration (a join storm changes it with
    every join): whoever goes takes their entry along, and a refused REGISTER leaves none."""
    dave = "dave:[2001:db8::2]:5004"
    alice, bob, carol, d = await register_all(server, connect, ALICE, BOB, CAROL, dave)
    refused = await connect(server, "refused")
    refused.send(b"REGISTER:ALICE:127.0.0.1:5009\r\n")  # nicknames compare casefolded
    await refused.expect(error("nickname 'ALICE' is already in use"))
    await bob.close()  # leaves
    for client in (alice, carol, d):
        await client.expect(leave(BOB))
    carol.send(b"BROADCAST:carol:x:y\r\n")  # dropped for a fatal error
    await carol.expect(error("Length 'x' is not a number"))
    for client in (alice, d):
        await client.expect(leave(CAROL))
    refused.send(register(CAROL))  # the same nickname, back on another connection
    await refused.expect(plist(ALICE, dave, CAROL))
    d.send(b"LIST\r\n")
    await d.expect(join(CAROL))
    await d.expect(plist(ALICE, dave, CAROL))
    assert len(server.registry) == 3
    assert server.registry.list_bytes == len(server.registry.encoded_list())


async def test_d10_list_before_register_is_an_error_and_register_still_works(server, connect):
    client = await connect(server)
    client.send(b"LIST\r\n")
    await client.expect(error(REGISTER_FIRST))
    client.send(register(ALICE))
    await client.expect(plist(ALICE))


# -- decision 11: REGISTER failures keep the connection open ----------------------------


@pytest.mark.parametrize(
    ("line", "text"),
    [
        pytest.param(
            b"REGISTER:ALICE:127.0.0.1:5002\r\n",
            "nickname 'ALICE' is already in use",
            id="nickname-taken-casefolded",
        ),
        pytest.param(
            b"REGISTER:alice:127.0.0.1:5002\r\n",
            "nickname 'alice' is already in use",
            id="nickname-taken",
        ),
        pytest.param(b"REGISTER::127.0.0.1:5002\r\n", "nickname is empty", id="nickname-empty"),
        pytest.param(
            b"REGISTER:bad\tnick:127.0.0.1:5002\r\n",
            "nickname 'bad\\tnick' contains '\\t': no ':', spaces or control characters allowed",
            id="nickname-control-char",
        ),
        pytest.param(
            "REGISTER:eve\u202e:127.0.0.1:5002\r\n".encode(),
            "nickname 'eve\\u202e' contains U+202E: no invisible or formatting characters allowed",
            id="nickname-bidi-override",
        ),
        pytest.param(
            "REGISTER:x\u200b:127.0.0.1:5002\r\n".encode(),
            "nickname 'x\\u200b' contains U+200B: no invisible or formatting characters allowed",
            id="nickname-zero-width",
        ),
        pytest.param(
            b"REGISTER:" + b"n" * 33 + b":127.0.0.1:5002\r\n",
            "nickname is too long: 33 characters, limit 32",
            id="nickname-too-long",
        ),
        pytest.param(
            b"REGISTER:bob:999.0.0.1:5002\r\n",
            "'999.0.0.1' is not an IPv4 or IPv6 address",
            id="ip-invalid",
        ),
        pytest.param(
            b"REGISTER:bob:[fe80::1%" + b"z" * 4000 + b"]:5002\r\n",
            "IPv6 zone id (after '%') is too long: 4000 characters, limit 15",
            id="ip-zone-id-too-long",
        ),
        pytest.param(
            b"REGISTER:bob:localhost:5002\r\n",
            "'localhost' is not an IPv4 or IPv6 address",
            id="ip-hostname",
        ),
        pytest.param(
            b"REGISTER:bob:127.0.0.1:0\r\n", "port 0 is out of range 1-65535", id="port-zero"
        ),
        pytest.param(
            b"REGISTER:bob:127.0.0.1:65536\r\n",
            "port 65536 is out of range 1-65535",
            id="port-too-big",
        ),
        pytest.param(
            b"REGISTER:bob:127.0.0.1:http\r\n",
            "port 'http' is not a number from 1 to 65535",
            id="port-not-a-number",
        ),
        pytest.param(
            b"REGISTER:bob:127.0.0.1\r\n",
            "malformed REGISTER: expected REGISTER:Nickname:IP-Address:UDP-Port",
            id="field-missing",
        ),
    ],
)
async def test_d11_register_failure_answers_error_and_retry_works(server, connect, line, text):
    (alice,) = await register_all(server, connect, ALICE)
    bob = await connect(server, "bob")
    bob.send(line)
    await bob.expect(error(text))
    bob.send(register(BOB))  # same connection: the retry works
    await bob.expect(plist(ALICE, BOB))
    # The failed attempt announced nothing: alice's next message is bob's JOIN.
    await alice.expect(join(BOB))


async def test_d5_a_nickname_in_another_unicode_form_is_the_same_nickname(
    server: ChatServer, connect: Connect
) -> None:
    jose_nfc = "Jos\u00e9:127.0.0.1:5001"  # 'é' as one code point
    (jose,) = await register_all(server, connect, jose_nfc)
    other = await connect(server, "other")
    for nick in ("Jose\u0301", "JOSE\u0301", "JOS\u00c9"):  # 'e' + combining acute, upper case
        other.send(register(f"{nick}:127.0.0.1:5002"))
        await other.expect(error(f"nickname '{nick}' is already in use"))
    other.send(register(BOB))
    await other.expect(plist(jose_nfc, BOB))
    await jose.expect(join(BOB))  # nothing announced before


async def test_d11_register_twice_on_one_connection_is_an_error_and_keeps_it(server, connect):
    alice, bob = await register_all(server, connect, ALICE, BOB)
    bob.send(register("bob2:127.0.0.1:5009"))
    await bob.expect(error("already registered as 'bob' on this connection"))
    bob.send(register(BOB))
    await bob.expect(error("already registered as 'bob' on this connection"))
    bob.send(b"LIST\r\n")  # still open, still registered as bob only
    await bob.expect(plist(ALICE, BOB))
    carol = await connect(server, "carol")
    carol.send(register(CAROL))
    await carol.expect(plist(ALICE, BOB, CAROL))
    await alice.expect(join(CAROL))  # no JOIN of bob2 before it


# -- decision 12: the advertised IP ------------------------------------------------------


async def test_d12_unspecified_ip_means_source_address_other_ips_taken_as_given(server, connect):
    a = await connect(server)
    a.send(b"REGISTER:alice:0.0.0.0:5001\r\n")
    await a.expect(plist(ALICE))
    b = await connect(server)
    b.send(b"REGISTER:bob:[::]:5002\r\n")
    await b.expect(plist(ALICE, BOB))
    await a.expect(join(BOB))
    c = await connect(server)
    c.send(b"REGISTER:carol::::5003\r\n")  # '::' unbracketed (decision 6)
    await c.expect(plist(ALICE, BOB, CAROL))
    d = await connect(server)  # over loopback, advertising another address
    d.send(b"REGISTER:dave:192.0.2.7:5004\r\n")
    await d.expect(plist(ALICE, BOB, CAROL, "dave:192.0.2.7:5004"))
    await a.expect(join(CAROL))
    await a.expect(join("dave:192.0.2.7:5004"))


async def test_d12_verify_ip_refuses_an_address_other_than_the_source(start_server, connect):
    server = await start_server(verify_ip=True)
    a = await connect(server)
    a.send(b"REGISTER:alice:192.0.2.7:5001\r\n")
    await a.expect(error("IP address 192.0.2.7 is not the one you connect from (127.0.0.1)"))
    a.send(register(ALICE))
    await a.expect(plist(ALICE))
    b = await connect(server)
    b.send(b"REGISTER:bob:0.0.0.0:5002\r\n")
    await b.expect(plist(ALICE, BOB))
    await a.expect(join(BOB))


# -- one participant per UDP address (decision 21 credits an INIT to its source) ---------


async def test_d21_an_address_another_participant_has_is_refused(
    server: ChatServer, connect: Connect
) -> None:
    alice, _carol = await register_all(server, connect, ALICE, "carol:[::1]:5003")
    taken = error("address 127.0.0.1:5001 is already registered by 'alice'; use another UDP port")
    mallory = await connect(server, "mallory")
    for address in (
        b"127.0.0.1:5001",
        b"0.0.0.0:5001",  # replaced by the source address, 127.0.0.1
        b"[::]:5001",
        b"[::ffff:127.0.0.1]:5001",  # IPv4-mapped: the same address
    ):
        mallory.send(b"REGISTER:mallory:" + address + b"\r\n")
        await mallory.expect(taken)
    mallory.send(b"REGISTER:mallory:0:0:0:0:0:0:0:1:5003\r\n")  # carol's, spelled out
    await mallory.expect(
        error("address [::1]:5003 is already registered by 'carol'; use another UDP port")
    )
    mallory.send(register("mallory:127.0.0.1:5009"))  # same connection: the retry works
    await mallory.expect(plist(ALICE, "carol:[::1]:5003", "mallory:127.0.0.1:5009"))
    await alice.expect(join("mallory:127.0.0.1:5009"))  # the refused attempts announced nothing
    # Once alice has left, her address is free again.
    await alice.close()
    await mallory.expect(leave(ALICE))
    bob = await connect(server, "bob")
    bob.send(b"REGISTER:bob:127.0.0.1:5001\r\n")
    await bob.expect(plist("carol:[::1]:5003", "mallory:127.0.0.1:5009", "bob:127.0.0.1:5001"))


# -- decision 13: BROADCAST ----------------------------------------------------------


async def test_d13_broadcast_before_register_is_refused_and_not_forwarded(server, connect):
    (alice,) = await register_all(server, connect, ALICE)
    eve = await connect(server, "eve")
    eve.send(b"BROADCAST:eve:2:hi\r\n")
    await eve.expect(error(REGISTER_FIRST))
    eve.send(b"BROADCAST:alice:2:hi\r\n")
    await eve.expect(error(REGISTER_FIRST))
    eve.send(register("eve:127.0.0.1:5005"))
    await eve.expect(plist(ALICE, "eve:127.0.0.1:5005"))
    await alice.expect(join("eve:127.0.0.1:5005"))  # nothing forwarded before it


async def test_d13_spoofed_nickname_is_refused_and_not_forwarded(server, connect):
    alice, bob, carol = await register_all(server, connect, ALICE, BOB, CAROL)
    bob.send(b"BROADCAST:alice:5:hello\r\n")
    await bob.expect(error("you are registered as 'bob', not 'alice'"))
    bob.send(b"BROADCAST:bob:4:real\r\n")
    for other in (alice, carol):  # the spoofed one was not forwarded before the real one
        await other.expect(bcast("bob", "real"))
    alice.send(bcast("alice", "hey"))
    await bob.expect(bcast("alice", "hey"))  # and bob got no echo of his own in between


async def test_d13_broadcast_forwarded_canonically_to_others_not_echoed(server, connect):
    """Decisions 13, 1, 2: lower case and a bare LF come out as canonical BROADCAST...CRLF."""
    alice, bob, carol = await register_all(server, connect, ALICE, BOB, CAROL)
    alice.send(b"broadcast:alice:5:hello\n")
    alice.send(b"Broadcast:ALICE:2:hi\r\n")  # her own nickname in another case
    alice.send(b"BROADCAST:alice:0:\r\n")  # an empty message
    for other in (bob, carol):
        await other.expect(b"BROADCAST:alice:5:hello\r\n")
        await other.expect(b"BROADCAST:alice:2:hi\r\n")
        await other.expect(b"BROADCAST:alice:0:\r\n")
    bob.send(b"BROADCAST:bob:3:ack\r\n")
    await alice.expect(b"BROADCAST:bob:3:ack\r\n")  # her own three were not echoed before it
    await carol.expect(b"BROADCAST:bob:3:ack\r\n")


async def test_d13_message_with_colons_crlf_and_emoji_arrives_byte_for_byte(server, connect):
    """Decisions 13 and 3: the Message may hold ':', CR, LF; Length counts bytes."""
    alice, bob = await register_all(server, connect, ALICE, BOB)
    text = "a:b::c\r\nsecond line\nthird\r ünïcødé 😀👍🏽 :\r\n"
    payload = text.encode("utf-8")
    wire = b"BROADCAST:alice:%d:%s\r\n" % (len(payload), payload)
    alice.send(wire)
    await bob.expect(wire)


async def test_d13_length_in_characters_is_reencoded_in_bytes(server, connect):
    """Decisions 13 and 3: a Length counted in characters is accepted and sent in bytes."""
    alice, bob = await register_all(server, connect, ALICE, BOB)
    text = "héllo wörld 😀 ok"
    assert len(text) != len(text.encode("utf-8"))
    alice.send(b"BROADCAST:alice:%d:%s\r\n" % (len(text), text.encode("utf-8")))
    await bob.expect(b"BROADCAST:alice:%d:%s\r\n" % (len(text.encode("utf-8")), text.encode()))


# -- decision 14: one global order, each message exactly once ------------------------------


async def test_d14_concurrent_senders_one_global_order_each_message_exactly_once(server, connect):
    n_senders, per_sender = 3, 40
    sender_entries = [f"s{k}:127.0.0.1:{6000 + k}" for k in range(n_senders)]
    receiver_entries = ["r0:127.0.0.1:6100", "r1:127.0.0.1:6101"]
    clients = await register_all(server, connect, *sender_entries, *receiver_entries)
    senders, receivers = clients[:n_senders], clients[n_senders:]

    async def send_all(k: int, client: RawClient) -> None:
        for i in range(0, per_sender, 4):  # small batches, yielding between them
            client.send(b"".join(bcast(f"s{k}", f"m{k}-{j}") for j in range(i, i + 4)))
            await client.drain()
            await asyncio.sleep(0)

    async def collect(client: RawClient, n: int) -> list[bytes]:
        return [await client.recv() for _ in range(n)]

    total = n_senders * per_sender
    results = await asyncio.gather(
        *(send_all(k, c) for k, c in enumerate(senders)),
        *(collect(c, total - per_sender) for c in senders),
        *(collect(c, total) for c in receivers),
    )
    by_sender = results[n_senders : 2 * n_senders]
    by_receiver = results[2 * n_senders :]
    order = by_receiver[0]
    sent = {k: [bcast(f"s{k}", f"m{k}-{i}") for i in range(per_sender)] for k in range(n_senders)}

    assert sorted(order) == sorted(m for msgs in sent.values() for m in msgs)  # exactly once
    for other in by_receiver[1:]:
        assert other == order  # the same global order
    for k in range(n_senders):
        mine = set(sent[k])
        assert [m for m in order if m in mine] == sent[k]  # each sender's order kept
        assert by_sender[k] == [m for m in order if m not in mine]  # no echo, same order
    for client in clients:
        await client.expect_nothing(0.05)  # nothing duplicated after the expected messages


# -- decision 15: UPDATE:LEAVE whenever a participant's connection ends ----------------------


@pytest.mark.parametrize("how", ["close", "reset", "half-close"])
async def test_d15_leave_sent_to_remaining_participants(server, connect, how):
    alice, bob, carol = await register_all(server, connect, ALICE, BOB, CAROL)
    if how == "close":
        await bob.close()
    elif how == "reset":
        bob.reset()
    else:
        bob.writer.write_eof()
        await bob.expect_closed()  # the server closes its side too
    await alice.expect(leave(BOB))
    await carol.expect(leave(BOB))
    # The nickname is free again.
    bob2 = await connect(server, "bob2")
    bob2.send(register(BOB))
    await bob2.expect(plist(ALICE, CAROL, BOB))


async def test_d15_leave_when_the_server_drops_a_participant(server, connect):
    """Decisions 15, 16: a registered client dropped for a fatal error is announced."""
    alice, bob = await register_all(server, connect, ALICE, BOB)
    bob.send(b"BROADCAST:bob:x:y\r\n")
    await bob.expect(error("Length 'x' is not a number"))
    await bob.expect_closed()
    await alice.expect(leave(BOB))


async def test_d15_unregistered_connection_closing_sends_nothing(server, connect):
    (alice,) = await register_all(server, connect, ALICE)
    quiet = await connect(server, "quiet")
    refused = await connect(server, "refused")
    refused.send(b"REGISTER:alice:127.0.0.1:5009\r\n")
    await refused.expect(error("nickname 'alice' is already in use"))
    await quiet.close()
    refused.reset()
    await alice.expect_nothing(0.3)  # silence is the point: no LEAVE for them
    bob = await connect(server, "bob")
    bob.send(register(BOB))
    await bob.expect(plist(ALICE, BOB))
    await alice.expect(join(BOB))


# -- decision 16: fatal and recoverable errors ---------------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [
        pytest.param(
            b"BROADCAST:alice:abc:hi\r\n", "Length 'abc' is not a number", id="length-not-a-number"
        ),
        pytest.param(
            b"BROADCAST:alice:-1:hi\r\n", "Length '-1' is not a number", id="length-negative"
        ),
        pytest.param(
            b"BROADCAST:alice:1048577:x\r\n",
            "Length 1048577 is over the hard limit of 1048576 bytes",
            id="length-over-1MiB",
        ),
        pytest.param(
            b"BROADCAST:alice:3:abcdef\r\n",
            "no line end after the 3-byte message of BROADCAST",
            id="no-line-end-after-payload",
        ),
        pytest.param(
            # exactly max_line_bytes + 2 bytes without a line end, so the server has read it all
            b"REGISTER:" + b"x" * (4096 + 2 - len(b"REGISTER:")),
            "line too long: limit 4096 bytes",
            id="line-too-long",
        ),
    ],
)
async def test_d16_fatal_error_answers_error_then_closes_and_leave(server, connect, data, text):
    alice, bob = await register_all(server, connect, ALICE, BOB)
    alice.send(data)
    await alice.expect(error(text))
    await alice.expect_closed()
    await bob.expect(leave(ALICE))


async def test_d16_fatal_error_from_unregistered_client_closes_it(server, connect):
    client = await connect(server)
    client.send(b"ERROR:zz:" + b"\r\n")
    await client.expect(error("Length 'zz' is not a number"))
    await client.expect_closed()


async def test_d16_no_line_end_after_a_skipped_oversized_message_is_fatal(server, connect):
    alice, bob = await register_all(server, connect, ALICE, BOB)
    alice.send(b"BROADCAST:alice:70000:" + b"x" * 70000 + b"YZ")
    await alice.expect(error("message too long: 70000 bytes, limit 65536"))
    await alice.expect(error("no line end after the skipped message"))
    await alice.expect_closed()
    await bob.expect(leave(ALICE))


async def test_d16_fatal_error_closes_and_announces_leave_even_if_client_does_not_read(
    start_server, connect
):
    """Decisions 16 and 15: ERROR then close, bounded in time like a drop (decision 17)."""
    server = await start_server(drop_grace=0.5)
    bob, carol = await register_all(server, connect, BOB, CAROL)
    # alice stops reading; small buffers so that little is needed to back up.
    alice = await connect(server, "alice", rcvbuf=4096, limit=1024)
    alice.send(register(ALICE))
    for client in (bob, carol):
        await client.expect(join(ALICE))
    (alice_conn,) = [
        c for c in server.registry.connections() if server.registry.get(c).nick == "alice"
    ]
    text = "x" * 60000
    for _ in range(1000):  # until the server holds bytes for alice (far below its send queue)
        if alice_conn.transport.get_write_buffer_size() > 0:
            break
        bob.send(bcast("bob", text))
        await carol.expect(bcast("bob", text))
    assert 0 < alice_conn.transport.get_write_buffer_size() < server.config.sendq_bytes
    alice.send(b"BROADCAST:alice:abc:x\r\n")  # a fatal error
    await bob.expect(leave(ALICE), timeout=server.config.drop_grace + 1.5)
    await carol.expect(leave(ALICE))


@pytest.mark.parametrize(
    ("data", "text"),
    [
        pytest.param(b"HELLO:there\r\n", "unknown command 'HELLO'", id="unknown-command"),
        pytest.param(b"hello\n", "unknown command 'HELLO'", id="unknown-command-bare"),
        pytest.param(
            b"UPDATE:JOIN:x:127.0.0.1:1\r\n", "UPDATE is not expected here", id="update-from-client"
        ),
        pytest.param(b"ERROR:2:hi\r\n", "ERROR is not expected here", id="error-from-client"),
        pytest.param(
            b"BROADCAST:a b:2:hi\r\n",
            "nickname 'a b' contains ' ': no ':', spaces or control characters allowed",
            id="bad-nickname-field",
        ),
        pytest.param(
            b"BROADCAST:alice\r\n",
            "malformed BROADCAST: expected BROADCAST:Nickname:Length:Message",
            id="broadcast-missing-fields",
        ),
        pytest.param(
            b"BROADCAST:alice:2:\xff\xfe\r\n", "BROADCAST is not valid UTF-8", id="invalid-utf8"
        ),
        pytest.param(
            b"REGISTER:\xc3\x28:127.0.0.1:5009\r\n",
            "REGISTER is not valid UTF-8",
            id="invalid-utf8-line",
        ),
        pytest.param(
            # a line of exactly max_line_bytes (4096) is not too long: a field error only
            b"REGISTER:" + b"n" * 4072 + b":127.0.0.1:5009\r\n",
            "nickname is too long: 4072 characters, limit 32",
            id="line-of-exactly-4096-bytes",
        ),
        pytest.param(
            b"BROADCAST:alice:70000:" + b"x" * 70000 + b"\r\n",
            "message too long: 70000 bytes, limit 65536",
            id="message-too-long",
        ),
        pytest.param(
            b"BROADCAST:alice:1048576:" + b"x" * 1048576 + b"\r\n",
            "message too long: 1048576 bytes, limit 65536",
            id="message-too-long-exactly-1MiB",
        ),
    ],
)
async def test_d16_recoverable_error_answers_error_and_next_message_works(
    server, connect, data, text
):
    alice, bob = await register_all(server, connect, ALICE, BOB)
    alice.send(data)
    await alice.expect(error(text))
    alice.send(b"BROADCAST:alice:4:next\r\n")
    await bob.expect(b"BROADCAST:alice:4:next\r\n")  # the bad one was not forwarded
    bob.send(b"BROADCAST:bob:3:ack\r\n")
    await alice.expect(b"BROADCAST:bob:3:ack\r\n")  # alice is still connected


# -- decision 17: limits ------------------------------------------------------------------


async def test_d17_max_clients_refuses_the_one_over_with_error_then_close(start_server, connect):
    server = await start_server(max_clients=2)
    alice, bob = await register_all(server, connect, ALICE, BOB)
    over = await connect(server, "over")
    await over.expect(error("server is full: 2 clients; try again later"))
    await over.expect_closed()
    await alice.close()
    await bob.expect(leave(ALICE))
    carol = await connect(server, "carol")  # a place is free again
    carol.send(register(CAROL))
    await carol.expect(plist(BOB, CAROL))
    await bob.expect(join(CAROL))


async def test_d17_register_timeout_closes_with_error(start_server, connect):
    server = await start_server(register_timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    silent = await connect(server, "silent")
    failed = await connect(server, "failed")  # tried, but never registered
    ok = await connect(server, "ok")
    failed.send(b"REGISTER:bad nick:127.0.0.1:1\r\n")
    await failed.expect(
        error("nickname 'bad nick' contains ' ': no ':', spaces or control characters allowed")
    )
    ok.send(register(ALICE))
    await ok.expect(plist(ALICE))

    async def timed_out(client: RawClient) -> float:
        await client.expect(error("registration timeout: no REGISTER within 0.3 s"))
        await client.expect_closed()
        return loop.time() - started

    elapsed_silent, elapsed_failed, _ = await asyncio.gather(
        timed_out(silent), timed_out(failed), ok.expect_nothing(0.6)
    )
    assert elapsed_silent >= 0.25
    assert elapsed_failed >= 0.25
    ok.send(b"LIST\r\n")  # the registered one is still there
    await ok.expect(plist(ALICE))


async def test_d17_sendq_overflow_drops_slow_reader_others_get_leave_and_keep_receiving(
    start_server, connect
):
    sendq = 64 * 1024
    server = await start_server(sendq_bytes=sendq, flood_rate=0)
    alice, bob = await register_all(server, connect, ALICE, BOB)
    # A client that never reads, with small socket and stream buffers to bound the load.
    slow = await connect(server, "slow", rcvbuf=4096, limit=1024)
    slow.send(register(CAROL))
    for client in (alice, bob):
        await client.expect(join(CAROL))

    text = "x" * 16384
    left_at = None
    held = 0  # the most the server held for any one client
    for i in range(400):  # at most 400 * 16 KiB go out before the drop must have happened
        alice.send(bcast("alice", f"{i:04d}{text}"))
        message = await bob.recv()
        held = max(
            held, *(c.transport.get_write_buffer_size() for c in server._connections if c.transport)
        )
        if message == leave(CAROL):
            left_at = i
            message = await bob.recv()
        assert message == bcast("alice", f"{i:04d}{text}"), message[:40]
        if left_at is not None:
            break
    assert left_at is not None, "the client that never reads was not dropped"
    # Memory stays bounded: never more than the limit and the message that crossed it.
    assert held <= sendq + len(bcast("alice", f"0000{text}")), held
    await alice.expect(leave(CAROL))
    for i in range(3):  # the others keep receiving
        alice.send(bcast("alice", f"after {i}"))
        await bob.expect(bcast("alice", f"after {i}"))
    bob.send(bcast("bob", "still here"))
    await alice.expect(bcast("bob", "still here"))

    # The dropped client, reading at last, finds broadcasts, the ERROR, then the end.
    messages = split_messages(await slow.read_until_closed(timeout=5))
    assert messages[0] == plist(ALICE, BOB, CAROL)
    assert messages[-1] == error(
        f"dropped: send queue over {sendq} bytes; you are not reading fast enough"
    )
    assert all(m.startswith(b"BROADCAST:alice:") for m in messages[1:-1])


async def test_d17_flood_control_slows_only_the_flooder_and_loses_nothing(start_server, connect):
    burst, rate, count = 5, 20.0, 30
    server = await start_server(flood_burst=burst, flood_rate=rate)
    alice, bob, carol = await register_all(server, connect, ALICE, BOB, CAROL)
    loop = asyncio.get_running_loop()
    flood = [bcast("alice", f"flood {i}") for i in range(count)]

    started = loop.time()
    alice.send(b"".join(flood))
    for i in range(burst):
        await bob.expect(flood[i])
    carol_sent = loop.time()
    carol.send(bcast("carol", "not slowed"))

    async def bob_collects() -> tuple[list[bytes], float, float]:
        received: list[bytes] = []
        carol_at = last_at = 0.0
        while len(received) < count - burst + 1:
            received.append(await bob.recv())
            if received[-1] == bcast("carol", "not slowed"):
                carol_at = loop.time()
        last_at = loop.time()
        return received, carol_at, last_at

    async def alice_gets_carol() -> float:
        await alice.expect(bcast("carol", "not slowed"))
        return loop.time()

    (received, carol_at_bob, last_at), carol_at_alice = await asyncio.gather(
        bob_collects(), alice_gets_carol()
    )
    carol_message = bcast("carol", "not slowed")
    assert [m for m in received if m != carol_message] == flood[burst:]  # all, in order
    assert received.count(carol_message) == 1
    assert received.index(carol_message) < count - burst  # it overtook alice's backlog
    assert carol_at_bob - carol_sent < 0.5  # others are not slowed...
    assert carol_at_alice - carol_sent < 0.5  # ...and neither is sending to the flooder
    elapsed = last_at - started
    assert elapsed >= 0.8 * (count - burst) / rate, f"flood delivered in {elapsed:.2f} s"
    assert elapsed < 4.0, f"flood took {elapsed:.2f} s"
    for message in flood:  # carol gets the whole flood too, in order, and no echo of her own
        await carol.expect(message)


async def test_d17_d14_flooder_that_closes_at_once_still_has_every_message_delivered(
    start_server, connect
):
    """Flood control never discards (17); accepted broadcasts arrive, then the LEAVE (14, 15)."""
    server = await start_server(flood_burst=5, flood_rate=40)
    alice, bob = await register_all(server, connect, ALICE, BOB)
    flood = [bcast("alice", f"flood {i}") for i in range(30)]
    alice.send(b"".join(flood))
    await alice.drain()
    await alice.close()
    for message in flood:
        await bob.expect(message)
    await bob.expect(leave(ALICE))


async def test_d17_keepalive_is_on(server, connect):
    await register_all(server, connect, ALICE)
    (conn,) = list(server.registry.connections())
    sock = conn.transport.get_extra_info("socket")
    if sock is None:
        pytest.skip("the transport does not expose its socket")
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0
    if hasattr(socket, "TCP_KEEPIDLE"):
        assert (
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == server.config.keepalive_idle
        )


# -- decision 18: readable ERROR texts ---------------------------------------------------


async def test_d18_error_texts_are_readable_sentences(server, connect):
    (_alice,) = await register_all(server, connect, "bob:127.0.0.1:5002")
    client = await connect(server)
    client.send(b"REGISTER:bob:127.0.0.1:5003\r\n")
    await client.expect(b"ERROR:32:nickname 'bob' is already in use\r\n")
    client.send(b"BROADCAST:carol:2:hi\r\n")
    await client.expect(b"ERROR:53:register first: REGISTER:Nickname:IP-Address:UDP-Port\r\n")
    client.send(b"HELLO\r\n")
    await client.expect(b"ERROR:23:unknown command 'HELLO'\r\n")
    client.send(b"REGISTER:alice:127.0.0.1:5001\r\n")
    await client.expect(plist("bob:127.0.0.1:5002", ALICE))
    client.send(b"BROADCAST:bob:5:hello\r\n")
    await client.expect(b"ERROR:40:you are registered as 'alice', not 'bob'\r\n")
    client.send(b"BROADCAST:alice:70000:" + b"x" * 70000 + b"\r\n")
    await client.expect(b"ERROR:42:message too long: 70000 bytes, limit 65536\r\n")


# -- clean shutdown ---------------------------------------------------------------------


async def test_shutdown_sends_each_client_an_error_and_closes(server, connect):
    """Interfaces (SIGINT/SIGTERM) and decision 15: no LEAVE while shutting down."""
    alice, bob = await register_all(server, connect, ALICE, BOB)
    unregistered = await connect(server, "unregistered")
    port = server.port
    await server.close()
    for client in (alice, bob, unregistered):
        await client.expect(b"ERROR:23:server is shutting down\r\n")
        await client.expect_closed()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
