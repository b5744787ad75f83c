"""Running a cluster: a node's metrics and health over HTTP against a real Redis
that is paused and resumed."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from p2pchat.cluster import RedisCluster
from p2pchat.cluster_metrics import watch
from p2pchat.metrics import MetricsEndpoint
from p2pchat.server import ChatServer

from .conftest import RedisServer

WAIT = 20.0  # Redis paused: a call gives up after 2 s, the reader's after 3 s


@pytest.fixture
async def node(redis_server: RedisServer) -> AsyncIterator[tuple[ChatServer, MetricsEndpoint]]:
    """A real node of chat ``ops`` on the test's Redis, with its metrics endpoint as
    ``p2pchat-server --cluster --metrics`` wires it."""
    cluster = RedisCluster(redis_server.url, "ops")
    server = ChatServer(sequencer=cluster)
    await cluster.start()
    await server.start("127.0.0.1", 0)
    endpoint = MetricsEndpoint(server)
    assert cluster.sequencer is not None
    watch(endpoint, cluster.sequencer, "ops")
    await endpoint.start("127.0.0.1", 0)
    yield server, endpoint
    await endpoint.close()
    await server.close(timeout=1.0)
    await cluster.close(timeout=1.0)


async def _get(session: aiohttp.ClientSession, base: str, path: str) -> tuple[int, str]:
    async with session.get(base + path) as response:
        return response.status, await response.text()


def _samples(text: str) -> dict[str, float]:
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


async def _until(condition: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.1)


async def test_health_fails_while_redis_is_paused_and_recovers_after(
    redis_server: RedisServer, node: tuple[ChatServer, MetricsEndpoint]
) -> None:
    _, endpoint = node
    host, port = endpoint.address
    base = f"http://{host}:{port}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        assert await _get(session, base, "/health") == (200, "ok: serving\n")
        _, text = await _get(session, base, "/metrics")
        samples = _samples(text)
        assert samples["p2pchat_cluster_redis_up"] == 1
        assert samples["p2pchat_cluster_lag_seconds"] < 5  # the reader may not have read yet
        assert samples["p2pchat_cluster_entries_applied_total"] == 0
        assert "p2pchat_cluster_last_heartbeat_timestamp_seconds" in samples

        health: list[tuple[int, str]] = []
        scraped: dict[str, float] = {}

        async def unhealthy_and_down() -> bool:
            health.append(await _get(session, base, "/health"))
            scraped.update(_samples((await _get(session, base, "/metrics"))[1]))
            return health[-1][0] == 503 and scraped["p2pchat_cluster_redis_up"] == 0

        async def healthy_and_up() -> bool:
            health.append(await _get(session, base, "/health"))
            scraped.update(_samples((await _get(session, base, "/metrics"))[1]))
            return health[-1][0] == 200 and scraped["p2pchat_cluster_redis_up"] == 1

        os.kill(redis_server.pid, signal.SIGSTOP)
        try:
            await _until(unhealthy_and_down)
            assert "cluster: Redis cannot be reached\n" in health[-1][1]
            assert scraped["p2pchat_cluster_link_failures_total"] >= 1
        finally:
            os.kill(redis_server.pid, signal.SIGCONT)
        await _until(healthy_and_up)
        assert health[-1] == (200, "ok: serving\n")
