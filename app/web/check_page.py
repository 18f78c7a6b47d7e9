"""One check's own page: ``GET /checks/{id}`` (HTML) and ``GET /checks/{id}.json`` (the
same data as JSON).

Public like the status page, so it shows what the status page shows and no more: the
check's decision (a running check's through the freshness rule, so an expired one is a
stale ``no_go``), reasons, criteria, deadline and time left, sign-offs (who and when), its
samples as a timeline, and its audit events (kind, actor, time). It never shows the
check's metadata, its vars, sign-off comments or event details. Reads are bounded: the
newest ``CHECK_SAMPLES`` samples and ``CHECK_EVENTS`` events.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.checks import repository as checks_repo
from app.checks.views import check_body
from app.core.db import RUNNING, Database
from app.core.problems import problem_response
from app.web.history import DECISION_WORDS, band, decision_spans
from app.web.rendering import render_template
from gates.conditions import format_duration
from gates.engine import MIN_GAP_BOUND, Decision, gap_bound
from gates.units import Unit, format_value, unit_named
from probes.timefmt import iso

if TYPE_CHECKING:
    from app.gates.catalog import GateCatalog

CHECK_SAMPLES: Final = 500
CHECK_EVENTS: Final = 200
# Check ids are 32 hex digits; anything else names no check and is not looked up.
_CHECK_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
LABELS: Final = {"go": "GO", "no_go": "NO GO", "rollback": "ROLLBACK"}

router = APIRouter()


def _decision(value: Any) -> str | None:
    return value if value in LABELS else None


def _criterion(item: Mapping[str, Any], units: Mapping[str, Unit | None]) -> dict[str, Any]:
    shown = {key: item.get(key) for key in ("name", "outcome", "value", "go", "rollback", "reason")}
    # The gate's own criterion says the unit; a criterion it no longer has, its stored body.
    name = item.get("name")
    unit = units[name] if isinstance(name, str) and name in units else unit_named(item.get("unit"))
    value = item.get("value")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    shown["value_text"] = format_value(value, unit) if number else "no value"
    return shown


async def check_page_data(
    session: AsyncSession, check_id: str, *, now: datetime, catalog: GateCatalog | None
) -> dict[str, Any] | None:
    """Everything the check page shows, or None for an unknown check."""
    if _CHECK_ID.fullmatch(check_id) is None:
        return None
    row = await checks_repo.check(session, check_id)
    if row is None:
        return None
    signoffs = await checks_repo.signoffs(session, check_id)
    samples = await checks_repo.recent_check_samples(session, check_id, CHECK_SAMPLES)
    events = await checks_repo.latest_events(session, check_id, CHECK_EVENTS)
    body = check_body(row, signoffs, now=now)
    loaded = catalog.get(row.gate) if catalog is not None else None
    bound = gap_bound(loaded.gate) if loaded is not None else MIN_GAP_BOUND
    running = row.state == RUNNING
    # With only the newest samples read, the band starts at the oldest of them rather
    # than showing a gap where samples were taken but not read.
    capped = len(samples) >= CHECK_SAMPLES
    start = samples[0].evaluated_at if capped and samples else row.created_at
    end = now if running or row.decided_at is None else row.decided_at
    end = max(end, start + timedelta(seconds=1))
    spans = decision_spans(
        [(s.evaluated_at, s.decision) for s in samples], start=start, end=end, bound=bound
    )
    left = (row.deadline - now).total_seconds() if running else None
    required = [s.id for s in loaded.gate.signoffs] if loaded is not None else []
    units = {c.name: c.value_unit() for c in loaded.gate.criteria} if loaded is not None else {}
    signed = {s.signoff for s in signoffs}
    decision = _decision(body.get("decision"))
    return {
        "id": row.id,
        "gate": row.gate,
        "gate_version": row.gate_version,
        "version": row.version,
        "environment": row.environment,
        "stage": row.stage,
        "state": row.state,
        "conclusion": body["conclusion"],
        "decision": decision,
        "label": LABELS[decision] if decision is not None else "CANCELLED",
        "reasons": [str(r) for r in body.get("reasons") or []],
        "steady": body.get("steady"),
        "criteria": [
            _criterion(c, units) for c in body.get("criteria") or [] if isinstance(c, Mapping)
        ],
        "created_at": iso(row.created_at),
        "deadline": iso(row.deadline),
        "time_left": (format_duration(timedelta(seconds=int(left))) if left > 0 else "0s")
        if left is not None
        else None,
        "decided_at": iso(row.decided_at),
        "decided_by": row.decided_by,
        "signoffs": [
            {"signoff": s.signoff, "signed_by": s.signed_by, "signed_at": iso(s.signed_at)}
            for s in signoffs
        ],
        "missing_signoffs": [s for s in required if s not in signed] if running else [],
        "timeline": {
            "from": iso(start),
            "to": iso(end),
            "spans": band(spans, start=start, end=end),
        },
        "samples": [
            {
                "id": s.id,
                "evaluated_at": iso(s.evaluated_at),
                "decision": s.decision if s.decision in DECISION_WORDS else Decision.NO_GO.value,
                "reasons": [str(r) for r in (s.body or {}).get("reasons") or []],
            }
            for s in reversed(samples)
        ],
        "events": [
            {
                "id": e.id,
                "kind": e.kind,
                "at": iso(e.at),
                "actor": e.actor,
                "decision": _decision((e.data or {}).get("decision") or (e.data or {}).get("to")),
            }
            for e in events
        ],
        "generated_at": iso(now),
    }


async def _page_data(request: Request, check_id: str) -> dict[str, Any] | None:
    state = request.app.state
    clock = getattr(state, "clock", None)
    now = clock.now() if clock is not None else datetime.now(UTC)
    db: Database | None = getattr(state, "db", None)
    if db is None or _CHECK_ID.fullmatch(check_id) is None:
        return None
    async with db.session() as session:
        return await check_page_data(
            session, check_id, now=now, catalog=getattr(state, "catalog", None)
        )


@router.get(
    "/checks/{check_id}.json",
    tags=["status"],
    summary="One check as its page shows it (public; no metadata or vars)",
    responses={404: {"description": "no such check"}},
)
async def check_page_json(request: Request, check_id: str) -> JSONResponse:
    data = await _page_data(request, check_id)
    if data is None:
        return problem_response(404, "no such check")
    return JSONResponse(data, headers={"Cache-Control": "no-store"})


@router.get("/checks/{check_id}", response_class=HTMLResponse, include_in_schema=False)
async def check_page(request: Request, check_id: str) -> HTMLResponse:
    data = await _page_data(request, check_id)
    if data is None:
        html = render_template("check_missing.html", check_id=check_id[:64])
        return HTMLResponse(html, status_code=404, headers={"Cache-Control": "no-store"})
    return HTMLResponse(
        render_template("check.html", check=data, words=DECISION_WORDS),
        headers={"Cache-Control": "no-store"},
    )
