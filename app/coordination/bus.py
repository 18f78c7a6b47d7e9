"""The bus: short messages from one replica to every replica, sent when a transaction
commits (``docs/architecture.md``, "Replicas and leases").

A message is a channel and a payload of at most ``MAX_PAYLOAD`` bytes: ids, never rows.
A receiver reads the rows it names, so a message lost while a replica could not listen
costs nothing that a catch-up read cannot restore: each ``on_connected`` handler runs
once the bus listens, at start and again after every reconnect.

- ``LocalBus`` (SQLite, one process): ``publish`` delivers to this process's handlers
  once the session's transaction has committed; nothing on rollback.
- ``PostgresBus``: ``publish`` runs ``pg_notify`` inside the caller's transaction, so
  PostgreSQL delivers it to every listening replica, this one included, exactly when
  the transaction commits (and never if it rolls back). One dedicated connection per
  replica ``LISTEN``s. It is checked every ``keepalive`` seconds with a bounded
  ``SELECT 1``: a database that stops answering (stopped, paused, cut off) ends the
  connection, and the bus reconnects with backoff. Until it listens again ``listening``
  is false; readers then rely on the freshness rule, so what they serve goes stale
  (``no_go``) rather than old.

Handlers run on the event loop and must not block: they take the payload and schedule
their reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg  # type: ignore[import-untyped]
import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import Clock
from app.core.db import Database, after_commit

log = structlog.get_logger(__name__)

# PostgreSQL refuses NOTIFY payloads of 8,000 bytes or more.
MAX_PAYLOAD = 7999
CHANNEL_PREFIX = "gonogo_"
# The listening connection's name in ``pg_stat_activity``.
APPLICATION_NAME = "gonogo-bus"

Handler = Callable[[str], None]
Connected = Callable[[], Awaitable[None] | None]


class Bus(Protocol):
    listening: bool

    async def publish(self, session: AsyncSession, channel: str, payload: str) -> None:
        """Send ``payload`` on ``channel`` when ``session``'s transaction commits."""

    def subscribe(self, channel: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler(payload)`` for each message on ``channel``; returns the
        unsubscribe."""

    def on_connected(self, handler: Connected) -> None:
        """Call ``handler`` each time the bus starts listening (catch-up reads)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def _checked(channel: str, payload: str) -> str:
    if not channel.replace("_", "").isalnum() or len(channel) > 40:
        raise ValueError(f"bad bus channel {channel!r}")
    if len(payload.encode()) > MAX_PAYLOAD:
        raise ValueError(
            f"bus payload of {len(payload.encode())} bytes on {channel}: the limit is"
            f" {MAX_PAYLOAD}; send ids and read the rows"
        )
    return CHANNEL_PREFIX + channel


class _Handlers:
    def __init__(self) -> None:
        self.by_channel: dict[str, list[Handler]] = {}
        self.connected: list[Connected] = []

    def subscribe(self, channel: str, handler: Handler) -> Callable[[], None]:
        _checked(channel, "")
        self.by_channel.setdefault(channel, []).append(handler)
        return lambda: self.by_channel.get(channel, []).remove(handler)

    def deliver(self, channel: str, payload: str) -> None:
        for handler in list(self.by_channel.get(channel, ())):
            try:
                handler(payload)
            except Exception:
                log.exception("bus handler failed", channel=channel)

    async def run_connected(self) -> None:
        for handler in list(self.connected):
            try:
                result = handler()
                if result is not None:
                    await result
            except Exception:
                log.exception("bus catch-up failed")


class LocalBus:
    """One process: messages go to this process's handlers at commit."""

    def __init__(self) -> None:
        self._handlers = _Handlers()
        self.listening = False

    async def publish(self, session: AsyncSession, channel: str, payload: str) -> None:
        _checked(channel, payload)
        after_commit(session, lambda: self._handlers.deliver(channel, payload))

    def subscribe(self, channel: str, handler: Handler) -> Callable[[], None]:
        return self._handlers.subscribe(channel, handler)

    def on_connected(self, handler: Connected) -> None:
        self._handlers.connected.append(handler)

    async def start(self) -> None:
        self.listening = True
        await self._handlers.run_connected()

    async def stop(self) -> None:
        self.listening = False


def asyncpg_dsn(url: str) -> str:
    """The plain ``postgresql://`` DSN of a SQLAlchemy asyncpg URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresBus:
    """``LISTEN``/``NOTIFY`` on one dedicated connection, supervised (see the module
    docstring)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        keepalive: float = 2.0,
        answer_within: float = 2.0,
        first_backoff: float = 0.2,
        max_backoff: float = 5.0,
        application_name: str = APPLICATION_NAME,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._application_name = application_name
        self._clock = clock
        self._keepalive = keepalive
        self._answer_within = answer_within
        self._first_backoff = first_backoff
        self._max_backoff = max_backoff
        self._handlers = _Handlers()
        self._task: asyncio.Task[None] | None = None
        self.listening = False
        self.connections = 0  # how many times the bus has started listening

    async def publish(self, session: AsyncSession, channel: str, payload: str) -> None:
        await session.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": _checked(channel, payload), "payload": payload},
        )

    def subscribe(self, channel: str, handler: Handler) -> Callable[[], None]:
        return self._handlers.subscribe(channel, handler)

    def on_connected(self, handler: Connected) -> None:
        self._handlers.connected.append(handler)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gonogo-bus")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        self.listening = False

    def _on_notify(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        self._handlers.deliver(channel.removeprefix(CHANNEL_PREFIX), payload)

    async def _run(self) -> None:
        backoff = self._first_backoff
        while True:
            try:
                await self._listen()
                backoff = self._first_backoff
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning(
                    "bus connection lost; reconnecting",
                    error=f"{type(error).__name__}: {error}",
                    retry_in_s=round(backoff, 2),
                )
            self.listening = False
            await self._clock.sleep(backoff * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, self._max_backoff)

    async def _listen(self) -> None:
        connection: Any = await asyncio.wait_for(
            asyncpg.connect(
                self._dsn, server_settings={"application_name": self._application_name}
            ),
            timeout=self._answer_within,
        )
        try:
            for channel in self._handlers.by_channel:
                await asyncio.wait_for(
                    connection.add_listener(CHANNEL_PREFIX + channel, self._on_notify),
                    timeout=self._answer_within,
                )
            self.listening = True
            self.connections += 1
            log.info("bus listening", channels=sorted(self._handlers.by_channel))
            await self._handlers.run_connected()
            while True:
                await self._clock.sleep(self._keepalive)
                if connection.is_closed():
                    raise ConnectionError("the listening connection closed")
                await asyncio.wait_for(connection.fetchval("SELECT 1"), timeout=self._answer_within)
        finally:
            self.listening = False
            with contextlib.suppress(Exception):
                connection.terminate()


def bus_for(db: Database, *, clock: Clock) -> Bus:
    """The bus for this database: ``PostgresBus`` on PostgreSQL, else ``LocalBus``."""
    if db.engine.dialect.name == "postgresql":
        return PostgresBus(db.url, clock=clock)
    return LocalBus()
