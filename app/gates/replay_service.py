"""What ``POST /api/v1/gates/{gate}/replay`` does: check the asked range and values, then
replay the gate with its live probes (gates/replay.py), a bounded number at a time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import SampleRow
from app.core.problems import Invalid, Problem
from app.gates.catalog import GateCatalog, LoadedGate
from app.gates.replay_repository import StoredRow, continuous_sample_pages
from app.gates.samples import samples_from_rows
from app.gates.service import loaded_or_404
from gates.conditions import format_duration
from gates.engine import Sample
from gates.placeholders import check_value_problem, gate_placeholders, reserved_name_problem
from gates.replay import (
    Replay,
    ReplayError,
    not_replayable_reason,
    readings_taken,
    replay,
    replay_instants,
)
from gates.sampler import placeholder_values

# The longest range one replay may cover, whatever its step.
MAX_RANGE = timedelta(days=31)
# Replays running at once in this process; with one per gate, the live sampling that
# shares their probes keeps its connections.
MAX_CONCURRENT_REPLAYS = 2
# Stored samples one replay reads, for criteria whose probe has no history of its own.
MAX_STORED_SAMPLES = 50_000


class Busy(Problem):
    status, title = 429, "Too many requests"


class ReplayLimiter:
    """One replay per gate, and at most ``MAX_CONCURRENT_REPLAYS`` in all."""

    def __init__(self, limit: int = MAX_CONCURRENT_REPLAYS) -> None:
        self._limit = limit
        self._running: set[str] = set()

    def claim(self, gate: str) -> None:
        if gate in self._running:
            raise Busy(f"a replay of gate {gate!r} is already running; try again when it ends")
        if len(self._running) >= self._limit:
            raise Busy(f"{self._limit} replays are running; try again when one ends")
        self._running.add(gate)

    def release(self, gate: str) -> None:
        self._running.discard(gate)


LIMITER = ReplayLimiter()


def _invalid(field: str, message: str) -> Invalid:
    loc = ["body", *field.split(".")]
    return Invalid(message, errors=[{"loc": loc, "msg": message}])


def _checked_vars(vars: Mapping[str, str], used: set[str]) -> dict[str, str]:
    for name, value in vars.items():
        problem = reserved_name_problem(name)
        if problem is None and name not in used:
            shown = ", ".join(sorted(used)) or "none"
            problem = f"the gate uses no ${{{name}}} (its placeholders: {shown})"
        if problem is None:
            problem = check_value_problem(value)
        if problem is not None:
            raise _invalid(f"vars.{name}", f"vars.{name}: {problem}")
    return dict(vars)


async def _stored_samples(
    session: AsyncSession,
    loaded: LoadedGate,
    supplied: Mapping[str, str],
    span: tuple[datetime, datetime, timedelta],
) -> list[Sample]:
    """gonogo's own samples of the gate over the range, when a criterion needs them (its
    probe cannot read its history back). They were taken by the gate's current version
    with its own ``vars``: a replay for other values (``supplied``) cannot use them."""
    gate, probes = loaded.gate, loaded.probes
    if supplied:
        return []
    needed = any(
        c.compare is None and not_replayable_reason(gate, c, probes.get(c.probe)) is not None
        for c in gate.criteria
    )
    if not needed:
        return []
    start, end, step = span
    rows: list[StoredRow] = []
    # By pages, as text: the event loop serves other requests between them. Only the rows
    # some step takes (one a step at most, so never more than the step cap) are then
    # decoded and rebuilt, in a worker thread.
    async for page in continuous_sample_pages(
        session, gate.name, loaded.version, start - step, end, limit=MAX_STORED_SAMPLES
    ):
        rows.extend(page)
    instants = replay_instants(start, end, step)
    return await asyncio.to_thread(_taken_samples, rows, instants, step, gate.name)


def _taken_samples(
    rows: Sequence[StoredRow], instants: Sequence[datetime], step: timedelta, owner: str
) -> list[Sample]:
    taken = readings_taken([row.evaluated_at for row in rows], instants, step)
    return _decoded([rows[index] for index in taken], owner)


def _decoded(page: Sequence[StoredRow], owner: str) -> list[Sample]:
    """Engine samples from a page of stored rows; a row whose JSON is unreadable is
    skipped, as ``samples_from_rows`` skips one it cannot rebuild."""
    rows = []
    for stored in page:
        try:
            body = json.loads(stored.body)
            measurements = json.loads(stored.measurements) if stored.measurements else None
        except (TypeError, ValueError):
            body, measurements = {}, None
        rows.append(
            SampleRow(
                id=stored.id,
                evaluated_at=stored.evaluated_at,
                body=body if isinstance(body, dict) else {},
                measurements=measurements if isinstance(measurements, list) else None,
            )
        )
    return samples_from_rows(rows, owner=owner)


async def replay_gate(
    session: AsyncSession,
    catalog: GateCatalog,
    name: str,
    *,
    start: datetime,
    end: datetime,
    step: timedelta | None,
    vars: Mapping[str, str],
    limiter: ReplayLimiter = LIMITER,
) -> bytes:
    """The replay's JSON body (``Replay.as_dict``), encoded; 422 naming the field for a
    bad range, step or value, 429 when too many replays run."""
    loaded = loaded_or_404(catalog, name)
    gate = loaded.gate
    supplied = _checked_vars(vars, gate_placeholders(gate))
    if end - start > MAX_RANGE:
        raise _invalid("to", f"a replay covers at most {format_duration(MAX_RANGE)}")
    every = step or gate.interval
    try:
        replay_instants(start, end, every)
    except ReplayError as bad:
        raise _invalid(bad.field, str(bad)) from None
    limiter.claim(name)
    try:
        stored = await _stored_samples(session, loaded, supplied, (start, end, every))
        replayed = await replay(
            gate,
            loaded.probes,
            values=placeholder_values(gate, check_vars=supplied),
            start=start,
            end=end,
            step=every,
            stored=stored,
        )
    finally:
        limiter.release(name)
    # Building and encoding the body of thousands of steps is CPU work too (about half a
    # second at 16,000 steps): off the event loop.
    return await asyncio.to_thread(_encoded, replayed)


def _encoded(replayed: Replay) -> bytes:
    return json.dumps(replayed.as_dict(), separators=(",", ":"), ensure_ascii=False).encode()
