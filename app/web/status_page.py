"""The public status page (``GET /``) and its data (``GET /status.json``).

Both show what ``/metrics`` already shows (every gate's decision and criteria) plus the
running checks, read from memory only: the catalog, the scheduler's current decisions
(an expired one shows as a stale ``no_go``) and the check runner, whose running checks are
judged for freshness the same way. The page is rendered on the server, so it works
without JavaScript; a small script then polls ``/status.json`` and redraws it in place.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from app.gates.freshness import DecisionView, current_check_body
from app.web import check_page
from app.web.history import DECISION_WORDS, HistoryCache, worst_first
from app.web.rendering import render_template
from gates.conditions import format_duration
from gates.engine import Decision
from gates.judgements import comparison_summary, judged_conditions, judged_value_text
from gates.units import Unit, format_value
from probes.timefmt import iso

if TYPE_CHECKING:
    from app.gates.catalog import GateCatalog, LoadedGate

PACKAGE_DIR: Final = Path(__file__).resolve().parent
STATIC_DIR: Final = PACKAGE_DIR / "static"
STATIC_FILES: Final = {
    "status.css": "text/css",
    "status.js": "text/javascript",
    "history.css": "text/css",
    "history.js": "text/javascript",
}
REFRESH_SECONDS: Final = 2

# The go-live status-update template's colours, always shown with a text label.
DECISION_LABELS: Final = {
    Decision.GO.value: ("GO", "Green"),
    Decision.NO_GO.value: ("NO GO", "Yellow"),
    Decision.ROLLBACK.value: ("ROLLBACK", "Red"),
}

router = APIRouter()
router.include_router(check_page.router)


class DecisionSource(Protocol):
    def current_all(self) -> dict[str, DecisionView]: ...


class RunningChecks(Protocol):
    def running_checks(self) -> list[dict[str, Any]]: ...


def baseline_text(baseline: Any, unit: Unit | None) -> str | None:
    """``baseline 1 % (version=1.4.1)``: the baseline's value and what it was run with."""
    if not isinstance(baseline, Mapping):
        return None
    value = baseline.get("value")
    shown = format_value(value, unit) if isinstance(value, int | float) else "no value"
    variables = baseline.get("vars") or {}
    ran = (
        ", ".join(f"{k}={v}" for k, v in variables.items())
        if isinstance(variables, Mapping)
        else ""
    )
    return f"baseline {shown}" + (f" ({ran})" if ran else "")


def gate_status(loaded: LoadedGate, view: DecisionView | None) -> dict[str, Any]:
    gate = loaded.gate
    body: dict[str, Any] = (
        view.as_dict()
        if view is not None
        else {
            "decision": Decision.NO_GO.value,
            "evaluated_at": None,
            "expires_at": None,
            "reasons": ["no sample yet"],
            "dry_run_reasons": [],
            "steady": {"passes": 0, "needed": gate.steady_for},
            "criteria": [],
        }
    )
    label, colour = DECISION_LABELS[body["decision"]]
    criteria = []
    judged = {c["name"]: c for c in body["criteria"]}
    for criterion in gate.criteria:
        result = judged.get(criterion.name)
        go = result["go"] if result else " and ".join(c.text for c in criterion.go)
        rollback = (
            result["rollback"]
            if result
            else (" and ".join(c.text for c in criterion.rollback) if criterion.rollback else None)
        )
        value = result["value"] if result else None
        comparison = result.get("comparison") if result else None
        if not result and (criterion.compare is not None or criterion.slo is not None):
            go, rollback = judged_conditions(criterion)
        unit = criterion.value_unit()
        criteria.append(
            {
                "name": criterion.name,
                "probe": criterion.probe,
                "outcome": result["outcome"] if result else "pending",
                "value": value,
                "value_text": (judged_value_text(comparison, value) or format_value(value, unit))
                if result
                else "not measured yet",
                "go": go,
                "rollback": rollback,
                "reason": result["reason"] if result else "no sample yet",
                "dry_run": criterion.dry_run,
                "baseline": result.get("baseline") if result else None,
                "baseline_text": baseline_text(result.get("baseline"), unit) if result else None,
            }
        )
        summary = comparison_summary(comparison, unit)
        if summary:
            criteria[-1]["comparison"] = summary
    steady = body["steady"]
    return {
        "name": gate.name,
        "description": gate.description,
        "source": loaded.source,
        "version": loaded.version,
        "interval": format_duration(gate.interval),
        "decision": body["decision"],
        "label": label,
        "colour": colour,
        "evaluated_at": body["evaluated_at"],
        "expires_at": body["expires_at"],
        "stale": view.stale if view is not None else False,
        "reasons": list(body["reasons"]),
        "dry_run_reasons": list(body.get("dry_run_reasons") or []),
        "steady": {**steady, "text": f"steady {steady['passes']}/{steady['needed']}"},
        "criteria": criteria,
    }


