"""The past on the status page: each gate's decision timeline and criterion sparklines,
and the recent final checks.

Everything here is read from stored rows, never from a probe, and off the decision path:
one bounded query for the samples of every gate shown (a time window and a row cap per
gate) and one for the recent checks, per page render. The shapes are computed here and
drawn by the templates as inline SVG.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import structlog

from app.checks import repository as checks_repo
from app.core.db import FINAL, CheckRow, Database
from app.core.problems import DATABASE_OUTAGES
from app.gates import repository as gates_repo
from gates.conditions import Condition, format_duration
from gates.engine import Decision, gap_bound
from gates.model import Gate
from probes.timefmt import iso

if TYPE_CHECKING:
    from app.gates.catalog import LoadedGate

log = structlog.get_logger(__name__)

HISTORY_WINDOW: Final = timedelta(hours=3)
# At a 30 s interval, three hours is 360 samples; a faster gate shows its newest 720.
HISTORY_ROWS_PER_GATE: Final = 720
# Rows one render reads for all gates together; with many gates each shows its newest
# ``HISTORY_ROW_BUDGET // gates`` samples (never fewer than HISTORY_ROWS_MIN), and its
# band starts at the oldest of them, so a shorter window is never drawn as a gap.
HISTORY_ROW_BUDGET: Final = 6000
HISTORY_ROWS_MIN: Final = 20
# One read serves every viewer for this long (the page script asks every 30 s).
HISTORY_CACHE_S: Final = 10.0
RECENT_CHECKS: Final = 15
# The page is never held up by a slow database: past this, it shows no history.
HISTORY_READ_TIMEOUT_S: Final = 2.0

# Drawing sizes in SVG user units (the SVGs scale to their box).
BAND_WIDTH: Final = 600.0
SPARK_HEIGHT: Final = 40.0
SPARK_PAD: Final = 3.0

BAND_SLOTS: Final = 200
SPARK_SLOTS: Final = 60

GAP: Final = "gap"
# Which decision a band slot shows when several fall in it: the worst.
SEVERITY: Final = {"go": 0, GAP: 1, "no_go": 2, "rollback": 3}
DECISION_WORDS: Final = {"go": "go", "no_go": "no go", "rollback": "rollback", GAP: "no sample"}

# A relative condition (``> +10%``) has no fixed threshold to draw.
_RELATIVE = re.compile(r"^\s*[<>=!]+\s*[+-]")


@dataclass(frozen=True, slots=True)
class Span:
    start: datetime
    end: datetime
    decision: str  # go, no_go, rollback, or "gap" where gonogo took no sample


def decision_spans(
    points: Sequence[tuple[datetime, str]], *, start: datetime, end: datetime, bound: timedelta
) -> list[Span]:
    """The window ``[start, end]`` as spans of one decision each, oldest first.

    A sample's decision holds until the next sample, when that comes within ``bound``
    (the gap rule, ``max(3 x interval, 10s)``); otherwise for ``bound`` after it (as long
    as it stayed fresh), and then the window shows a gap until the next sample. Before
    the first sample and after the last one expired, the window is a gap too."""
    spans: list[Span] = []

    def add(begin: datetime, stop: datetime, decision: str) -> None:
        if stop <= begin:
            return
        if spans and spans[-1].decision == decision and spans[-1].end >= begin:
            spans[-1] = Span(spans[-1].start, stop, decision)
        else:
            spans.append(Span(begin, stop, decision))

    ordered = sorted((max(at, start), decision) for at, decision in points if at <= end)
    cursor = start
    for index, (at, decision) in enumerate(ordered):
        add(cursor, at, GAP)
        following = ordered[index + 1][0] if index + 1 < len(ordered) else None
        stop = following if following is not None and following - at <= bound else at + bound
        stop = min(stop, end)
        add(at, stop, decision if decision in DECISION_WORDS else Decision.NO_GO.value)
        cursor = max(cursor, stop)
    add(cursor, end, GAP)
    return spans


def band(spans: Sequence[Span], *, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Spans drawn on a band ``BAND_WIDTH`` wide, with the text each shows on hover.

    The band has ``BAND_SLOTS`` slots; a slot shows the worst decision of any span in it
    (rollback, then no_go, then a gap, then go), so a short rollback is never hidden by
    the go around it, and a window of many short spans draws a bounded number of rects."""
    total = (end - start).total_seconds()
    if total <= 0:
        return []
    slot_s = total / BAND_SLOTS
    slots: list[str | None] = [None] * BAND_SLOTS
    for span in spans:
        first = int((span.start - start).total_seconds() / slot_s)
        last = math.ceil((span.end - start).total_seconds() / slot_s)
        for index in range(max(first, 0), min(max(last, first + 1), BAND_SLOTS)):
            held = slots[index]
            if held is None or SEVERITY[span.decision] > SEVERITY[held]:
                slots[index] = span.decision
    drawn: list[dict[str, Any]] = []
    index = 0
    while index < BAND_SLOTS:
        decision = slots[index]
        stop = index + 1
        while stop < BAND_SLOTS and slots[stop] == decision:
            stop += 1
        if decision is not None:
            begin = start + timedelta(seconds=index * slot_s)
            finish = start + timedelta(seconds=stop * slot_s)
            width = BAND_WIDTH / BAND_SLOTS
            drawn.append(
                {
                    "decision": decision,
                    "x": round(index * width, 2),
                    "width": round((stop - index) * width, 2),
                    "from": iso(begin),
                    "to": iso(finish),
                    "title": f"{DECISION_WORDS[decision]} from {iso(begin)} to"
                    f" {iso(finish)} ({format_duration(finish - begin)})",
                }
            )
        index = stop
    return drawn


