"""Several ``gonogo serve`` processes on one PostgreSQL database and one gate directory.

``Cluster`` starts replicas ``r0``, ``r1``, ... (each its own port, ``GONOGO_REPLICA_ID``,
tokens, ``GONOGO_LEASE_TTL``), sends them signals, reads their ``/metrics`` and the
stored rows, and always ends every process it started (``SIGCONT`` first, so a paused
one can die).

``CountingPrometheus`` is the instant-query API every gate's probe asks. Each replica
sends its own bearer token (``GONOGO_PROBE_PROM_TOKEN``), so every query is attributed to
the replica that made it, and the gate is read from the query's ``gate`` label. It
answers the gate's value plus a per-replica tag (``r0`` adds 0.001, ``r1`` 0.002, ...),
so a stored sample's criterion value names the replica that took it: that is how tests
tell who wrote a row without any writer column.

``WebhookReceiver`` records every notification a gate's ``notify`` entry sends.

Every wait is ``until``: a condition polled with a bounded deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.migrate import upgrade_database
from tests.app.conftest import POSTGRES_ENV, TOKENS, TOKENS_SETTING, reset_postgres
from tests.fakes import Reply
from tests.fakes.prometheus import PrometheusFake, prom_number, prom_time
from tests.fakes.server import RunningServer, serve_aiohttp
from tests.support import free_port, in_ci

GONOGO = str(Path(sys.executable).with_name("gonogo"))
TOKEN_ENV = "GONOGO_PROBE_PROM_TOKEN"
TAG_STEP = 0.001  # r<i> adds (i + 1) * TAG_STEP to every value it is answered
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0
_GATE_LABEL = re.compile(r'gate="([^"]+)"')
_VERSION_LABEL = re.compile(r'version="([^"]+)"')


def replica_token(replica: str) -> str:
    return f"prom-token-{replica}"


def replica_tag(index: int) -> float:
    return (index + 1) * TAG_STEP


def writer_of(value: float | None, replicas: int) -> str | None:
    """The replica whose tag a stored criterion value carries (None if it carries none)."""
    if value is None:
        return None
    fraction = round((value - round(value)) / TAG_STEP)
    index = fraction - 1
    return f"r{index}" if 0 <= index < replicas else None


async def within(condition: Callable[[], Awaitable[bool] | bool], *, seconds: float) -> bool:
    """Poll ``condition`` for at most ``seconds``; whether it came to hold (for a caller
    that explains a failure itself)."""
    start = time.monotonic()
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return True
        if time.monotonic() - start > seconds:
            return False
        await asyncio.sleep(0.05)


async def until(
    condition: Callable[[], Awaitable[bool] | bool],
    *,
    seconds: float,
    what: str,
    every: float = 0.05,
    explain: Callable[[], str] | None = None,
) -> float:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``seconds``.
    Returns how long it took."""
    start = time.monotonic()
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > seconds:
            detail = f": {explain()}" if explain else ""
            pytest.fail(f"{what} not within {seconds:.1f}s{detail}")
        await asyncio.sleep(every)


# -- the fake Prometheus ----------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    at: float  # monotonic
    replica: str | None
    gate: str | None
    version: str | None  # the ``version`` label a check's query carries
    value: float


