"""Real database faults: a PostgreSQL that is stopped and started again, or SIGSTOPped
(hung: connections accepted, nothing answered).

Each test starts its own throwaway cluster (``initdb``/``pg_ctl``, as the ``postgres``
user when run as root, the way ``.ci/run`` does), never the shared test server. Locally
the tests skip when the PostgreSQL binaries are absent; with ``CI=true`` they fail.
The service runs on the real clock here: the database's timeouts are real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core import db as db_module
from app.core.clock import SystemClock
from app.core.migrate import upgrade_database
from app.core.settings import load_settings
from app.gates import scheduler as scheduler_module
from app.main import create_app
from tests.app.fakes import ProbeBench
from tests.support import free_port, in_ci

pytestmark = pytest.mark.postgres

PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin",)

FAST = """\
interval: 1s
steady_for: 2
timeout: 60s
probes:
  p: {type: constant, value: 1}
criteria:
  - {name: availability, probe: p, go: "> 99%"}
"""


def _pg_bin() -> Path:
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += [Path(d) for d in PG_BIN_DIRS]
    for directory in candidates:
        if (directory / "pg_ctl").exists() and (directory / "initdb").exists():
            return directory
    message = "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
    if in_ci():
        pytest.fail(f"{message}; CI=true, so the database fault tests must run")
    pytest.skip(message)


@dataclass
class Cluster:
    """A throwaway PostgreSQL cluster that a test may stop, start, freeze and thaw."""

    bin: Path
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, command: str) -> None:
        if os.geteuid() == 0:
            argv = ["su", "postgres", "-s", "/bin/sh", "-c", command]
        else:
            argv = ["/bin/sh", "-c", command]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        self._run(f"{self.bin}/initdb -D {self.root}/data -U postgres --auth=trust -E UTF8")

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
        self._run(
            f'{self.bin}/pg_ctl -D {self.root}/data -o "{options}" -l {self.root}/log -w start'
        )

    def stop(self) -> None:
        self._run(f"{self.bin}/pg_ctl -D {self.root}/data -m fast -w stop")

    def pids(self) -> list[int]:
        """The postmaster and every process it started."""
        postmaster = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        found = [postmaster]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == postmaster:
                    found.append(int(entry.name))
        return found

    def freeze(self) -> None:
        for pid in self.pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    pg_bin = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="gonogo-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    found = Cluster(pg_bin, root, free_port())
    found.init()
    found.start()
    try:
        yield found
    finally:
        with contextlib.suppress(Exception):
            found.thaw()
        with contextlib.suppress(Exception):
            found.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Live:
    client: httpx.AsyncClient

    async def decision(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self.client.get("/api/v1/gates/fast/decision")).json()
        return body

    async def until(
        self, condition: Callable[[], Awaitable[bool]], *, seconds: float, what: str
    ) -> None:
        deadline = time.monotonic() + seconds
        while not await condition():
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not within {seconds}s")
            await asyncio.sleep(0.2)


@pytest.fixture
async def live(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Live]:
    # Short database timeouts, so a hung server fails calls within a second or two.
    for name in ("CONNECT_TIMEOUT_S", "COMMAND_TIMEOUT_S", "POOL_TIMEOUT_S", "PING_TIMEOUT_S"):
        monkeypatch.setattr(db_module, name, 1.0)
    monkeypatch.setattr(scheduler_module, "SAMPLE_WRITE_BUDGET", 3.0)
    await upgrade_database(cluster.url)
    gates = tmp_path / "gates"
    gates.mkdir()
    (gates / "fast.yaml").write_text(FAST)
    app = create_app(
        load_settings(database_url=cluster.url, gates_dir=gates, tokens=""),
        clock=SystemClock(),
        probe_builder=ProbeBench(),
    )
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gonogo.test") as client:
            yield Live(client)
    finally:
        await lifespan.__aexit__(None, None, None)


async def test_a_hung_database_makes_the_decision_stale_then_it_recovers_to_go(
    live: Live, cluster: Cluster
) -> None:
    async def go() -> bool:
        return (await live.decision())["decision"] == "go"

    async def stale() -> bool:
        body = await live.decision()
        return body["decision"] == "no_go" and body["reasons"][0].startswith("stale since")

    await live.until(go, seconds=20, what="go before the fault")
    cluster.freeze()
    try:
        await live.until(stale, seconds=30, what="stale no_go while PostgreSQL is stopped")
        ready = await live.client.get("/readyz")
        assert ready.status_code == 200  # the outage shows in the details, not as unready
        assert ready.json()["database"] is False
    finally:
        cluster.thaw()
    await live.until(go, seconds=30, what="go again once PostgreSQL answers")
    assert (await live.client.get("/readyz")).json()["database"] is True


async def test_a_running_check_survives_a_database_restart_and_reaches_its_decision(
    live: Live, cluster: Cluster
) -> None:
    started = await live.client.post("/api/v1/gates/fast/checks", json={"version": "1.0"})
    assert started.status_code == 201, started.text
    check_id = started.json()["id"]
    cluster.stop()
    await asyncio.sleep(3)  # the check's loop meets a refused connection meanwhile
    cluster.start()

    async def final() -> bool:
        response = await live.client.get(f"/api/v1/checks/{check_id}")
        return response.status_code == 200 and response.json()["state"] == "final"

    await live.until(final, seconds=40, what="the check's final decision after the restart")
    body = (await live.client.get(f"/api/v1/checks/{check_id}")).json()
    assert body["decision"] == "go"
