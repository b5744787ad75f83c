"""The chat server: keeps the participant list, forwards broadcasts, announces joins and leaves.

Three pieces, from the socket inwards:

- ``_Connection`` is the per-socket adapter that moves bytes between a
  transport and the codec, with flood control by back-pressure.
- ``ChatServer`` accepts what a connection sends: it checks a REGISTER,
  BROADCAST or the end of a registered connection and *submits* the ordered
  event it makes (``JoinEvent``, ``BroadcastEvent``, ``LeaveEvent``) to its
  ``Sequencer``; it answers ``LIST`` and errors itself. It also holds what
  each connection is owed (the shared batch, send queues, drops) and is the
  core's ``Outbox``.
- ``ServerCore`` (``server_core.py``) *applies* each event once the sequencer
  has given it its place in the global order: it keeps the participant list
  and owes every local connection what decisions 9, 13 and 15 of
  docs/PROTOCOL.md say.

A single process uses ``LocalSequencer``, which applies an event in the very
call that submits it: everything runs on one event loop, one message at a
time, which gives every participant the same global order (decision 14). A
sequencer that orders events later, or those of several servers, applies
them as they come; a connection whose REGISTER waits for its place is read
no further until it has one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import _net
from .protocol import (
    DEFAULT_MAX_LINE_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    LENGTH_HARD_LIMIT,
    NEED_DATA,
    Broadcast,
    Decoder,
    Error,
    ListRequest,
    Participant,
    Register,
    RemoteProtocolError,
    Role,
    canonical_ip,
    encode_broadcast,
    is_unspecified,
    nick_key,
)
from .server_core import (
    BroadcastEvent,
    JoinEvent,
    LeaveEvent,
    LocalSequencer,
    Sequencer,
    ServerCore,
)
from .server_stats import ServerStats, parse_metrics_address
from .state import RegistrationRefused, Registry, Remote, Waiting

log = logging.getLogger("p2pchat.server")

DEFAULT_PORT = 7777
REGISTER_FIRST = "register first: REGISTER:Nickname:IP-Address:UDP-Port"
# How long joins and leaves wait for company before going out: 50 us per
# participant (0.5 ms among 10, 0.5 s among 10,000), never longer than 0.5 s.
UPDATE_DELAY_PER_PARTICIPANT = 50e-6
UPDATE_DELAY_MAX = 0.5


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """The limits of decision 17, each a command-line option."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_clients: int = 10000
    register_timeout: float = 30.0
    sendq_bytes: int = 1 << 20
    flood_burst: int = 200
    flood_rate: float = 50.0  # messages per second; 0 turns flood control off
    # Bytes too: 200 messages of 64 KiB are 12.5 MiB, far more than a reader's send queue.
    flood_burst_bytes: int = 512 * 1024
    flood_rate_bytes: float = 1024 * 1024  # per second; 0 turns the byte limit off
    verify_ip: bool = False
    keepalive_idle: int = _net.KEEPALIVE[0]
    keepalive_interval: int = _net.KEEPALIVE[1]
    keepalive_count: int = _net.KEEPALIVE[2]
    # How long a dropped client's last ERROR may take to leave before the socket is cut.
    drop_grace: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.max_message_bytes <= LENGTH_HARD_LIMIT:
            raise ValueError(f"max message bytes must be 1 to {LENGTH_HARD_LIMIT}")
        if self.max_line_bytes < 64:
            raise ValueError("max line bytes must be at least 64")
        if self.max_clients < 1:
            raise ValueError("max clients must be at least 1")
        if self.register_timeout <= 0:
            raise ValueError("register timeout must be positive")
        if self.sendq_bytes < 1024:
            raise ValueError("send queue must be at least 1024 bytes")
        if self.flood_rate < 0 or self.flood_burst < 1:
            raise ValueError("flood rate must be >= 0 and flood burst >= 1")
        if self.flood_rate_bytes < 0 or self.flood_burst_bytes < 1:
            raise ValueError("flood rate bytes must be >= 0 and flood burst bytes >= 1")

    @property
    def byte_burst(self) -> float:
        """The byte burst in force: at most half the send queue, so that one client's
        burst can never by itself drop a reader."""
        return float(min(self.flood_burst_bytes, self.sendq_bytes // 2))

    @property
    def batch_bytes(self) -> int:
        """What one loop iteration may owe every reader at most, give or take a message.

        Bursts from many senders at once are spread over several iterations,
        so a reader that keeps up never finds more than this waiting at once.
        """
        return self.sendq_bytes // 4


class _Connection(asyncio.Protocol):
    """One client's TCP connection: decodes what it sends, hands events to the server."""

    __slots__ = (
        "_abort_handle",
        "_byte_tokens",
        "_decoder",
        "_paused",
        "_register_timer",
        "_resume_handle",
        "_server",
        "_tokens",
        "_tokens_at",
        "closing",
        "joining",
        "mark",
        "out",
        "out_bytes",
        "own",
        "peer",
        "transport",
    )

    def __init__(self, server: ChatServer) -> None:
        self._server = server
        cfg = server.config
        self._decoder = Decoder(
            Role.SERVER,
            max_message_bytes=cfg.max_message_bytes,
            max_line_bytes=cfg.max_line_bytes,
        )
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.closing = False
        self.joining = False  # its REGISTER waits for a place in the order
        # This iteration's bytes, when they are not just the shared batch
        # (ChatServer._flush): what it has of the batch so far, in order
        # with its own messages (LIST, ERROR).
        self.own = False
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.mark = 0  # how much of the batch is already in out (or is not for it)
        self._paused = False
        self._tokens = float(cfg.flood_burst)
        self._byte_tokens = cfg.byte_burst
        self._tokens_at = time.monotonic()
        self._resume_handle: asyncio.Handle | None = None
        self._register_timer: asyncio.TimerHandle | None = None
        self._abort_handle: asyncio.TimerHandle | None = None

    # -- asyncio callbacks ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
        self.transport = transport  # type: ignore[assignment]
        peername = transport.get_extra_info("peername")
        self.peer = _net.format_host_port(peername[0], peername[1]) if peername else "?"
        self._server._connection_made(self)

    def data_received(self, data: bytes) -> None:
        self._decoder.feed(data)
        if not self._paused:
            self._process()

    def eof_received(self) -> bool:
        return False  # the client is leaving: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        for handle in (self._resume_handle, self._register_timer, self._abort_handle):
            if handle is not None:
                handle.cancel()
        self._server._connection_lost(self, exc)

    # -- reading, with flood control by back-pressure ----------------------------

    def _process(self) -> None:
        server = self._server
        cfg = server.config
        limited = cfg.flood_rate or cfg.flood_rate_bytes
        batch_limit = cfg.batch_bytes
        while not self.closing and not self.joining:
            if server._batch_bytes >= batch_limit:
                # Readers are owed enough for now: go on after the flush, in turn.
                self._pause(None)
                server._batch_waiters.append(self)
                server.stats.batch_pauses += 1
                return
            if limited and not self._may_read():
                return
            try:
                event = self._decoder.next_event()
            except RemoteProtocolError as error:
                server._peer_error(self, error)  # a bad message costs a token like a good one
                continue
            if event is NEED_DATA:
                if cfg.flood_rate:
                    self._tokens += 1.0  # nothing was read: give the token back
                return
            try:
                self._byte_tokens -= server._handle(self, event)
            except Exception:  # a bug here must cost one message, not the server
                log.exception("internal error handling %r from %s", event, self.peer)
                server._queue(self, Error("internal server error").encode())
                server.stats.errors_sent += 1

    def _may_read(self) -> bool:
        """Takes a message token if the client has one and is not in debt for bytes.

        Bytes are charged after the message (its size is known only then), so
        the byte bucket may go below zero; reading waits until it is back.
        """
        cfg = self._server.config
        now = time.monotonic()
        elapsed = now - self._tokens_at
        self._tokens_at = now
        wait = 0.0
        if cfg.flood_rate:
            self._tokens = min(cfg.flood_burst, self._tokens + elapsed * cfg.flood_rate)
            if self._tokens < 1.0:
                wait = (1.0 - self._tokens) / cfg.flood_rate
        if cfg.flood_rate_bytes:
            tokens = self._byte_tokens + elapsed * cfg.flood_rate_bytes
            self._byte_tokens = min(cfg.byte_burst, tokens)
            if self._byte_tokens < 0.0:
                wait = max(wait, -self._byte_tokens / cfg.flood_rate_bytes)
        if not wait:
            if cfg.flood_rate:
                self._tokens -= 1.0
            return True
        # Out of tokens: stop reading until they are earned. Messages stay queued
        # in the socket and the decoder; nothing is discarded. uvloop runs a timer
        # under 1 ms at once, which would spin: wait at least that.
        self._server.stats.flood_pauses += 1
        self._pause(asyncio.get_running_loop().call_later(max(wait, 0.001), self._resume))
        return False

    def _pause(self, resume: asyncio.Handle | None) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._resume_handle = resume

    def resume_soon(self) -> None:
        """Reads again on the next iteration, after a pause for the order (not now: the
        event that ended the pause is still being applied)."""
        if self._paused and self._resume_handle is None:
            self._resume_handle = asyncio.get_running_loop().call_soon(self._resume)

    def _resume(self) -> None:
        self._resume_handle = None
        if self.closing or self.transport is None:
            return
        self._paused = False
        self.transport.resume_reading()
        self._process()

    # -- writing -----------------------------------------------------------------

    def write_out(self) -> bool:
        """Hands ``out`` to the socket; False when more than the send queue is left waiting.

        The transport keeps references to the bytes objects, not copies: a
        batch shared by every reader stays one object until each socket
        has taken it.
        """
        transport = self.transport
        out = self.out
        if transport is None or self.closing:
            out.clear()
            self.out_bytes = 0
            return True
        if out:
            stats = self._server.stats
            stats.messages_out += len(out)
            stats.bytes_out += sum(map(len, out))
            if len(out) == 1:
                transport.write(out[0])
            else:
                transport.writelines(out)
            out.clear()
            self.out_bytes = 0
        return transport.get_write_buffer_size() <= self._server.send_limit()

    def close(self, error: str | None = None, *, owed: bool = True) -> None:
        """Sends what is owed (unless ``owed`` is false) and a last ERROR, if any, and
        closes once it is written.

        A client that does not read would hold the socket open forever, so
        the connection is cut after a grace period whatever happens.
        """
        transport = self.transport
        if transport is None or self.closing:
            return
        if owed:
            self._server._take_own(self)
        else:
            self.out.clear()
            self.out_bytes = 0
        if error is not None:
            self.out.append(Error(error).encode())
            self._server.stats.errors_sent += 1
        self.write_out()
        self.closing = True
        transport.close()
        loop = asyncio.get_running_loop()
        self._abort_handle = loop.call_later(self._server.config.drop_grace, transport.abort)

    def start_register_timer(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self._register_timer = loop.call_later(timeout, self._register_timeout, timeout)

    def cancel_register_timer(self) -> None:
        if self._register_timer is not None:
            self._register_timer.cancel()
            self._register_timer = None

    def _register_timeout(self, timeout: float) -> None:
        self._register_timer = None
        self._server.stats.drop_register_timeout += 1
        self._server._disconnect(
            self, f"registration timeout: no REGISTER within {timeout:g} s", "no REGISTER in time"
        )


SequencerFactory = Callable[[ServerCore[_Connection]], Sequencer[_Connection]]


class ChatServer:
    """The server's policy: registration, fan-out, drops and announcements.

    ``sequencer`` makes the sequencer that orders this server's events and has
    its core apply them; by default the one of a single process.
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        sequencer: SequencerFactory = LocalSequencer,
    ) -> None:
        self.config = config or ServerConfig()
        self.stats = ServerStats()  # read by --metrics (p2pchat.metrics)
        self.core: ServerCore[_Connection] = ServerCore(self)
        # Everyone on the list, in global join order, here or through other servers.
        self.registry: Registry[_Connection | Remote] = self.core.registry
        # The connections here that are on the list and owed what the others are,
        # in join order; a connection leaves it the moment it ends.
        self._members: dict[_Connection, None] = {}
        self._sequencer = sequencer(self.core)
        self._submit = self._sequencer.submit
        self._waiting: Waiting[_Connection] = Waiting()
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self._shutting_down = False
        self._all_closed = asyncio.Event()  # set when the last connection has gone
        # What every participant is owed this iteration, in order; see _flush.
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._own: list[_Connection] = []  # connections with a stream of their own
        self._batch_waiters: list[_Connection] = []  # paused until a flush makes room
        self._waiters_handle: asyncio.Handle | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._flush_soon = False  # the scheduled flush is at the end of this iteration
        self._flushing = False

    # -- lifecycle ---------------------------------------------------------------

    async def start(
        self, host: str = "0.0.0.0", port: int = DEFAULT_PORT, *, reuse_port: bool = False
    ) -> None:
        """Listens on (host, port); ``reuse_port`` shares the port with other processes
        that bind it so (``--workers``)."""
        limit = _net.raise_open_files_limit(self.config.max_clients + 64)
        if limit < self.config.max_clients + 64:
            log.warning(
                "open-files limit is %d: fewer than --max-clients %d can connect",
                limit,
                self.config.max_clients,
            )
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            # Past the backlog the kernel drops or resets connections; Linux caps it at
            # net.core.somaxconn (4096 today).
            lambda: _Connection(self),
            host,
            port,
            backlog=4096,
            reuse_address=True,
            reuse_port=reuse_port or None,
        )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where the server listens, with the real ports."""
        if self._server is None:
            return []
        return [s.getsockname()[:2] for s in self._server.sockets]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    async def close(self, reason: str = "server is shutting down", timeout: float = 3.0) -> None:
        """Stops accepting, tells every client why, flushes and closes (within ``timeout``)."""
        if self._server is None:
            return
        self._shutting_down = True
        self._server.close()
        self._all_closed.clear()
        for conn in list(self._connections):
            conn.close(reason)
        if self._connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_closed.wait(), timeout)
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), timeout)
        self._server = None

    # -- connection events --------------------------------------------------------

    def _connection_made(self, conn: _Connection) -> None:
        assert conn.transport is not None
        cfg = self.config
        self.stats.connections += 1
        if self._shutting_down:
            conn.close("server is shutting down")
            return
        if len(self._connections) >= cfg.max_clients:
            waiting = self._waiting.to_close()
            if waiting is None:
                log.warning("refusing %s: server full (%d clients)", conn.peer, cfg.max_clients)
                self.stats.drop_server_full += 1
                conn.close(f"server is full: {cfg.max_clients} clients; try again later")
                return
            # Room for the newcomer: connections that do not register cannot lock others out.
            self._connections.discard(waiting)
            self._waiting.remove(waiting)
            self.stats.drop_evicted_unregistered += 1
            self._disconnect(
                waiting,
                f"server is full: {cfg.max_clients} clients; closing the oldest connection "
                "that has not registered",
                "closed for room: not registered",
            )
        self._connections.add(conn)
        peername = conn.transport.get_extra_info("peername")
        self._waiting.add(conn, peername[0] if peername else "?")
        sock = conn.transport.get_extra_info("socket")
        if sock is not None:
            _net.set_keepalive(
                sock, cfg.keepalive_idle, cfg.keepalive_interval, cfg.keepalive_count
            )
        # The send-queue limit is enforced by us, not by pausing the protocol.
        conn.transport.set_write_buffer_limits(high=cfg.sendq_bytes + LENGTH_HARD_LIMIT * 2)
        conn.start_register_timer(cfg.register_timeout)
        log.debug("connection from %s", conn.peer)

    def _connection_lost(self, conn: _Connection, exc: Exception | None) -> None:
        self._connections.discard(conn)
        self._waiting.remove(conn)
        if not self._connections:
            self._all_closed.set()
        conn.closing = True
        reason = "connection closed" if exc is None else f"connection lost: {exc}"
        self._leave(conn, reason)

    def _leave(self, conn: _Connection, reason: str) -> bool:
        """``conn`` has ended: it is owed nothing more, and if it was on the list its
        leave is submitted (the others' UPDATE:LEAVE comes when it is applied).
        False when it was not on the list."""
        if conn not in self._members:
            return False  # not registered; or its join is still being ordered (welcome)
        del self._members[conn]
        self.stats.leaves += 1
        participant = self.registry.get(conn)
        assert participant is not None
        log.info("leave %s (%s)", participant.nick, reason)
        self._submit(LeaveEvent(participant))
        return True

    def _disconnect(self, conn: _Connection, error: str, reason: str) -> None:
        """Ends a connection on the server's initiative: ERROR, close, and the LEAVE
        owed to the others, without waiting for the socket to close.

        The LEAVE does not wait for the socket to close (decision 15): a peer
        that does not read could delay that until the grace period ends.
        """
        log.info("closing %s: %s", conn.peer, reason)
        conn.close(error)
        self._leave(conn, reason)

    def _queue(self, conn: _Connection, data: bytes) -> None:
        """Owes ``data`` to one client, after what it is owed of the batch so far.

        Its queue counts what waits in its transport too: past its limit
        (``send_limit``), what it is owed goes to its socket now, and if that
        does not take enough it is dropped, so a LIST flood holds no more
        than one send queue and a LIST or two (decision 17).
        """
        self._take_own(conn)
        self._schedule_flush()
        conn.out.append(data)
        conn.out_bytes += len(data)
        transport = conn.transport
        if (
            transport is not None
            and conn.out_bytes + transport.get_write_buffer_size() > self.send_limit()
            and not conn.write_out()
        ):
            self._drop([conn])

    def _take_own(self, conn: _Connection) -> None:
        """Gives ``conn`` a stream of its own this iteration (see ``_flush``).

        A registered connection first gets what it is owed of the batch so
        far; any other skips the batch, which is not for it.
        """
        # No flush is scheduled here: every caller that owes bytes schedules one, and
        # close() writes at once; an entry left in _own is cleared by the next flush.
        if not conn.own:
            conn.own = True
            self._own.append(conn)
        batch = self._batch
        if conn.mark < len(batch):
            if conn in self._members:
                owed = batch[conn.mark :]
                conn.out += owed
                conn.out_bytes += sum(map(len, owed))
            conn.mark = len(batch)

    # -- the core's outbox ---------------------------------------------------------------

    admit = _take_own  # a newcomer: none of this iteration's batch so far is for it

    def welcome(self, conn: _Connection, participant: Participant, data: bytes) -> None:
        """``conn`` has joined: its LIST at once, and from now on it is owed the batch."""
        conn.joining = False
        if conn.closing:
            # It ended while its join was being ordered: the others heard of the join,
            # so they hear of the leave too.
            log.info("leave %s (connection ended before its join was ordered)", participant.nick)
            self._submit(LeaveEvent(participant))
            return
        self._members[conn] = None
        self.stats.joins += 1
        conn.cancel_register_timer()
        self._waiting.remove(conn)
        log.info(
            "join %s %s:%d from %s",
            participant.nick,
            participant.ip,
            participant.udp_port,
            conn.peer,
        )
        conn.out.append(data)
        conn.write_out()  # at once, without a flush; the send limit leaves room for one LIST
        conn.resume_soon()

    def expel(self, conn: _Connection, reason: str) -> None:
        if conn not in self._members:
            return  # it ended, and this is its own leave
        del self._members[conn]
        self.stats.leaves += 1
        log.info("dropping %s: %s", conn.peer, reason)
        conn.close(reason)

    def refuse(self, conn: _Connection, reason: str) -> None:
        conn.joining = False
        self._error(conn, reason)
        conn.resume_soon()

    def fan_out(self, data: bytes, exclude: _Connection | None, *, soon: bool = True) -> None:
        """Owes the same bytes to every registered participant but ``exclude``; never waits.

        Nothing is written here: ``_flush`` writes the batch once per reader,
        at the end of this iteration, or a little later when nothing is
        ``soon`` (see ``_schedule_flush``).
        """
        if self._shutting_down:
            return  # every connection is closing: nobody is owed anything more
        if exclude is not None:
            self._take_own(exclude)
        self._batch.append(data)
        self._batch_bytes += len(data)
        if exclude is not None:
            exclude.mark = len(self._batch)
        self._schedule_flush(soon=soon or self._batch_bytes >= self.config.batch_bytes)

    def _schedule_flush(self, *, soon: bool = True) -> None:
        """Flushes at the end of this iteration, or, when nothing in the batch is ``soon``
        (joins and leaves), after a delay that grows with the participants.

        A flush costs one write per participant; in a join storm each join
        would otherwise pay for one, which makes N joins cost N squared
        writes. Waiting for company, UPDATEs go out in one write per tick.
        """
        if self._flushing:
            return  # the flush under way goes on until nothing is owed
        handle = self._flush_handle
        if handle is not None:
            if self._flush_soon or not soon:
                return
            handle.cancel()
        loop = asyncio.get_running_loop()
        if soon:
            self._flush_handle = loop.call_soon(self._flush)
        else:
            delay = min(UPDATE_DELAY_MAX, len(self._members) * UPDATE_DELAY_PER_PARTICIPANT)
            self._flush_handle = loop.call_later(delay, self._flush)
        self._flush_soon = soon

    def _flush(self) -> None:
        """Writes what the iteration owes; drops those past the send-queue limit.

        Every reader gets the batch: one bytes object, made once, referenced
        by every transport until its socket takes it. Only connections with
        a stream of their own (a sender, a newcomer, one that asked for LIST
        or was answered an ERROR) get their pieces instead. Drops owe the
        others LEAVEs, which can push others over in turn: the loop goes on
        until nobody is over.
        """
        self._flush_handle = None
        self._flushing = True
        own: list[_Connection] = []
        try:
            while self._batch or self._own:
                batch, self._batch = self._batch, []
                own, self._own = self._own, []
                self._batch_bytes = 0
                overflowed = []
                if batch:
                    sendq = self.send_limit()
                    data = b"".join(batch)  # a lone item is passed as is, not copied
                    for conn in self._members:
                        if not conn.own:
                            transport = conn.transport
                            assert transport is not None
                            transport.write(data)
                            if transport.get_write_buffer_size() > sendq:
                                overflowed.append(conn)
                readers = len(self._members)  # those that got the batch as one object
                for conn in own:
                    conn.own = False
                    if conn in self._members:
                        readers -= 1
                        if conn.mark < len(batch):
                            conn.out += batch[conn.mark :]
                    conn.mark = 0
                    if not conn.write_out():
                        overflowed.append(conn)
                if batch:  # counted per batch, not per reader; write_out counts the others
                    self.stats.messages_out += readers * len(batch)
                    self.stats.bytes_out += readers * len(data)
                if overflowed:
                    self._drop(overflowed)
        finally:
            self._flushing = False
            for conn in own:  # only after a bug: never leave one out of every later flush
                conn.own, conn.mark = False, 0
            if self._batch_waiters and self._waiters_handle is None:
                self._waiters_handle = asyncio.get_running_loop().call_soon(self._resume_waiters)

    def _resume_waiters(self) -> None:
        """Lets the readers paused for a full batch go on, first come first served, until
        the batch is full again; the others wait for the next flush, still first."""
        self._waiters_handle = None
        waiters, self._batch_waiters = self._batch_waiters, []
        limit = self.config.batch_bytes
        for i, conn in enumerate(waiters):
            if self._batch_bytes >= limit:
                self._batch_waiters[:0] = waiters[i:]
                return
            conn._resume()

    def _drop(self, conns: list[_Connection]) -> None:
        """Removes participants that cannot keep up, without waiting on them."""
        reason = f"send queue over {self.config.sendq_bytes} bytes; you are not reading fast enough"
        left = False
        for conn in conns:
            if conn.closing:
                continue
            log.warning("dropping %s: %s", conn.peer, reason)
            self.stats.drop_slow_reader += 1
            conn.close(f"dropped: {reason}", owed=False)  # what it is owed can never reach it
            left |= self._leave(conn, "dropped")
        if left and not self._shutting_down:
            self._schedule_flush()  # the LEAVEs do not wait for company

    def _error(self, conn: _Connection, text: str) -> None:
        log.info("error to %s: %s", conn.peer, text)
        self.stats.errors_sent += 1
        self._queue(conn, Error(text).encode())

    def _peer_error(self, conn: _Connection, error: RemoteProtocolError) -> None:
        self.stats.in_bad += 1
        if error.fatal:
            self.stats.drop_protocol_error += 1
            self._disconnect(conn, str(error), str(error))
        else:
            self._error(conn, str(error))

    def send_limit(self) -> int:
        """What a client may be owed before it is dropped: its send queue, and one LIST
        on top, since a LIST is one message that can be longer than the queue (a
        full server's is up to 1.9 MB) and one bytes object whoever asked for it."""
        return self.config.sendq_bytes + self.registry.list_bytes

    # -- messages --------------------------------------------------------------------

    def _handle(self, conn: _Connection, event: object) -> int:
        """Carries out one message; returns the bytes it made the server send once, which
        is what byte flood control charges."""
        match event:
            case Broadcast():
                self.stats.in_broadcast += 1
                return self._broadcast(conn, event)
            case Register():
                self.stats.in_register += 1
                self._register(conn, event)
            case ListRequest():
                self.stats.in_list += 1
                if conn not in self.registry:
                    self._error(conn, REGISTER_FIRST)
                else:
                    data = self.registry.encoded_list()
                    self._queue(conn, data)
                    return len(data)
        return 0

    def _register(self, conn: _Connection, event: Register) -> None:
        participant = event.participant
        assert conn.transport is not None
        peername = conn.transport.get_extra_info("peername")
        source_ip = canonical_ip(peername[0]) if peername else None
        if is_unspecified(participant.ip) and source_ip is not None:
            participant = Participant(participant.nick, source_ip, participant.udp_port)
        if self.config.verify_ip and source_ip is not None and participant.ip != source_ip:
            self._error(
                conn,
                f"IP address {participant.ip} is not the one you connect from ({source_ip})",
            )
            return
        try:
            self.registry.check(conn, participant)
        except RegistrationRefused as refused:
            self._error(conn, str(refused))
            return
        conn.joining = True
        self._submit(JoinEvent(participant, conn))  # the core welcomes or refuses it
        if conn.joining:
            conn._pause(None)  # its place in the order comes later: read on only then

    def _broadcast(self, conn: _Connection, event: Broadcast) -> int:
        sender = self.registry.get(conn)
        if sender is None:
            self._error(conn, REGISTER_FIRST)
            return 0
        if nick_key(event.nick) != sender.key:
            self._error(conn, f"you are registered as '{sender.nick}', not '{event.nick}'")
            return 0
        data = encode_broadcast(sender.nick, event.text)
        self._submit(BroadcastEvent(sender.nick, data, conn))
        return len(data)


