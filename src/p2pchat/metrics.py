"""``p2pchat-server --metrics HOST:PORT``: Prometheus metrics and a health check over HTTP.

``GET /metrics`` is the Prometheus text format (OpenMetrics when the scraper
asks for it); ``GET /health`` is 200 while the server is serving, 503 with
the reasons otherwise. Both are served by aiohttp on the server's own event
loop.

The server pays nothing for this between scrapes: it bumps plain integers
(``ServerStats``), and ``ServerCollector`` reads them, with the sizes of its
lists, only when Prometheus asks. A prometheus_client ``Counter`` would take
a lock on every increment.

More can be plugged in from outside: collectors registered on
``MetricsEndpoint.registry`` (a cluster node's Redis link, lag and
heartbeat), and health checks appended to ``MetricsEndpoint.health_checks``.
A check returns None when all is well or a reason to fail; it runs on every
request to ``/health``, so it reads state kept up to date elsewhere and never
waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from ._http import HttpEndpoint
from .server_stats import DROP_REASONS

if TYPE_CHECKING:
    from .server import ChatServer

HealthCheck = Callable[[], str | None]


class ServerCollector(Collector):
    """The server's metrics, read from its counters and lists at scrape time."""

    def __init__(self, server: ChatServer) -> None:
        self._server = server

    def collect(self) -> Iterator[Metric]:
        server = self._server
        stats = server.stats
        # The lists are the server's own; reading their sizes costs nothing.
        yield GaugeMetricFamily(
            "p2pchat_participants",
            "Participants on the list (in a cluster, on every node).",
            value=len(server.registry),
        )
        yield GaugeMetricFamily(
            "p2pchat_local_participants",
            "Participants connected to this server.",
            value=len(server._members),
        )
        yield GaugeMetricFamily(
            "p2pchat_connections",
            "Client connections open, registered or not.",
            value=len(server._connections),
        )
        yield GaugeMetricFamily(
            "p2pchat_connections_unregistered",
            "Client connections open that have not registered.",
            value=len(server._waiting),
        )
        yield CounterMetricFamily(
            "p2pchat_connections_accepted",
            "Client connections accepted.",
            value=stats.connections,
        )
        messages_in = CounterMetricFamily(
            "p2pchat_messages_in",
            "Messages read from clients, by kind; bad: ones that could not be decoded.",
            labels=["kind"],
        )
        messages_in.add_metric(["register"], stats.in_register)
        messages_in.add_metric(["broadcast"], stats.in_broadcast)
        messages_in.add_metric(["list"], stats.in_list)
        messages_in.add_metric(["bad"], stats.in_bad)
        yield messages_in
        yield CounterMetricFamily(
            "p2pchat_messages_out",
            "Messages written to clients: a broadcast to N receivers counts N.",
            value=stats.messages_out,
        )
        yield CounterMetricFamily(
            "p2pchat_bytes_out",
            "Bytes of messages written to clients.",
            value=stats.bytes_out,
        )
        yield CounterMetricFamily(
            "p2pchat_errors_sent",
            "ERROR messages sent to clients.",
            value=stats.errors_sent,
        )
        yield CounterMetricFamily(
            "p2pchat_joins",
            "Participants that joined through this server.",
            value=stats.joins,
        )
        yield CounterMetricFamily(
            "p2pchat_leaves",
            "Participants of this server that left, for any reason.",
            value=stats.leaves,
        )
        drops = CounterMetricFamily(
            "p2pchat_drops",
            "Connections the server closed itself, by reason: "
            + "; ".join(f"{reason}: {why}" for reason, why in DROP_REASONS.items())
            + ".",
            labels=["reason"],
        )
        for reason, count in stats.drops().items():
            drops.add_metric([reason], count)
        yield drops
        yield CounterMetricFamily(
            "p2pchat_flood_pauses",
            "Times a client was read no further until it earned tokens again (flood control).",
            value=stats.flood_pauses,
        )
        yield CounterMetricFamily(
            "p2pchat_batch_pauses",
            "Times a client was read no further until what readers were owed was written.",
            value=stats.batch_pauses,
        )


def serving(server: ChatServer) -> HealthCheck:
    """The first health check: the server is accepting connections."""

    def check() -> str | None:
        return None if server.addresses else "not accepting connections"

    return check


class MetricsEndpoint:
    """The HTTP endpoint of one server's metrics and health."""

    def __init__(self, server: ChatServer) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(ServerCollector(server))
        ProcessCollector(registry=self.registry)  # CPU seconds, memory, open files
        self.health_checks: list[HealthCheck] = [serving(server)]
        self._http = HttpEndpoint()

    async def start(self, host: str, port: int) -> None:
        """Listens on (host, port); an OSError with the OS's reason, and the address as
        its ``filename``, when it cannot."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        await self._http.start(app, host, port, "--metrics")  # a scrape is not worth a log line

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens, with the real port."""
        return self._http.address

    async def close(self) -> None:
        await self._http.close()

    def health(self) -> list[str]:
        """Why the server is not healthy; empty when it is."""
        reasons = []
        for check in self.health_checks:
            try:
                reason = check()
            except Exception as error:  # a broken check fails the health, not the server
                reason = f"health check failed: {error!r}"
            if reason is not None:
                reasons.append(reason)
        return reasons

    async def _metrics(self, request: web.Request) -> web.Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encode(self.registry), headers={"Content-Type": content_type})

    async def _health(self, request: web.Request) -> web.Response:
        reasons = self.health()
        if reasons:
            return web.Response(status=503, text="".join(f"{r}\n" for r in reasons))
        return web.Response(text="ok: serving\n")
