"""One chat served by several servers through Redis (docs/CLUSTER.md).

``RedisSequencer`` is a ``Sequencer`` (``server_core.py``) whose global order
is a Redis Stream per chat, ``p2pchat:{NAME}:log`` (the braces keep a chat's
keys in one hash slot). Every server of the chat submits its joins, leaves
and broadcasts there in batches, through one Lua script that is atomic and
does nothing past the batch's deadline:

- a join claims the nickname (by nick_key, as one server compares them) and
  the UDP address, and appends the join; or it is refused with the very
  text one server gives;
- a leave releases both claims and appends the leave;
- a broadcast is appended only while its sender's claim is held by this server.

A reader task per server reads the stream (XREAD BLOCK) from the last entry
applied, and has the core apply every entry in stream order: its own with
their origin connection, the others' as events of other servers. A server
starting up loads the list and the stream position in one script, then reads
on from there. A heartbeat task keeps this server alive in Redis, sweeps the
servers whose heartbeats stopped, and notices when Redis lost the chat's keys.

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
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
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
# A batch that reaches Redis this long after it was sent does nothing: the answer of
# one that runs has time to come back before the node gives up at CALL_TIMEOUT.
LATE_AFTER = 1.0
READ_BLOCK_MS = 1000
READ_COUNT = 1000
RETRY_INTERVAL = 0.5
BATCH_MAX = 512  # events sent in one round trip at most
# A node whose heartbeat Redis has not seen for this long is declared dead by the
# others: its participants leave. It beats five times in that time.
NODE_TIMEOUT = 5.0
DROPPED = (
    "this server lost touch with the chat for too long, and the chat dropped your "
    "registration; connect again"
)
# Joins and broadcasts waiting to be sent, at most: past it (Redis slow or gone)
# they are refused at once rather than held in memory.
QUEUE_MAX = 10_000

# KEYS: log, claims (nickname key -> node), members (key -> its join, JSON), addresses
# ARGV: this node, the deadline (Redis's clock, ms), then one record after another,
# each an operation and its values:
#   b key sender data                  a broadcast, appended only while this node holds
#                                      the sender's claim                    -> 1 or 0
#   j key nick ip port number address  a join: claims the nickname and the address
#                                      -> {'ok', id}, {'nick'} or {'address', holder}
#   l key nick ip port address         a leave, only if this node holds the claim -> 1/0
#   r key nick ip port address         a claim again after Redis lost the keys -> 1/0
#   p key nick ip port                 a leave of a participant nobody claimed -> 1/0
# Everything a node has to send goes in one call: one round trip, each record applied
# in order, and the whole batch atomic. Past its deadline it does nothing and answers
# 'late': the node has given up waiting and told the senders to try again, so a batch
# Redis gets to only later (it was paused, say) must not run then.
_BATCH = """
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[2]) then
  return 'late'
end
local node = ARGV[1]
local out = {}
local i = 3
local function claim(key, nick, ip, port, address, s, why)
  local id = redis.call('XADD', KEYS[1], '*', 't', 'j', 'n', node, 's', s, 'w', why,
    'nick', nick, 'ip', ip, 'port', port)
  redis.call('HSET', KEYS[2], key, node)
  redis.call('HSET', KEYS[3], key, cjson.encode({id, nick, ip, port, node}))
  redis.call('HSET', KEYS[4], address, nick)
  return id
