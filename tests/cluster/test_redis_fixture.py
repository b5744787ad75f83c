"""The Redis fixture itself: a real redis-server of our own, without persistence,
spoken to through redis-py's asyncio client (with hiredis), as the cluster will."""

from __future__ import annotations

import asyncio
import os

import pytest
import redis
import redis.asyncio

from .conftest import RedisServer, StartRedis


@pytest.mark.parametrize("tcp", [False, True], ids=["unix-socket", "tcp"])
async def test_the_server_answers_and_streams_round_trip(
    start_redis: StartRedis, tcp: bool
) -> None:
    server = start_redis(tcp=tcp)
    client = redis.asyncio.Redis.from_url(server.url)
    reader = redis.asyncio.Redis.from_url(server.url)
    try:
        assert await client.ping() is True
        # Nothing is written to disk: a restart comes back empty.
        assert await client.config_get("save") == {"save": ""}
        assert await client.config_get("appendonly") == {"appendonly": "no"}
        first = await client.xadd("chat", {"event": b"join alice"})
        second = await client.xadd("chat", {"event": b"BROADCAST:alice:2:hi\r\n"})
        entries = await reader.xread({"chat": "0"})
        assert entries == [
            [
                b"chat",
                [
                    (first, {b"event": b"join alice"}),
                    (second, {b"event": b"BROADCAST:alice:2:hi\r\n"}),
                ],
            ]
        ]
        # A reader blocked on the stream is woken by the next entry.
        waiting = asyncio.create_task(reader.xread({"chat": second}, block=5000))
        third = await client.xadd("chat", {"event": b"leave alice"})
        async with asyncio.timeout(5):
            assert await waiting == [[b"chat", [(third, {b"event": b"leave alice"})]]]
    finally:
        await client.aclose()
        await reader.aclose()


def test_the_server_is_stopped_by_its_pid(start_redis: StartRedis) -> None:
    server: RedisServer = start_redis()
    assert server.client().ping()
    os.kill(server.pid, 0)  # alive
    server.stop()
    assert server.proc.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
    with pytest.raises(redis.ConnectionError):
        server.client().ping()


def test_hiredis_parses_the_replies() -> None:
    """The cluster's Redis traffic goes through hiredis's parser, not the pure-Python one."""
    from redis.utils import HIREDIS_AVAILABLE

    assert HIREDIS_AVAILABLE