# -- command line ------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _metrics_address(text: str) -> tuple[str, int]:
    try:
        return parse_metrics_address(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _web_address(text: str) -> str:
    try:
        _net.parse_host_port(text, 8080)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _cluster_url(text: str) -> str:
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise argparse.ArgumentTypeError(
            f"{text} is not a Redis URL: redis://HOST:PORT[/DB], rediss://... or unix://PATH"
        )
    return text


def _chat_name(text: str) -> str:
    from .discovery import check_name

    try:
        return check_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--name: ")) from None


def build_parser() -> argparse.ArgumentParser:
    defaults = ServerConfig()
    p = argparse.ArgumentParser(
        prog="p2pchat-server",
        description="The p2pchat server: participant list, broadcasts, join and leave notices.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--host", metavar="HOST", default="0.0.0.0", help="address to listen on")
    p.add_argument(
        "--port",
        metavar="PORT",
        type=int,
        default=DEFAULT_PORT,
        help="TCP port; 0 picks a free one",
    )
    p.add_argument(
        "--max-message-bytes",
        metavar="BYTES",
        type=_positive_int,
        default=defaults.max_message_bytes,
        help="largest BROADCAST Message, in bytes (at most 1 MiB)",
    )
    p.add_argument(
        "--max-line-bytes",
        metavar="BYTES",
        type=_positive_int,
        default=defaults.max_line_bytes,
        help="longest line of the other messages, in bytes",
    )
    p.add_argument(
        "--max-clients",
        metavar="N",
        type=_positive_int,
        default=defaults.max_clients,
        help="connections accepted at once",
    )
    p.add_argument(
        "--register-timeout",
        metavar="SECONDS",
        type=float,
        default=defaults.register_timeout,
        help="seconds a connection has to REGISTER",
    )
    p.add_argument(
        "--sendq-bytes",
        metavar="BYTES",
        type=_positive_int,
        default=defaults.sendq_bytes,
        help="bytes held for a client that is not reading before it is dropped",
    )
    p.add_argument(
        "--flood-burst",
        metavar="N",
        type=_positive_int,
        default=defaults.flood_burst,
        help="messages a client may send at once before being slowed",
    )
    p.add_argument(
        "--flood-rate",
        metavar="PER_SECOND",
        type=float,
        default=defaults.flood_rate,
        help="messages per second per client after the burst; 0 turns flood control off",
    )
    p.add_argument(
        "--flood-burst-bytes",
        metavar="BYTES",
        type=_positive_int,
        default=defaults.flood_burst_bytes,
        help="bytes a client may make the server send at once (its broadcasts, the LISTs "
        "it asks for) before being slowed; at most half of --sendq-bytes",
    )
    p.add_argument(
        "--flood-rate-bytes",
        metavar="PER_SECOND",
        type=float,
        default=defaults.flood_rate_bytes,
        help="bytes per second per client after the byte burst; 0 turns the byte limit off",
    )
    p.add_argument(
        "--verify-ip",
        action="store_true",
        help="require the registered IP to be the connection's source address",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        metavar="LEVEL",
        help="what to log on stderr: debug, info, warning or error",
    )
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        type=_metrics_address,
        default=None,
        help="serve Prometheus metrics (/metrics) and a health check (/health) over HTTP here",
    )
    p.add_argument(
        "--web",
        metavar="HOST:PORT",
        type=_web_address,
        default=None,
        help="also serve the web client at http://HOST:PORT/: a browser joins the chat with it",
    )
    p.add_argument(
        "--web-max-sessions",
        metavar="N",
        type=_positive_int,
        default=200,
        help="with --web: browser sessions at most",
    )
    p.add_argument(
        "--name",
        metavar="TEXT",
        type=_chat_name,
        default=None,
        help="the chat's name announced on the LAN (default: this host's name)",
    )
    p.add_argument(
        "--no-announce",
        action="store_true",
        help="do not announce the chat on the LAN (mDNS service _p2pchat._tcp.local.)",
    )
    p.add_argument(
        "--cluster",
        metavar="URL",
        type=_cluster_url,
        default=None,
        help="serve one chat with every server started with this Redis URL "
        "(redis://HOST:PORT[/DB], rediss://..., unix://PATH); see docs/CLUSTER.md",
    )
    p.add_argument(
        "--cluster-name",
        metavar="NAME",
        default="p2pchat",
        help="which chat of the --cluster Redis to serve",
    )
    p.add_argument(
        "--node-timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        default=5.0,
        help="with --cluster: a node whose heartbeat Redis has not seen for this long is "
        "declared dead, and its participants leave",
    )
    p.add_argument(
        "--workers",
        metavar="N",
        type=_positive_int,
        default=None,
        help="with --cluster: run N server processes sharing --port (SO_REUSEPORT), each a "
        "node of the chat; worker I (from 0) serves --metrics and --web on their PORT+I",
    )
    # A process started by --workers: bind with SO_REUSEPORT, report to the parent.
    p.add_argument("--worker", metavar="I", type=int, default=None, help=argparse.SUPPRESS)
    return p


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        max_message_bytes=args.max_message_bytes,
        max_line_bytes=args.max_line_bytes,
        max_clients=args.max_clients,
        register_timeout=args.register_timeout,
        sendq_bytes=args.sendq_bytes,
        flood_burst=args.flood_burst,
        flood_rate=args.flood_rate,
        flood_burst_bytes=args.flood_burst_bytes,
        flood_rate_bytes=args.flood_rate_bytes,
        verify_ip=args.verify_ip,
    )


