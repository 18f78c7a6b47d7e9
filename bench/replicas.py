"""Three ``gonogo serve`` replicas on one PostgreSQL database sharing gates of 3 criteria.

What it measures, in order:
1. steady state (``--seconds``): CPU (user + system, /proc) and RSS per replica;
   PostgreSQL statements per second, counted inside each replica (a SQLAlchemy
   ``before_cursor_execute`` listener installed by the launcher below, so no server
   extension is needed), with the share that touches the ``leases`` table, split into
   claim/renew/release statements and fencing reads; and the server's own committed
   transactions per second (``pg_stat_database.xact_commit``) as a cross-check;
   the longest gap between two stored samples of one gate;
2. decision reads (``/api/v1/gates/{g}/decision`` over the gates one replica owns) on
   that owner and on a non-owner, with ``--connections`` concurrent aiohttp connections
   for ``--read-seconds`` each, twice in alternation;
3. takeover after ``kill -9`` of one replica: the time until every gate it owned has a
   new stored sample (the killed process cannot write, so any new sample is another's);
4. takeover after ``SIGTERM`` of a second replica, measured the same way.

Scaling: the target is 3,000 gates x 3 criteria every 30 s (100 samples and 300
Prometheus queries a second). By default the run keeps that rate with 300 gates every
3 s (ten times fewer leases, each renewed as often), with the default lease TTL of 15 s,
so a takeover (bound: TTL + 2 intervals = 21 s) fits a run of about two minutes;
``--gates 3000 --interval 30s`` runs the real shape (takeovers up to 75 s; longer).
Everything prints to stdout.

    GONOGO_BENCH_POSTGRES_URL=postgresql+asyncpg://u:p@127.0.0.1:5432/bench \\
        uv run python bench/replicas.py

The database named is emptied first. Targets: takeover <= TTL + 2 intervals, no gate
unsampled longer than that, lease statements < 5 % of all, a non-owner's read
throughput within 80 % of an owner's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from _support import cpu_seconds, free_port, rss_mb, start_fake_prometheus, stop, write_gates
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

URL_ENV = "GONOGO_BENCH_POSTGRES_URL"
LEASE_SHARE_TARGET = 0.05
READ_RATIO_TARGET = 0.8
COUNTS_EVERY_S = 0.5


# -- the launcher: ``gonogo serve`` with a statement counter ----------------------------


def counting_serve(counts_file: Path, argv: list[str]) -> None:
    """Run ``gonogo serve`` in this process, counting every SQL statement it sends."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counts = {"total": 0, "lease_claim": 0, "lease_renew": 0, "lease_release": 0, "fence": 0}
    lock = threading.Lock()

    def kind_of(statement: str) -> str | None:
        if "leases" not in statement:
            return None
        head = statement.lstrip().upper()
        if head.startswith("SELECT"):
            return "fence"
        if "SKIP LOCKED" in head or head.startswith("INSERT"):
            return "lease_claim"
        if re.search(r"SET\s.*EXPIRES_AT\s*=\s*NULL", head, re.S):
            return "lease_release"
        return "lease_renew"

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        kind = kind_of(statement)
        with lock:
            counts["total"] += 1
            if kind is not None:
                counts[kind] += 1

    event.listen(Engine, "before_cursor_execute", on_execute)

    def dump() -> None:
        while True:
            with lock:
                snapshot = json.dumps(counts)
            temporary = counts_file.with_suffix(".tmp")
            temporary.write_text(snapshot)
            temporary.replace(counts_file)
            time.sleep(COUNTS_EVERY_S)

    threading.Thread(target=dump, daemon=True).start()
    from app.cli import main

    sys.argv = ["gonogo", "serve", *argv]
    main()


# -- the bench --------------------------------------------------------------------------


@dataclass
class Replica:
    name: str
    port: int
    process: subprocess.Popen[str]
    counts_file: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def counts(self) -> dict[str, int]:
        try:
            found: dict[str, int] = json.loads(self.counts_file.read_text())
        except (OSError, ValueError):
            return {}
        return found


