"""``p2pchat-server --cluster URL --workers N``: N cluster nodes on one machine, each its
own process, sharing one listening port (SO_REUSEPORT), so that a machine's cores
serve one chat.

The parent process binds the port itself with SO_REUSEPORT but does not listen:
``--port 0`` learns the port there, and the port stays this program's while a
worker is being started again. It then starts each worker as
``python -m p2pchat.server`` with the same options, the chosen port and the
hidden ``--worker I``, which makes the worker bind with SO_REUSEPORT, log with
its number and pid, say on stdout when it listens, and stop when its stdin ends
(the parent is gone). The kernel spreads new connections over the workers.

The parent forwards SIGINT and SIGTERM to the workers and waits for them; a
worker that dies otherwise is started again after ``RESTART_DELAY``. Its
participants are announced leaving by the cluster's liveness, as for any node
that dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Callable

from . import _net

log = logging.getLogger("p2pchat.workers")

RESTART_DELAY = 1.0  # seconds before a worker that died is started again
READY_TIMEOUT = 30.0  # for a worker to listen (it loads the chat's list first)
STOP_TIMEOUT = 15.0  # for the workers to shut down once told to, before SIGKILL
READY = b"ready\n"
# Options the parent does not pass on, or sets itself.
_NOT_PASSED = {"help", "workers", "worker", "port", "metrics", "web"}


def metrics_address(metrics: tuple[str, int] | None, index: int) -> tuple[str, int] | None:
    """Worker ``index`` (from 0) serves its metrics on PORT+index; port 0 stays 0 (each
    picks a free one)."""
    if metrics is None:
        return None
    host, port = metrics
    return host, port + index if port else 0


def web_address(web: str | None, index: int) -> str | None:
    """Worker ``index`` (from 0) serves the web client on PORT+index, as its metrics;
    port 0 stays 0."""
    if web is None:
        return None
    host, port = _net.parse_host_port(web, 8080)
    return _net.format_host_port(host, port + index if port else 0)


def worker_argv(
    parser: argparse.ArgumentParser, args: argparse.Namespace, index: int, port: int
) -> list[str]:
    """The options of worker ``index``: the parent's own, minus ``--workers``, on ``port``."""
    argv = ["--port", str(port), "--worker", str(index)]
    metrics = metrics_address(args.metrics, index)
    if metrics is not None:
        argv += ["--metrics", _net.format_host_port(*metrics)]
    web = web_address(args.web, index)
    if web is not None:
        argv += ["--web", web]
    for action in parser._actions:
        if action.dest in _NOT_PASSED or not action.option_strings:
            continue
        value = getattr(args, action.dest)
        if value == action.default:
            continue
        option = action.option_strings[-1]
        if action.nargs == 0:  # a flag such as --verify-ip
            argv.append(option)
        else:
            argv += [option, str(value)]
    return argv


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT, not listening: it holds the port
    for the workers, which bind it too."""
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
    except OSError as error:
        sock.close()
        raise OSError(error.errno, error.strerror, _net.format_host_port(host, port)) from error
    return sock


class Supervisor:
    """Starts the workers, starts a dead one again, and passes the stop signal on."""

    def __init__(self, argvs: list[list[str]]) -> None:
        self._argvs = argvs
        self._procs: list[asyncio.subprocess.Process | None] = [None] * len(argvs)
        self._stop = asyncio.Event()
        self._signal = signal.SIGTERM

    def stop(self, signum: signal.Signals = signal.SIGTERM) -> None:
        self._signal = signum
        if not self._stop.is_set():
            log.info("stopping the workers (%s)", signum.name)
        self._stop.set()
        for proc in self._procs:
            if proc is not None and proc.returncode is None:
                proc.send_signal(signum)

    async def _start(self, index: int) -> bool:
        """Starts worker ``index``; True once it listens, False if it ended first."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "p2pchat.server",
            *self._argvs[index],
            stdin=asyncio.subprocess.PIPE,  # never written: its end tells the worker we are gone
            stdout=asyncio.subprocess.PIPE,
            # Its own session: a Ctrl-C reaches the parent only, which passes it on.
            start_new_session=True,
        )
        self._procs[index] = proc
        log.info("started worker %d (pid %d)", index, proc.pid)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), READY_TIMEOUT)
        except TimeoutError:
            log.error(
                "worker %d (pid %d) did not listen within %g s", index, proc.pid, READY_TIMEOUT
            )
            proc.kill()
            return False
        if self._stop.is_set() and proc.returncode is None:
            proc.send_signal(self._signal)  # started while the others were being stopped
        return line == READY

    async def _keep(self, index: int) -> int:
        """Keeps worker ``index`` running until the stop; its exit status then."""
        while True:
            proc = self._procs[index]
            assert proc is not None
            status = await proc.wait()
            if self._stop.is_set():
                return status
            log.warning(
                "worker %d (pid %d) exited with status %d; starting it again in %g s",
                index,
                proc.pid,
                status,
                RESTART_DELAY,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), RESTART_DELAY)
            if self._stop.is_set():
                return 0
            await self._start(index)

    async def run(self, listening: Callable[[], None]) -> int:
        """Runs the workers until stopped; 0 when every one exited with 0."""
        started = await asyncio.gather(*(self._start(i) for i in range(len(self._argvs))))
        if not all(started) and not self._stop.is_set():
            failed = [i for i, ok in enumerate(started) if not ok]
            log.error("could not start worker %s; stopping", ", ".join(map(str, failed)))
            self.stop()
            await self._wait_all()
            return 1
        if not self._stop.is_set():
            listening()
        statuses = await asyncio.gather(*(self._keep(i) for i in range(len(self._argvs))))
        return 0 if not any(statuses) else 1

    async def _wait_all(self) -> None:
        for proc in self._procs:
            if proc is None:
                continue
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def run_workers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The parent of ``--workers N``: returns its exit status."""
    holder = reserve_port(args.host, args.port)
    try:
        port = int(holder.getsockname()[1])
        supervisor = Supervisor([worker_argv(parser, args, i, port) for i in range(args.workers)])
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, supervisor.stop, sig)

        def listening() -> None:
            where = _net.format_host_port(args.host, port)
            log.info("listening on %s with %d workers", where, args.workers)

        try:
            status = await supervisor.run(listening)
        finally:
            # Whatever happened here, no worker is left behind.
            supervisor.stop()
            await supervisor._wait_all()
        log.info("workers stopped")
        return status
    finally:
        holder.close()


async def serve_parent_gone(stop: Callable[[], None]) -> None:
    """In a worker: calls ``stop`` when stdin ends, which is when the parent is gone."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while await reader.read(4096):
            pass
        log.warning("the parent process is gone; stopping")
        stop()
    finally:
        transport.close()


def say_ready() -> None:
    """In a worker: tells the parent that it listens."""
    sys.stdout.buffer.write(READY)
    sys.stdout.buffer.flush()
