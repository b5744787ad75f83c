"""One HTTP endpoint on the chat's own event loop (aiohttp): the metrics and the web
client each serve their application through one."""

from __future__ import annotations

from aiohttp import web

from . import _net


class HttpEndpoint:
    """An aiohttp application listening on one address, with no access log."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._address: tuple[str, int] | None = None

    async def start(self, app: web.Application, host: str, port: int, what: str) -> None:
        """Serves ``app`` on (host, port); an OSError with the OS's reason, and
        ``HOST:PORT (what)`` as its ``filename``, when it cannot listen there."""
        sock = await _net.listening_socket(host, port, what)
        self._address = sock.getsockname()[:2]
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens, with the real port."""
        assert self._address is not None, "not started"
        return self._address

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
