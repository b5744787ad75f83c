"""The longest LIST a server can send fits what its clients accept (decision 10).

A server with ``--max-clients`` participants, each with the longest entry the
field rules allow, sends one LIST line; a client refusing it could never join
a full server. The LIST is built with the protocol's own encoder and fed to
the decoder a client reads its server with.
"""

from __future__ import annotations

import pytest

from p2pchat.client import _server_decoder
from p2pchat.protocol import (
    MAX_LIST_LINE_BYTES,
    NEED_DATA,
    LocalProtocolError,
    Participant,
    ParticipantList,
)
from p2pchat.protocol._fields import NICK_MAX_CHARS, ZONE_MAX_CHARS
from p2pchat.server import ServerConfig

# The longest canonical IPv6 text: eight groups of four digits, nothing to compress.
LONGEST_IPV6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
LONGEST_ZONE = "z" * ZONE_MAX_CHARS
FOUR_BYTE = 0x20000  # CJK Extension B: letters, four UTF-8 bytes each


def longest(i: int) -> Participant:
    """Participant ``i`` of a full server, every field as long as allowed.

    Distinct nicknames and ports, as the server keeps them."""
    tail = chr(FOUR_BYTE + i // 256) + chr(FOUR_BYTE + i % 256)
    nick = chr(FOUR_BYTE) * (NICK_MAX_CHARS - 2) + tail
    return Participant(nick, f"{LONGEST_IPV6}%{LONGEST_ZONE}", 10000 + i)


def test_the_longest_entry_is_the_longest_the_fields_allow() -> None:
    entry = longest(0)
    assert len(entry.wire().encode()) == 4 * 32 + 1 + len(f"[{LONGEST_IPV6}%{LONGEST_ZONE}]") + 6
    assert len(entry.wire().encode()) == 192
    # One more of anything is refused.
    with pytest.raises(LocalProtocolError, match="nickname is too long"):
        Participant(entry.nick + "x", entry.ip, entry.udp_port)
    with pytest.raises(LocalProtocolError, match="zone id"):
        Participant(entry.nick, entry.ip + "z", entry.udp_port)
    with pytest.raises(LocalProtocolError, match="out of range"):
        Participant(entry.nick, entry.ip, 100000)
    with pytest.raises(LocalProtocolError, match="not an IPv4 or IPv6 address"):
        Participant(entry.nick, "f" + entry.ip, entry.udp_port)


def test_a_full_server_s_longest_list_is_accepted_by_its_clients() -> None:
    count = ServerConfig().max_clients
    participants = tuple(longest(i) for i in range(count))
    wire = ParticipantList(participants).encode()
    assert len(wire) <= MAX_LIST_LINE_BYTES, f"{len(wire)} bytes"
    decoder = _server_decoder()
    decoder.feed(wire)
    message = decoder.next_event()
    assert message == ParticipantList(participants)
    assert decoder.next_event() is NEED_DATA
    assert decoder.buffered == 0