class CountingPrometheus(PrometheusFake):
    """``/api/v1/query`` in Prometheus's documented envelope, counting who asks for which
    gate. ``values[gate]`` is the gate's value (default 1); the asking replica's tag is
    added to it."""

    def __init__(self, replicas: Iterable[str]) -> None:
        super().__init__()
        self.by_token = {f"Bearer {replica_token(r)}": r for r in replicas}
        self.values: dict[str, float] = {}
        self.hits: list[Hit] = []
        self.on_hit: Callable[[Hit], None] | None = None

    def _answer(self, request: web.Request, form: dict[str, Any]) -> Reply:
        params = {**request.query, **form}
        query = str(params.get("query", ""))
        replica = self.by_token.get(request.headers.get("Authorization", ""))
        if replica is None:
            return self.unauthorized()
        gate = _GATE_LABEL.search(query)
        version = _VERSION_LABEL.search(query)
        name = gate.group(1) if gate else None
        value = self.values.get(name or "", 1.0) + replica_tag(int(replica[1:]))
        hit = Hit(time.monotonic(), replica, name, version.group(1) if version else None, value)
        self.hits.append(hit)
        if self.on_hit is not None:
            self.on_hit(hit)
        at = float(params["time"]) if "time" in params else time.time()
        data = {
            "resultType": "vector",
            "result": [
                {"metric": {"gate": name or ""}, "value": [prom_time(at), prom_number(value)]}
            ],
        }
        return Reply(json={"status": "success", "data": data})

    # -- reading the hits -----------------------------------------------------------

    def since(self, start: float, end: float | None = None) -> list[Hit]:
        stop = time.monotonic() if end is None else end
        return [h for h in self.hits if start <= h.at <= stop and h.version is None]

    def askers(self, start: float, end: float | None = None) -> dict[str, set[str]]:
        """Gate -> the replicas that asked for it in ``[start, end]``."""
        found: dict[str, set[str]] = {}
        for hit in self.since(start, end):
            if hit.gate is not None and hit.replica is not None:
                found.setdefault(hit.gate, set()).add(hit.replica)
        return found

    def owned_by(self, replica: str, start: float, end: float | None = None) -> set[str]:
        return {g for g, rs in self.askers(start, end).items() if replica in rs}

    def first_after(self, gate: str, start: float, *, not_by: str) -> float | None:
        for hit in self.hits:
            if hit.at >= start and hit.gate == gate and hit.replica != not_by and not hit.version:
                return hit.at
        return None


# -- the webhook receiver ---------------------------------------------------------------


@dataclass(frozen=True)
class Notification:
    at: float
    gate: str
    body: dict[str, Any]
    status: int  # what the receiver answered: 2xx is a delivery, anything else asks again


class WebhookReceiver:
    """A loopback receiver of ``format: json`` notifications at ``/hook/{gate}``.

    ``respond`` (if set) chooses the answer to each request (and may act first, say kill
    the sender); by default every request is answered 204."""

    def __init__(self) -> None:
        self.received: list[Notification] = []
        self.server: RunningServer | None = None
        self.respond: Callable[[str, dict[str, Any]], Awaitable[int]] | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def of(self, gate: str, *, since: float = 0.0, delivered: bool = False) -> list[Notification]:
        return [
            n
            for n in self.received
            if n.gate == gate and n.at >= since and (not delivered or 200 <= n.status < 300)
        ]

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[WebhookReceiver]:
        async def hook(request: web.Request) -> web.Response:
            body = await request.json()
            gate, at = request.match_info["gate"], time.monotonic()
            status = 204 if self.respond is None else await self.respond(gate, body)
            self.received.append(Notification(at, gate, body, status))
            return web.Response(status=status)

        app = web.Application()
        app.router.add_post("/hook/{gate}", hook)
        async with serve_aiohttp(app) as server:
            self.server = server
            yield self


# -- gate files -------------------------------------------------------------------------

GATE = """\
description: replica test gate {name}
interval: {interval}
steady_for: 1
rollback_after: 1
probes:
  prom: {{type: prometheus, url: "{prometheus}", token_env: {token_env}}}
criteria:
  - {{name: up, probe: prom, query: 'up{{gate="{name}"}}', go: "> 0.5", rollback: "< 0.5"}}
notify:
  - {{url: "{hook}/hook/{name}", format: json}}
"""

# Only checks sample this gate: its query needs the check's version.
CHECK_GATE = """\
description: a gate for checks only
interval: {interval}
steady_for: {steady_for}
timeout: 60s
probes:
  prom: {{type: prometheus, url: "{prometheus}", token_env: {token_env}}}
criteria:
  - {{name: up, probe: prom, query: 'up{{gate="{name}", version="${{version}}"}}', go: "> 0.5"}}
"""


