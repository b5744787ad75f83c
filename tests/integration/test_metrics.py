"""``--metrics``: the server's counters as Prometheus scrapes them, and its health.

A real server on a loopback port, its metrics endpoint on another, raw
clients doing things, and real HTTP requests reading what the server counted.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from p2pchat.metrics import MetricsEndpoint
from p2pchat.server import ChatServer
from tests.unit.test_import_hygiene import _loaded_by

from ._programs import Program
from ._support import Connect
from .test_server import ALICE, BOB, CAROL, bcast, error, join, leave, plist, register

Scrape = Callable[[ChatServer], Awaitable[dict[str, float]]]


def _key(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


@pytest.fixture
async def endpoints() -> AsyncIterator[dict[ChatServer, MetricsEndpoint]]:
    """The metrics endpoint of each server a test asks about, on 127.0.0.1, port 0."""
    started: dict[ChatServer, MetricsEndpoint] = {}
    yield started
    for endpoint in started.values():
        await endpoint.close()


@pytest.fixture
def url(endpoints: dict[ChatServer, MetricsEndpoint]) -> Callable[..., Awaitable[str]]:
    async def url_of(server: ChatServer, path: str) -> str:
        if server not in endpoints:
            endpoint = MetricsEndpoint(server)
            await endpoint.start("127.0.0.1", 0)
            endpoints[server] = endpoint
        host, port = endpoints[server].address
        return f"http://{host}:{port}{path}"

    return url_of


@pytest.fixture
def scrape(session: aiohttp.ClientSession, url: Callable[..., Awaitable[str]]) -> Scrape:
    """GET /metrics, parsed by prometheus_client's own parser: each sample by name and labels."""

    async def get(server: ChatServer) -> dict[str, float]:
        async with session.get(await url(server, "/metrics")) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            text = await response.text()
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[_key(sample.name, sample.labels)] = sample.value
        return samples

    return get


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """What moved between two scrapes, among the server's own metrics."""
    return {
        k: after[k] - before.get(k, 0.0)
        for k in after
        if k.startswith("p2pchat_") and after[k] != before.get(k, 0.0)
    }


async def test_registers_lists_broadcasts_and_errors_are_counted(
    server: ChatServer, connect: Connect, scrape: Scrape
) -> None:
    start = await scrape(server)
    assert delta({}, start) == {}  # every p2pchat_ metric starts at 0
    clients = []
    for i, entry in enumerate((ALICE, BOB, CAROL)):
        client = await connect(server, entry)
        client.send(register(entry))
        await client.expect(plist(*(ALICE, BOB, CAROL)[: i + 1]))
        for other in clients:
            await other.expect(join(entry))
        clients.append(client)
    alice, bob, carol = clients
    idle = await connect(server, "idle")
    idle.send(b"LIST\r\n")
    await idle.expect(error("register first: REGISTER:Nickname:IP-Address:UDP-Port"))
    joined = await scrape(server)
    # Out: a LIST to each newcomer, a JOIN to each one already there, the ERROR to idle.
    out = [plist(ALICE), plist(ALICE, BOB), join(BOB), plist(ALICE, BOB, CAROL), join(CAROL)]
    out += [join(CAROL), error("register first: REGISTER:Nickname:IP-Address:UDP-Port")]
    assert delta(start, joined) == {
        "p2pchat_participants": 3,
        "p2pchat_local_participants": 3,
        "p2pchat_connections": 4,
        "p2pchat_connections_unregistered": 1,
        "p2pchat_connections_accepted_total": 4,
        'p2pchat_messages_in_total{kind="register"}': 3,
        'p2pchat_messages_in_total{kind="list"}': 1,
        "p2pchat_joins_total": 3,
        "p2pchat_errors_sent_total": 1,
        "p2pchat_messages_out_total": len(out),
        "p2pchat_bytes_out_total": sum(map(len, out)),
    }

    # A broadcast is one message in and one delivery per receiver: the others, not its sender.
    text = "hello everyone"
    alice.send(bcast("alice", text))
    for receiver in (bob, carol):
        await receiver.expect(bcast("alice", text))
    sent = await scrape(server)
    assert delta(joined, sent) == {
        'p2pchat_messages_in_total{kind="broadcast"}': 1,
        "p2pchat_messages_out_total": 2,
        "p2pchat_bytes_out_total": 2 * len(bcast("alice", text)),
    }

    # A message that cannot be decoded is counted as bad and answered with an ERROR.
    bob.send(b"HELLO:there\r\n")
    await bob.expect(error("unknown command 'HELLO'"))
    bob.send(b"LIST\r\n")
    await bob.expect(plist(ALICE, BOB, CAROL))
    assert delta(sent, await scrape(server)) == {
        'p2pchat_messages_in_total{kind="bad"}': 1,
        'p2pchat_messages_in_total{kind="list"}': 1,
        "p2pchat_errors_sent_total": 1,
        "p2pchat_messages_out_total": 2,
        "p2pchat_bytes_out_total": len(error("unknown command 'HELLO'"))
        + len(plist(ALICE, BOB, CAROL)),
    }