def thin(
    points: Sequence[tuple[datetime, float]], *, start: datetime, end: datetime
) -> list[tuple[datetime, float]]:
    """At most two points per sparkline slot, its lowest and its highest, in time order:
    a spike survives, the number of points drawn stays bounded."""
    if len(points) <= 2 * SPARK_SLOTS:
        return list(points)
    slot_s = (end - start).total_seconds() / SPARK_SLOTS or 1.0
    buckets: dict[int, list[tuple[datetime, float]]] = {}
    for at, value in points:
        buckets.setdefault(int((at - start).total_seconds() / slot_s), []).append((at, value))
    kept: list[tuple[datetime, float]] = []
    for index in sorted(buckets):
        bucket = buckets[index]
        low = min(bucket, key=lambda p: p[1])
        high = max(bucket, key=lambda p: p[1])
        kept.extend(sorted({low, high}))
    return kept


def absolute_thresholds(conditions: Sequence[Condition] | None) -> list[float]:
    return [c.threshold for c in conditions or () if not _RELATIVE.match(c.text)]


def sparkline(
    points: Sequence[tuple[datetime, float]],
    *,
    start: datetime,
    end: datetime,
    go: Sequence[float],
    rollback: Sequence[float],
) -> dict[str, Any]:
    """A criterion's values as a polyline, with its go and rollback thresholds as
    horizontal lines on the same scale."""
    values = [v for _, v in points]
    scale = values + list(go) + list(rollback)
    if not scale:
        return {"points": "", "go": [], "rollback": [], "count": 0}
    low, high = min(scale), max(scale)
    if high == low:
        low, high = low - (abs(low) or 1.0) * 0.1, high + (abs(high) or 1.0) * 0.1
    total = (end - start).total_seconds() or 1.0

    def y(value: float) -> float:
        inner = SPARK_HEIGHT - 2 * SPARK_PAD
        return round(SPARK_PAD + (high - value) / (high - low) * inner, 2)

    line = " ".join(
        f"{round((at - start).total_seconds() / total * BAND_WIDTH, 2)},{y(value)}"
        for at, value in thin(points, start=start, end=end)
    )
    return {
        "points": line,
        "go": [y(t) for t in go],
        "rollback": [y(t) for t in rollback],
        "count": len(points),
        "low": low,
        "high": high,
    }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def rows_per_gate(gates: int) -> int:
    return max(HISTORY_ROWS_MIN, min(HISTORY_ROWS_PER_GATE, HISTORY_ROW_BUDGET // max(gates, 1)))


def gate_history(
    gate: Gate,
    rows: Sequence[tuple[datetime, str, Any]],
    *,
    now: datetime,
    since: datetime | None = None,
    capped: bool = False,
) -> dict[str, Any]:
    """One gate's timeline band and one sparkline per criterion, from its stored
    continuous samples ``(evaluated_at, decision, criteria)``, oldest first. When the
    rows were ``capped`` (older samples in the window were not read), the band starts
    at the oldest row read rather than showing a gap gonogo did not have; so does a
    read that reached back only to ``since``."""
    start = max(now - HISTORY_WINDOW, since) if since is not None else now - HISTORY_WINDOW
    if capped and rows:
        start = max(start, rows[0][0])
    spans = decision_spans(
        [(at, decision) for at, decision, _ in rows], start=start, end=now, bound=gap_bound(gate)
    )
    values: dict[str, list[tuple[datetime, float]]] = {c.name: [] for c in gate.criteria}
    for at, _, criteria in rows:
        for item in criteria if isinstance(criteria, list) else []:
            if not isinstance(item, Mapping):
                continue
            value = _number(item.get("value"))
            series = values.get(str(item.get("name")))
            if series is not None and value is not None and at >= start:
                series.append((at, value))
    totals: dict[str, float] = {}
    for span in spans:
        totals[span.decision] = (
            totals.get(span.decision, 0.0) + (span.end - span.start).total_seconds()
        )
    return {
        "from": iso(start),
        "to": iso(now),
        "window": format_duration(timedelta(seconds=round((now - start).total_seconds()))),
        "samples": len(rows),
        "spans": band(spans, start=start, end=now),
        "time_in": {k: format_duration(timedelta(seconds=round(v))) for k, v in totals.items()},
        "criteria": [
            {
                "name": c.name,
                **sparkline(
                    values[c.name],
                    start=start,
                    end=now,
                    go=absolute_thresholds(c.go),
                    rollback=absolute_thresholds(c.rollback),
                ),
            }
            for c in gate.criteria
        ],
    }


def recent_check(row: CheckRow) -> dict[str, Any]:
    """A final check as the recent-checks list shows it (never its metadata or vars)."""
    decision = row.decision if row.decision in DECISION_WORDS else Decision.NO_GO.value
    duration = (
        format_duration(row.decided_at - row.created_at) if row.decided_at is not None else None
    )
    return {
        "id": row.id,
        "gate": row.gate,
        "version": row.version,
        "environment": row.environment,
        "stage": row.stage,
        "decision": decision,
        "decided_by": row.decided_by or "engine",
        "decided_at": iso(row.decided_at),
        "duration": duration or "—",
        "url": f"/checks/{row.id}",
    }


DECISION_RANK: Final = {Decision.ROLLBACK.value: 0, Decision.NO_GO.value: 1, Decision.GO.value: 2}


def worst_first(gates: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gate cards ordered rollback, then no_go (a stale decision is already shown as
    no_go), then go; by name within each."""
    return sorted(gates, key=lambda g: (DECISION_RANK.get(g["decision"], 1), g["name"]))


async def read_history(
    db: Database, loaded: Sequence[LoadedGate], *, now: datetime
) -> dict[str, Any]:
    """Every shown gate's history and the recent final checks: two bounded queries. A
    database that does not answer in time gives a page without history, never an error."""
    names = [g.name for g in loaded]
    per_gate = rows_per_gate(len(names))
    # Each gate is read only as far back as its newest ``per_gate`` samples can reach
    # (with room for late samples), so many gates do not mean a scan of the whole window.
    since = {g.name: now - min(HISTORY_WINDOW, g.gate.interval * per_gate * 2) for g in loaded}

    async def read() -> tuple[list[tuple[str, datetime, str, Any]], list[CheckRow]]:
        async with db.session() as session:
            samples = await gates_repo.continuous_history(session, since, per_gate=per_gate)
            recent = await checks_repo.checks(session, state=FINAL, limit=RECENT_CHECKS)
        return samples, recent

    try:
        samples, recent = await asyncio.wait_for(read(), HISTORY_READ_TIMEOUT_S)
    except DATABASE_OUTAGES as error:
        log.warning("status page history not read", error=type(error).__name__)
        return {"available": False, "gates": {}, "recent": []}
    by_gate: dict[str, list[tuple[datetime, str, Any]]] = {n: [] for n in names}
    for gate, at, decision, criteria in samples:
        by_gate[gate].append((at, decision, criteria))
    return {
        "available": True,
        "gates": {
            g.name: gate_history(
                g.gate,
                by_gate[g.name],
                now=now,
                since=since[g.name],
                capped=len(by_gate[g.name]) >= per_gate,
            )
            for g in loaded
        },
        "recent": [recent_check(row) for row in recent],
    }


class HistoryCache:
    """The last history read, served to every page render for ``HISTORY_CACHE_S``, so
    the number of viewers does not multiply the reads; one read at a time. A failed read
    is kept as long: the page shows no history for that long, then tries again."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._read: tuple[datetime, tuple[str, ...], dict[str, Any]] | None = None

    async def get(
        self, db: Database, loaded: Sequence[LoadedGate], *, now: datetime
    ) -> dict[str, Any]:
        names = tuple(g.name for g in loaded)
        async with self._lock:
            if self._read is not None:
                at, shown, history = self._read
                if shown == names and timedelta(0) <= now - at < timedelta(seconds=HISTORY_CACHE_S):
                    return history
            history = await read_history(db, loaded, now=now)
            # An unavailable read is kept too: while the database is away, renders queued
            # behind this lock would otherwise each wait out their own failed read.
            self._read = (now, names, history)
            return history