def write_gates(
    directory: Path,
    count: int,
    *,
    interval: str,
    prometheus: str,
    hook: str,
    check_gate: str | None = None,
    check_steady_for: int = 6,
) -> list[str]:
    names = [f"g{i:02d}" for i in range(count)]
    for name in names:
        (directory / f"{name}.yaml").write_text(
            GATE.format(
                name=name, interval=interval, prometheus=prometheus, token_env=TOKEN_ENV, hook=hook
            )
        )
    if check_gate is not None:
        (directory / f"{check_gate}.yaml").write_text(
            CHECK_GATE.format(
                name=check_gate,
                interval=interval,
                prometheus=prometheus,
                token_env=TOKEN_ENV,
                steady_for=check_steady_for,
            )
        )
    return names


# -- replicas ---------------------------------------------------------------------------


@dataclass
class Replica:
    name: str
    index: int
    port: int
    log_path: Path
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    stopped: bool = False  # SIGSTOPped and not yet continued

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def end(self) -> None:
        """SIGCONT (a stopped process cannot die), SIGTERM, then SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_DEADLINE_S)


def replica_env(name: str, *, database_url: str, gates_dir: Path, lease_ttl: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    env.update(
        {
            "GONOGO_DATABASE_URL": database_url,
            "GONOGO_GATES_DIR": str(gates_dir),
            "GONOGO_TOKENS": TOKENS_SETTING,
            "GONOGO_REPLICA_ID": name,
            "GONOGO_LEASE_TTL": lease_ttl,
            "GONOGO_LOG_FORMAT": "json",
            TOKEN_ENV: replica_token(name),
        }
    )
    return env


class Cluster:
    """N replicas of ``gonogo serve`` sharing one database and one gate directory."""

    def __init__(
        self,
        work: Path,
        *,
        database_url: str,
        gates_dir: Path,
        replicas: int = 3,
        lease_ttl: str = "2s",
    ) -> None:
        self.database_url = database_url
        self.replicas: list[Replica] = []
        for index in range(replicas):
            name = f"r{index}"
            port = free_port()
            argv = [GONOGO, "serve", "--host", "127.0.0.1", "--port", str(port)]
            env = replica_env(
                name, database_url=database_url, gates_dir=gates_dir, lease_ttl=lease_ttl
            )
            self.replicas.append(Replica(name, index, port, work / f"{name}.log", argv, env))
        self.http = httpx.AsyncClient(timeout=5.0)
        self._engine: AsyncEngine | None = None

    def __getitem__(self, name: str) -> Replica:
        return next(r for r in self.replicas if r.name == name)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.replicas]

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive and not r.stopped]

    # -- life cycle -------------------------------------------------------------------

    async def start(self, replicas: Iterable[Replica] | None = None) -> None:
        """Start the replicas together and wait until each answers ``/readyz`` 200."""
        chosen = list(self.replicas if replicas is None else replicas)
        for replica in chosen:
            replica.start()
        for replica in chosen:
            await self.until_ready(replica)

    async def until_ready(self, replica: Replica) -> None:
        async def ready() -> bool:
            if not replica.alive:
                pytest.fail(f"{replica.name} exited early: {replica.log_tail()}")
            try:
                response = await self.http.get(f"{replica.url}/readyz", timeout=1.0)
            except httpx.TransportError:
                return False
            return response.status_code == 200

        await until(
            ready,
            seconds=START_DEADLINE_S,
            what=f"{replica.name} ready",
            every=0.1,
            explain=replica.log_tail,
        )

    async def close(self) -> None:
        for replica in self.replicas:
            if replica.process is not None and replica.process.poll() is None:
                replica.process.send_signal(signal.SIGCONT)
                replica.process.terminate()
        for replica in self.replicas:
            replica.end()
        await self.http.aclose()
        if self._engine is not None:
            await self._engine.dispose()

    async def until_exited(self, replica: Replica, *, seconds: float = STOP_DEADLINE_S) -> int:
        await until(
            lambda: replica.process is not None and replica.process.poll() is not None,
            seconds=seconds,
            what=f"{replica.name} exited",
            explain=replica.log_tail,
        )
        assert replica.process is not None
        return int(replica.process.returncode)

    # -- HTTP -------------------------------------------------------------------------

    def headers(self, role: str = "viewer") -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[role]}"}

    async def get(self, replica: Replica, path: str, **kwargs: Any) -> httpx.Response:
        role = kwargs.pop("role", "viewer")
        return await self.http.get(f"{replica.url}{path}", headers=self.headers(role), **kwargs)

    async def post(self, replica: Replica, path: str, role: str, **kwargs: Any) -> httpx.Response:
        return await self.http.post(f"{replica.url}{path}", headers=self.headers(role), **kwargs)

    async def decision(self, replica: Replica, gate: str) -> str | None:
        try:
            response = await self.get(replica, f"/api/v1/gates/{gate}/decision", timeout=2.0)
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        found: str | None = response.json().get("decision")
        return found

    async def metric(self, replica: Replica, name: str) -> float | None:
        """The sum of a metric's samples on one replica (None if it exports none)."""
        response = await self.http.get(f"{replica.url}/metrics", timeout=2.0)
        response.raise_for_status()
        total: float | None = None
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name:
                    total = (total or 0.0) + sample.value
        return total

    # -- stored rows --------------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = create_async_engine(self.database_url)
        return self._engine

    async def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        async with self.engine.connect() as connection:
            result = await connection.execute(text(sql), params)
            return [dict(row._mapping) for row in result]

    async def max_sample_id(self) -> int:
        [row] = await self.rows("SELECT coalesce(max(id), 0) AS top FROM samples")
        return int(row["top"])

    async def continuous_samples(self, *, after_id: int = 0) -> list[StoredSample]:
        rows = await self.rows(
            "SELECT id, gate, evaluated_at, body FROM samples"
            " WHERE check_id IS NULL AND id > :after ORDER BY id",
            after=after_id,
        )
        return [StoredSample.of(row, len(self.replicas)) for row in rows]

    async def stuck_transactions(self, older_than_s: float = 1.0) -> list[dict[str, Any]]:
        """Sessions idle in a transaction for a while, with the lease rows they lock (a
        paused process keeps its transactions, and their row locks, open)."""
        return await self.rows(
            "SELECT a.pid, a.state, extract(epoch FROM now() - a.xact_start) AS seconds,"
            " left(a.query, 100) AS query, (SELECT string_agg(l.mode, ',') FROM pg_locks l"
            " JOIN pg_class c ON c.oid = l.relation WHERE l.pid = a.pid"
            " AND c.relname = 'leases') AS lease_locks"
            " FROM pg_stat_activity a WHERE a.datname = current_database()"
            " AND a.state LIKE 'idle in transaction%'"
            " AND now() - a.xact_start > make_interval(secs => :older)",
            older=older_than_s,
        )

    async def leases(self, kind: str = "gate") -> dict[str, dict[str, Any]]:
        rows = await self.rows(
            "SELECT id, owner, epoch, expires_at, expires_at > now() AS live"
            " FROM leases WHERE kind = :kind",
            kind=kind,
        )
        return {row["id"]: row for row in rows}


