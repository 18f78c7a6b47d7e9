"""``/api/v1/gates``: definitions, the current continuous decision, sample history."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from app.core.deps import MAX_ROW_ID, Admin, AuthFirstRoute, ClockDep, SessionDep, Viewer
from app.core.problems import Invalid
from app.gates import service as services
from app.gates.deps import CatalogDep, SchedulerDep

_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit also accepts '²'


def _utc_instant(value: datetime | None, field: str) -> datetime | None:
    """``value`` in UTC; 422 naming ``field`` when it has no zone or leaves the calendar
    in UTC (``0001-01-01T00:00:00+14:00``)."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise Invalid(
            f"{field} needs a time zone",
            errors=[{"loc": ["query", field], "msg": "give a zone, e.g. 2026-11-24T10:00:00Z"}],
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise Invalid(
            f"{field} is out of range",
            errors=[{"loc": ["query", field], "msg": "give an instant between years 1 and 9999"}],
        ) from None


router = APIRouter(prefix="/gates", tags=["gates"], route_class=AuthFirstRoute)

_GATE_BODY = {
    "requestBody": {
        "required": True,
        "description": "the gate definition, as in a gate file (YAML) or the same as JSON",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


@router.get("", summary="Every gate with its current decision")
async def list_gates(
    catalog: CatalogDep, scheduler: SchedulerDep, _: Viewer
) -> list[dict[str, Any]]:
    return services.list_gates(catalog, scheduler)


@router.get("/{gate}", summary="A gate's definition, source, version and current decision")
async def get_gate(
    gate: str, catalog: CatalogDep, scheduler: SchedulerDep, _: Viewer
) -> dict[str, Any]:
    return services.get_gate(catalog, scheduler, gate)


@router.put(
    "/{gate}",
    summary="Create or replace an API-defined gate from YAML or JSON (admin)",
    status_code=200,
    openapi_extra=_GATE_BODY,
    responses={201: {"description": "created"}, 409: {"description": "file-defined gate"}},
)
async def put_gate(
    gate: str,
    request: Request,
    session: SessionDep,
    catalog: CatalogDep,
    scheduler: SchedulerDep,
    clock: ClockDep,
    principal: Admin,
) -> JSONResponse:
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid(
            "the body is not UTF-8 text",
            errors=[{"loc": ["body"], "msg": "send the gate as UTF-8 YAML or JSON"}],
        ) from None
    body, created = await services.put_gate(
        session, catalog, scheduler, name=gate, text=text, principal=principal, clock=clock
    )
    return JSONResponse(
        body,
        status_code=201 if created else 200,
        headers={"Location": f"/api/v1/gates/{gate}"} if created else None,
    )


@router.delete(
    "/{gate}",
    summary="Delete an API-defined gate (admin)",
    status_code=204,
    response_class=Response,
    responses={409: {"description": "file-defined gate, or checks still running"}},
)
async def delete_gate(gate: str, session: SessionDep, catalog: CatalogDep, _: Admin) -> Response:
    await services.delete_gate(session, catalog, name=gate)
    return Response(status_code=204)


@router.get(
    "/{gate}/decision",
    summary="The gate's current continuous decision (from memory; never calls a probe)",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}}},
)
async def gate_decision(
    gate: str, catalog: CatalogDep, scheduler: SchedulerDep, _: Viewer
) -> Response:
    body = services.gate_decision_json(catalog, scheduler, gate)
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/{gate}/samples", summary="Continuous sample history, newest first, paginated")
async def gate_samples(
    gate: str,
    session: SessionDep,
    catalog: CatalogDep,
    _: Viewer,
    since: Annotated[datetime | None, Query(description="only samples after this instant")] = None,
    cursor: Annotated[
        str | None, Query(max_length=32, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    since = _utc_instant(since, "since")
    if cursor is not None and not (_DIGITS.fullmatch(cursor) and int(cursor) <= MAX_ROW_ID):
        raise Invalid(
            "bad cursor",
            errors=[{"loc": ["query", "cursor"], "msg": "use next_cursor from the previous page"}],
        )
    return await services.gate_samples(
        session, catalog, name=gate, since=since, cursor=cursor, limit=limit
    )