async def test_a_slow_reader_dropped_is_counted(
    start_server: Callable[..., Awaitable[ChatServer]],
    connect: Connect,
    scrape: Scrape,
    small_kernel_buffers: None,
) -> None:
    server = await start_server(sendq_bytes=64 * 1024, flood_rate=0, flood_rate_bytes=0)
    alice = await connect(server, "alice")
    alice.send(register(ALICE))
    await alice.expect(plist(ALICE))
    slow = await connect(server, "slow", rcvbuf=4096, limit=1024)  # never reads
    slow.send(register(BOB))
    await alice.expect(join(BOB))
    before = await scrape(server)
    assert before['p2pchat_drops_total{reason="slow_reader"}'] == 0
    text = "x" * 16384
    for i in range(400):  # far more than 64 KiB and the kernel's buffers
        alice.send(bcast("alice", f"{i:04d}{text}"))
        await alice.drain()
        if (await scrape(server))["p2pchat_local_participants"] == 1:
            break
    await alice.expect(leave(BOB))
    alice.send(b"LIST\r\n")  # answered once every broadcast before it was read
    await alice.expect(plist(ALICE))
    after = await scrape(server)
    moved = delta(before, after)
    assert moved['p2pchat_drops_total{reason="slow_reader"}'] == 1
    assert moved["p2pchat_leaves_total"] == 1
    assert moved["p2pchat_errors_sent_total"] == 1  # the ERROR attempted before the close
    assert moved["p2pchat_participants"] == -1
    assert after["p2pchat_participants"] == 1
    # Every broadcast was counted once on the way in; none was delivered (nobody else reads).
    assert moved['p2pchat_messages_in_total{kind="broadcast"}'] == i + 1


async def test_flood_control_pauses_are_counted_and_nothing_is_lost(
    start_server: Callable[..., Awaitable[ChatServer]], connect: Connect, scrape: Scrape
) -> None:
    burst, count = 5, 30
    server = await start_server(flood_burst=burst, flood_rate=50.0)
    clients = []
    for i, entry in enumerate((ALICE, BOB)):
        client = await connect(server, entry)
        client.send(register(entry))
        await client.expect(plist(*(ALICE, BOB)[: i + 1]))
        clients.append(client)
    alice, bob = clients
    await alice.expect(join(BOB))
    before = await scrape(server)
    flood = [bcast("alice", f"flood {i}") for i in range(count)]
    alice.send(b"".join(flood))
    for message in flood:
        await bob.expect(message)
    moved = delta(before, await scrape(server))
    assert moved['p2pchat_messages_in_total{kind="broadcast"}'] == count
    assert moved["p2pchat_messages_out_total"] == count
    assert moved["p2pchat_flood_pauses_total"] >= 1  # past the burst, alice was read slower
    assert not [k for k in moved if k.startswith("p2pchat_drops_total")]  # never dropped


async def test_drops_by_reason_timeout_protocol_error_and_full(
    start_server: Callable[..., Awaitable[ChatServer]], connect: Connect, scrape: Scrape
) -> None:
    server = await start_server(max_clients=2, register_timeout=0.3)
    silent = await connect(server, "silent")
    await silent.expect(error("registration timeout: no REGISTER within 0.3 s"))
    await silent.expect_closed()
    garbage = await connect(server, "garbage")
    garbage.send(b"BROADCAST:alice:abc:hi\r\n")
    await garbage.expect(error("Length 'abc' is not a number"))
    await garbage.expect_closed()
    alice = await connect(server, "alice")
    alice.send(register(ALICE))
    await alice.expect(plist(ALICE))
    bob = await connect(server, "bob")
    bob.send(register(BOB))
    await bob.expect(plist(ALICE, BOB))
    over = await connect(server, "over")
    await over.expect(error("server is full: 2 clients; try again later"))
    await over.expect_closed()
    samples = await scrape(server)
    drops = {k: v for k, v in samples.items() if k.startswith("p2pchat_drops_total")}
    assert drops == {
        'p2pchat_drops_total{reason="slow_reader"}': 0,
        'p2pchat_drops_total{reason="register_timeout"}': 1,
        'p2pchat_drops_total{reason="protocol_error"}': 1,
        'p2pchat_drops_total{reason="server_full"}': 1,
        'p2pchat_drops_total{reason="evicted_unregistered"}': 0,
    }
    assert samples['p2pchat_messages_in_total{kind="bad"}'] == 1
    assert samples["p2pchat_errors_sent_total"] == 3
    assert samples["p2pchat_connections_accepted_total"] == 5


