"""Local stand-ins for the services probes read, speaking their documented wire formats.

Every fake is a ``ScriptedFake``: it answers from its own state (what a real server would
say), unless a test queued explicit replies with ``script(...)`` (a fault, a delay, a
rate limit), which are used first, one per request. Every request is recorded in
``requests`` so tests can check what the probe sent.

Captured vendor examples live in ``tests/fakes/examples/`` (see its README).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.fakes.server import RunningServer, serve_aiohttp

EXAMPLES = Path(__file__).resolve().parent / "examples"
_NO_JSON = object()
_CHUNK = b"x" * 65536


def example(name: str) -> Any:
    """A captured vendor example body, parsed."""
    return json.loads((EXAMPLES / name).read_text())


@dataclass(frozen=True)
class Reply:
    """One scripted answer.

    ``json`` (any JSON value, ``None`` included) or ``body`` (raw bytes); ``delay``
    seconds before answering; ``hang`` never answers until the fake stops;
    ``stream_bytes`` streams that many filler bytes (never held in memory at once),
    with a Content-Length header only when ``declare_length``.
    """

    status: int = 200
    json: Any = _NO_JSON
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay: float = 0.0
    hang: bool = False
    stream_bytes: int = 0
    declare_length: bool = False


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.query if k == name), None)

    def params(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]


class ScriptedFake:
    """Base of every fake: scripted replies, request log, optional auth, serving."""

    def __init__(self) -> None:
        self.queue: deque[Reply] = deque()
        self.requests: list[Seen] = []
        self.required_authorization: str | None = None
        self.streamed_bytes = 0
        self._release = asyncio.Event()
        self.server: RunningServer | None = None

    # -- what tests call ---------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order, then from state again."""
        self.queue.extend(replies)

    def require_authorization(self, value: str | None) -> None:
        """Answer 401 unless the request's Authorization header is exactly ``value``."""
        self.required_authorization = value

    @property
    def url(self) -> str:
        assert self.server is not None, "the fake is not serving"
        return self.server.url

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[ScriptedFake]:
        app = web.Application(client_max_size=1024**2)
        self.add_routes(app)
        async with serve_aiohttp(app) as server:
            self.server = server
            try:
                yield self
            finally:
                self._release.set()  # let hanging handlers finish before shutdown

    # -- what subclasses provide ---------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def unauthorized(self) -> Reply:
        """The source's own answer to missing or wrong credentials."""
        return Reply(
            status=401,
            body=b"Unauthorized\n",
            content_type="text/plain",
            headers={"WWW-Authenticate": "Basic"},
        )

    # -- machinery -----------------------------------------------------------------

    async def handle(self, request: web.Request, answer: Any) -> web.StreamResponse:
        """Record ``request`` and answer it: scripted reply, auth check, else ``answer``
        (a callable taking the request and returning a ``Reply``)."""
        body = await request.read()
        self.requests.append(
            Seen(
                request.method,
                request.path,
                list(request.query.items()),
                CIMultiDict(request.headers),
                body,
            )
        )
        if self.queue:
            reply = self.queue.popleft()
        elif (
            self.required_authorization is not None
            and request.headers.get("Authorization") != self.required_authorization
        ):
            reply = self.unauthorized()
        else:
            reply = answer(request)
        return await self.render(request, reply)

    async def render(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        if reply.hang:
            await self._release.wait()
        elif reply.delay:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), reply.delay)
        if reply.stream_bytes:
            return await self._stream(request, reply)
        if reply.json is not _NO_JSON:
            data = json.dumps(reply.json).encode()
            content_type = reply.content_type or "application/json"
        else:
            data = reply.body or b""
            content_type = reply.content_type or "text/plain"
        response = web.Response(status=reply.status, body=data, headers=dict(reply.headers))
        response.content_type = content_type.split(";")[0]
        return response

    async def _stream(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(status=reply.status, headers=dict(reply.headers))
        response.content_type = reply.content_type or "application/json"
        if reply.declare_length:
            response.content_length = reply.stream_bytes
        else:
            response.enable_chunked_encoding()
        await response.prepare(request)
        remaining = reply.stream_bytes
        try:
            while remaining > 0:
                piece = _CHUNK[: min(len(_CHUNK), remaining)]
                await response.write(piece)
                self.streamed_bytes += len(piece)
                remaining -= len(piece)
        except (ConnectionResetError, ConnectionError):
            return response  # the client hung up, as a capped reader should
        return response
