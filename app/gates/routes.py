"""``/api/v1/gates``: definitions, the current continuous decision, sample history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from app.core.deps import Admin, AuthFirstRoute, ClockDep, SessionDep, Viewer
from app.core.problems import Invalid
from app.gates import service as services
from app.gates.deps import CatalogDep, SchedulerDep

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
    if since is not None and since.tzinfo is None:
        raise Invalid(
            "since needs a time zone",
            errors=[{"loc": ["query", "since"], "msg": "give a zone, e.g. 2026-11-24T10:00:00Z"}],
        )
    return await services.gate_samples(
        session, catalog, name=gate, since=since, cursor=cursor, limit=limit
    )
