"""One chat served by several servers through Redis (work in progress: docs/CLUSTER.md).

``RedisSequencer`` is a ``Sequencer`` (``server_core.py``) whose global order
is a Redis Stream per chat, ``p2pchat:{NAME}:log`` (the braces keep a chat's
keys in one hash slot). Every server of the chat submits its joins, leaves
and broadcasts there through Lua scripts, each one atomic:

- a join claims the nickname (by nick_key, as one server compares them) and
  the UDP address, and appends the join; or it is refused with the very
  text one server gives;
- a leave releases both claims and appends the leave;
- a broadcast is appended only while its sender's claim is held by this server.

A reader task per server reads the stream (XREAD BLOCK) from the last entry
applied, and has the core apply every entry in stream order: its own with
their origin connection, the others' as events of other servers. A server
starting up loads the list and the stream position in one script, then reads
on from there.

While Redis cannot be reached, REGISTER and BROADCAST are refused with an
ERROR saying the chat is unavailable (nothing is applied here that the other
servers miss), leaves are kept and retried, and the reader reads on from where
it was once Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .protocol import Participant, nick_key
from .server_core import BroadcastEvent, JoinEvent, LeaveEvent, OrderedEvent, ServerCore
from .state import Remote, address_in_use, nickname_in_use

log = logging.getLogger("p2pchat.cluster")

DEFAULT_NAME = "p2pchat"
UNAVAILABLE = "the chat is unavailable: its servers cannot reach each other; try again shortly"
CLAIM_LOST = "your registration is no longer held on this chat; register again"
# How long one call to Redis may take before the chat counts as unavailable.
CALL_TIMEOUT = 2.0
READ_BLOCK_MS = 1000
READ_COUNT = 1000
RETRY_INTERVAL = 0.5
BATCH_MAX = 512  # events sent in one round trip at most
# Joins and broadcasts waiting to be sent, at most: past it (Redis slow or gone)
# they are refused at once rather than held in memory.
QUEUE_MAX = 10_000

# KEYS: log, claims (key -> node), members (key -> its join, JSON), addresses
# ARGV: key, nick, ip, port, node, submission, address
_JOIN = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return {'nick'} end
local holder = redis.call('HGET', KEYS[4], ARGV[7])
if holder then return {'address', holder} end
local id = redis.call('XADD', KEYS[1], '*', 't', 'j', 'n', ARGV[5], 's', ARGV[6],
  'nick', ARGV[2], 'ip', ARGV[3], 'port', ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode({id, ARGV[2], ARGV[3], ARGV[4], ARGV[5]}))
redis.call('HSET', KEYS[4], ARGV[7], ARGV[2])
return {'ok', id}
"""

# KEYS: log, claims, members, addresses; ARGV: key, nick, ip, port, node, address
_LEAVE = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[5] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[6])
redis.call('XADD', KEYS[1], '*', 't', 'l', 'n', ARGV[5],
  'nick', ARGV[2], 'ip', ARGV[3], 'port', ARGV[4])
return 1
"""

# KEYS: log, claims; ARGV: key, node, sender, data
_BROADCAST = """
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('XADD', KEYS[1], '*', 't', 'b', 'n', ARGV[2], 'f', ARGV[3], 'd', ARGV[4])
return 1
"""

# KEYS: log, members. The list and the position it is at, in one step.
_LOAD = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = '0-0'
if last[1] then id = last[1][1] end
return {id, redis.call('HVALS', KEYS[2])}
"""

# What counts as Redis being unreachable (anything else is a bug, and raised).
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class ClusterUnavailable(Exception):
    """Redis cannot be reached to start a cluster node."""


def _stream_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq)


def _address(participant: Participant) -> str:
    return f"{participant.ip} {participant.udp_port}"


class RedisCluster:
    """One server's membership of a chat on Redis: pass it as
    ``ChatServer(sequencer=cluster)``, then ``start()`` it before the server
    listens and ``close()`` it after the server has closed."""

    def __init__(
        self,
        url: str,
        name: str = DEFAULT_NAME,
        node_id: str | None = None,
        *,
        queue_max: int = QUEUE_MAX,
    ) -> None:
        self.url = url
        self.name = name
        self.node_id = node_id or uuid.uuid4().hex[:16]
        self.queue_max = queue_max
        self.sequencer: RedisSequencer | None = None

    def __call__(self, core: ServerCore[Any]) -> RedisSequencer:
        self.sequencer = RedisSequencer(
            core, self.url, self.name, self.node_id, queue_max=self.queue_max
        )
        return self.sequencer

    async def start(self) -> None:
        assert self.sequencer is not None, "pass it to ChatServer first"
        await self.sequencer.start()

    async def close(self, timeout: float = 3.0) -> None:
        if self.sequencer is not None:
            await self.sequencer.close(timeout)