end
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'b' then
    if redis.call('HGET', KEYS[2], ARGV[i + 1]) == node then
      redis.call('XADD', KEYS[1], '*', 't', 'b', 'n', node, 'f', ARGV[i + 2], 'd', ARGV[i + 3])
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
    i = i + 4
  elseif op == 'j' then
    local key, address = ARGV[i + 1], ARGV[i + 6]
    local holder = redis.call('HGET', KEYS[4], address)
    if redis.call('HEXISTS', KEYS[2], key) == 1 then
      out[#out + 1] = {'nick'}
    elseif holder then
      out[#out + 1] = {'address', holder}
    else
      local id = claim(key, ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], address, ARGV[i + 5], '')
      out[#out + 1] = {'ok', id}
    end
    i = i + 7
  elseif op == 'l' then
    local key = ARGV[i + 1]
    if redis.call('HGET', KEYS[2], key) == node then
      redis.call('HDEL', KEYS[2], key)
      redis.call('HDEL', KEYS[3], key)
      redis.call('HDEL', KEYS[4], ARGV[i + 5])
      redis.call('XADD', KEYS[1], '*', 't', 'l', 'n', node, 'w', '',
        'nick', ARGV[i + 2], 'ip', ARGV[i + 3], 'port', ARGV[i + 4])
      out[#out + 1] = 1
    else
      out[#out + 1] = 0
    end
    i = i + 6
  elseif op == 'r' then
    local key, nick, address = ARGV[i + 1], ARGV[i + 2], ARGV[i + 5]
    local holder = redis.call('HGET', KEYS[2], key)
    local at = redis.call('HGET', KEYS[4], address)
    if holder == node then
      out[#out + 1] = 1
    elseif holder or (at and at ~= nick) then
      out[#out + 1] = 0
    else
      claim(key, nick, ARGV[i + 3], ARGV[i + 4], address, '', 'r')
      out[#out + 1] = 1
    end
    i = i + 6
  elseif op == 'p' then
    if redis.call('HEXISTS', KEYS[2], ARGV[i + 1]) == 1 then
      out[#out + 1] = 0
    else
      redis.call('XADD', KEYS[1], '*', 't', 'l', 'n', node, 'w', 'p',
        'nick', ARGV[i + 2], 'ip', ARGV[i + 3], 'port', ARGV[i + 4])
      out[#out + 1] = 1
    end
    i = i + 5
  else
    return redis.error_reply('unknown operation ' .. tostring(op))
  end
end
return out
"""

# Stream ids compared as numbers (Redis's Lua numbers hold a millisecond time exactly).
_OLDER = """
local function older(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
"""

# KEYS: log, members, nodes, epoch; ARGV: prefix, node, ttl ms, a fresh epoch.
# The list and the position it is at, in one step; the node is alive from then on,
# and its position keeps the stream from being trimmed past it.
_LOAD = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = '0-0'
if last[1] then id = last[1][1] end
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[4], epoch)
end
redis.call('SET', ARGV[1] .. ':alive:' .. ARGV[2], '1', 'PX', ARGV[3])
redis.call('HSET', KEYS[3], ARGV[2], id)
return {id, redis.call('HVALS', KEYS[2]), epoch}
"""

# KEYS: log, claims, members, addresses, nodes, epoch, trimmed, beats, steady
# ARGV: prefix, node, ttl ms, the epoch this node knows, a fresh epoch, its position,
# the interval between heartbeats in ms
# A node's heartbeat, and the sweep of the nodes whose heartbeats stopped: their
# participants leave, in join order. Running it twice does nothing more. Returns
# {status, epoch, participants swept, nodes swept...}; status is 'lost' when the
# chat's keys are gone (Redis restarted empty), 'swept' when this node was declared
# dead, 'behind' when besides the stream was trimmed past its position.
_HEARTBEAT = (
    _OLDER
    + """
local alive = ARGV[1] .. ':alive:'
local status = 'ok'
local epoch = redis.call('GET', KEYS[6])
if not epoch then
  epoch = ARGV[5]
  redis.call('SET', KEYS[6], epoch)
end
if epoch ~= ARGV[4] then
  status = 'lost'
elseif redis.call('HEXISTS', KEYS[5], ARGV[2]) == 0 then
  status = 'swept'
  local trimmed = redis.call('GET', KEYS[7])
  if trimmed and older(ARGV[6], trimmed) then status = 'behind' end
end
-- A node sweeps only once it has beaten without a gap for a whole timeout: after
-- a stall (Redis paused, or this node), the others get as long to beat again
-- before anyone is declared dead for the silence.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local last = tonumber(redis.call('HGET', KEYS[8], ARGV[2]) or '0')
local since = tonumber(redis.call('HGET', KEYS[9], ARGV[2]) or now)
if now - last > 2 * tonumber(ARGV[7]) then since = now end
redis.call('HSET', KEYS[8], ARGV[2], now)
redis.call('HSET', KEYS[9], ARGV[2], since)
local steady = now - since >= tonumber(ARGV[3])
redis.call('SET', alive .. ARGV[2], '1', 'PX', ARGV[3])
redis.call('HSET', KEYS[5], ARGV[2], ARGV[6])
local nodes = redis.call('HGETALL', KEYS[5])
local dead, swept_nodes, low = {}, {}, nil
for i = 1, #nodes, 2 do
  if steady and redis.call('EXISTS', alive .. nodes[i]) == 0 then
    dead[nodes[i]] = true
    table.insert(swept_nodes, nodes[i])
    redis.call('HDEL', KEYS[5], nodes[i])
    redis.call('HDEL', KEYS[8], nodes[i])
    redis.call('HDEL', KEYS[9], nodes[i])
  elseif low == nil or older(nodes[i + 1], low) then
    low = nodes[i + 1]
  end
end
local swept = 0
if #swept_nodes > 0 then
  local gone = {}
  local members = redis.call('HGETALL', KEYS[3])
  for i = 1, #members, 2 do
    local m = cjson.decode(members[i + 1])
    if dead[m[5]] then table.insert(gone, {members[i], m}) end
  end
  table.sort(gone, function(x, y) return older(x[2][1], y[2][1]) end)
  for _, g in ipairs(gone) do
    local m = g[2]
    redis.call('HDEL', KEYS[2], g[1])
    redis.call('HDEL', KEYS[3], g[1])
    redis.call('HDEL', KEYS[4], m[3] .. ' ' .. m[4])
    redis.call('XADD', KEYS[1], '*', 't', 'l', 'n', m[5], 'w', 'd',
      'nick', m[2], 'ip', m[3], 'port', m[4])
    swept = swept + 1
  end
end
-- What every live node has applied is needed no more (a node starting up loads the
-- list, not the stream).
if low ~= nil and low ~= '0-0' then
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if first[1] and older(first[1][1], low) then
    redis.call('XTRIM', KEYS[1], 'MINID', low)
    redis.call('SET', KEYS[7], low)
  end
end
local answer = {status, epoch, swept, now}
for _, n in ipairs(swept_nodes) do table.insert(answer, n) end
return answer
"""
)

# What counts as Redis being unreachable. An error Redis answers with (out of
# memory, a write refused, still loading) counts too: the chat cannot go on
# through it, and a task ended by it would leave the node deaf or mute.
_UNREACHABLE = (RedisError, OSError)


@dataclass(frozen=True, slots=True)
class _Reclaim:
    """Claim a participant of this node again (Redis lost the chat's keys)."""

    participant: Participant


@dataclass(frozen=True, slots=True)
class _Purge:
    """Say that a participant nobody claimed again has left."""

    participant: Participant


_Work = OrderedEvent[Any] | _Reclaim | _Purge


@dataclass(slots=True)
class ClusterStats:
    """What a node's link to the chat has been through, for its metrics."""

    link_failures: int = 0  # calls to Redis that failed or timed out
    unavailable_refusals: int = 0  # REGISTERs and BROADCASTs refused for that
    claims_lost: int = 0  # BROADCASTs refused: the sender's claim was gone
    entries_applied: int = 0  # stream entries applied, every node's
    nodes_swept: int = 0  # other nodes this node declared dead
    participants_swept: int = 0  # their participants, dropped by this node's sweeps
    dropped: int = 0  # local participants dropped: this node was declared dead
    state_lost: int = 0  # times Redis had lost the chat's keys
    reclaimed: int = 0  # participants claimed again after that
    reloads: int = 0  # times the list was loaded again (the stream moved on without it)


class ClusterUnavailable(Exception):
    """Redis cannot be reached to start a cluster node."""


async def _kept(work: Callable[[], Awaitable[None]], sequencer: RedisSequencer) -> None:
    """Runs one of a node's tasks, and again if a bug ends it: a node whose reader,
    writer or heartbeat stopped would be deaf, mute or declared dead while it serves."""
    while not sequencer._closing:
        try:
            await work()
            return
        except Exception:
            log.exception("%s failed; starting it again", work.__name__)
            await asyncio.sleep(RETRY_INTERVAL)


def _as_is(response: Any, **options: Any) -> Any:
    return response


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
        node_timeout: float = NODE_TIMEOUT,
    ) -> None:
        if node_timeout <= 0:
            raise ValueError("the node timeout must be positive")
        self.url = url
        self.name = name
        self.node_id = node_id or uuid.uuid4().hex[:16]
        self.queue_max = queue_max
        self.node_timeout = node_timeout
        self.sequencer: RedisSequencer | None = None

    def __call__(self, core: ServerCore[Any]) -> RedisSequencer:
        self.sequencer = RedisSequencer(
            core,
            self.url,
            self.name,
            self.node_id,
            queue_max=self.queue_max,
            node_timeout=self.node_timeout,
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
        node_timeout: float = NODE_TIMEOUT,
    ) -> None:
        self.core = core
        self.queue_max = queue_max
        self.node_id = node_id
        self.node_timeout = node_timeout
        self.stats = ClusterStats()
        self._node = node_id.encode()
        self._prefix = f"p2pchat:{{{name}}}"
        prefix = self._prefix
        self.log_key = f"{prefix}:log"
        self._claims = f"{prefix}:claims"
        self._members = f"{prefix}:members"
        self._addresses = f"{prefix}:addresses"
        self._nodes = f"{prefix}:nodes"
        self._epoch_key = f"{prefix}:epoch"
        self._trimmed = f"{prefix}:trimmed"
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
            retry=Retry(NoBackoff(), 0),
        )
        # Scripts are called as they are, never in a pipeline: redis-py asks SCRIPT EXISTS
        # before every pipeline holding one, a second round trip.
        self._batch = self._redis.register_script(_BATCH)
        self._heartbeat = self._redis.register_script(_HEARTBEAT)
        self._load = self._redis.register_script(_LOAD)
        self._reader_load = self._reader_redis.register_script(_LOAD)
        # Every node reads every entry: hiredis's answer as it is, not made into dicts.
        self._reader_redis.set_response_callback("XREAD", _as_is)
        self.last_id = "0-0"  # the last stream entry applied here
        self.epoch = b""  # which life of the chat's keys this node knows
        self._queue: asyncio.Queue[_Work] = asyncio.Queue()
        # Leaves and purges that could not be written yet: tried again until they are.
        self._retry: list[LeaveEvent | _Purge] = []
        # Participants whose leave was submitted here and not yet applied: gone, though
        # still listed, and never to be claimed again.
        self._leaving: set[Participant] = set()
        # Held while a batch is on its way, and while the list is loaded again: a batch
        # written meanwhile could fall before the loaded position, and never be read.
        self._sending = asyncio.Lock()
        # Joins submitted here and not yet applied, by their submission number.
        self._origins: dict[bytes, JoinEvent[Any]] = {}
        self._submissions = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._reload = False  # the reader is to load the list again
        self._purge_timer: asyncio.TimerHandle | None = None
        self.reachable = True
        # For the metrics and the health check: when Redis last took a heartbeat
        # (time.time()), and when the reader last had applied every entry
        # (time.monotonic()), and whether it has since.
        self.last_heartbeat: float | None = None
        self._clock_offset = 0.0  # Redis's clock (ms) minus time.monotonic() (ms)
        self.caught_up_at = time.monotonic()
        self.caught_up = False

    def _set_offset(self, redis_ms: int, sent: float, answered: float) -> None:
        """Redis's clock against this node's monotonic one, from a call that read it: the
        batch script's deadline is given in Redis's time (to half a round trip)."""
        self._clock_offset = redis_ms - (sent + answered) / 2 * 1000

    def _deadline(self) -> int:
        """Redis's time past which a batch sent now must not run: well before this node
        gives up waiting for its answer (CALL_TIMEOUT)."""
        return int(time.monotonic() * 1000 + self._clock_offset + LATE_AFTER * 1000)

    def lag(self, now: float) -> float:
        """How long this node may have been behind the global order at monotonic time
        ``now``: 0 while it has read everything, else since it last had."""
        if self.caught_up and self.reachable:
            return 0.0
        return max(0.0, now - self.caught_up_at)

    # -- the Sequencer ---------------------------------------------------------------

    def submit(self, event: OrderedEvent[Any]) -> None:
        if self._queue.qsize() >= self.queue_max and not isinstance(event, LeaveEvent):
            self._refuse(event, UNAVAILABLE)  # leaves always wait: claims must go
            return
        if isinstance(event, LeaveEvent):
            self._leaving.add(event.participant)
        # One writer, in submission order: this server's events keep their order.
        self._queue.put_nowait(event)

    def _refuse(self, event: JoinEvent[Any] | BroadcastEvent[Any], reason: str) -> None:
        if reason is UNAVAILABLE:
            self.stats.unavailable_refusals += 1
        elif reason is CLAIM_LOST:
            self.stats.claims_lost += 1
        self.core.refuse(event, reason)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Loads the list and the stream's position, then reads and writes on from there."""
        try:
            sent = time.monotonic()
            seconds, micros = await self._redis.time()
            self._set_offset(seconds * 1000 + micros // 1000, sent, time.monotonic())
            joins = await self._load_list(self._load)
        except _UNREACHABLE as error:
            await self._close_clients()
            raise ClusterUnavailable(f"cannot reach Redis: {error}") from error
        self.last_heartbeat = time.time()
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
            asyncio.create_task(_kept(self._read, self), name="p2pchat-cluster-reader"),
            asyncio.create_task(_kept(self._write, self), name="p2pchat-cluster-writer"),
            asyncio.create_task(_kept(self._beat, self), name="p2pchat-cluster-heartbeat"),
        ]

    async def _load_list(self, load: Any) -> list[list[str]]:
        """The chat's list in join order; sets the position it is at and the epoch."""
        ttl = str(int(self.node_timeout * 1000))
        last, members, epoch = await load(
            keys=[self.log_key, self._members, self._nodes, self._epoch_key],
            args=[self._prefix, self.node_id, ttl, uuid.uuid4().hex],
        )
        self.last_id = last.decode()
        self.epoch = epoch
        joins: list[list[str]] = [json.loads(m) for m in members]
        joins.sort(key=lambda j: _stream_id(j[0]))
        return joins

    async def close(self, timeout: float = 3.0) -> None:
        """Writes what was submitted (the leaves of a closing server), then stops."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), timeout)
        self._closing = True
        if self._purge_timer is not None:
            self._purge_timer.cancel()
        for task in self._tasks:
            task.cancel()
        # A cancelled XREAD may go on in redis-py: closing its link ends it, and the
        # reader then stops on seeing _closing.
        await self._reader_redis.connection_pool.disconnect()
        await asyncio.wait(self._tasks, timeout=timeout)
        self._tasks = []
        if self.last_heartbeat is not None:
            # Gone on purpose: the others sweep it at their next heartbeat rather than
            # after the node timeout, with whatever claims its leaves could not release.
            with contextlib.suppress(*_UNREACHABLE):
                await self._redis.delete(f"{self._prefix}:alive:{self.node_id}")
        await self._close_clients()

    async def _close_clients(self) -> None:
        await self._redis.aclose()
        await self._reader_redis.aclose()

    def _set_reachable(self, reachable: bool, error: BaseException | None = None) -> None:
        if not reachable:
            self.stats.link_failures += 1
        if reachable != self.reachable:
            self.reachable = reachable
            if reachable:
                log.warning("Redis reachable again")
            else:
                log.warning("Redis unreachable: %s", error)

    # -- liveness --------------------------------------------------------------------

    async def _beat(self) -> None:
        """Tells Redis this node is alive, five times per node timeout, and sweeps
        the nodes whose heartbeats stopped (any node may; the script does it once)."""
        interval = self.node_timeout / 5
        ttl = str(int(self.node_timeout * 1000))
        keys = [
            self.log_key,
            self._claims,
            self._members,
            self._addresses,
            self._nodes,
            self._epoch_key,
            self._trimmed,
            f"{self._prefix}:beats",
            f"{self._prefix}:steady",
        ]
        while True:
            started = time.monotonic()
            try:
                sent = time.monotonic()
                status, epoch, swept, redis_now, *dead = await self._heartbeat(
                    keys=keys,
                    args=[
                        self._prefix,
                        self.node_id,
                        ttl,
                        self.epoch,
                        uuid.uuid4().hex,
                        self.last_id,
                        str(int(interval * 1000)),
                    ],
                )
            except _UNREACHABLE as error:
                self._set_reachable(False, error)
            else:
                self._set_offset(redis_now, sent, time.monotonic())
                self.last_heartbeat = time.time()
                self._set_reachable(True)
                if dead:
                    self.stats.nodes_swept += len(dead)
                    self.stats.participants_swept += swept
                    log.log(
                        logging.WARNING if swept else logging.INFO,
                        "node %s gone (stopped, or no heartbeat for %.1f s): %d participants leave",
                        ", ".join(d.decode() for d in dead),
                        self.node_timeout,
                        swept,
                    )
                self._on_status(status, epoch)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    def _on_status(self, status: bytes, epoch: bytes) -> None:
        if status == b"ok":
            return
        if status == b"lost":
            self._lost(epoch)
        elif status == b"swept":
            # Its participants' leaves are in the stream: the reader drops them.
            log.warning("this node was declared dead by the others; its participants leave")
        elif status == b"behind":
            log.warning(
                "this node was declared dead and the order moved on without it; "
                "dropping its participants and loading the list again"
            )
            self._reload = True

    def _lost(self, epoch: bytes) -> None:
        """Redis lost the chat's keys (restarted empty): claim this node's participants
        again, in join order; after a node timeout (every live node has noticed and
        claimed its own), the remote participants nobody claimed leave."""
        self.stats.state_lost += 1
        self.epoch = epoch
        log.warning("Redis lost the chat's state: claiming this node's participants again")
        # Joins sent to the Redis that was: their entries are gone with it.
        for join in list(self._origins.values()):
            self._refuse(join, UNAVAILABLE)
        self._origins.clear()
        for holder, participant in self.core.registry.items():
            if not isinstance(holder, Remote) and participant not in self._leaving:
                self._queue.put_nowait(_Reclaim(participant))
        if self._purge_timer is not None:
            self._purge_timer.cancel()
        self._purge_timer = asyncio.get_running_loop().call_later(
            self.node_timeout, self._purge_unclaimed
        )

    def _purge_unclaimed(self) -> None:
        self._purge_timer = None
        for holder, participant in self.core.registry.items():
            if isinstance(holder, Remote):
                self._queue.put_nowait(_Purge(participant))

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
                async with self._sending:
                    await self._send(batch)
                self._set_reachable(True)
            except _UNREACHABLE as error:
                self._set_reachable(False, error)
                for event in batch:
                    self._unsent(event)
            except Exception:  # a bug: its senders are told, and the node goes on
                log.exception("sending to Redis failed")
                for event in batch:
                    self._unsent(event)
            finally:
                for _ in batch:
                    queue.task_done()

    async def _retry_leaves(self) -> None:
        while self._retry:
            try:
                async with self._sending:
                    await self._send(self._retry[:1])
            except _UNREACHABLE:
                return
            del self._retry[0]
        self._set_reachable(True)

    def _unsent(self, event: _Work) -> None:
        """``event`` could not be written (it may have been, its answer lost)."""
        if isinstance(event, LeaveEvent):
            self._retry.append(event)  # the claims must go, or the nickname stays taken
            return
        if isinstance(event, _Purge):
            self._retry.append(event)  # else its participant may stay listed elsewhere
            return
        if isinstance(event, _Reclaim):
            # Not claimed again: the others will purge it, so it leaves here too.
            log.warning("could not claim %s again: Redis unreachable", event.participant.nick)
            self._drop(event.participant)
            return
        if isinstance(event, JoinEvent):
            for number, join in list(self._origins.items()):
                if join is event:
                    # Written after all? Its entry then finds no origin, and leaves.
                    del self._origins[number]
        self._refuse(event, UNAVAILABLE)

    async def _send(self, batch: Sequence[_Work]) -> None:
        """Runs the batch script on ``batch`` (one round trip, each record in order), and
        acts on each answer."""
        args: list[str | int | bytes] = [self._node, self._deadline()]
        numbers: list[bytes] = []
        for event in batch:
            if isinstance(event, BroadcastEvent):
                args += (b"b", nick_key(event.sender), event.sender, event.data)
                continue
            p = event.participant
            if isinstance(event, JoinEvent):
                self._submissions += 1
                number = str(self._submissions).encode()
                self._origins[number] = event
                numbers.append(number)
                args += (b"j", p.key, p.nick, p.ip, p.udp_port, number, _address(p))
            elif isinstance(event, LeaveEvent):
                args += (b"l", p.key, p.nick, p.ip, p.udp_port, _address(p))
            elif isinstance(event, _Reclaim):
                args += (b"r", p.key, p.nick, p.ip, p.udp_port, _address(p))
            else:
                args += (b"p", p.key, p.nick, p.ip, p.udp_port)
        keys = [self.log_key, self._claims, self._members, self._addresses]
        answers = await self._batch(keys=keys, args=args)
        if answers == b"late":
            for number in numbers:
                self._origins.pop(number, None)
            raise RedisTimeoutError("Redis took the batch too late: it did nothing")
        joins = iter(numbers)
        for event, answer in zip(batch, answers, strict=True):
            if isinstance(event, BroadcastEvent):
                if not answer:
                    self._refuse(event, CLAIM_LOST)
            elif isinstance(event, JoinEvent):
                number = next(joins)
                if answer[0] != b"ok":
                    # Gone already if Redis lost the keys meanwhile (_lost refused it).
                    self._origins.pop(number, None)
                    p = event.participant
                    if answer[0] == b"nick":
                        reason = nickname_in_use(p)
                    else:
                        reason = address_in_use(p, answer[1].decode())
                    self._refuse(event, reason)
            elif isinstance(event, LeaveEvent):
                if not answer:
                    self._unclaimed_leave(event.participant)
            elif isinstance(event, _Reclaim):
                if answer:
                    self.stats.reclaimed += 1
                else:
                    # Claimed by somebody else meanwhile: this one is off the list here
                    # (elsewhere it was, or is, by the others' purge).
                    log.warning("could not claim %s again: taken", event.participant.nick)
                    self._drop(event.participant)

    def _unclaimed_leave(self, participant: Participant) -> None:
        """A leave found its claim gone (Redis lost the keys, or this node was swept): no
        entry says it left, so it leaves here at once, and the others hear of it by a
        purge (which does nothing if the nickname is held again meanwhile)."""
        log.info("leave of %s: its claim is no longer this node's", participant.nick)
        self._leaving.discard(participant)
        holder = self.core.registry.holder(participant.key)
        if holder is not None and self.core.registry.get(holder) == participant:
            self.core.apply(LeaveEvent(participant))
        self._queue.put_nowait(_Purge(participant))

    def _drop(self, participant: Participant) -> None:
        holder = self.core.registry.holder(participant.key)
        if holder is not None and not isinstance(holder, Remote):
            self.stats.dropped += 1
            self.core.apply(LeaveEvent(participant, DROPPED))

    # -- reading ---------------------------------------------------------------------

    async def _read(self) -> None:
        while not self._closing:
            try:
                if self._reload:
                    await self._reload_list()
                answer: Any = await self._reader_redis.xread(
                    {self.log_key: self.last_id}, count=READ_COUNT, block=READ_BLOCK_MS
                )
            except _UNREACHABLE as error:
                if self._closing:
                    return
                self.caught_up = False
                self._set_reachable(False, error)
                await asyncio.sleep(RETRY_INTERVAL)
                continue
            read = 0
            # {stream: [[id, [field, value, ...]], ...]} (RESP3, or redis-py 8 with
            # RESP2), [[stream, [...]]] (older RESP2), or None when nothing came.
            if not answer:
                streams: Any = ()
            elif isinstance(answer, dict):
                streams = answer.values()
            else:
                streams = (stream[1] for stream in answer)
            for entries in streams:
                apply = self._apply
                for entry_id, fields in entries:
                    try:
                        apply(fields)
                    except Exception:  # written by something else: skipped, not fatal
                        log.exception("entry %s of %s skipped", entry_id, self.log_key)
                if entries:
                    self.last_id = entries[-1][0].decode()
                read += len(entries)
            self.stats.entries_applied += read
            if read < READ_COUNT:
                self.caught_up = True
                self.caught_up_at = time.monotonic()
            else:
                self.caught_up = False

    async def _reload_list(self) -> None:
        """The stream was trimmed past what this node applied (it was declared dead and
        stayed away): its participants were dropped by the others, so they are dropped
        here too, and the list is loaded again as a starting node loads it."""
        self.stats.reloads += 1
        for holder, participant in list(self.core.registry.items()):
            if isinstance(holder, Remote):
                self.core.apply(LeaveEvent(participant))
            else:
                self.stats.dropped += 1
                self.core.apply(LeaveEvent(participant, DROPPED))
        async with self._sending:  # no batch of this node's falls before the position
            joins = await self._load_list(self._reader_load)
            # Joins sent before the load have their entries behind its position: they
            # are never read, so their connections are refused.
            for join in list(self._origins.values()):
                self._refuse(join, UNAVAILABLE)
            self._origins.clear()
        self._reload = False
        for _, nick, ip, port, node in joins:
            participant = Participant(nick, ip, int(port))
            self.core.apply(JoinEvent(participant))
            if node == self.node_id:
                # Claimed for one of its own who is gone from here: its leave frees it.
                self.submit(LeaveEvent(participant))

    def _apply(self, entry: list[bytes]) -> None:
        """One stream entry, its fields and values in turn; a broadcast's are
        t b n NODE f SENDER d DATA (the batch script writes them so)."""
        if entry[1] == b"b":
            sender = entry[5].decode()
            origin = None
            if entry[3] == self._node:
                # Its sender holds the claim here (the script checked) and is on the list
                # until its leave, which comes later in the stream.
                holder = self.core.registry.holder(nick_key(sender))
                origin = None if isinstance(holder, Remote) else holder
            self.core.apply(BroadcastEvent(sender, entry[7], origin))
            return
        fields = dict(zip(entry[::2], entry[1::2], strict=True))
        kind = fields[b"t"]
        mine = fields[b"n"] == self._node
        participant = Participant(
            fields[b"nick"].decode(), fields[b"ip"].decode(), int(fields[b"port"])
        )
        why = fields.get(b"w")
        if kind == b"j":
            if why == b"r":
                # Claimed again after Redis lost the keys: news only where it is not listed.
                if not self._listed(participant):
                    self._make_room(participant)
                    self.core.apply(JoinEvent(participant))
                return
            join = self._origins.pop(fields[b"s"], None) if mine else None
            self._make_room(participant)
            if join is not None:
                self.core.apply(join)
            else:
                self.core.apply(JoinEvent(participant))
                if mine:
                    # Written although refused here (its answer was lost): it leaves.
                    self.submit(LeaveEvent(participant))
        elif kind == b"l":
            self._leaving.discard(participant)
            if why == b"d":
                # Its node was declared dead: if that is this node, it is still connected
                # here, and is told why it is dropped.
                if mine and self._listed(participant):
                    self.stats.dropped += 1
                self.core.apply(LeaveEvent(participant, DROPPED))
            elif why == b"p":
                if self._listed(participant) and isinstance(
                    self.core.registry.holder(participant.key), Remote
                ):
                    self.core.apply(LeaveEvent(participant))
            else:
                self.core.apply(LeaveEvent(participant))
        else:
            log.warning("unknown entry in %s: %r", self.log_key, fields)

    def _make_room(self, participant: Participant) -> None:
        """A join in the stream holds its nickname and address in Redis: whoever has
        either on this node's list is stale (its claim was lost with Redis's keys, or
        its node's leave is yet to come), and leaves first; one of this node's own is
        told why and closed."""
        registry = self.core.registry
        for holder in (
            registry.holder(participant.key),
            registry.holder_at(participant.udp_address),
        ):
            stale = registry.get(holder) if holder is not None else None
            if stale is None:
                continue
            if isinstance(holder, Remote):
                self.core.apply(LeaveEvent(stale))
            else:
                log.warning("%s lost its claim to a join through another node", stale.nick)
                self.stats.dropped += 1
                self.core.apply(LeaveEvent(stale, DROPPED))

    def _listed(self, participant: Participant) -> bool:
        """``participant`` (the same nickname, IP and port) is on the list here."""
        holder = self.core.registry.holder(participant.key)
        return holder is not None and self.core.registry.get(holder) == participant