def start_replica(name: str, work: Path, gates_dir: Path, url: str, ttl: str) -> Replica:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GONOGO_")}
    env.update(
        {
            "GONOGO_DATABASE_URL": url,
            "GONOGO_GATES_DIR": str(gates_dir),
            "GONOGO_REPLICA_ID": name,
            "GONOGO_LEASE_TTL": ttl,
            "GONOGO_LOG_FORMAT": "json",
        }
    )
    counts_file = work / f"{name}.counts.json"
    log = work / f"{name}.log"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--counting-serve",
        str(counts_file),
        "--",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, text=True, env=env
        )
    return Replica(name, port, process, counts_file, log)


def wait_ready(replica: Replica, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise SystemExit(f"{replica.name} exited: {replica.log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{replica.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{replica.name} not ready within {deadline_s:.0f}s")


def metric(replica: Replica, name: str) -> float | None:
    """The sum of one metric's samples on a replica (None if absent or unreachable)."""
    try:
        body = httpx.get(f"{replica.url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    found: float | None = None
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name:
                found = (found or 0.0) + sample.value
    return found


def gates_owned(replica: Replica) -> float | None:
    return metric(replica, "gonogo_gates_owned")


def lease_troubles(replica: Replica) -> tuple[float, float]:
    """(renew failures, takeovers) a replica has counted so far."""
    return (
        metric(replica, "gonogo_lease_renew_failures_total") or 0.0,
        metric(replica, "gonogo_lease_takeovers_total") or 0.0,
    )


async def reset_database(url: str) -> None:
    from app.core.migrate import upgrade_database

    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()
    await upgrade_database(url)


async def query(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            result = await connection.execute(text(sql), params)
            return [dict(row._mapping) for row in result]
    finally:
        await engine.dispose()


def db(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    return asyncio.run(query(url, sql, **params))


def xact_commits(url: str) -> int:
    rows = db(url, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    return int(rows[0]["xact_commit"])


def owners(url: str) -> dict[str, str]:
    rows = db(
        url,
        "SELECT id, owner FROM leases WHERE kind = 'gate' AND owner IS NOT NULL"
        " AND expires_at > now()",
    )
    return {r["id"]: r["owner"] for r in rows}


def longest_gap(url: str, since: datetime) -> tuple[float, str]:
    rows = db(
        url,
        "SELECT gate, max(gap) AS gap FROM (SELECT gate, extract(epoch FROM evaluated_at"
        " - lag(evaluated_at) OVER (PARTITION BY gate ORDER BY evaluated_at)) AS gap"
        " FROM samples WHERE check_id IS NULL AND evaluated_at > :since) gaps"
        " GROUP BY gate ORDER BY gap DESC NULLS LAST LIMIT 1",
        since=since,
    )
    if not rows or rows[0]["gap"] is None:
        return 0.0, "-"
    return float(rows[0]["gap"]), str(rows[0]["gate"])


def takeover(url: str, gates: set[str], since: datetime, deadline_s: float) -> list[float]:
    """Seconds from ``since`` until each of ``gates`` has a newer stored sample (the
    missing ones count as the deadline)."""
    give_up = time.monotonic() + deadline_s
    firsts: dict[str, float] = {}
    while time.monotonic() < give_up and len(firsts) < len(gates):
        rows = db(
            url,
            "SELECT gate, min(evaluated_at) AS first FROM samples WHERE check_id IS NULL"
            " AND evaluated_at > :since GROUP BY gate",
            since=since,
        )
        for row in rows:
            if row["gate"] in gates:
                firsts[row["gate"]] = (row["first"] - since).total_seconds()
        time.sleep(0.25)
    return [firsts.get(g, deadline_s) for g in gates]


@dataclass(frozen=True)
class Reads:
    per_s: float
    p50_ms: float
    p95_ms: float
    errors: int


async def read_load(base: str, gates: list[str], connections: int, seconds: float) -> Reads:
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.monotonic() < stop_at:
                gate = gates[i % len(gates)]
                i += connections
                began = time.perf_counter()
                try:
                    async with session.get(f"{base}/api/v1/gates/{gate}/decision") as response:
                        await response.read()
                        if response.status != 200:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(worker(k) for k in range(connections)))
    ordered = sorted(latencies)
    if not ordered:
        return Reads(0.0, 0.0, 0.0, errors)
    return Reads(
        len(ordered) / seconds,
        ordered[len(ordered) // 2] * 1000,
        ordered[int(len(ordered) * 0.95)] * 1000,
        errors,
    )


def seconds_of(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for unit in ("ms", "s", "m"):
        if duration.endswith(unit):
            return float(duration.removesuffix(unit)) * units[unit]
    return float(duration)


def run(args: argparse.Namespace) -> None:
    url = os.environ.get(URL_ENV, "")
    if not url:
        sys.exit(f"set {URL_ENV} to a PostgreSQL database the benchmark may empty")
    interval_s, ttl_s = seconds_of(args.interval), seconds_of(args.ttl)
    bound_s = ttl_s + 2 * interval_s
    asyncio.run(reset_database(url))
    fake, prometheus = start_fake_prometheus()
    replicas: list[Replica] = []
    work = Path(tempfile.mkdtemp(prefix="gonogo-replicas-"))
    try:
        gates_dir = work / "gates"
        gates_dir.mkdir()
        names = write_gates(gates_dir, args.gates, interval=args.interval, prometheus=prometheus)
        began = time.monotonic()
        replicas = [
            start_replica(f"r{i}", work, gates_dir, url, args.ttl) for i in range(args.replicas)
        ]
        for replica in replicas:
            wait_ready(replica, 180)
        print(f"# {args.replicas} replicas ready in {time.monotonic() - began:.1f}s", flush=True)

        # Settled: every gate owned (the replicas' gauges sum to the gate count).
        settle_deadline = time.monotonic() + max(30.0, 3 * bound_s)
        total = 0.0
        while time.monotonic() < settle_deadline:
            total = sum(gates_owned(r) or 0.0 for r in replicas)
            if total >= len(names):
                break
            time.sleep(0.5)
        print(f"# gonogo_gates_owned sums to {total:.0f} of {len(names)}", flush=True)
        time.sleep(interval_s)  # one full interval of sampling before measuring

        # 1. steady state
        wall_start = datetime.now(UTC)
        cpu0 = {r.name: cpu_seconds(r.process.pid) for r in replicas}
        counts0 = {r.name: r.counts() for r in replicas}
        commits0 = xact_commits(url)
        t0 = time.monotonic()
        time.sleep(args.seconds)
        span = time.monotonic() - t0
        commits = xact_commits(url) - commits0
        cpu = {r.name: (cpu_seconds(r.process.pid) - cpu0[r.name]) / span for r in replicas}
        rss = {r.name: rss_mb(r.process.pid) for r in replicas}
        counts = {
            r.name: {k: v - counts0[r.name].get(k, 0) for k, v in r.counts().items()}
            for r in replicas
        }
        owned = {r.name: gates_owned(r) for r in replicas}
        troubles = {r.name: lease_troubles(r) for r in replicas}
        gap, gap_gate = longest_gap(url, wall_start)

        print(
            f"\n## steady state over {span:.0f}s ({args.gates} gates x 3 criteria every"
            f" {args.interval}, TTL {args.ttl})"
        )
        print(
            f"{'replica':8} {'gates owned':>11} {'CPU %core':>10} {'RSS MB':>8} {'peak MB':>8}"
            f" {'stmts/s':>8} {'lease/s':>8} {'fence/s':>8} {'renew fail':>10} {'takeovers':>9}"
        )
        all_total = all_lease = all_fence = 0
        for r in replicas:
            c = counts[r.name]
            lease = c.get("lease_claim", 0) + c.get("lease_renew", 0) + c.get("lease_release", 0)
            all_total += c.get("total", 0)
            all_lease += lease
            all_fence += c.get("fence", 0)
            print(
                f"{r.name:8} {owned[r.name] or 0:>11.0f} {cpu[r.name] * 100:>10.1f}"
                f" {rss[r.name][0]:>8.0f} {rss[r.name][1]:>8.0f}"
                f" {c.get('total', 0) / span:>8.1f} {lease / span:>8.2f}"
                f" {c.get('fence', 0) / span:>8.1f} {troubles[r.name][0]:>10.0f}"
                f" {troubles[r.name][1]:>9.0f}"
            )
        share = all_lease / all_total if all_total else 0.0
        fence_share = all_fence / all_total if all_total else 0.0
        print(
            f"statements/s (all replicas): {all_total / span:.1f};"
            f" lease claim/renew/release {all_lease / span:.2f}/s = {share:.2%}"
            f" (target < {LEASE_SHARE_TARGET:.0%}); fencing reads {fence_share:.2%}"
        )
        print(f"server transactions committed/s (pg_stat_database): {commits / span:.1f}")
        print(
            f"longest gap between two samples of a gate: {gap:.2f}s ({gap_gate});"
            f" bound TTL + 2 intervals = {bound_s:.1f}s"
        )

        # 2. decision reads: an owner against a non-owner, over the owner's gates
        lease_owners = owners(url)
        owner = replicas[0]
        theirs = sorted(g for g, o in lease_owners.items() if o == owner.name) or names
        other = replicas[1]
        print(
            f"\n## decision reads, {args.connections} connections, {args.read_seconds:g}s"
            f" each, over the {len(theirs)} gates {owner.name} owns"
        )
        results: dict[str, list[Reads]] = {owner.name: [], other.name: []}
        for _ in range(2):
            for replica in (owner, other):
                results[replica.name].append(
                    asyncio.run(read_load(replica.url, theirs, args.connections, args.read_seconds))
                )
        for replica, role in ((owner, "owner"), (other, "non-owner")):
            runs = results[replica.name]
            print(
                f"{role:10} {replica.name}: {statistics.mean(x.per_s for x in runs):8.0f} req/s"
                f"  p50 {statistics.mean(x.p50_ms for x in runs):6.1f} ms"
                f"  p95 {statistics.mean(x.p95_ms for x in runs):6.1f} ms"
                f"  errors {sum(x.errors for x in runs)}"
            )
        owner_rate = statistics.mean(x.per_s for x in results[owner.name])
        other_rate = statistics.mean(x.per_s for x in results[other.name])
        if owner_rate:
            print(
                f"non-owner / owner: {other_rate / owner_rate:.0%}"
                f" (target >= {READ_RATIO_TARGET:.0%})"
            )

        # 3. and 4. takeovers
        print("\n## takeover (until every gate of the stopped replica has a new stored sample)")
        for victim, sig in ((replicas[1], signal.SIGKILL), (replicas[2], signal.SIGTERM)):
            lease_owners = owners(url)
            lost = {g for g, o in lease_owners.items() if o == victim.name}
            spread = {r.name: sum(o == r.name for o in lease_owners.values()) for r in replicas}
            print(f"# live gate leases by owner before stopping {victim.name}: {spread}")
            at = datetime.now(UTC)
            victim.process.send_signal(sig)
            times = takeover(url, lost, at, deadline_s=3 * bound_s + 10)
            victim.process.wait(30)
            label = "kill -9" if sig == signal.SIGKILL else "SIGTERM"
            if times:
                print(
                    f"{label:8} {victim.name} ({len(lost)} gates): median"
                    f" {statistics.median(times):.2f}s, max {max(times):.2f}s"
                    f" (bound {bound_s:.1f}s)"
                )
            else:
                print(f"{label:8} {victim.name}: owned no gates (no leases held)")
        gap, gap_gate = longest_gap(url, wall_start)
        print(
            f"\nlongest gap between two samples of a gate over the whole run (takeovers"
            f" included): {gap:.2f}s ({gap_gate}); bound {bound_s:.1f}s"
        )
        print(f"# logs in {work}")
        fake_requests = httpx.get(f"{prometheus}/requests", timeout=5).json()
        print(f"\nfake Prometheus queries answered: {fake_requests['query']}")
    finally:
        for replica in replicas:
            if replica.process.poll() is None:
                replica.process.terminate()
        for replica in replicas:
            try:
                replica.process.wait(15)
            except subprocess.TimeoutExpired:
                replica.process.kill()
        stop(fake)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--counting-serve":
        separator = sys.argv.index("--")
        counting_serve(Path(sys.argv[2]), sys.argv[separator + 1 :])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--gates", type=int, default=300)
    parser.add_argument("--interval", default="3s")
    parser.add_argument("--ttl", default="15s", help="GONOGO_LEASE_TTL of every replica")
    parser.add_argument("--seconds", type=float, default=30.0, help="steady-state span")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--read-seconds", type=float, default=4.0)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