async def test_every_metric_is_named_and_described_the_prometheus_way(
    server: ChatServer, session: aiohttp.ClientSession, url: Callable[..., Awaitable[str]]
) -> None:
    async with session.get(await url(server, "/metrics")) as response:
        text = await response.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    ours = {name: f for name, f in families.items() if name.startswith("p2pchat_")}
    assert set(ours) == {
        "p2pchat_participants",
        "p2pchat_local_participants",
        "p2pchat_connections",
        "p2pchat_connections_unregistered",
        "p2pchat_connections_accepted",
        "p2pchat_messages_in",
        "p2pchat_messages_out",
        "p2pchat_bytes_out",
        "p2pchat_errors_sent",
        "p2pchat_joins",
        "p2pchat_leaves",
        "p2pchat_drops",
        "p2pchat_flood_pauses",
        "p2pchat_batch_pauses",
    }
    for name, family in ours.items():
        assert family.documentation, f"{name} has no HELP"
        assert family.type in ("counter", "gauge"), name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name == name + "_total", sample.name
    assert "process_cpu_seconds" in families  # the process's own, beside the server's
    # OpenMetrics, for a scraper that asks for it, ends with # EOF.
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with session.get(await url(server, "/metrics"), headers=headers) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await response.text()).endswith("# EOF\n")


async def test_health_is_200_while_serving_and_503_with_the_reasons_otherwise(
    server: ChatServer,
    session: aiohttp.ClientSession,
    url: Callable[..., Awaitable[str]],
    endpoints: dict[ChatServer, MetricsEndpoint],
) -> None:
    health = await url(server, "/health")
    async with session.get(health) as response:
        assert response.status == 200
        assert await response.text() == "ok: serving\n"
    # A check added from outside (the cluster's: Redis unreachable, behind) fails it too.
    problem: list[str] = []
    endpoints[server].health_checks.append(lambda: problem[0] if problem else None)
    problem.append("redis unreachable")
    async with session.get(health) as response:
        assert response.status == 503
        assert await response.text() == "redis unreachable\n"
    problem.clear()
    await server.close()
    async with session.get(health) as response:
        assert response.status == 503
        assert await response.text() == "not accepting connections\n"


# -- the command line -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("127.0.0.1", "'127.0.0.1': no port; give HOST:PORT, e.g. 127.0.0.1:9100"),
        (":9100", "':9100': no host; give HOST:PORT, e.g. 127.0.0.1:9100"),
        ("127.0.0.1:99999", "'127.0.0.1:99999': port must be a number from 0 to 65535"),
        ("[::1", "'[::1': missing ']' after an IPv6 address"),
    ],
)
async def test_a_bad_metrics_address_is_a_usage_error(
    programs: list[Program], value: str, reason: str
) -> None:
    p = await Program.start("p2pchat.server", "--port", "0", "--metrics", value)
    programs.append(p)
    status, err = await p.finish()
    assert status == 2
    assert err.strip().splitlines()[-1] == f"p2pchat-server: error: argument --metrics: {reason}"


async def test_exit_1_with_the_reason_when_the_metrics_port_is_taken(
    programs: list[Program],
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        taken = holder.getsockname()[1]
        p = await Program.start(
            "p2pchat.server",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--metrics",
            f"127.0.0.1:{taken}",
        )
        programs.append(p)
        status, err = await p.finish()
    assert status == 1
    assert err.strip() == (
        f"p2pchat-server: cannot listen on 127.0.0.1:{taken} (--metrics): Address already in use"
    )


async def test_the_server_program_serves_metrics_until_it_stops(
    programs: list[Program], session: aiohttp.ClientSession
) -> None:
    p = await Program.start(
        "p2pchat.server", "--host", "127.0.0.1", "--port", "0", "--metrics", "127.0.0.1:0"
    )
    programs.append(p)
    metrics = re.search(r"metrics on (http://127\.0\.0\.1:\d+/metrics)", await p.line("stderr"))
    assert metrics is not None
    listening = re.search(r"listening on 127\.0\.0\.1:(\d+)", await p.line("stderr"))
    assert listening is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", int(listening.group(1)))
    writer.write(register(ALICE))
    assert await reader.readline() == plist(ALICE)
    async with session.get(metrics.group(1)) as response:
        samples = {
            _key(s.name, s.labels): s.value
            for f in text_string_to_metric_families(await response.text())
            for s in f.samples
        }
    assert samples["p2pchat_participants"] == 1
    async with session.get(metrics.group(1).replace("/metrics", "/health")) as response:
        assert response.status == 200
    p.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        assert await p.proc.wait() == 0
    writer.close()


def test_the_server_loads_aiohttp_and_prometheus_client_only_for_metrics() -> None:
    """Without --metrics the server starts as fast as before: neither is imported."""
    assert _loaded_by("p2pchat.server", ("aiohttp", "prometheus_client")) == []
    assert "aiohttp" in _loaded_by("p2pchat.metrics", ("aiohttp", "prometheus_client"))
