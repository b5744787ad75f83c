"""Helpers around sockets: address parsing and the LAN address shown by --serve."""

from __future__ import annotations

import ipaddress

import pytest

from p2pchat._net import format_host_port, lan_ipv4, parse_host_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7777", ("127.0.0.1", 7777)),
        ("example.org", ("example.org", 7777)),
        (":9000", ("", 9000)),
        ("[::1]:8000", ("::1", 8000)),
        ("[::1]", ("::1", 7777)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text, 7777) == expected


@pytest.mark.parametrize("text", ["host:99999", "host:x", "[::1", "[::1]x", "h:-1"])
def test_parse_host_port_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host_port(text, 7777)


def test_format_host_port_brackets_ipv6() -> None:
    assert format_host_port("::1", 5) == "[::1]:5"
    assert format_host_port("10.0.0.1", 5) == "10.0.0.1:5"


def test_lan_address_is_never_loopback() -> None:
    ip = lan_ipv4()
    if ip is not None:
        address = ipaddress.IPv4Address(ip)
        assert not address.is_loopback and not address.is_link_local
