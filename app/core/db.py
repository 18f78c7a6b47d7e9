"""Database: the async engine and sessions, and the tables (``docs/architecture.md``).

The schema is built by Alembic (``migrations/``); ``alembic check`` proves these models
and the migrations agree. Constraint names follow one convention so migrations can name
them on every database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite has no 64-bit autoincrement other than INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, also on SQLite (which stores no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class GateRow(Base):
    """A gate defined through the API (file gates live in the gate directory)."""

    __tablename__ = "gates"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    version: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str] = mapped_column(String(255))


class GateVersionRow(Base):
    """A gate definition by version, from a file or the API, kept so that a check pinned to
    it can be judged by any process, also after a restart or a redefinition."""

    __tablename__ = "gate_versions"

    gate: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class TemplateRow(Base):
    """A criterion template defined through the API (template files live in
    ``templates/`` of the gate directory)."""

    __tablename__ = "templates"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_by: Mapped[str] = mapped_column(String(255))


class TemplateEventRow(Base):
    """The audit trail of API templates (who changed which, when, and which gates got a
    new version); rows are only ever inserted, and outlive the template."""

    __tablename__ = "template_events"
    __table_args__ = (Index("ix_template_events_template", "template", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    template: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


RUNNING = "running"
FINAL = "final"
CANCELLED = "cancelled"
CHECK_STATES = (RUNNING, FINAL, CANCELLED)


class CheckRow(Base):
    __tablename__ = "checks"
    __table_args__ = (
        UniqueConstraint("gate", "idempotency_key"),
        Index("ix_checks_gate_created_at", "gate", "created_at"),
        Index("ix_checks_state", "state"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    gate: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(255))
    environment: Mapped[str | None] = mapped_column(String(255))
    stage: Mapped[str | None] = mapped_column(String(255))
    vars: Mapped[dict[str, str]] = mapped_column(JSON)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON)
    state: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str | None] = mapped_column(String(16))
    # The latest decision body while running; the final one once final.
    verdict: Mapped[dict[str, Any]] = mapped_column(JSON)
    deciding_samples: Mapped[list[int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(255))
    deadline: Mapped[datetime] = mapped_column(UtcDateTime)
    timeout_s: Mapped[float] = mapped_column(Float)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(255))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    # The gate version the check is judged by (``gate_versions``); NULL only on checks
    # created before versions were recorded.
    gate_version: Mapped[str | None] = mapped_column(String(64))


class SampleRow(Base):
    """One evaluation: continuous (``check_id`` NULL) or a check's."""

    __tablename__ = "samples"
    __table_args__ = (
        Index("ix_samples_gate_evaluated_at", "gate", "evaluated_at"),
        Index("ix_samples_check_id", "check_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    gate: Mapped[str] = mapped_column(String(63))
    check_id: Mapped[str | None] = mapped_column(ForeignKey("checks.id", ondelete="CASCADE"))
    evaluated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decision: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    # What a restarted check needs to rebuild its history (status, instant, extras).
    measurements: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # The gate version that judged this sample.
    gate_version: Mapped[str | None] = mapped_column(String(64))


class SignoffRow(Base):
    __tablename__ = "signoffs"
    __table_args__ = (UniqueConstraint("check_id", "signoff"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    check_id: Mapped[str] = mapped_column(ForeignKey("checks.id", ondelete="CASCADE"))
    signoff: Mapped[str] = mapped_column(String(63))
    signed_by: Mapped[str] = mapped_column(String(255))
    comment: Mapped[str | None] = mapped_column(Text)
    signed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class EventRow(Base):
    """The audit trail of a check; rows are only ever inserted."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_check_id", "check_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    check_id: Mapped[str] = mapped_column(ForeignKey("checks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


# A door callback (GitHub, GitLab) waits for its check to end, then is delivered.
CALLBACK_WAITING = "waiting"
CALLBACK_DELIVERED = "delivered"
CALLBACK_FAILED = "failed"


class DoorCallbackRow(Base):
    """The outbox of the GitHub and GitLab front doors: one answer owed to a forge about one
    check, kept until it is delivered (or given up), so a restart loses none. A worker
    claims a row with a fencing token before sending it and writes the outcome only while
    its claim holds."""

    __tablename__ = "door_callbacks"
    __table_args__ = (
        UniqueConstraint("door", "key"),
        Index("ix_door_callbacks_state_due_at", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    door: Mapped[str] = mapped_column(String(16))
    # The forge's own id of the request (a GitHub delivery, a GitLab deployment).
    key: Mapped[str] = mapped_column(String(255))
    check_id: Mapped[str] = mapped_column(ForeignKey("checks.id", ondelete="CASCADE"))
    # Where and what to answer: door-specific, never a secret.
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# A notification waits until it is delivered, or given up after retries.
NOTIFICATION_WAITING = "waiting"
NOTIFICATION_DELIVERED = "delivered"
NOTIFICATION_FAILED = "failed"


class NotificationOutboxRow(Base):
    """One webhook request owed for one decision change (``app/observability/outbox.py``),
    written in the transaction that records the change, so a change rolled back (or
    refused by its lease) notifies nobody. It holds the request as built (URL, headers
    with the signature, body), so any replica can send it without the gate's definition.
    ``(key, target)`` is unique: a replayed write of the same change adds nothing. A
    sender claims a row with a fencing token before sending it and writes the outcome
    only while its claim holds."""

    __tablename__ = "notification_outbox"
    __table_args__ = (
        UniqueConstraint("key", "target"),
        Index("ix_notification_outbox_state_due_at", "state", "due_at"),
        Index("ix_notification_outbox_settled_at", "settled_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The decision change (e.g. gate:<name>:sample:<id>, check:<id>:final).
    key: Mapped[str] = mapped_column(String(255))
    # Which of the gate's notify targets, by position.
    target: Mapped[int] = mapped_column(Integer)
    gate: Mapped[str] = mapped_column(String(63))
    # A secret (a Slack incoming-webhook URL is one): never logged or shown.
    url: Mapped[str] = mapped_column(Text)
    headers: Mapped[dict[str, str]] = mapped_column(JSON)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # When it was delivered or given up; settled rows are pruned after a retention.
    settled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


LEASE_KINDS = ("gate", "check")


class LeaseRow(Base):
    """Who may sample a gate or a running check (``app/coordination/leases.py``).

    ``expires_at`` is always computed by the database's own clock; NULL means released
    (or never held). ``epoch`` counts tenures: it grows at every claim, so a write fenced
    by an older epoch is refused. ``taken_from`` is the previous owner when this tenure
    began by taking over a lease that owner had let expire without releasing it."""

    __tablename__ = "leases"
    __table_args__ = (Index("ix_leases_owner", "owner"),)

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(255))
    epoch: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    taken_from: Mapped[str | None] = mapped_column(String(255))


# Every database call is bounded, so a hung or unreachable database fails a call within
# seconds instead of freezing a loop (docs/operations.md, "Database timeouts").
CONNECT_TIMEOUT_S = 5.0  # opening a connection (PostgreSQL)
COMMAND_TIMEOUT_S = 5.0  # one statement, commit included (PostgreSQL)
POOL_TIMEOUT_S = 5.0  # waiting for a free pooled connection
BUSY_TIMEOUT_S = 5.0  # waiting for SQLite's write lock
PING_TIMEOUT_S = 3.0  # /readyz's probe of the database
# A transaction left open this long (its process paused, or cut off mid-write) is ended by
# PostgreSQL with its session, so the row locks it held (a fenced lease among them) do not
# keep another replica from taking over (PostgreSQL).
IDLE_IN_TRANSACTION_S = 10.0


class Database:
    """The engine and a session factory; ``session()`` is a unit of work.

    ``reached`` turns true at the first successful call (a committed session or a ping)
    and stays true: ``/readyz`` needs the database reached once since start."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.reached = False
        kwargs: dict[str, Any]
        if url.startswith("sqlite"):
            kwargs = {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
        else:
            kwargs = {"pool_pre_ping": True, "pool_timeout": POOL_TIMEOUT_S}
            if url.startswith("postgresql+asyncpg"):
                kwargs["connect_args"] = {
                    "timeout": CONNECT_TIMEOUT_S,
                    "command_timeout": COMMAND_TIMEOUT_S,
                    "server_settings": {
                        "idle_in_transaction_session_timeout": str(
                            int(IDLE_IN_TRANSACTION_S * 1000)
                        )
                    },
                }
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session that commits on success and rolls back on error."""
        session = self.sessions()
        ending = _Ending()
        committed = False
        try:
            try:
                yield session
            except BaseException:
                await ending.run(session.rollback())
                run_on_rollback(session)
                raise
            try:
                await ending.run(session.commit())
            except BaseException:
                await ending.run(session.rollback())
                run_on_rollback(session)
                raise
            committed = True
        finally:
            await ending.run(session.close())
            if ending.cancelled:  # held while the session ended; the task is being stopped
                if committed:
                    self._committed(session)
                raise asyncio.CancelledError
        self._committed(session)

    def _committed(self, session: AsyncSession) -> None:
        self.reached = True
        run_after_commit(session)

    async def ping(self) -> bool:
        """Whether the database answers ``SELECT 1`` within ``PING_TIMEOUT_S``."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_S), self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception:
            return False
        self.reached = True
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()


class _Ending:
    """Runs a session's ending steps (commit, rollback, close) to their end even when the
    task is cancelled meanwhile, as a loop stopped at shutdown is: a step cut off while
    the pool hands its connection back is logged as an error and the connection thrown
    away, and a commit cut off after the database committed would pass for a rollback.
    The cancellation is held (``cancelled``) for the session to raise once it is closed."""

    def __init__(self) -> None:
        self.cancelled = False

    async def run(self, step: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(step)
        while True:
            try:
                await asyncio.shield(task)
                return
            except asyncio.CancelledError:
                if task.done() and task.cancelled():
                    raise  # the step itself was cancelled: the event loop is closing
                self.cancelled = True
                if task.done():
                    task.result()  # the step's own error, if it had one
                    return


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    cursor.close()


AfterCommit = Callable[[], None]


def after_commit(session: AsyncSession, action: AfterCommit) -> None:
    """Run ``action`` once this session's transaction has committed (by its owner)."""
    session.info.setdefault("after_commit", []).append(action)


def on_rollback(session: AsyncSession, action: AfterCommit) -> None:
    """Run ``action`` if this session's transaction is rolled back instead."""
    session.info.setdefault("on_rollback", []).append(action)


def run_after_commit(session: AsyncSession) -> None:
    session.info.pop("on_rollback", None)
    for action in session.info.pop("after_commit", []):
        action()


def run_on_rollback(session: AsyncSession) -> None:
    session.info.pop("after_commit", None)
    for action in session.info.pop("on_rollback", []):
        action()
