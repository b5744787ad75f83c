"""The client's limits: one frozen dataclass, checked when built."""

from __future__ import annotations

import dataclasses

import pytest

from p2pchat.client import ClientLimits
from p2pchat.server import ServerConfig


def test_participants_held_match_what_a_default_server_admits() -> None:
    assert ClientLimits().max_participants == ServerConfig().max_clients


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(ClientLimits)])
@pytest.mark.parametrize("value", [0, -1])
def test_every_limit_must_be_positive(name: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"{name} must be positive"):
        ClientLimits(**{name: value})


def test_limits_cannot_change_once_made() -> None:
    limits = ClientLimits(max_direct_chats=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        limits.max_direct_chats = 9  # type: ignore[misc]
