"""A cluster node's metrics and health: its link to Redis, how far behind the chat's
order it is, its heartbeat, and what the link has been through (``ClusterStats``).

Everything is read from the ``RedisSequencer``'s attributes when Prometheus
scrapes or ``/health`` is asked, never kept up to date here. The pure parts,
``cluster_metrics`` and ``cluster_health``, take the instants they judge at, so
they are tested at exact instants; ``ClusterCollector`` and ``health_check``
read the clocks and plug them into a ``MetricsEndpoint``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .cluster import ClusterStats

if TYPE_CHECKING:
    from .metrics import MetricsEndpoint

# Each ClusterStats counter, exported as p2pchat_cluster_NAME_total.
STATS_HELP = {
    "link_failures": "Calls to Redis that failed or timed out.",
    "unavailable_refusals": "REGISTERs and BROADCASTs refused while Redis was unreachable.",
    "claims_lost": "BROADCASTs refused: the sender's claim on its nickname was gone.",
    "entries_applied": "Entries of the chat's order applied, every node's.",
    "nodes_swept": "Other nodes this node declared dead.",
    "participants_swept": "Participants of dead nodes announced leaving by this node.",
    "dropped": "Participants of this node dropped: this node was declared dead.",
    "state_lost": "Times Redis had lost the chat's keys (restarted empty).",
    "reclaimed": "Participants of this node claimed again after that.",
    "reloads": "Times the list was loaded again: the order moved on without this node.",
}


class SequencerState(Protocol):
    """What is read of a ``RedisSequencer``."""

    node_id: str
    node_timeout: float
    reachable: bool
    last_heartbeat: float | None
    last_id: str
    stats: ClusterStats

    def lag(self, now: float) -> float: ...


def cluster_metrics(state: SequencerState, chat: str, now_monotonic: float) -> Iterator[Metric]:
    """The node's metrics at monotonic time ``now_monotonic``."""
    yield InfoMetricFamily(
        "p2pchat_cluster_node",
        "This node of a cluster: its id and the chat it serves.",
        value={"node_id": state.node_id, "chat": chat},
    )
    yield GaugeMetricFamily(
        "p2pchat_cluster_redis_up",
        "1 while Redis answers this node, 0 while it cannot be reached.",
        value=1 if state.reachable else 0,
    )
    yield GaugeMetricFamily(
        "p2pchat_cluster_lag_seconds",
        "How long this node may have been behind the chat's order; 0 while it has read it all.",
        value=state.lag(now_monotonic),
    )
    if state.last_heartbeat is not None:
        yield GaugeMetricFamily(
            "p2pchat_cluster_last_heartbeat_timestamp_seconds",
            "When Redis last accepted this node's heartbeat (Unix time).",
            value=state.last_heartbeat,
        )
    yield GaugeMetricFamily(
        "p2pchat_cluster_node_timeout_seconds",
        "A node whose heartbeat Redis has not seen for this long is declared dead.",
        value=state.node_timeout,
    )
    for field in dataclasses.fields(state.stats):
        yield CounterMetricFamily(
            f"p2pchat_cluster_{field.name}",
            STATS_HELP.get(field.name, field.name.replace("_", " ").capitalize() + "."),
            value=getattr(state.stats, field.name),
        )


def cluster_health(state: SequencerState, now: float, now_monotonic: float) -> str | None:
    """Why the node is not healthy at ``now`` (Unix time) and ``now_monotonic``, or None.

    Past a node timeout without a heartbeat the other nodes may already have
    declared this one dead; past it behind the order, what its participants
    see is that old."""
    timeout = state.node_timeout
    if not state.reachable:
        return "cluster: Redis cannot be reached"
    lag = state.lag(now_monotonic)
    if lag > timeout:
        return f"cluster: {lag:.1f} s behind the chat's order (node timeout {timeout:g} s)"
    if state.last_heartbeat is None:
        return "cluster: no heartbeat accepted by Redis yet"
    since = now - state.last_heartbeat
    if since > timeout:
        return (
            f"cluster: no heartbeat accepted by Redis for {since:.1f} s "
            f"(node timeout {timeout:g} s)"
        )
    return None


class ClusterCollector(Collector):
    """``cluster_metrics`` of a live node, read at scrape time."""

    def __init__(
        self,
        state: SequencerState,
        chat: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self._chat = chat
        self._monotonic = monotonic

    def collect(self) -> Iterator[Metric]:
        return cluster_metrics(self._state, self._chat, self._monotonic())


def health_check(
    state: SequencerState,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
) -> Callable[[], str | None]:
    """``cluster_health`` of a live node, for ``MetricsEndpoint.health_checks``."""

    def check() -> str | None:
        return cluster_health(state, clock(), monotonic())

    return check


def watch(endpoint: MetricsEndpoint, state: SequencerState, chat: str) -> None:
    """Adds the node's metrics and health check to ``endpoint``."""
    endpoint.registry.register(ClusterCollector(state, chat))
    endpoint.health_checks.append(health_check(state))
