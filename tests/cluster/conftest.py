"""Fixtures of the cluster tests: a real ``redis-server`` of our own per test.

Each server runs with no persistence (no RDB snapshots, no append-only
file), in a temporary directory, listening on a Unix socket there (no port
to race for) or, when asked, on a free TCP port of 127.0.0.1. It is ready
once it answers PING, and stopped by its PID at the end of the test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


@dataclass
class RedisServer:
    """One redis-server process we started."""

    proc: subprocess.Popen[bytes]
    directory: Path
    unix_socket: Path | None = None
    port: int | None = None
    tls_ca: Path | None = None  # with TLS: the CA file its certificate is signed by
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.directory / "redis.log"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        """The URL redis-py (and ``--cluster``) takes."""
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}"
        if self.tls_ca is not None:
            return f"rediss://127.0.0.1:{self.port}?ssl_ca_certs={self.tls_ca}"
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=STARTUP_TIMEOUT)

    def restart_empty(self) -> None:
        """Stops it and starts a new redis-server where it listened, with nothing in it
        (no persistence): Redis restarted after a crash, or failed over to an empty
        replica. The same object stands for the new process."""
        self.stop()
        tls = self.tls_ca is not None
        self.proc = _start(self.directory, tcp=self.port is not None, port=self.port, tls=tls).proc

    def stop(self) -> None:
        """SIGTERM to its PID (SIGKILL if it does not end in time); waits for it."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA of the test's own and a certificate for 127.0.0.1 it signed."""
    import trustme  # only the TLS tests need it

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca.cert_pem.write_to_path(str(paths[0]))
    cert.cert_chain_pems[0].write_to_path(str(paths[1]))
    cert.private_key_pem.write_to_path(str(paths[2]))
    return paths


def _start(
    directory: Path, *, tcp: bool, port: int | None = None, tls: bool = False
) -> RedisServer:
    binary = redis_server_binary()
    if binary is None:
        message = "redis-server is not installed (apt-get install redis-server; .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    directory.mkdir(parents=True, exist_ok=True)
    argv = [binary, "--save", "", "--appendonly", "no", "--dir", str(directory)]
    argv += ["--daemonize", "no", "--logfile", str(directory / "redis.log")]
    unix_socket = tls_ca = None
    if tls:
        tls_ca, cert, key = _tls_files(directory)
        port = port or _free_port()
        argv += ["--bind", "127.0.0.1", "--port", "0", "--tls-port", str(port)]
        argv += ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
        argv += ["--tls-ca-cert-file", str(tls_ca), "--tls-auth-clients", "no"]
    elif tcp:
        port = port or _free_port()
        argv += ["--bind", "127.0.0.1", "--port", str(port)]
    else:
        port = None
        unix_socket = directory / "redis.sock"
        argv += ["--port", "0", "--unixsocket", str(unix_socket), "--unixsocketperm", "700"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    server = RedisServer(proc, directory, unix_socket, port, tls_ca)
    try:
        _wait_until_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_ready(server: RedisServer) -> None:
    """Until it answers PING: its socket may not exist, or refuse, for a moment."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    client = redis.Redis.from_url(server.url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        while True:
            if server.proc.poll() is not None:
                log = server.log.read_text() if server.log.exists() else ""
                raise RuntimeError(f"redis-server exited with {server.proc.returncode}: {log}")
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer PING within {STARTUP_TIMEOUT} s")
            time.sleep(0.01)
    finally:
        client.close()


StartRedis = Callable[..., RedisServer]


@pytest.fixture
def start_redis() -> Iterator[StartRedis]:
    """Starts redis-servers of our own (``tcp=True`` for a TCP port rather than a Unix
    socket, ``tls=True`` for TLS on a TCP port); every one still running is stopped by its PID at the end of the test."""
    started: list[RedisServer] = []
    # Short, not under pytest's tmp_path: a Unix socket's path has at most 107 bytes.
    with tempfile.TemporaryDirectory(prefix="p2pchat-redis-") as tmp:

        def start(*, tcp: bool = False, tls: bool = False) -> RedisServer:
            server = _start(Path(tmp) / str(len(started)), tcp=tcp or tls, tls=tls)
            started.append(server)
            return server

        try:
            yield start
        finally:
            for server in started:
                server.stop()


@pytest.fixture
def redis_server(start_redis: StartRedis) -> RedisServer:
    """A redis-server on a Unix socket in a temporary directory, with no persistence."""
    return start_redis()
