"""Samples as stored: the engine's ``Sample`` to rows and back, and the continuous store.

The store records every continuous gate sample, with the gate version that judged it
and the measurements its probes' history needs, hands a gate's recent samples back to
the scheduler at start-up (so a restart keeps windows and runs), and prunes those older
than the retention; a check's samples are never pruned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import Clock
from app.core.db import Database, SampleRow
from app.gates import repository as repo
from app.gates.freshness import decision_body
from gates.engine import (
    BaselineResult,
    CriterionOutcome,
    CriterionResult,
    Decision,
    Sample,
    Steady,
    Verdict,
)
from gates.units import unit_named
from probes.base import MeasurementStatus
from probes.timefmt import iso

log = structlog.get_logger(__name__)


RETENTION_SWEEP = timedelta(hours=1)

# Run inside a sample's write transaction before the insert (the lease fence and the
# bus message); raising ends the transaction with nothing written.
WriteGuard = Callable[[AsyncSession], Awaitable[None]]
# Run in the write's transaction once the sample is inserted, with its id.
AfterInsert = Callable[[AsyncSession, int], Awaitable[None]]


def measurements_of(sample: Sample) -> list[dict[str, Any]]:
    """What the decision body leaves out but a resumed check's probes need."""
    return measurements_of_results(sample.results)


def measurements_of_results(results: Sequence[CriterionResult]) -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "status": r.status.value if r.status is not None else None,
            "observed_at": iso(r.observed_at),
            "extra": dict(r.extra),
        }
        for r in results
    ]


def sample_from_row(row: SampleRow) -> Sample:
    """Rebuild an engine ``Sample`` from its stored decision body and measurements."""
    stored = {m["name"]: m for m in row.measurements or []}
    results = []
    for item in row.body.get("criteria", []):
        extra = stored.get(item["name"], {})
        status = extra.get("status")
        observed = extra.get("observed_at")
        results.append(
            CriterionResult(
                name=item["name"],
                outcome=CriterionOutcome(item["outcome"]),
                reason=item.get("reason", ""),
                probe=item.get("probe", ""),
                go=item.get("go", ""),
                rollback=item.get("rollback"),
                value=item.get("value"),
                volume=item.get("volume"),
                duration_ms=item.get("duration_ms"),
                status=MeasurementStatus(status) if status else None,
                observed_at=datetime.fromisoformat(observed) if observed else None,
                extra={k: float(v) for k, v in (extra.get("extra") or {}).items()},
                dry_run=bool(item.get("dry_run", False)),
                baseline=_baseline_from_body(item.get("baseline")),
                comparison=item.get("comparison"),
                unit=unit_named(item.get("unit")),
            )
        )
    return Sample(evaluated_at=row.evaluated_at, results=tuple(results))


def verdict_from_row(row: SampleRow) -> Verdict:
    """The verdict a stored continuous sample holds, as its decision body said it."""
    body = row.body
    steady = body.get("steady") or {}
    return Verdict(
        gate=str(body.get("gate") or row.gate),
        decision=Decision(body.get("decision", row.decision)),
        evaluated_at=row.evaluated_at,
        reasons=tuple(str(r) for r in body.get("reasons") or ()),
        steady=Steady(int(steady.get("passes", 0)), int(steady.get("needed", 0))),
        criteria=sample_from_row(row).results,
        dry_run_reasons=tuple(str(r) for r in body.get("dry_run_reasons") or ()),
    )


def stored_expires_at(row: SampleRow) -> datetime | None:
    """The ``expires_at`` a stored sample's body carries (None if absent or unreadable)."""
    text = row.body.get("expires_at")
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _baseline_from_body(stored: Any) -> BaselineResult | None:
    if not isinstance(stored, dict):
        return None
    value = stored.get("value")
    return BaselineResult(
        float(value) if value is not None else None,
        {str(k): str(v) for k, v in (stored.get("vars") or {}).items()},
    )


def samples_from_rows(rows: Sequence[SampleRow], *, owner: str) -> list[Sample]:
    """Engine samples from stored rows, oldest first; unreadable or empty rows skipped."""
    samples = []
    for row in rows:
        try:
            sample = sample_from_row(row)
        except (KeyError, ValueError, TypeError):
            log.warning("a stored sample could not be read back", owner=owner, sample=row.id)
            continue
        if sample.results:
            samples.append(sample)
    return samples


class SampleStore:
    """Stores the continuous gate samples (the scheduler's ``SampleSink``) and prunes
    those older than the retention; a check's samples are never pruned."""

    def __init__(self, db: Database, *, clock: Clock, retention: timedelta) -> None:
        self._db = db
        self._clock = clock
        self._retention = retention
        self._task: asyncio.Task[None] | None = None

    async def record_gate_sample(
        self,
        gate: str,
        verdict: Verdict,
        *,
        version: str,
        expires_at: datetime | None,
        guard: WriteGuard | None = None,
        then: AfterInsert | None = None,
    ) -> None:
        """Store one continuous sample (its verdict holds the sample's results); ``guard``
        runs first in the same transaction (a lease fence raising ``LeaseLost`` leaves
        nothing written), ``then`` after the insert, with the sample's id (the
        notification of a decision change is queued there)."""
        async with self._db.session() as session:
            if guard is not None:
                await guard(session)
            sample_id = await repo.add_sample(
                session,
                gate=gate,
                check_id=None,
                evaluated_at=verdict.evaluated_at or self._clock.now(),
                decision=verdict.decision.value,
                body=decision_body(verdict, expires_at, gate_version=version),
                measurements=measurements_of_results(verdict.criteria),
                gate_version=version,
            )
            if then is not None:
                await then(session, sample_id)

    async def recent_gate_samples(self, gate: str, version: str, limit: int) -> list[Sample]:
        """The newest ``limit`` continuous samples of ``gate`` at ``version``, oldest first.

        A row that cannot be read back, or a failed evaluation (no criteria, which the
        scheduler never keeps in its history), is left out."""
        async with self._db.session() as session:
            rows = await repo.recent_gate_samples(session, gate, version, limit)
        return samples_from_rows(rows, owner=f"gate {gate}")

    async def newest_gate_samples(self, gates: Sequence[str]) -> dict[str, SampleRow]:
        """The newest stored continuous sample of each of ``gates`` that has one."""
        async with self._db.session() as session:
            rows = await repo.newest_gate_samples(session, gates)
        return {row.gate: row for row in rows}

    async def prune(self) -> int:
        async with self._db.session() as session:
            removed = await repo.prune_continuous_samples(
                session, self._clock.now() - self._retention
            )
        if removed:
            log.info("old gate samples pruned", removed=removed)
        return removed

    async def start(self) -> None:
        self._task = asyncio.create_task(self._sweep(), name="gonogo-sample-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _sweep(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception:
                log.exception("pruning gate samples failed")
            await self._clock.sleep(RETENTION_SWEEP.total_seconds())
