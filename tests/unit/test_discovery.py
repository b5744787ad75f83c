"""The pure parts of finding chats on the LAN (p2pchat.discovery)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.discovery import (
    SERVICE_TYPE,
    Chat,
    Record,
    advertised_addresses,
    as_json,
    chats_from,
    check_name,
    choose,
    describe,
    instance_label,
    parse_txt,
    participants_due,
    prefer_local,
    txt_properties,
    useful_address,
)

from .test_import_hygiene import _loaded_by

INTERFACES = [
    "127.0.0.1",
    "10.1.0.5",
    "169.254.3.4",
    "192.168.1.7",
    "::1",
    "fe80::1",
    "2001:db8::7",
]


@pytest.mark.parametrize(
    ("ip", "useful"),
    [
        ("10.1.0.5", True),
        ("192.168.1.7", True),
        ("2001:db8::7", True),
        ("127.0.0.1", False),
        ("127.0.0.2", False),
        ("::1", False),
        ("169.254.3.4", False),
        ("fe80::1", False),
        ("fe80::1%eth0", False),
        ("0.0.0.0", False),
        ("::", False),
        ("224.0.0.251", False),
        ("not an address", False),
    ],
)
def test_only_addresses_others_can_reach_are_useful(ip: str, useful: bool) -> None:
    assert useful_address(ip) is useful


def test_a_wildcard_advertises_every_useful_address_of_its_family() -> None:
    assert advertised_addresses("0.0.0.0", INTERFACES) == ["10.1.0.5", "192.168.1.7"]
    assert advertised_addresses("", INTERFACES) == ["10.1.0.5", "192.168.1.7"]
    assert advertised_addresses("::", INTERFACES) == ["10.1.0.5", "192.168.1.7", "2001:db8::7"]


def test_one_listening_address_is_advertised_alone_and_only_if_useful() -> None:
    assert advertised_addresses("192.168.1.7", INTERFACES) == ["192.168.1.7"]
    assert advertised_addresses("127.0.0.1", INTERFACES) == []
    assert advertised_addresses("169.254.3.4", INTERFACES) == []


def test_each_address_is_advertised_once() -> None:
    assert advertised_addresses("0.0.0.0", ["10.0.0.1", "10.0.0.1"]) == ["10.0.0.1"]


def test_txt_records_round_trip() -> None:
    props = {k.encode(): v.encode() for k, v in txt_properties("Room 101", 3).items()}
    assert props == {b"v": b"1", b"name": b"Room 101", b"n": b"3"}
    told = parse_txt(props, "fallback")
    assert (told.name, told.participants, told.version) == ("Room 101", 3, 1)


def test_a_txt_record_from_anyone_is_read_leniently() -> None:
    told = parse_txt({b"n": b"-4", b"v": None, b"name": b"\xff\x1b[2Jx"}, "fallback")
    assert (told.participants, told.version) == (None, None)
    assert told.name == "\ufffd?[2Jx"  # no escape sequence reaches a terminal
    assert parse_txt({}, "label").name == "label"
    assert parse_txt({b"n": "٣".encode()}, "x").participants is None  # digits, not ASCII


@given(st.dictionaries(st.binary(max_size=20), st.one_of(st.none(), st.binary(max_size=300))))
def test_no_txt_record_breaks_the_parser(props: dict[bytes, bytes | None]) -> None:
    told = parse_txt(props, "label")
    assert told.name.isprintable() and len(told.name) <= 200


def test_names_are_checked() -> None:
    assert check_name("Room 101") == "Room 101"
    for bad in ("", "   ", "a\nb", "x" * 201):
        with pytest.raises(ValueError):
            check_name(bad)


def test_the_instance_label_fits_a_dns_label() -> None:
    assert instance_label("Room 101") == "Room 101"
    assert len(instance_label("é" * 40).encode()) <= 63
    assert instance_label("a.b") == "a b"


def test_addresses_on_a_local_network_come_first() -> None:
    nets = [ipaddress.ip_network("10.67.0.0/24")]
    assert prefer_local(["10.66.0.1", "127.0.0.1", "10.67.0.1"], nets) == ("10.67.0.1", "10.66.0.1")


def _record(label: str, port: int, *addresses: str, **txt: str) -> Record:
    return Record(
        f"{label}.{SERVICE_TYPE}", port, addresses, {k.encode(): v.encode() for k, v in txt.items()}
    )


def test_records_become_chats_sorted_by_name() -> None:
    chats = chats_from(
        [
            _record("b", 7777, "10.0.0.2", name="Room 102", n="2"),
            _record("a", 7000, "10.0.0.1", "169.254.1.1", name="Room 101", n="1"),
            _record("no-address", 7001, "127.0.0.1", name="Loopback"),
            _record("no-port", 0, "10.0.0.3", name="Portless"),
            _record("unnamed", 7002, "10.0.0.4"),
        ]
    )
    assert [(c.name, c.where, c.participants) for c in chats] == [
        ("Room 101", "10.0.0.1:7000", 1),
        ("Room 102", "10.0.0.2:7777", 2),
        ("unnamed", "10.0.0.4:7002", None),
    ]


def _chat(name: str, reachable: bool | None) -> Chat:
    return Chat(name, 7777, ("10.0.0.1",), 2, f"{name}.{SERVICE_TYPE}", reachable, "10.0.0.1")


def test_only_reachable_chats_count_for_the_choice() -> None:
    assert choose([]) == "none"
    assert choose([_chat("a", False)]) == "none"
    assert choose([_chat("a", True), _chat("b", False)]) == "one"
    assert choose([_chat("a", True), _chat("b", True)]) == "several"


def test_the_count_is_republished_only_when_changed_and_at_most_every_few_seconds() -> None:
    assert not participants_due(3, 3, last_published=0.0, now=100.0, every=3.0)
    assert not participants_due(4, 3, last_published=10.0, now=12.999, every=3.0)
    assert participants_due(4, 3, last_published=10.0, now=13.0, every=3.0)


def test_what_discover_prints() -> None:
    assert describe(_chat("Room 101", True)) == "Room 101  10.0.0.1:7777  2 participants"
    assert describe(_chat("Gone", False)).endswith("(unreachable)")
    assert as_json(_chat("Room 101", True)) == {
        "name": "Room 101",
        "address": "10.0.0.1:7777",
        "participants": 2,
        "reachable": True,
    }


@pytest.mark.parametrize("module", ["p2pchat.cli", "p2pchat.server", "p2pchat.discovery"])
def test_zeroconf_loads_only_when_announcing_or_discovering(module: str) -> None:
    assert _loaded_by(module, ("zeroconf", "ifaddr")) == []


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["--name", "Room"], "--name and --no-announce are about the chat this process hosts"),
        (["--no-announce"], "--name and --no-announce are about the chat this process hosts"),
        (["--serve", "--name", " "], "--name: the chat's name is empty"),
        (["--discover", "--server", "10.0.0.1:7777"], "not allowed with argument"),
    ],
)
def test_client_usage_errors(
    argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from p2pchat.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert reason in capsys.readouterr().err


def test_server_usage_error_for_a_bad_name(capsys: pytest.CaptureFixture[str]) -> None:
    from p2pchat.server import main

    with pytest.raises(SystemExit) as stopped:
        main(["--name", "a\nb"])
    assert stopped.value.code == 2
    assert "the chat's name has control characters" in capsys.readouterr().err