class RedisSequencer:
    """The global order of one chat kept in a Redis Stream (see the module's docstring)."""

    def __init__(
        self,
        core: ServerCore[Any],
        url: str,
        name: str,
        node_id: str,
        *,
        queue_max: int = QUEUE_MAX,
    ) -> None:
        self.core = core
        self.queue_max = queue_max
        self.node_id = node_id
        self._node = node_id.encode()
        prefix = f"p2pchat:{{{name}}}"
        self.log_key = f"{prefix}:log"
        self._claims = f"{prefix}:claims"
        self._members = f"{prefix}:members"
        self._addresses = f"{prefix}:addresses"
        # Two clients: the reader's blocking XREAD holds its connection for a while.
        # No retries of the writer's calls: a script sent again after its link failed may
        # have run already, and would then refuse a nickname to its own holder or put a
        # broadcast twice in the order. The caller is told to try again instead.
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=CALL_TIMEOUT,
            socket_connect_timeout=CALL_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self._reader_redis = aioredis.Redis.from_url(
            url,
            socket_timeout=CALL_TIMEOUT + READ_BLOCK_MS / 1000,
            socket_connect_timeout=CALL_TIMEOUT,
        )
        self._join = self._redis.register_script(_JOIN)
        self._leave = self._redis.register_script(_LEAVE)
        self._broadcast = self._redis.register_script(_BROADCAST)
        self._load = self._redis.register_script(_LOAD)
        self.last_id = "0-0"  # the last stream entry applied here
        self._queue: asyncio.Queue[OrderedEvent[Any]] = asyncio.Queue()
        self._retry: list[LeaveEvent] = []  # leaves that could not be written yet
        # Joins submitted here and not yet applied, by their submission number.
        self._origins: dict[bytes, JoinEvent[Any]] = {}
        self._submissions = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.reachable = True

    # -- the Sequencer ---------------------------------------------------------------

    def submit(self, event: OrderedEvent[Any]) -> None:
        if self._queue.qsize() >= self.queue_max and not isinstance(event, LeaveEvent):
            self.core.refuse(event, UNAVAILABLE)  # leaves always wait: claims must go
            return
        # One writer, in submission order: this server's events keep their order.
        self._queue.put_nowait(event)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Loads the list and the stream's position, then reads and writes on from there."""
        try:
            last, members = await self._load(keys=[self.log_key, self._members])
        except _UNREACHABLE as error:
            await self._close_clients()
            raise ClusterUnavailable(f"cannot reach Redis: {error}") from error
        self.last_id = last.decode()
        joins = [json.loads(m) for m in members]
        joins.sort(key=lambda j: _stream_id(j[0]))
        for _, nick, ip, port, _node in joins:
            self.core.apply(JoinEvent(Participant(nick, ip, int(port))))
        log.info(
            "node %s joined chat %s: %d participants, at %s",
            self.node_id,
            self.log_key,
            len(joins),
            self.last_id,
        )
        self._tasks = [
            asyncio.create_task(self._read(), name="p2pchat-cluster-reader"),
            asyncio.create_task(self._write(), name="p2pchat-cluster-writer"),
        ]

    async def close(self, timeout: float = 3.0) -> None:
        """Writes what was submitted (the leaves of a closing server), then stops."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
        self._closing = True
        for task in self._tasks:
            task.cancel()
        # A cancelled XREAD may go on in redis-py: closing its link ends it, and the
        # reader then stops on seeing _closing.
        await self._reader_redis.connection_pool.disconnect()
        await asyncio.wait(self._tasks, timeout=timeout)
        self._tasks = []
        await self._close_clients()

    async def _close_clients(self) -> None:
        await self._redis.aclose()
        await self._reader_redis.aclose()

    def _set_reachable(self, reachable: bool, error: BaseException | None = None) -> None:
        if reachable != self.reachable:
            self.reachable = reachable
            if reachable:
                log.warning("Redis reachable again")
            else:
                log.warning("Redis unreachable: %s", error)

    # -- writing ---------------------------------------------------------------------

    async def _write(self) -> None:
        queue = self._queue
        while True:
            if self._retry:
                try:
                    first = await asyncio.wait_for(queue.get(), RETRY_INTERVAL)
                except TimeoutError:
                    await self._retry_leaves()
                    continue
                await self._retry_leaves()
            else:
                first = await queue.get()
            # Whatever else is waiting goes in the same round trip, in order.
            batch = [first]
            while len(batch) < BATCH_MAX and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._send(batch)
                self._set_reachable(True)
            except _UNREACHABLE as error:
                self._set_reachable(False, error)
                for event in batch:
                    self._unsent(event)
            finally:
                for _ in batch:
                    queue.task_done()

    async def _retry_leaves(self) -> None:
        while self._retry:
            try:
                await self._send(self._retry[:1])
            except _UNREACHABLE:
                return
            del self._retry[0]
        self._set_reachable(True)

    def _unsent(self, event: OrderedEvent[Any]) -> None:
        """``event`` could not be written (it may have been, its answer lost)."""
        if isinstance(event, LeaveEvent):
            self._retry.append(event)  # the claims must go, or the nickname stays taken
            return
        if isinstance(event, JoinEvent):
            for number, join in list(self._origins.items()):
                if join is event:
                    # Written after all? Its entry then finds no origin, and leaves.
                    del self._origins[number]
        self.core.refuse(event, UNAVAILABLE)

    async def _send(self, batch: Sequence[OrderedEvent[Any]]) -> None:
        """Runs each event's script, in order, in one round trip (a pipeline, not a
        transaction: each script is atomic by itself), and acts on each answer."""
        pipe = self._redis.pipeline(transaction=False)
        numbers: list[bytes] = []
        for event in batch:
            if isinstance(event, BroadcastEvent):
                args: list[str | int | bytes] = [
                    nick_key(event.sender),
                    self._node,
                    event.sender,
                    event.data,
                ]
                await self._broadcast(keys=[self.log_key, self._claims], args=args, client=pipe)
                continue
            p = event.participant
            keys = [self.log_key, self._claims, self._members, self._addresses]
            if isinstance(event, JoinEvent):
                self._submissions += 1
                number = str(self._submissions).encode()
                self._origins[number] = event
                numbers.append(number)
                args = [p.key, p.nick, p.ip, p.udp_port, self._node, number, _address(p)]
                await self._join(keys=keys, args=args, client=pipe)
            else:
                args = [p.key, p.nick, p.ip, p.udp_port, self._node, _address(p)]
                await self._leave(keys=keys, args=args, client=pipe)
        answers = await pipe.execute()
        joins = iter(numbers)
        for event, answer in zip(batch, answers, strict=True):
            if isinstance(event, BroadcastEvent):
                if not answer:
                    self.core.refuse(event, CLAIM_LOST)
            elif isinstance(event, JoinEvent):
                number = next(joins)
                if answer[0] != b"ok":
                    del self._origins[number]
                    p = event.participant
                    if answer[0] == b"nick":
                        reason = nickname_in_use(p)
                    else:
                        reason = address_in_use(p, answer[1].decode())
                    self.core.refuse(event, reason)
            elif not answer:
                log.warning(
                    "leave of %s: its claim is not held by this node", event.participant.nick
                )

    # -- reading ---------------------------------------------------------------------

    async def _read(self) -> None:
        while not self._closing:
            try:
                answer: Any = await self._reader_redis.xread(
                    {self.log_key: self.last_id}, count=READ_COUNT, block=READ_BLOCK_MS
                )
            except _UNREACHABLE as error:
                if self._closing:
                    return
                self._set_reachable(False, error)
                await asyncio.sleep(RETRY_INTERVAL)
                continue
            streams = answer.values() if isinstance(answer, dict) else (s[1] for s in answer)
            for entries in streams:
                for entry_id, fields in entries:
                    self.last_id = entry_id.decode()
                    self._apply(fields)

    def _apply(self, fields: dict[bytes, bytes]) -> None:
        kind = fields[b"t"]
        mine = fields[b"n"] == self._node
        if kind == b"b":
            sender = fields[b"f"].decode()
            origin = None
            if mine:
                # Its sender holds the claim here (the script checked) and is on the list
                # until its leave, which comes later in the stream.
                holder = self.core.registry.holder(nick_key(sender))
                origin = None if isinstance(holder, Remote) else holder
            self.core.apply(BroadcastEvent(sender, fields[b"d"], origin))
            return
        participant = Participant(
            fields[b"nick"].decode(), fields[b"ip"].decode(), int(fields[b"port"])
        )
        if kind == b"j":
            join = self._origins.pop(fields[b"s"], None) if mine else None
            if join is not None:
                self.core.apply(join)
            else:
                self.core.apply(JoinEvent(participant))
                if mine:
                    # Written although refused here (its answer was lost): it leaves.
                    self.submit(LeaveEvent(participant))
        elif kind == b"l":
            self.core.apply(LeaveEvent(participant))
        else:
            log.warning("unknown entry in %s: %r", self.log_key, fields)