async def serve(
    host: str,
    port: int,
    config: ServerConfig,
    metrics: tuple[str, int] | None = None,
    cluster_url: str | None = None,
    cluster_name: str = "p2pchat",
    node_timeout: float = 5.0,
    web: str | None = None,
    web_max_sessions: int = 200,
    *,
    worker: bool = False,
    name: str | None = None,
    announce: bool = True,
) -> None:
    """Runs a server until SIGINT or SIGTERM, then shuts it down cleanly. A ``worker``
    of ``--workers`` shares its port, tells its parent when it listens, and stops when
    the parent is gone (p2pchat.workers). Unless ``announce`` is false (or it is a
    worker), the chat is announced on the LAN as ``name`` (p2pchat.discovery)."""
    cluster = None
    if cluster_url is None:
        server = ChatServer(config)
    else:
        from .cluster import ClusterUnavailable, RedisCluster  # redis-py loads only then

        cluster = RedisCluster(cluster_url, cluster_name, node_timeout=node_timeout)
        server = ChatServer(config, sequencer=cluster)
        try:
            await cluster.start()  # the list as it is, before anyone can register here
        except ClusterUnavailable as error:
            raise SystemExit(f"p2pchat-server: {error}") from None
        log.info("node %s of chat %r on %s", cluster.node_id, cluster_name, cluster_url)
    endpoint = None
    if metrics is not None:
        from .metrics import MetricsEndpoint  # aiohttp loads only when asked for

        endpoint = MetricsEndpoint(server)
        if cluster is not None and cluster.sequencer is not None:
            from .cluster_metrics import watch

            watch(endpoint, cluster.sequencer, cluster_name)
        await endpoint.start(*metrics)
        log.info("metrics on http://%s/metrics", _net.format_host_port(*endpoint.address))
    await server.start(host, port, reuse_port=worker)
    for addr_host, addr_port in server.addresses:
        log.info("listening on %s", _net.format_host_port(addr_host, addr_port))
    web_host = None
    if web is not None:
        from .web import WebConfig, serve_web  # aiohttp loads only when asked for

        chat_host = _net.local_address(host)
        lan_ip = _net.lan_ipv4() if _net.is_wildcard(host) else None
        shown = _net.format_host_port(lan_ip or chat_host, server.port)
        web_host, url = await serve_web(
            web, chat_host, server.port, lan_ip, shown, WebConfig(max_sessions=web_max_sessions)
        )
        log.info("web client on %s", url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    announcer = None
    if announce and not worker:
        from . import discovery

        announcer = await discovery.announce(
            name or discovery.default_name(), host, server.port, lambda: len(server.registry)
        )
    parent = None
    if worker:
        from . import workers

        parent = asyncio.create_task(workers.serve_parent_gone(stop.set))
        workers.say_ready()  # after the signal handlers: the parent may stop it at once
    await stop.wait()
    if parent is not None:
        parent.cancel()
    log.info("shutting down")
    if announcer is not None:
        await announcer.close()  # goodbye packets first: nobody should join a closing chat
    if web_host is not None:
        await web_host.close()  # its participants leave like any others
    await server.close()
    if cluster is not None:
        await cluster.close()  # after the server: its participants' leaves go out first
    if endpoint is not None:
        await endpoint.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is out of range 0-65535")
    if args.workers is not None:
        if args.cluster is None:
            parser.error("--workers needs --cluster URL: the workers serve one chat through Redis")
        last = args.metrics[1] + args.workers - 1 if args.metrics and args.metrics[1] else 0
        if last > 65535:
            parser.error(
                f"--metrics port {args.metrics[1]} leaves no room for {args.workers} workers "
                "(worker I serves PORT+I)"
            )
        web_port = _net.parse_host_port(args.web, 8080)[1] if args.web else 0
        if web_port and web_port + args.workers - 1 > 65535:
            parser.error(
                f"--web port {web_port} leaves no room for {args.workers} workers "
                "(worker I serves PORT+I)"
            )
    where = "" if args.worker is None else f" [worker {args.worker} pid {os.getpid()}]"
    logging.basicConfig(
        level=args.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s{where}: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.workers is not None:
            from .workers import run_workers

            return _net.run(lambda: run_workers(parser, args))
        _net.run(
            lambda: serve(
                args.host,
                args.port,
                config,
                args.metrics,
                args.cluster,
                args.cluster_name,
                args.node_timeout,
                args.web,
                args.web_max_sessions,
                worker=args.worker is not None,
                name=args.name,
                announce=not args.no_announce,
            )
        )
    except OSError as error:
        where = error.filename or f"{args.host}:{args.port}"  # the metrics' address, if theirs
        print(
            f"p2pchat-server: cannot listen on {where}: {error.strerror or error}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
