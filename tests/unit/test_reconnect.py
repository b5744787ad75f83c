"""The reconnect schedule: full jitter over 1, 2, 4, 8, 16, then 30 s, at exact values."""

from __future__ import annotations

import random

import pytest

from p2pchat.core import ClientConfig, ReconnectSchedule

RECONNECT_CAPS = ClientConfig("alice").reconnect_caps


def reconnect_delay(attempt: int, rng: random.Random) -> float:
    return ReconnectSchedule(RECONNECT_CAPS, rng).delay(attempt)


class Draws(random.Random):
    """A random source that returns the given fractions in turn."""

    def __init__(self, *fractions: float) -> None:
        super().__init__(0)
        self._fractions = list(fractions)

    def random(self) -> float:
        return self._fractions.pop(0)


def test_caps_double_up_to_thirty_seconds() -> None:
    assert RECONNECT_CAPS == (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 15.0), (6, 15.0), (1000, 15.0)],
)
def test_delay_is_the_drawn_fraction_of_the_attempts_cap(attempt: int, expected: float) -> None:
    assert reconnect_delay(attempt, Draws(0.5)) == expected


def test_delay_spans_zero_to_just_under_the_cap() -> None:
    assert reconnect_delay(0, Draws(0.0)) == 0.0
    assert reconnect_delay(3, Draws(0.25)) == 2.0
    top = reconnect_delay(5, Draws(0.999))
    assert top == pytest.approx(29.97) and top < 30.0


def test_clients_restarted_together_spread_over_the_window() -> None:
    """1,000 clients seeded differently do not come back at one instant: their first
    delays cover the whole first second, a tenth of them or so in each tenth of it."""
    delays = [reconnect_delay(0, random.Random(seed)) for seed in range(1000)]
    assert all(0.0 <= d < 1.0 for d in delays)
    per_tenth = [sum(1 for d in delays if k / 10 <= d < (k + 1) / 10) for k in range(10)]
    assert min(per_tenth) >= 60 and max(per_tenth) <= 140, per_tenth


def test_attempts_count_up_until_one_succeeds_and_start_again_after() -> None:
    """Each failed attempt moves to the next cap; a registration starts the count again,
    so the next loss is retried within a second."""
    schedule = ReconnectSchedule(RECONNECT_CAPS, Draws(0.5, 0.5, 0.5, 0.5))
    assert schedule.next(100.0) == (0.5, 100.5)
    assert schedule.next(101.0) == (1.0, 102.0)
    assert schedule.next(103.0) == (2.0, 105.0)
    schedule.succeeded()
    assert schedule.next(200.0) == (0.5, 200.5)


def test_a_seeded_rng_repeats_the_same_delays() -> None:
    def delays(seed: int) -> list[float]:
        schedule = ReconnectSchedule(RECONNECT_CAPS, random.Random(seed))
        return [schedule.next(0.0)[0] for _ in range(8)]

    assert delays(7) == delays(7)
    assert delays(7) != delays(8)
    caps = [*RECONNECT_CAPS, 30.0, 30.0]
    assert all(0.0 <= d < cap for d, cap in zip(delays(7), caps, strict=True))
