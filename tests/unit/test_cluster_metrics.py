"""A cluster node's metrics and health check, judged at exact instants of a fake
sequencer's state (the real one over a real Redis: tests/cluster/test_cluster_ops.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from p2pchat.cluster import ClusterStats, RedisSequencer
from p2pchat.cluster_metrics import (
    STATS_HELP,
    ClusterCollector,
    cluster_health,
    health_check,
)

NOW = 1_800_000_000.0  # Unix time
MONO = 5_000.0  # monotonic time


@dataclass
class FakeSequencer:
    """The attributes of a RedisSequencer that are read, with its lag rule."""

    node_id: str = "n1"
    node_timeout: float = 5.0
    reachable: bool = True
    last_heartbeat: float | None = NOW - 1.0
    last_id: str = "0-0"
    stats: ClusterStats = field(default_factory=ClusterStats)
    caught_up: bool = True
    caught_up_at: float = MONO

    lag = RedisSequencer.lag  # the rule itself, not a copy of it


def scrape(state: FakeSequencer, now_monotonic: float = MONO) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(ClusterCollector(state, "lobby", monotonic=lambda: now_monotonic))
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return samples


def test_a_healthy_node_exports_its_link_lag_heartbeat_and_identity() -> None:
    samples = scrape(FakeSequencer())
    assert samples["p2pchat_cluster_node_info{chat=lobby,node_id=n1}"] == 1
    assert samples["p2pchat_cluster_redis_up"] == 1
    assert samples["p2pchat_cluster_lag_seconds"] == 0
    assert samples["p2pchat_cluster_last_heartbeat_timestamp_seconds"] == NOW - 1.0
    assert samples["p2pchat_cluster_node_timeout_seconds"] == 5.0


def test_every_cluster_stats_counter_is_a_counter_with_its_own_help() -> None:
    stats = ClusterStats(**{f.name: i + 1 for i, f in enumerate(dataclasses.fields(ClusterStats))})
    samples = scrape(FakeSequencer(stats=stats))
    for i, f in enumerate(dataclasses.fields(ClusterStats)):
        assert samples[f"p2pchat_cluster_{f.name}_total"] == i + 1
    assert set(STATS_HELP) == {f.name for f in dataclasses.fields(ClusterStats)}


def test_an_unreachable_node_reports_redis_down_and_its_lag() -> None:
    state = FakeSequencer(reachable=False, caught_up=False, caught_up_at=MONO - 2.5)
    samples = scrape(state, MONO)
    assert samples["p2pchat_cluster_redis_up"] == 0
    assert samples["p2pchat_cluster_lag_seconds"] == 2.5


def test_before_the_first_heartbeat_there_is_no_heartbeat_timestamp() -> None:
    samples = scrape(FakeSequencer(last_heartbeat=None))
    assert "p2pchat_cluster_last_heartbeat_timestamp_seconds" not in samples


def test_healthy_while_reachable_caught_up_and_beating() -> None:
    assert cluster_health(FakeSequencer(), NOW, MONO) is None
    # At exactly one node timeout, still healthy; past it, not.
    assert cluster_health(FakeSequencer(last_heartbeat=NOW - 5.0), NOW, MONO) is None
    behind = FakeSequencer(caught_up=False, caught_up_at=MONO - 5.0)
    assert cluster_health(behind, NOW, MONO) is None


def test_unhealthy_while_redis_cannot_be_reached() -> None:
    assert cluster_health(FakeSequencer(reachable=False), NOW, MONO) == (
        "cluster: Redis cannot be reached"
    )


def test_unhealthy_past_a_node_timeout_behind_the_order() -> None:
    behind = FakeSequencer(caught_up=False, caught_up_at=MONO - 5.25)
    assert cluster_health(behind, NOW, MONO) == (
        "cluster: 5.2 s behind the chat's order (node timeout 5 s)"
    )


def test_unhealthy_past_a_node_timeout_without_a_heartbeat() -> None:
    stale = FakeSequencer(last_heartbeat=NOW - 5.5)
    assert cluster_health(stale, NOW, MONO) == (
        "cluster: no heartbeat accepted by Redis for 5.5 s (node timeout 5 s)"
    )
    assert cluster_health(FakeSequencer(last_heartbeat=None), NOW, MONO) == (
        "cluster: no heartbeat accepted by Redis yet"
    )


def test_the_health_check_reads_the_clocks_it_is_given() -> None:
    state = FakeSequencer(node_timeout=2.0)
    clock = [NOW]
    check = health_check(state, clock=lambda: clock[0], monotonic=lambda: MONO)
    assert check() is None
    clock[0] = NOW + 1.5  # 2.5 s since the heartbeat
    assert check() == "cluster: no heartbeat accepted by Redis for 2.5 s (node timeout 2 s)"