def check_status(check: Mapping[str, Any], *, now: datetime) -> dict[str, Any]:
    """A running check as the page shows it (stale ``no_go`` once its latest decision has
    expired); tolerant of fields a check has not got yet."""
    latest = check.get("latest") or check.get("decision_body") or {}
    if isinstance(latest, Mapping):
        latest = current_check_body(latest, now)
    decision = latest.get("decision") if isinstance(latest, Mapping) else None
    if decision is None and isinstance(check.get("decision"), str):
        decision = check["decision"]
    decision = decision if decision in DECISION_LABELS else Decision.NO_GO.value
    created = check.get("created_at")
    return {
        "id": str(check.get("id", "")),
        "gate": str(check.get("gate", "")),
        "version": str(check.get("version", "")),
        "environment": check.get("environment"),
        "stage": check.get("stage"),
        "created_at": iso(created) if isinstance(created, datetime) else created,
        "decision": decision,
        "label": DECISION_LABELS[decision][0],
        "reasons": list(latest.get("reasons", [])) if isinstance(latest, Mapping) else [],
        "missing_signoffs": [str(s) for s in check.get("missing_signoffs", [])],
    }


def status_snapshot(
    catalog: GateCatalog,
    decisions: DecisionSource,
    checks: RunningChecks | None,
    *,
    now: datetime,
) -> dict[str, Any]:
    """Everything the status page shows, from memory only."""
    current = decisions.current_all()
    gates = worst_first([gate_status(loaded, current.get(loaded.name)) for loaded in catalog.all()])
    running = (
        [check_status(c, now=now) for c in checks.running_checks()] if checks is not None else []
    )
    summary = {decision: 0 for decision in DECISION_LABELS}
    for gate in gates:
        summary[gate["decision"]] += 1
    return {
        "generated_at": iso(now),
        "refresh_seconds": REFRESH_SECONDS,
        "summary": summary,
        "gates": gates,
        "checks": running,
    }


def _snapshot(request: Request) -> dict[str, Any]:
    state = request.app.state
    clock = getattr(state, "clock", None)
    now = clock.now() if clock is not None else datetime.now(UTC)
    return status_snapshot(state.catalog, state.scheduler, getattr(state, "checks", None), now=now)


async def _history(request: Request) -> dict[str, Any] | None:
    """The stored past of every gate shown (``app/web/history.py``); None without a
    database (nothing to read it from)."""
    state = request.app.state
    db = getattr(state, "db", None)
    if db is None:
        return None
    clock = getattr(state, "clock", None)
    now = clock.now() if clock is not None else datetime.now(UTC)
    cache = getattr(state, "history_cache", None)
    if not isinstance(cache, HistoryCache):
        cache = state.history_cache = HistoryCache()
    return await cache.get(db, state.catalog.all(), now=now)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def status_page(request: Request) -> HTMLResponse:
    status = _snapshot(request)
    html = render_template(
        "status.html", status=status, history=await _history(request), words=DECISION_WORDS
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


@router.get(
    "/status.json",
    tags=["status"],
    summary="Every gate's current decision and criteria, and the running checks (public)",
)
async def status_json(request: Request) -> JSONResponse:
    return JSONResponse(_snapshot(request), headers={"Cache-Control": "no-store"})


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> FileResponse:
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no static file {name!r}")
    return FileResponse(
        STATIC_DIR / name, media_type=media_type, headers={"Cache-Control": "max-age=300"}
    )