@dataclass(frozen=True)
class StoredSample:
    id: int
    gate: str
    evaluated_at: Any
    writer: str | None
    body: dict[str, Any] = field(repr=False)

    @classmethod
    def of(cls, row: dict[str, Any], replicas: int) -> StoredSample:
        body = row["body"]
        if isinstance(body, str):
            body = json.loads(body)
        value = criterion_value(body)
        return cls(row["id"], row["gate"], row["evaluated_at"], writer_of(value, replicas), body)


def criterion_value(stored: dict[str, Any] | str) -> float | None:
    """The first criterion's value in a stored decision body."""
    body: dict[str, Any] = json.loads(stored) if isinstance(stored, str) else stored
    criteria = body.get("criteria") or [{}]
    value = criteria[0].get("value")
    return float(value) if isinstance(value, int | float) else None


async def fresh_postgres() -> str:
    """The test PostgreSQL database, emptied and migrated, as the ``postgres_url`` fixture
    makes it (that one is per test; a cluster of processes outlives a test)."""
    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        if in_ci():
            pytest.fail(f"{POSTGRES_ENV} is not set; CI=true, so PostgreSQL must be tested")
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (e.g. postgresql+asyncpg://...)")
    await reset_postgres(url)
    await upgrade_database(url)
    return url
