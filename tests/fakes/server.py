"""Run a web app on a free loopback port for a test, and stop it afterwards.

Two ways, for two kinds of test:
- ``serve_aiohttp(app)``: an async context manager serving an ``aiohttp.web.Application``
  on the test's own event loop (no threads; the usual choice for async tests);
- ``ThreadedServer(app)``: a context manager serving an aiohttp application or any ASGI
  app (FastAPI, ...) from a background thread with its own event loop, for synchronous
  tests and for code under test that blocks its loop.
Both bind 127.0.0.1 on port 0 and expose ``url`` (no trailing slash).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType

import uvicorn
from aiohttp import web

START_DEADLINE = 10.0


@dataclass(frozen=True)
class RunningServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def refused_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@asynccontextmanager
async def serve_aiohttp(app: web.Application) -> AsyncIterator[RunningServer]:
    """Serve ``app`` on this event loop until the block ends."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    sock = _loopback_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield RunningServer("127.0.0.1", sock.getsockname()[1])
    finally:
        await runner.cleanup()


AsgiApp = Callable[..., Awaitable[None]]


class ThreadedServer:
    """Serve an aiohttp application or an ASGI app from a background thread."""

    def __init__(self, app: web.Application | AsgiApp) -> None:
        self._app = app
        self._sock = _loopback_socket()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fake-server", daemon=True)
        self.server = RunningServer("127.0.0.1", self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        if not self._ready.wait(START_DEADLINE):
            raise RuntimeError(f"test server did not start within {START_DEADLINE}s")
        if self._error is not None:
            raise RuntimeError("test server failed to start") from self._error
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_DEADLINE)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to the starting thread
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if isinstance(self._app, web.Application):
            runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            await web.SockSite(runner, self._sock).start()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()
            return
        config = uvicorn.Config(self._app, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[self._sock]))
        deadline = asyncio.get_running_loop().time() + START_DEADLINE
        while not server.started and not serving.done():
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)  # uvicorn offers no started event; bounded poll
        self._ready.set()
        await self._stop.wait()
        server.should_exit = True
        await serving
